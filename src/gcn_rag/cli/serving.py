"""``gcn-rag serve | tokens | endpoints | logs``: run the serving API and drive it over HTTP.

``endpoints`` commands talk to a running server (``--url``, default ``DATABRICKS_HOST`` or
http://127.0.0.1:8080) with a token (``--token``, default ``DATABRICKS_TOKEN`` or the token
``gcn-rag up`` saved in the workspace), exactly as ``databricks-sdk`` would.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from gcn_rag.cli.common import SettingsOption, friendly, make_console
from gcn_rag.serving.deploy import CAPTURE_PREFIX, ENDPOINT
from gcn_rag.settings import Settings

if TYPE_CHECKING:
    from rich.console import Console

    from gcn_rag.ops.monitor import Request
    from gcn_rag.serving.client import ServingClient


@friendly
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address."),
    port: int = typer.Option(8080, "--port", help="TCP port."),
    no_auth: bool = typer.Option(
        False, "--no-auth", help="Accept requests without a token (loopback only)."
    ),
    settings: Settings = SettingsOption,
) -> None:
    """Serve endpoints with the Databricks Model Serving API (bearer tokens required)."""
    from gcn_rag.console import create_console
    from gcn_rag.serving.app import Server

    server = Server(settings, host, port, no_auth=no_auth, console=create_console)
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
    None, "--url", envvar="DATABRICKS_HOST", help="Server URL (default http://127.0.0.1:8080)."
)
TokenOption = typer.Option(
    None,
    "--token",
    envvar="DATABRICKS_TOKEN",
    help="Bearer token (default: the one `gcn-rag up` saved in the workspace).",
)
JsonOption = typer.Option(False, "--json", help="Print the API's JSON.")
ModelOption = typer.Option(
    "sandbox.nasa_gcn_models.gcn_rag_assistant", "--model", help="Registered model name."
)
VersionOption = typer.Option(
    "champion", "--version", help="Version number or alias (pinned when the server reads it)."
)
SizeOption = typer.Option("Small", "--workload-size", help="Small (4), Medium (16), Large (64).")
ZeroOption = typer.Option(
    True, "--scale-to-zero/--no-scale-to-zero", help="Unload when idle; reload on demand."
)
ConfigOption = typer.Option(
    None, "--config", help="A JSON endpoint config (served_entities, traffic_config) instead."
)
WaitOption = typer.Option(True, "--wait/--no-wait", help="Wait until the endpoint is READY.")
CaptureOption = typer.Option(
    CAPTURE_PREFIX,
    "--capture",
    help="Capture requests into <catalog>.<schema>.<PREFIX>_payload ('' to turn it off).",
)


def token_for(token: str | None, settings: Settings) -> str | None:
    """``token``, else the one `gcn-rag up` saved in the workspace, else None."""
    from gcn_rag.serving.auth import saved_token

    return token if token is not None else saved_token(settings.token_file)


def _client(url: str | None, token: str | None, settings: Settings) -> ServingClient:
    from gcn_rag.serving.client import DEFAULT_URL, ServingClient

    return ServingClient(url or DEFAULT_URL, token_for(token, settings))


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
        sys.stdout.write(json.dumps(endpoints, indent=2) + "\n")
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


def _config_command(replace: bool) -> Callable[..., None]:
    """``endpoints create`` (``replace=False``) or ``endpoints update``: same options."""

    @friendly
    def command(
        name: str = typer.Argument(ENDPOINT, help="Endpoint name."),
        model: str = ModelOption,
        version: str = VersionOption,
        workload_size: str = SizeOption,
        scale_to_zero: bool = ZeroOption,
        config_file: Path | None = ConfigOption,
        capture: str = CaptureOption,
        wait: bool = WaitOption,
        url: str | None = UrlOption,
        token: str | None = TokenOption,
        as_json: bool = JsonOption,
        settings: Settings = SettingsOption,
    ) -> None:
        client = _client(url, token, settings)
        config = _config(
            settings, model, version, workload_size, scale_to_zero, config_file, capture
        )
        send = client.update_config if replace else client.create
        endpoint = send(name, config)
        _show(_wait(client, name) if wait else endpoint, as_json)

    command.__doc__ = (
        "Replace the served entities; the old ones serve until the new ones are loaded."
        if replace
        else "Create an endpoint serving a registered model version (needs CAN_MANAGE)."
    )
    return command


endpoints_app.command("create")(_config_command(replace=False))
endpoints_app.command("update")(_config_command(replace=True))


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


def _config(
    settings: Settings,
    model: str,
    version: str,
    workload_size: str,
    scale_to_zero: bool,
    config_file: Path | None,
    capture: str,
) -> dict[str, Any]:
    from gcn_rag.serving.deploy import endpoint_config, read_config

    if config_file is not None:
        return read_config(config_file)
    return endpoint_config(
        settings,
        model,
        version,
        workload_size=workload_size,
        scale_to_zero=scale_to_zero,
        capture_prefix=capture or None,
    )


def _wait(client: ServingClient, name: str) -> dict[str, Any]:
    with make_console(stderr=True).status(f"Waiting for {name} to be READY…"):
        return client.wait(name)


def _show(endpoint: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(endpoint, indent=2) + "\n")
    else:
        _print_endpoints(make_console(), [endpoint])


def _print_endpoints(console: Console, endpoints: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from gcn_rag.serving.endpoints import summary_row

    rows = [summary_row(endpoint) for endpoint in endpoints]
    view = Table(*rows[0])
    for row in rows:
        view.add_row(*row.values())
    console.print(view)


# --- logs --------------------------------------------------------------------------------------


@friendly
def logs(
    endpoint: str | None = typer.Argument(None, help="Only this endpoint's requests."),
    since: str | None = typer.Option(
        None, "--since", help="Only requests since: 30m, 2h, 7d, or an ISO date/time (UTC)."
    ),
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
            sys.stdout.write(json.dumps(row.to_dict(), ensure_ascii=False) + "\n")
        return
    console = make_console()
    _print_requests(console, rows)
    console.print(f"{len(rows)} request(s) from {catalog.name(table)}")


def _print_requests(console: Console, rows: list[Request]) -> None:
    from rich.table import Table

    text_width = max(24, console.width - 60)  # what the fixed columns leave
    view = Table()
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
            " ".join(row.question.split())[:200],
            " ".join(row.answer.split())[:300],
        )
    console.print(view)
