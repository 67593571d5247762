"""``gcn-rag model ...``: log, register, alias and inspect the assistant in the local MLflow."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from gcn_rag.cli.common import (
    SettingsOption,
    friendly,
    make_console,
    print_rows,
    progress_reporter,
)
from gcn_rag.settings import Settings

if TYPE_CHECKING:
    from rich.console import Console


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
    alias: str | None = typer.Option(None, "--alias", help="With --register: set this alias."),
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
        register=register,
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
    make_console().print(f"{registry.MODEL_NAME}@{alias} -> version {version} (pinned).")


@model_app.command("promote")
@friendly
def promote(
    ref: str | None = typer.Argument(
        None, help="A version number or an alias (default: the newest version)."
    ),
    settings: Settings = SettingsOption,
) -> None:
    """Point champion at the newest version (or REF) and unpin it: `gcn-rag up` manages it
    again, moving it when the index, code or config change."""
    from gcn_rag.model import champion, registry

    info = champion.promote(settings, ref)
    make_console().print(
        f"{registry.MODEL_NAME}@{champion.CHAMPION} -> version {info.version} "
        "(not pinned: `gcn-rag up` moves it when the index, code or config change)."
    )


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
