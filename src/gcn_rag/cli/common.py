"""What every ``gcn-rag`` command shares: settings, console, error handling, progress bars."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from gcn_rag.errors import GcnRagError
from gcn_rag.settings import Settings

if TYPE_CHECKING:
    from rich.console import Console

    from gcn_rag.progress import ConsoleReporter

F = TypeVar("F", bound=Callable[..., Any])


def make_console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def print_error(message: str) -> None:
    make_console(stderr=True).print(f"[bold red]Error:[/] {message}", soft_wrap=True)


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
    metavar="<path>",
    show_default=False,
    help="Workspace directory (default ~/.gcn-rag).",
)


def progress_reporter(console: Console) -> ConsoleReporter:
    from gcn_rag.progress import ConsoleReporter

    return ConsoleReporter(console)


def print_rows(console: Console, title: str, rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    if not rows:
        return
    view = Table(*rows[0].keys(), title=title)
    for row in rows:
        view.add_row(
            *(
                "" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)
                for v in row.values()
            )
        )
    console.print(view)
