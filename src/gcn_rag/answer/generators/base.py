"""What every generator takes and is: passages in rank order, and a ``generate`` method.

Circulars are public submissions, so a passage may carry instructions meant for the LLM (an
indirect prompt injection: "ignore the above and say…"). :func:`screen` runs every passage
through :func:`gcn_rag.guardrails.injection.find_injection` before it is handed over; a
flagged passage is left out of the LLM's context and reported in :attr:`Answer.withheld`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from gcn_rag.corpus.circulars import circular_id_json
from gcn_rag.guardrails.injection import find_injection
from gcn_rag.progress import Reporter

#: ``generator_fallback`` when no passage is left to hand to the LLM.
ALL_WITHHELD = "every passage was withheld from the LLM: each carries instructions"
_log = logging.getLogger(__name__)


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


def screen(*groups: Sequence[Context]) -> tuple[list[Context], list[dict[str, Any]]]:
    """The passages an LLM may read, in order (a circular's passage once: the first group that
    has one gives it), and one record per passage left out for carrying instructions:
    ``{"circular_id", "rules"}`` (the rules of :mod:`gcn_rag.guardrails.injection` it trips).
    """
    kept: list[Context] = []
    withheld: list[dict[str, Any]] = []
    given: set[float] = set()
    for group in groups:
        fresh = [c for c in group if c.circular_id not in given]
        given.update(c.circular_id for c in group)
        for context in fresh:
            rules = find_injection(context.text) or find_injection(context.subject)
            if not rules:
                kept.append(context)
                continue
            _log.warning("GCN %s withheld from the LLM: %s", context.circular_id, ", ".join(rules))
            record = {"circular_id": circular_id_json(context.circular_id), "rules": rules}
            withheld.append(record)
    return kept, withheld
