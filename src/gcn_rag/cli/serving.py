"""``gcn-rag serve | tokens | endpoints | logs``: run the serving API and drive it over HTTP.

``endpoints`` commands talk to a running server (``--url``, default ``DATABRICKS_HOST`` or the
server the workspace's ``gcn-rag up`` / ``serve`` runs) with a token (``--token``, default
``DATABRICKS_TOKEN`` or the token ``gcn-rag up`` saved in the workspace), exactly as
``databricks-sdk`` would. ``endpoints update`` changes only what it is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from gcn_rag.cli.common import (
    SettingsOption,
    friendly,
    is_piped,
    make_console,
    print_json,
    print_rows,
    print_table,
)
from gcn_rag.serving.deploy import CAPTURE_PREFIX, ENDPOINT
from gcn_rag.settings import Settings
from gcn_rag.timespan import SINCE_HELP

if TYPE_CHECKING:
    from rich.console import Console

    from gcn_rag.ops.monitor import Request
    from gcn_rag.serving.client import ServingClient
    from gcn_rag.serving.deploy import EndpointSpec


@friendly
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address."),
    port: int = typer.Option(8080, "--port", help="TCP port."),
    no_auth: bool = typer.Option(
        False, "--no-auth", help="Accept requests without a token (loopback only)."
    ),
    engine: str = typer.Option(
        "local",
        "--engine",
        help="Who runs the models: local (this process) or ray (Ray Serve replicas behind "
        "the same API; pip install 'gcn-rag[ray]').",
    ),
    address: str | None = typer.Option(
        None, "--address", help="Ray cluster for --engine ray (default: a private one here)."
    ),
    ray_replicas: int = typer.Option(
        1, "--ray-replicas", help="Ray replicas per served entity (--engine ray)."
    ),
    settings: Settings = SettingsOption,
) -> None:
    """Serve endpoints with the Databricks Model Serving API (bearer tokens required)."""
    from gcn_rag.console import console_for
    from gcn_rag.serving.app import Server
    from gcn_rag.serving.ray_engine import serving_engine

    on = serving_engine(settings, engine, address=address, replicas=ray_replicas)
    server = Server(settings, host, port, no_auth=no_auth, console=console_for(settings), engine=on)
    make_console().print(
        f"Serving on {server.url}, console {server.url}/console/ (Ctrl-C to stop)."
    )
    server.run()
    make_console().print("Stopped.")


tokens_app = typer.Typer(help="Bearer tokens for the serving API.", no_args_is_help=True)


@tokens_app.command("create")
@friendly
def tokens_create(
    permission: str = typer.Option(
        "CAN_QUERY", "--permission", help="CAN_VIEW, CAN_QUERY or CAN_MANAGE."
    ),
    comment: str = typer.Option("", "--comment", help="What the token is for."),
    settings: Settings = SettingsOption,
) -> None:
    """Create a bearer token for the serving API (shown once; stored hashed)."""
    from gcn_rag.serving.auth import TokenStore

    make_console().print(TokenStore(settings.serving_state).create(permission, comment))


# --- endpoints ---------------------------------------------------------------------------------

endpoints_app = typer.Typer(
    help="Create, inspect, update and delete serving endpoints over the REST API.",
    no_args_is_help=True,
)
UrlOption = typer.Option(
    None,
    "--url",
    envvar="DATABRICKS_HOST",
    help="Server URL (default: the server this workspace's `gcn-rag up` or `serve` runs).",
)
TokenOption = typer.Option(
    None,
    "--token",
    envvar="DATABRICKS_TOKEN",
    help="Bearer token (default: the one `gcn-rag up` saved in the workspace).",
)
JsonOption = typer.Option(False, "--json", help="Print the API's JSON.")
ModelOption = typer.Option(
    None,
    "--model",
    help="Registered model name (create: sandbox.nasa_gcn_models.gcn_rag_assistant).",
)
VersionOption = typer.Option(
    None, "--version", help="Version number or alias, pinned by the server (create: champion)."
)
SizeOption = typer.Option(
    None, "--workload-size", help="Small (4), Medium (16), Large (64) (create: Small)."
)
ZeroOption = typer.Option(
    None,
    "--scale-to-zero/--no-scale-to-zero",
    help="Unload when idle; reload on demand (create: on).",
)
ConfigOption = typer.Option(
    None, "--config", help="A JSON endpoint config (served_entities, traffic_config) instead."
)
WaitOption = typer.Option(True, "--wait/--no-wait", help="Wait until the endpoint is READY.")
CaptureOption = typer.Option(
    None,
    "--capture",
    help=f"Capture requests into <catalog>.<schema>.<PREFIX>_payload ('' turns it off; "
    f"create: {CAPTURE_PREFIX}).",
)
EntityOption = typer.Option(
    None, "--entity", help="The served entity to change, when the endpoint serves several."
)


def _client(url: str | None, token: str | None, settings: Settings) -> ServingClient:
    from gcn_rag.serving.client import ServingClient, workspace_server

    return ServingClient(*workspace_server(settings, url, token))


@endpoints_app.command("list")
@friendly
def endpoints_list(
    url: str | None = UrlOption,
    token: str | None = TokenOption,
    as_json: bool = JsonOption,
    settings: Settings = SettingsOption,
) -> None:
    """Every endpoint with its state, served entities and traffic."""
    endpoints = _client(url, token, settings).list()
    if as_json:
        print_json(endpoints, indent=2)
    elif not endpoints:
        make_console().print("No endpoints; create one with `gcn-rag endpoints create NAME`.")
    else:
        _print_endpoints(make_console(), endpoints)


@endpoints_app.command("get")
@friendly
def endpoints_get(
    name: str = typer.Argument(ENDPOINT, help="Endpoint name."),
    url: str | None = UrlOption,
    token: str | None = TokenOption,
    as_json: bool = JsonOption,
    settings: Settings = SettingsOption,
) -> None:
    """One endpoint: state, served entities, traffic, pending config."""
    _show(_client(url, token, settings).get(name), as_json)


@endpoints_app.command("create")
@friendly
def endpoints_create(
    name: str = typer.Argument(ENDPOINT, help="Endpoint name."),
    model: str | None = ModelOption,
    version: str | None = VersionOption,
    workload_size: str | None = SizeOption,
    scale_to_zero: bool | None = ZeroOption,
    config_file: Path | None = ConfigOption,
    capture: str | None = CaptureOption,
    wait: bool = WaitOption,
    url: str | None = UrlOption,
    token: str | None = TokenOption,
    as_json: bool = JsonOption,
    settings: Settings = SettingsOption,
) -> None:
    """Create an endpoint serving a registered model version (needs CAN_MANAGE)."""
    from gcn_rag.serving.deploy import EndpointSpec

    spec = EndpointSpec(model, version, workload_size, scale_to_zero, capture)
    client = _client(url, token, settings)
    endpoint = client.create(name, _config(config_file, spec) or spec.create_config(settings))
    _show(_wait(client, name) if wait else endpoint, as_json)


@endpoints_app.command("update")
@friendly
def endpoints_update(
    name: str = typer.Argument(ENDPOINT, help="Endpoint name."),
    model: str | None = ModelOption,
    version: str | None = VersionOption,
    workload_size: str | None = SizeOption,
    scale_to_zero: bool | None = ZeroOption,
    capture: str | None = CaptureOption,
    entity: str | None = EntityOption,
    config_file: Path | None = ConfigOption,
    wait: bool = WaitOption,
    url: str | None = UrlOption,
    token: str | None = TokenOption,
    as_json: bool = JsonOption,
    settings: Settings = SettingsOption,
) -> None:
    """Change what the options name and keep the rest; the old config serves until the new
    one is loaded. --config replaces the whole config instead."""
    from gcn_rag.errors import BadInputError
    from gcn_rag.serving.deploy import EndpointSpec

    spec = EndpointSpec(model, version, workload_size, scale_to_zero, capture, entity)
    config = _config(config_file, spec)
    if config is None and spec.is_empty():
        raise BadInputError(
            "Nothing to change: give --version, --model, --workload-size, "
            "--scale-to-zero/--no-scale-to-zero, --capture or --config."
        )
    client = _client(url, token, settings)
    if config is None:  # a patch: the current config with only what was asked changed
        config = spec.update_config(client.get(name)["config"], settings)
    endpoint = client.update_config(name, config)
    _show(_wait(client, name) if wait else endpoint, as_json)


@endpoints_app.command("delete")
@friendly
def endpoints_delete(
    name: str = typer.Argument(..., help="Endpoint name."),
    url: str | None = UrlOption,
    token: str | None = TokenOption,
    settings: Settings = SettingsOption,
) -> None:
    """Delete an endpoint (its models are unloaded)."""
    _client(url, token, settings).delete(name)
    make_console().print(f"Deleted endpoint {name}.")


@endpoints_app.command("challenger")
@friendly
def endpoints_challenger(
    name: str = typer.Argument(..., help="Endpoint name."),
    percent: int | None = typer.Option(
        None,
        "--percent",
        help="Its share of live traffic (default 10), or with --shadow of requests mirrored "
        "to it (default 50).",
    ),
    shadow: bool = typer.Option(False, "--shadow", help="Mirror requests; never answer with it."),
    alias: str = typer.Option("challenger", "--alias", help="The alias of the version to serve."),
    remove: bool = typer.Option(False, "--remove", help="Serve the main entity alone again."),
    url: str | None = UrlOption,
    token: str | None = TokenOption,
    as_json: bool = JsonOption,
    settings: Settings = SettingsOption,
) -> None:
    """Serve the challenger beside the endpoint's main entity (A/B or shadow), zero downtime;
    both arms follow their aliases. Compare them with `gcn-rag monitor NAME --ab`."""
    from gcn_rag.cli.common import progress_reporter
    from gcn_rag.serving.arms import challenger_for, serve_alone, serve_challenger

    client, notes = _client(url, token, settings), progress_reporter(make_console())
    if remove:
        endpoint = serve_alone(client, name, notes)
    else:
        challenger = challenger_for(settings, percent, shadow, alias)
        endpoint = serve_challenger(client, name, challenger, notes)
    _show(endpoint, as_json)


PiiOption = "NONE, MASK (a typed placeholder such as [EMAIL]) or BLOCK (answer 400)"


@endpoints_app.command("guardrails")
@friendly
def endpoints_guardrails(
    name: str = typer.Argument(ENDPOINT, help="Endpoint name."),
    input_pii: str | None = typer.Option(None, "--input-pii", help=f"Questions: {PiiOption}."),
    output_pii: str | None = typer.Option(None, "--output-pii", help=f"Answers: {PiiOption}."),
    input_safety: bool | None = typer.Option(
        None, "--input-safety/--no-input-safety", help="Block prompt injection in questions."
    ),
    output_safety: bool | None = typer.Option(
        None, "--output-safety/--no-output-safety", help="Block injected text in answers."
    ),
    keywords: list[str] | None = typer.Option(
        None, "--invalid-keyword", help="Block questions and answers with it (repeat; '' clears)."
    ),
    topics: list[str] | None = typer.Option(
        None, "--valid-topic", help="Answer only questions about it (repeat; '' clears)."
    ),
    off: bool = typer.Option(False, "--off", help="Remove every guardrail first."),
    url: str | None = UrlOption,
    token: str | None = TokenOption,
    as_json: bool = JsonOption,
    settings: Settings = SettingsOption,
) -> None:
    """Show an endpoint's guardrails, or change what the options name and keep the rest
    (needs CAN_MANAGE; other AI gateway settings stay)."""
    from gcn_rag.serving.deploy import GuardrailSpec

    spec = GuardrailSpec(
        input_pii, output_pii, input_safety, output_safety, _words(keywords), _words(topics), off
    )
    client = _client(url, token, settings)
    gateway = client.get(name).get("ai_gateway") or {}
    if not spec.is_empty():
        changed = spec.apply(gateway.get("guardrails"))
        gateway = client.put_ai_gateway(name, {**gateway, "guardrails": changed})
    if as_json:
        print_json(gateway.get("guardrails") or {}, indent=2)
        return
    from gcn_rag.serving.endpoints import guardrail_rows

    print_rows(make_console(), f"Guardrails of {name}", guardrail_rows(gateway.get("guardrails")))


def _words(values: list[str] | None) -> tuple[str, ...] | None:
    return None if values is None else tuple(v for v in values if v.strip())


def _config(config_file: Path | None, spec: EndpointSpec) -> dict[str, Any] | None:
    """The config in ``--config``, which cannot be combined with the other options."""
    from gcn_rag.errors import BadInputError
    from gcn_rag.serving.deploy import read_config

    if config_file is None:
        return None
    if not spec.is_empty() or spec.entity is not None:
        raise BadInputError("--config holds the whole config; give it without other options.")
    return read_config(config_file)


def _wait(client: ServingClient, name: str) -> dict[str, Any]:
    with make_console(stderr=True).status(f"Waiting for {name} to be READY…"):
        return client.wait(name)


def _show(endpoint: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(endpoint, indent=2)
    else:
        _print_endpoints(make_console(), [endpoint])


def _print_endpoints(console: Console, endpoints: list[dict[str, Any]]) -> None:
    from rich.markup import escape
    from rich.table import Table

    from gcn_rag.serving.endpoints import summary_row

    rows = [summary_row(endpoint) for endpoint in endpoints]
    view = Table(*map(escape, rows[0]))
    for row in rows:
        view.add_row(*map(escape, row.values()))
    print_table(console, view)


# --- logs --------------------------------------------------------------------------------------


@friendly
def logs(
    endpoint: str | None = typer.Argument(None, help="Only this endpoint's requests."),
    since: str | None = typer.Option(None, "--since", help=SINCE_HELP),
    status: int | None = typer.Option(None, "--status", help="Only this HTTP status."),
    limit: int = typer.Option(20, "--limit", help="Newest rows to show."),
    table: str = typer.Option(
        "rag_inference_payload", "--table", help="The payload table (catalog.schema.name)."
    ),
    as_json: bool = JsonOption,
    settings: Settings = SettingsOption,
) -> None:
    """Captured requests, newest first: question, answer head, status, latency, entity."""
    from gcn_rag.ops.monitor import recent_requests
    from gcn_rag.tables import Catalog
    from gcn_rag.timespan import since_ms

    catalog = Catalog.from_settings(settings)
    rows = recent_requests(
        catalog,
        table,
        limit=limit,
        endpoint=endpoint,
        since_ms=since_ms(since) if since is not None else None,
        status=status,
    )
    if as_json:
        for row in rows:
            print_json(row.to_dict())
        return
    _print_requests(make_console(), rows, f"{len(rows)} request(s) from {catalog.name(table)}")


def _print_requests(console: Console, rows: list[Request], caption: str) -> None:
    from rich.markup import escape
    from rich.table import Table

    whole = is_piped(console)  # piped: every character; a terminal: what fits
    text_width = max(24, console.width - 60)  # what the fixed columns leave
    view = Table(caption=caption, caption_justify="left")
    view.add_column("time (UTC)", no_wrap=True, min_width=14)
    view.add_column("served entity", no_wrap=True, overflow="ellipsis", min_width=12)
    view.add_column("status", no_wrap=True, min_width=3)
    view.add_column("ms", no_wrap=True, min_width=4, justify="right")
    view.add_column("question", no_wrap=True, overflow="ellipsis", max_width=text_width // 3)
    view.add_column("answer", no_wrap=True, overflow="ellipsis", max_width=text_width * 2 // 3)
    for row in rows:
        view.add_row(
            f"{row.time:%m-%d %H:%M:%S}",
            row.served_entity or row.endpoint,
            str(row.status),
            str(row.latency_ms),
            escape(" ".join(row.question.split())[: None if whole else 200]),
            escape(" ".join(row.answer.split())[: None if whole else 300]),
        )
    print_table(console, view)
