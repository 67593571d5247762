"""``valid_topics`` and ``invalid_keywords``: is a question about what the endpoint is for,
and does a text carry a blocked word.

(First cut: keywords as whole words; topics judged by the words of each topic.)
"""

from __future__ import annotations

import re


def find_keywords(text: str, keywords: list[str]) -> list[str]:
    """The blocked keywords that occur in ``text`` as whole words, case-insensitively."""
    return [k for k in keywords if re.search(rf"(?<!\w){re.escape(k)}(?!\w)", text, re.I)]


def on_topic(text: str, topics: list[str]) -> bool:
    """Whether ``text`` is about one of ``topics`` (True when no topic is set)."""
    if not topics:
        return True
    words = {w for t in topics for w in re.findall(r"\w{3,}", t.lower())}
    return any(w in words for w in re.findall(r"\w{3,}", text.lower()))
