"""``gcn-rag index | ask | event | predict | eval``: build the index, answer questions, show an
event's dossier, score answers."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from gcn_rag.answer.batch import DEFAULT_QUESTIONS
from gcn_rag.cli.common import (
    SettingsOption,
    friendly,
    make_console,
    print_error,
    print_json,
    print_rows,
    print_table,
    progress_reporter,
)
from gcn_rag.corpus.circulars import circular_url, format_circular_id
from gcn_rag.settings import Settings
from gcn_rag.timespan import SINCE_HELP

if TYPE_CHECKING:
    from rich.console import Console

    from gcn_rag.answer.assistant import Answer
    from gcn_rag.answer.dossier import Dossier
    from gcn_rag.search.build import BuildReport

ModeOption = typer.Option(
    "hybrid", "--mode", help="Retrieval: hybrid (BM25 + dense, fused), lexical or dense."
)
GeneratorOption = typer.Option(
    None,
    "--generator",
    help="Who writes the answer: extractive (default), local (SmolLM2 via llama.cpp) or openai "
    "(settings openai_base_url, openai_model; key in $OPENAI_API_KEY).",
)
KOption = typer.Option(5, "--k", help="How many circulars to answer from.")


@friendly
def index(
    force: bool = typer.Option(False, "--force", help="Rebuild even if up to date."),
    engine: str = typer.Option(
        "local",
        "--engine",
        help="Who embeds: local (this process) or ray (Ray Data; pip install 'gcn-rag[ray]').",
    ),
    address: str | None = typer.Option(
        None, "--address", help="Ray cluster to use with --engine ray (default: start one here)."
    ),
    settings: Settings = SettingsOption,
) -> None:
    """Build the search index (BM25 over every chunk + one vector per circular).

    Incremental: an index already built from the current chunks table is left alone, and
    vectors are cached by text, so a rebuild embeds only new or changed circulars.
    """
    report = build(settings, force=force, engine=engine, address=address)
    make_console().print(report.summary(), markup=False)


def build(
    settings: Settings, *, force: bool = False, engine: str = "local", address: str | None = None
) -> BuildReport:
    """:func:`gcn_rag.search.build.build_index` with the engine's embedder and progress."""
    from gcn_rag.search.build import build_index
    from gcn_rag.search.distributed import engine_embedder
    from gcn_rag.search.index import DENSE_MAX_TOKENS
    from gcn_rag.tables import Catalog

    with (
        engine_embedder(settings, engine, max_tokens=DENSE_MAX_TOKENS, address=address) as embedder,
        progress_reporter(make_console()) as reporter,
    ):
        return build_index(
            settings, Catalog.from_settings(settings), embedder, force=force, reporter=reporter
        )


@friendly
def ask(
    question: str = typer.Argument(..., help="A question about the GCN Circulars."),
    k: int = KOption,
    event: str | None = typer.Option(
        None, "--event", help="Only circulars about this event (GRB 130427A) or prefix (GRB%)."
    ),
    since: str | None = typer.Option(None, "--since", help=SINCE_HELP),
    until: datetime | None = typer.Option(None, "--until", help="Circulars up to this date."),
    mode: str = ModeOption,
    generator: str | None = GeneratorOption,
    as_json: bool = typer.Option(False, "--json", help="Print the Answer as JSON."),
    settings: Settings = SettingsOption,
) -> None:
    """Answer a question with citations, e.g. gcn-rag ask "What is the T90 of GRB 130427A?".

    Exits 1 when the filters leave no circular to answer from.
    """
    from gcn_rag.answer.assistant import Assistant
    from gcn_rag.search.retrieval import Filters, parse_mode
    from gcn_rag.timespan import parse_since, utc

    start = parse_since(since) if since is not None else None
    filters = Filters(event=event, since=start, until=utc(until))
    assistant = Assistant.load(settings, generator=generator)
    try:  # an LLM takes seconds to load and write: say so on stderr (a terminal only)
        with progress_reporter(make_console(stderr=True)) as reporter:
            if assistant.generator is not None:
                assistant.generator.reporter = reporter
            answer = assistant.ask(question, k=k, filters=filters, mode=parse_mode(mode))
    finally:
        assistant.close()
    if as_json:
        print_json(answer.to_dict(), indent=2)
        return
    print_answer(make_console(), answer)


@friendly
def event(
    name: str = typer.Argument(..., help="An event: GRB 160625B, S190425z, IceCube-221224A ..."),
    as_json: bool = typer.Option(False, "--json", help="Print the dossier as JSON."),
    settings: Settings = SettingsOption,
) -> None:
    """An event's dossier: what it is, who reported it first, status changes, measurements
    (with the circulars that state them), facilities, and the timeline of its circulars."""
    from gcn_rag.answer.dossier import build
    from gcn_rag.corpus.events import normalize_event_id
    from gcn_rag.errors import NotFoundError
    from gcn_rag.search.index import SearchIndex

    event_id = normalize_event_id(name) or name.strip()
    dossier = build(SearchIndex.load(settings.index), event_id)
    if dossier is None:
        raise NotFoundError(f"No circular is about or names {event_id}.")
    if as_json:
        print_json(dossier.to_dict(), indent=2)
        return
    print_dossier(make_console(), dossier)


@friendly
def predict(
    input_path: Path = typer.Option(..., "--input", help='JSONL of {"id", "question"} rows.'),
    output_path: Path = typer.Option(..., "--output", help="Where to write predictions (JSONL)."),
    k: int = KOption,
    mode: str = ModeOption,
    allow_errors: bool = typer.Option(
        False, "--allow-errors", help="Exit 0 even when some rows could not be answered."
    ),
    settings: Settings = SettingsOption,
) -> None:
    """Answer every question of a JSONL file; one prediction line per input line.

    A row that cannot be answered gets its error in the file; the command then exits 1
    (after writing every row) unless --allow-errors.
    """
    from gcn_rag.answer.assistant import Assistant
    from gcn_rag.answer.batch import predict_rows, read_rows, write_jsonl
    from gcn_rag.search.retrieval import parse_mode

    rows = read_rows(input_path)
    assistant = Assistant.load(settings)
    console = make_console()
    with progress_reporter(console) as reporter:
        task = reporter.task("Answering", len(rows))
        records = predict_rows(assistant, rows, k=k, mode=parse_mode(mode), on_each=task.advance)
        task.close()
    write_jsonl(output_path, records)
    errors = sum("error" in record for record in records)
    console.print(f"Wrote {len(rows):,} predictions to {output_path} ({errors:,} with errors).")
    if errors and not allow_errors:
        print_error(
            f'{errors:,} of {len(rows):,} rows could not be answered (see their "error" field '
            f"in {output_path}); pass --allow-errors to accept that."
        )
        raise typer.Exit(1)


@friendly
def evaluate(
    questions: Path = typer.Option(
        DEFAULT_QUESTIONS, "--questions", help="Question file (bench format)."
    ),
    modes: str = typer.Option(
        "hybrid", "--modes", help="Comma-separated retrieval modes to compare in one run."
    ),
    k: int = KOption,
    save: Path | None = typer.Option(None, "--save", help="Also write predictions (JSONL)."),
    plain: bool = typer.Option(
        False, "--plain", help="Baseline: no event-aware step (plain BM25 / dense ranking)."
    ),
    settings: Settings = SettingsOption,
) -> None:
    """Score the assistant on a question file (accuracy, recall@5, MRR@10 per category)."""
    import uuid

    from gcn_rag.answer import batch
    from gcn_rag.answer.assistant import Assistant
    from gcn_rag.answer.evaluation import load_items, scores_table
    from gcn_rag.search.retrieval import parse_mode

    items = load_items(questions)
    assistant = Assistant.load(settings)
    console = make_console()
    run_id = uuid.uuid4().hex[:12]
    wanted = [parse_mode(m.strip()) for m in modes.split(",") if m.strip()]
    for mode in wanted:
        with progress_reporter(console) as reporter:
            run = batch.evaluate(assistant, items, k=k, mode=mode, plain=plain, reporter=reporter)
        print_rows(console, f"{questions.name} - {run.label}", scores_table(run.scores))
        index = assistant.index.path
        batch.record(settings, run, run_id=run_id, questions_file=questions, k=k, index=index)
        if save:
            run.save(save, items, keyed="," in modes)
    console.print(f"Appended to rag_evaluation_history (run {run_id}).")


def print_answer(console: Console, answer: Answer) -> None:
    from rich.markup import escape
    from rich.table import Table

    from gcn_rag.answer.generators import written_by

    console.print(escape(answer.answer), soft_wrap=True)
    writer = written_by(answer.generator, answer.generator_fallback)
    console.print(f"[dim]Answer by: {escape(writer)}[/]", soft_wrap=True)
    if not answer.citations:
        return
    view = Table("#", "circular", "event", "quote", show_lines=False)
    for i, c in enumerate(answer.citations, start=1):
        link = f"[link={c.url}]GCN {format_circular_id(c.circular_id)}[/link]"
        view.add_row(str(i), link, escape(c.event_id or ""), escape(c.quote))
    print_table(console, view)
    console.print(
        f"{answer.num_docs} circulars retrieved; "
        f"{answer.timings_ms.get('total', 0):.0f} ms. Source: NASA GCN Circulars."
    )


def print_dossier(console: Console, dossier: Dossier) -> None:
    from rich.markup import escape
    from rich.table import Table

    console.print(escape(dossier.summary()), soft_wrap=True)
    if dossier.measurements:
        timed = any(v.time_after_s is not None for v in dossier.measurements)
        columns = ["quantity", "value", "instrument / band", *(["t\u2212T0"] if timed else [])]
        view = Table(*columns, "status", "circular", title="Measurements")
        for v in dossier.measurements:
            qualifier = ", ".join(q for q in (v.instrument, v.band) if q)
            value = v.text.removeprefix(f"{v.label} ({qualifier})" if qualifier else v.label)
            when = [_after(v.time_after_s)] if timed else []
            cells = [escape(v.label), escape(value.strip()), escape(qualifier), *when]
            view.add_row(*cells, v.status, _link(v.circular_id))
        print_table(console, view)
    timeline = Table(
        "date", "circular", "subject", title=f"Timeline ({len(dossier.timeline)} circulars)"
    )
    for e in dossier.timeline:
        timeline.add_row(f"{e.created_on:%Y-%m-%d %H:%M}", _link(e.circular_id), escape(e.subject))
    print_table(console, timeline)
    console.print("Source: NASA GCN Circulars (https://gcn.nasa.gov/circulars).")


def _after(seconds: float | None) -> str:
    from gcn_rag.corpus.epochs import written

    return "" if seconds is None else written(seconds)


def _link(circular_id: float) -> str:
    return f"[link={circular_url(circular_id)}]GCN {format_circular_id(circular_id)}[/link]"
