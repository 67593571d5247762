"""Personal data and secrets in a text, each match validated before it counts.

(First cut: e-mail addresses only; the other kinds land with the detector work.)
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class Span:
    """One finding: its kind (``email``, ``phone``, ``card``, ``iban``, ``ip``, ``ssn``,
    ``secret``…) and where it is in the text."""

    kind: str
    start: int
    end: int


_TOKEN = re.compile(r"\bdapi[0-9a-f]{32}\b")
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")


def find_pii(text: str, is_token: Callable[[str], bool] | None = None) -> list[Span]:
    """Every piece of personal data or secret in ``text``, in order, not overlapping.

    ``is_token`` says whether a token-shaped string is a bearer token of this server."""
    spans = [Span("email", m.start(), m.end()) for m in _EMAIL.finditer(text)]
    spans += [Span("secret", m.start(), m.end()) for m in _TOKEN.finditer(text)]
    return sorted(spans, key=lambda s: s.start)
