"""``gcn-rag model ...``: log, register, alias and inspect the assistant in the local MLflow."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer

from gcn_rag.cli.common import (
    HomeOption,
    catalog_for,
    friendly,
    make_console,
    print_rows,
    progress_reporter,
    settings_for,
)

model_app = typer.Typer(
    help="The assistant as an MLflow model: log, register, set aliases, list versions.",
    no_args_is_help=True,
)
alias_app = typer.Typer(
    help="Point an alias (champion, challenger) at a version.", no_args_is_help=True
)
model_app.add_typer(alias_app, name="alias")

DEFAULT_QUESTIONS = Path("../shared/bench/dev.jsonl")


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
    home: Path | None = HomeOption,
) -> None:
    """Log the assistant (current index) as a PyFunc model in experiment nasa_gcn_rag_model."""
    from gcn_rag.answer.assistant import Assistant, generator_config
    from gcn_rag.answer.evaluation import (
        flat_metrics,
        load_items,
        predict_items,
        score,
        scores_table,
    )
    from gcn_rag.answer.generators import KINDS
    from gcn_rag.errors import BadInputError
    from gcn_rag.model import registry
    from gcn_rag.search.index import default_path

    settings = settings_for(home)
    config = generator_config(settings, generator)
    if config["kind"] not in KINDS:
        raise BadInputError(f"--generator must be one of {', '.join(KINDS)}.")
    console = make_console()
    metrics: dict[str, float] = {}
    path = questions or (DEFAULT_QUESTIONS if DEFAULT_QUESTIONS.exists() else None)
    if path is not None and not no_eval:
        items = load_items(path)
        assistant = Assistant.load(settings, generator=generator)
        with progress_reporter(console) as reporter:
            task = reporter.task(f"Evaluating on {path.name}", len(items))
            try:
                predictions = predict_items(assistant, items, k=k, on_each=task.advance)
            finally:
                assistant.close()
            scores = score(items, predictions)
            task.close()
        print_rows(console, f"{path.name} - hybrid", scores_table(scores))
        metrics = flat_metrics(scores)
    elif not no_eval:
        console.print("No question file found; logging without eval metrics.")
    catalog = catalog_for(settings)
    logged = registry.log_assistant(
        settings, catalog, default_path(settings), metrics=metrics, k=k, generator=config
    )
    console.print(
        f"Logged run {logged.run_id}: {logged.model_uri} "
        f"({logged.artifact_bytes / 1e6:,.1f} MB of artifacts)."
    )
    if register:
        version = registry.register(settings, logged.model_uri)
        console.print(f"Registered {registry.MODEL_NAME} version {version}.")
        if alias:
            registry.set_alias(settings, alias, version)
            console.print(f"Alias {alias} -> version {version}.")
        registry.write_model_info(catalog, registry.resolve(settings, version), logged.model_uri)


@model_app.command("register")
@friendly
def register_cmd(
    model_uri: str = typer.Argument(..., help="A logged model URI (models:/m-... or runs:/...)."),
    home: Path | None = HomeOption,
) -> None:
    """Register a logged model as a new version of sandbox.nasa_gcn_models.gcn_rag_assistant."""
    from gcn_rag.model import registry

    settings = settings_for(home)
    version = registry.register(settings, model_uri)
    registry.write_model_info(catalog_for(settings), registry.resolve(settings, version), model_uri)
    make_console().print(f"Registered {registry.MODEL_NAME} version {version}.")


@alias_app.command("set")
@friendly
def alias_set(
    alias: str = typer.Argument(..., help="Alias name, e.g. champion."),
    version: str = typer.Argument(..., help="Version number."),
    home: Path | None = HomeOption,
) -> None:
    """Point ALIAS at VERSION (e.g. gcn-rag model alias set champion 3)."""
    from gcn_rag.model import registry

    registry.set_alias(settings_for(home), alias, version)
    make_console().print(f"{registry.MODEL_NAME}@{alias} -> version {version}.")


@alias_app.command("delete")
@friendly
def alias_delete(
    alias: str = typer.Argument(..., help="Alias name."),
    home: Path | None = HomeOption,
) -> None:
    """Remove an alias."""
    from gcn_rag.model import registry

    registry.delete_alias(settings_for(home), alias)
    make_console().print(f"Alias {alias} removed.")


@model_app.command("list")
@friendly
def list_cmd(home: Path | None = HomeOption) -> None:
    """Every version: aliases, status, run id, headline metrics."""
    from gcn_rag.model import registry

    rows = []
    for v in registry.versions(settings_for(home)):
        rows.append(
            {
                "version": v.version,
                "aliases": ", ".join(v.aliases),
                "created": f"{datetime.fromtimestamp(v.created / 1000, UTC):%Y-%m-%d %H:%M}",
                "status": v.status,
                "run_id": v.run_id,
                "all_accuracy": v.metrics.get("all_accuracy"),
                "corpus": v.tags.get("corpus_count", ""),
            }
        )
    print_rows(make_console(), registry.MODEL_NAME, rows)


@model_app.command("show")
@friendly
def show(
    ref: str = typer.Argument("champion", help="A version number or an alias."),
    home: Path | None = HomeOption,
) -> None:
    """One version in full: aliases, run, metrics, lineage tags."""
    from gcn_rag.model import registry

    info = registry.resolve(settings_for(home), ref)
    rows = [
        {"key": "name", "value": info.name},
        {"key": "version", "value": info.version},
        {"key": "aliases", "value": ", ".join(info.aliases)},
        {"key": "run_id", "value": info.run_id},
        {"key": "uri", "value": f"models:/{info.name}/{info.version}"},
        *({"key": f"metric {k}", "value": f"{v:.3f}"} for k, v in sorted(info.metrics.items())),
        *(
            {"key": k, "value": v}
            for k, v in sorted(info.tags.items())
            if not k.startswith("metric.")
        ),
    ]
    print_rows(make_console(), f"{info.name} version {info.version}", rows)
