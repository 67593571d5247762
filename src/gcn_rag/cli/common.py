"""What every ``gcn-rag`` command shares: settings, console, error handling, progress bars,
and how tables and JSON are printed.

Output depends on where it goes (:func:`is_piped` decides): on a terminal, rich tables and
wrapped text; into a pipe or a file, tables as TSV (a header line, then one tab-separated line
per row, nothing cropped, no box drawing, no colour) and long lines left whole. ``--json``
output is strict JSON everywhere (:func:`json_text`: null where a number is missing).
"""

from __future__ import annotations

import functools
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from gcn_rag.errors import GcnRagError
from gcn_rag.settings import Settings

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from gcn_rag.progress import ConsoleReporter

F = TypeVar("F", bound=Callable[..., Any])


def make_console(stderr: bool = False) -> Console:
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False)
    console.soft_wrap = is_piped(console)  # piped, a URL, token or curl line stays one line
    return console


def is_piped(console: Console) -> bool:
    """True when ``console`` writes to a pipe or a file rather than a terminal: the one test
    that picks TSV over rich tables and whole lines over wrapped ones."""
    return not console.is_terminal


def print_error(message: str) -> None:
    from rich.markup import escape  # a message's own brackets (gcn-rag[ray]) are text

    make_console(stderr=True).print(f"[bold red]Error:[/] {escape(message)}", soft_wrap=True)


def friendly(command: F) -> F:
    """Turn library errors into ``Error: ...`` and exit code 1 (never a stack trace)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except GcnRagError as exc:
            print_error(exc.message)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            make_console(stderr=True).print(
                "Interrupted; nothing was written by the step in flight."
            )
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _load_settings(home: Path | None) -> Settings:
    try:
        return Settings.load(home=home)
    except GcnRagError as exc:  # a broken config.toml: the same one-line error as a command's
        print_error(exc.message)
        raise typer.Exit(1) from None


def _settings_callback(value: Settings | None) -> Settings:
    return value if value is not None else _load_settings(None)


#: ``--home``, parsed once into the command's :class:`Settings` (GCN_RAG_HOME works too).
SettingsOption: Any = typer.Option(
    None,
    "--home",
    envvar="GCN_RAG_HOME",
    parser=lambda value: _load_settings(Path(value)),
    callback=_settings_callback,
    metavar="DIR",
    show_default=False,
    help="Workspace directory (default ~/.gcn-rag).",
)


def progress_reporter(console: Console) -> ConsoleReporter:
    from gcn_rag.progress import ConsoleReporter

    return ConsoleReporter(console)


def print_rows(console: Console, title: str, rows: list[dict[str, Any]]) -> None:
    """``rows`` (dicts with the same keys) as a table titled ``title`` (see :func:`print_table`)."""
    from rich.markup import escape
    from rich.table import Table

    if not rows:
        return
    view = Table(*(escape(str(key)) for key in rows[0]), title=title)
    for row in rows:
        view.add_row(*(escape(_cell(value)) for value in row.values()))
    print_table(console, view)


def print_table(console: Console, view: Table) -> None:
    """A rich table, drawn on a terminal; piped, as TSV on the same stream.

    Piped, the title and caption (words for people, not data) go to stderr, so what stdout
    carries is exactly a header line and the rows.
    """
    if not is_piped(console):
        console.print(view)
        return
    notes = make_console(stderr=True)
    if view.title:
        notes.print(view.title, soft_wrap=True)
    columns = [[_plain(column.header), *map(_plain, column.cells)] for column in view.columns]
    console.file.write("".join("\t".join(line) + "\n" for line in zip(*columns, strict=True)))
    console.file.flush()
    if view.caption:
        notes.print(view.caption, soft_wrap=True)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if math.isfinite(value) else ""  # nothing measured, as JSON's null
    return "" if value is None else str(value)


_LINE_BREAKS = str.maketrans({"\t": " ", "\n": " ", "\r": " "})


def _plain(cell: Any) -> str:
    """A table cell (markup text or a rich Text) as one TSV field: plain text on one line."""
    from rich.text import Text

    if isinstance(cell, str):
        cell = Text.from_markup(cell, emoji=False)
    text = cell.plain if isinstance(cell, Text) else str(cell)
    return text.translate(_LINE_BREAKS)


def json_text(value: Any, *, indent: int | None = None) -> str:
    """``value`` as strict JSON: NaN and infinities become null (Python's ``json`` writes
    ``NaN``, which strict parsers refuse); dates and other objects become strings."""
    return json.dumps(
        _finite(value), allow_nan=False, default=str, ensure_ascii=False, indent=indent
    )


def print_json(value: Any, *, indent: int | None = None) -> None:
    """``value`` as one JSON document (or, with no ``indent``, one JSON line) on stdout."""
    sys.stdout.write(json_text(value, indent=indent) + "\n")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value
