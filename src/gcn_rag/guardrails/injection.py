"""Prompt injection and jailbreak attempts in a question or a passage.

(First cut: one rule; the rule set and its measurement land with the detector work.)
"""

from __future__ import annotations

import re

_RULES = (
    (
        "override",
        re.compile(r"\b(ignore|disregard|forget)\b.{0,40}\b(instructions|above|previous)\b", re.I),
    ),
)


def find_injection(text: str) -> list[str]:
    """The names of the rules ``text`` trips (empty when it looks like an ordinary text)."""
    return [name for name, rule in _RULES if rule.search(text)]
