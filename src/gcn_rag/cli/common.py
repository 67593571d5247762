"""What every ``gcn-rag`` command shares: settings, console, error handling, progress bars."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from gcn_rag.errors import GcnRagError

if TYPE_CHECKING:
    from rich.console import Console

    from gcn_rag.settings import Settings
    from gcn_rag.tables import Catalog

F = TypeVar("F", bound=Callable[..., Any])


def make_console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def friendly(command: F) -> F:
    """Turn library errors into ``Error: ...`` and exit code 1 (never a stack trace)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except GcnRagError as exc:
            make_console(stderr=True).print(f"[bold red]Error:[/] {exc.message}", soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            make_console(stderr=True).print(
                "Interrupted; nothing was written by the step in flight."
            )
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


HomeOption = typer.Option(
    None, "--home", envvar="GCN_RAG_HOME", help="Workspace directory (default ~/.gcn-rag)."
)


def settings_for(home: Path | None) -> Settings:
    from gcn_rag.settings import Settings

    return Settings.load(home=home)


def catalog_for(settings: Settings) -> Catalog:
    from gcn_rag.tables import Catalog

    return Catalog(settings.warehouse, settings.catalog, settings.schema)


class RichReporter:
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

    def task(self, description: str, total: float | None = None) -> RichTask:
        return RichTask(self.progress, self.progress.add_task(description, total=total))

    def note(self, message: str) -> None:
        self.console.print(message)

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


class RichTask:
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


def progress_reporter(console: Console) -> RichReporter:
    return RichReporter(console)


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
