"""What every generator takes and is: passages in rank order, and a ``generate`` method."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

from gcn_rag.progress import Reporter


@dataclasses.dataclass(frozen=True)
class Context:
    """One retrieved passage handed to a generator, in rank order."""

    circular_id: float
    event_id: str | None
    subject: str
    text: str


class Generator(Protocol):
    """Writes an answer to ``question`` from ``contexts`` alone; ``close`` frees resources.

    ``name`` (``kind:model``) is what :attr:`Answer.generator` records; ``reporter`` hears
    of the waits (loading a model, writing an answer): silent unless a caller sets it.
    """

    name: str
    reporter: Reporter

    def generate(self, question: str, contexts: Sequence[Context]) -> str: ...

    def close(self) -> None: ...
