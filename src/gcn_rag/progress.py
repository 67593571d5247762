"""How long-running library calls report progress without knowing who is watching.

Library functions take a :class:`Reporter`; the CLI passes one that draws rich progress bars,
tests and the server pass :data:`SILENT`.
"""

from __future__ import annotations

from typing import Protocol


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
