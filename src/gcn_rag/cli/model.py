"""``gcn-rag model ...``: log, register, alias and inspect the assistant in the local MLflow."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from gcn_rag.cli.common import (
    SettingsOption,
    friendly,
    make_console,
    print_error,
    print_json,
    print_rows,
    progress_reporter,
)
from gcn_rag.settings import Settings

if TYPE_CHECKING:
    from rich.console import Console

    from gcn_rag.model.compare import Comparison
    from gcn_rag.model.gate import Decision


model_app = typer.Typer(
    help="The assistant as an MLflow model: log, register, set aliases, list versions.",
    no_args_is_help=True,
)
alias_app = typer.Typer(
    help="Point an alias (champion, challenger) at a version.", no_args_is_help=True
)
model_app.add_typer(alias_app, name="alias")


@model_app.command("log")
@friendly
def log(
    questions: Path | None = typer.Option(
        None,
        "--questions",
        help="Evaluate on this file first (default: "
        "../shared/bench/dev.jsonl when present); the metrics go on the run.",
    ),
    no_eval: bool = typer.Option(False, "--no-eval", help="Log without evaluating."),
    register: bool = typer.Option(False, "--register", help="Also register a new version."),
    alias: str | None = typer.Option(
        None, "--alias", help="Register and point this alias at the version (e.g. challenger)."
    ),
    k: int = typer.Option(5, "--k", help="Default number of circulars per answer."),
    generator: str | None = typer.Option(
        None,
        "--generator",
        help="extractive, local (ships the SmolLM2 GGUF in the model) or openai "
        "(default: the generator setting).",
    ),
    settings: Settings = SettingsOption,
) -> None:
    """Log the assistant (current index) as a PyFunc model in experiment nasa_gcn_rag_model."""
    log_model(
        make_console(),
        settings,
        questions=questions,
        evaluate=not no_eval,
        register=register or alias is not None,
        alias=alias,
        k=k,
        generator=generator,
    )


def log_model(
    console: Console,
    settings: Settings,
    *,
    questions: Path | None = None,
    evaluate: bool = True,
    register: bool = False,
    alias: str | None = None,
    k: int = 5,
    generator: str | None = None,
) -> str | None:
    """Evaluate, log, and optionally register and alias the model, saying each step.

    Returns the registered version (None when not registered).
    """
    from gcn_rag.answer.evaluation import scores_table
    from gcn_rag.model import packaging
    from gcn_rag.model.registry import MODEL_NAME

    config = packaging.model_generator(settings, generator)
    metrics: dict[str, float] = {}
    path = packaging.eval_questions(questions) if evaluate else None
    if path is not None:
        with progress_reporter(console) as reporter:
            run = packaging.evaluate_model(
                settings, path, k=k, generator=generator, reporter=reporter
            )
        print_rows(console, f"{path.name} - hybrid", scores_table(run.scores))
        metrics = run.metrics
    elif evaluate:
        console.print("No question file found; logging without eval metrics.")
    published = packaging.publish(
        settings, config, metrics=metrics, k=k, register=register, alias=alias
    )
    logged = published.logged
    console.print(
        f"Logged run {logged.run_id}: {logged.model_uri} "
        f"({logged.artifact_bytes / 1e6:,.1f} MB of artifacts)."
    )
    if published.version is not None:
        console.print(f"Registered {MODEL_NAME} version {published.version}.")
        if alias:
            console.print(f"Alias {alias} -> version {published.version}.")
    return published.version


@model_app.command("register")
@friendly
def register_cmd(
    model_uri: str = typer.Argument(..., help="A logged model URI (models:/m-... or runs:/...)."),
    settings: Settings = SettingsOption,
) -> None:
    """Register a logged model as a new version of sandbox.nasa_gcn_models.gcn_rag_assistant."""
    from gcn_rag.model import registry
    from gcn_rag.tables import Catalog

    version = registry.register(settings, model_uri)
    registry.write_model_info(
        Catalog.from_settings(settings), registry.resolve(settings, version), model_uri
    )
    make_console().print(f"Registered {registry.MODEL_NAME} version {version}.")


@alias_app.command("set")
@friendly
def alias_set(
    alias: str = typer.Argument(..., help="Alias name, e.g. champion."),
    version: str = typer.Argument(..., help="Version number."),
    settings: Settings = SettingsOption,
) -> None:
    """Point ALIAS at VERSION (e.g. gcn-rag model alias set champion 1).

    An alias set here is pinned: `gcn-rag up` serves it and does not move it (a rollback
    stays rolled back) until `gcn-rag model promote`.
    """
    from gcn_rag.model import registry

    registry.set_alias(settings, alias, version, by_hand=True)
    console = make_console()
    console.print(f"{registry.MODEL_NAME}@{alias} -> version {version} (pinned).")
    _endpoints_follow(console, settings, version, alias)


BenchOption: Any = typer.Option(
    [],
    "--bench",
    help="A bench file (JSONL, ../shared/bench format); repeat for several "
    "(default: every ../shared/bench/*.jsonl).",
)
ReplayOption: Any = typer.Option(
    0, "--replay", help="Also replay the questions of the endpoint's last N successful requests."
)
EndpointOption: Any = typer.Option(
    "nasa-gcn-rag-assistant", "--endpoint", help="The endpoint whose requests --replay reads."
)
TableOption: Any = typer.Option(
    "rag_inference_payload", "--table", help="The endpoint's inference table."
)


@model_app.command("compare")
@friendly
def compare_cmd(
    a: str = typer.Argument(..., help="Version A (number or alias), e.g. champion."),
    b: str = typer.Argument(..., help="Version B (number or alias), e.g. challenger."),
    bench: list[Path] = BenchOption,
    no_bench: bool = typer.Option(
        False, "--no-bench", help="No bench file: only the --replay questions."
    ),
    replay: int = ReplayOption,
    endpoint: str = EndpointOption,
    table: str = TableOption,
    as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
    settings: Settings = SettingsOption,
) -> None:
    """Both versions (loaded from the registry) on the bench files and replayed requests:
    accuracy and recall@5 per category with an exact McNemar test, latency, changed answers.
    Recorded as an MLflow run and a row of rag_model_comparisons."""
    from gcn_rag.model.comparisons import compare_and_record

    console = make_console(stderr=as_json)
    questions, source = _replay(settings, replay, endpoint, table)
    with progress_reporter(console) as reporter:
        found = compare_and_record(
            settings, a, b, bench=[] if no_bench else _bench(bench), replay=questions,
            replay_source=source,
            reporter=reporter,
        )  # fmt: skip
    if as_json:
        print_json(found.to_dict())
    else:
        _print_comparison(console, found)


def _bench(given: list[Path]) -> list[Path]:
    from gcn_rag.model.compare import bench_files

    return bench_files(given)


def _replay(settings: Settings, count: int, endpoint: str, table: str) -> tuple[list[str], str]:
    """The questions to replay and where they come from (none when ``count`` is 0)."""
    if count <= 0:
        return [], ""
    from gcn_rag.ops.monitor import replay_questions
    from gcn_rag.tables import Catalog

    catalog = Catalog.from_settings(settings)
    found = replay_questions(catalog, table, endpoint=endpoint, limit=count)
    return found, f"{endpoint} ({table}, last {count})"


def _print_comparison(console: Console, found: Comparison) -> None:
    a, b = (
        version + (f" ({ref})" if ref != version else "")
        for version, ref in ((found.version_a, found.ref_a), (found.version_b, found.ref_b))
    )
    title = f"A = version {a}, B = version {b}"
    print_rows(console, title, [c.row() for c in found.categories])
    print_rows(console, "Latency per request (predict)", found.latency_rows())
    if found.replayed:
        console.print(
            f"Replayed {found.replayed} request(s): {len(found.changed)} answer(s) changed."
        )
        rows = [{"question": c.question, "A": c.answer_a, "B": c.answer_b} for c in found.changed]
        print_rows(console, "Changed answers", rows)
    console.print(f"Recorded as MLflow run {found.comparison_id} and in rag_model_comparisons.")


@model_app.command("promote")
@friendly
def promote(
    ref: str | None = typer.Argument(
        None, help="A version number or an alias (default: the newest version)."
    ),
    force: bool = typer.Option(False, "--force", help="Promote even if the gate refuses."),
    max_drop: float = typer.Option(
        5.0,
        "--max-drop",
        help="Points of accuracy or recall@5 a category may lose when the "
        "paired test does not call the loss significant.",
    ),
    alpha: float = typer.Option(0.05, "--alpha", help="McNemar significance level."),
    max_latency_growth: float = typer.Option(
        20.0, "--max-latency-growth", help="How many % latency p95 may grow."
    ),
    reuse: int = typer.Option(
        60, "--reuse-minutes", help="Reuse a comparison of the same versions this recent."
    ),
    bench: list[Path] = BenchOption,
    replay: int = ReplayOption,
    endpoint: str = EndpointOption,
    table: str = TableOption,
    settings: Settings = SettingsOption,
) -> None:
    """Point champion at REF if it is at least as good as the champion (compared on the bench
    files): no category loses beyond --max-drop points or significantly (McNemar p < --alpha),
    latency p95 grows at most --max-latency-growth %. Champion is left unpinned: `gcn-rag up`
    manages it again. Exits 1 with the reasons when the gate refuses."""
    from datetime import timedelta

    from gcn_rag.model import gate
    from gcn_rag.model.comparisons import compare_and_record

    console = make_console()
    policy = gate.Policy(max_drop / 100, alpha, max_latency_growth / 100)
    questions, source = _replay(settings, replay, endpoint, table)
    files = _bench(bench)

    def comparer(a: str, b: str) -> Comparison | None:
        if not files and not questions:
            return None
        with progress_reporter(console) as reporter:
            found = compare_and_record(
                settings, a, b, bench=files, replay=questions, replay_source=source,
                reuse_within=timedelta(minutes=reuse), reporter=reporter,
            )  # fmt: skip
        _print_comparison(console, found)
        return found

    _said(console, gate.promote(settings, ref, comparer, policy=policy, force=force), settings)


def _said(console: Console, decision: Decision, settings: Settings) -> None:
    """What a promotion or rollback decided; exit 1 on a refusal."""
    from gcn_rag.model.registry import MODEL_NAME

    for reason in decision.reasons:
        console.print(f"  - {reason}")
    where = f"{MODEL_NAME}@champion"
    if decision.decision == "refused":
        print_error(
            f"Not promoted: version {decision.candidate} falls behind champion "
            f"(version {decision.champion}) as listed; {where} stays. `--force` overrides."
        )
        raise typer.Exit(1)
    if decision.decision not in ("unpinned", "unmeasured"):
        pin = "pinned: `gcn-rag up` leaves it until `gcn-rag model promote` of the champion"
    else:
        pin = "not pinned: `gcn-rag up` moves it when the index, code or config change"
    console.print(f"{where} -> version {decision.champion} ({pin}).")
    notes = {
        "forced": "Promoted by --force over the gate's refusal (recorded on both versions).",
        "unmeasured": "Promoted without a comparison: no bench file and no --replay "
        "(recorded as unmeasured).",
    }
    if decision.decision in notes:
        console.print(notes[decision.decision])
    if decision.moved:
        _endpoints_follow(console, settings, decision.champion, "champion")


def _endpoints_follow(console: Console, settings: Settings, version: str, alias: str) -> None:
    """Wait for the workspace server's endpoints that serve ``alias`` to follow it."""
    from gcn_rag.errors import SourceUnavailableError
    from gcn_rag.serving.arms import await_followers
    from gcn_rag.serving.client import ServingClient, workspace_server

    try:
        client = ServingClient(*workspace_server(settings))
    except SourceUnavailableError:
        console.print(f"No server is running: its endpoints follow {alias} when it starts.")
        return
    for name in await_followers(client, alias, version):
        console.print(f"Endpoint {name} serves version {version} (it follows {alias}).")


@model_app.command("rollback")
@friendly
def rollback(settings: Settings = SettingsOption) -> None:
    """Return champion to the version it replaced (recorded by `gcn-rag model promote`),
    pinned by hand so `gcn-rag up` does not move it."""
    from gcn_rag.model import gate

    _said(make_console(), gate.rollback(settings), settings)


@alias_app.command("delete")
@friendly
def alias_delete(
    alias: str = typer.Argument(..., help="Alias name."),
    settings: Settings = SettingsOption,
) -> None:
    """Remove an alias."""
    from gcn_rag.model import registry

    registry.delete_alias(settings, alias)
    make_console().print(f"Alias {alias} removed.")


@model_app.command("list")
@friendly
def list_cmd(settings: Settings = SettingsOption) -> None:
    """Every version: aliases, status, run id, headline metrics."""
    from gcn_rag.model import registry

    rows = [version.row() for version in registry.versions(settings)]
    print_rows(make_console(), registry.MODEL_NAME, rows)


@model_app.command("show")
@friendly
def show(
    ref: str = typer.Argument("champion", help="A version number or an alias."),
    settings: Settings = SettingsOption,
) -> None:
    """One version in full: aliases, run, metrics, lineage tags."""
    from gcn_rag.model import registry

    info = registry.resolve(settings, ref)
    print_rows(make_console(), f"{info.name} version {info.version}", info.details())
