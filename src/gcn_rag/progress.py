"""How long-running library calls report progress without knowing who is watching.

Library functions take a :class:`Reporter`; the CLI passes a :class:`ConsoleReporter` that
draws rich progress bars, tests and the server pass :data:`SILENT`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from rich.console import Console


class Task(Protocol):
    def update(self, completed: float, total: float | None = None) -> None: ...

    def advance(self, amount: float = 1) -> None: ...

    def close(self) -> None: ...


class Reporter(Protocol):
    def task(self, description: str, total: float | None = None) -> Task: ...

    def note(self, message: str) -> None: ...


class _SilentTask:
    def update(self, completed: float, total: float | None = None) -> None:
        return None

    def advance(self, amount: float = 1) -> None:
        return None

    def close(self) -> None:
        return None


class _Silent:
    def task(self, description: str, total: float | None = None) -> Task:
        return _SilentTask()

    def note(self, message: str) -> None:
        return None


SILENT: Reporter = _Silent()


class ConsoleReporter:
    """Progress bars and notes on a rich console; a ``with`` block shows the bars.

    Not entered, it prints notes only (for work that runs beside a live server).
    """

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

    def task(self, description: str, total: float | None = None) -> ConsoleTask:
        return ConsoleTask(self.progress, self.progress.add_task(description, total=total))

    def note(self, message: str) -> None:
        self.console.print(message, markup=False, soft_wrap=True)

    def __enter__(self) -> ConsoleReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


class ConsoleTask:
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
