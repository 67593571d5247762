"""How long-running library calls report progress without knowing who is watching.

Library functions take a :class:`Reporter`; the CLI passes a :class:`ConsoleReporter` that
draws rich progress bars, tests and the server pass :data:`SILENT`. A task opened with
``total=None`` is work that cannot count its steps: it shows a moving bar and the time spent,
never a percentage stuck at 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import ProgressColumn


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

    Not entered, it prints notes only (for work that runs beside a live server). Bars are
    drawn only on a terminal: piped or redirected output gets the notes alone.
    """

    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            SpinnerColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),  # a pulse when the task has no total
            TaskProgressColumn("{task.percentage:>5.1f}%"),  # blank when it has none
            TimeElapsedColumn(),
            _eta_column(),
            console=console,
            transient=True,
        )

    def task(self, description: str, total: float | None = None) -> ConsoleTask:
        return ConsoleTask(self.progress, self.progress.add_task(description, total=total))

    def note(self, message: str) -> None:
        self.console.print(message, markup=False, soft_wrap=True)

    def __enter__(self) -> ConsoleReporter:
        if self.console.is_terminal:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress.live.is_started:  # stopping prints a newline when not a terminal
            self.progress.stop()


def _eta_column() -> ProgressColumn:
    """``eta 0:00:12`` for a task with a total; nothing for one without (rich imported here,
    on first use, so that importing this module stays cheap)."""
    from rich.progress import ProgressColumn, TimeRemainingColumn
    from rich.text import Text

    class EtaColumn(ProgressColumn):
        remaining = TimeRemainingColumn()

        def render(self, task: Any) -> Text:
            if task.total is None:
                return Text("")
            return Text.assemble("eta ", self.remaining.render(task))

    return EtaColumn()


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
