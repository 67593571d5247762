"""A question as the assistant takes it: normalized, without control characters, not too long."""

from __future__ import annotations

import unicodedata

from gcn_rag.errors import BadInputError

MAX_QUESTION_CHARS = 2_000
_CONTROL = dict.fromkeys(i for i in range(0x20) if chr(i) not in "\t\n") | {0x7F: None}


def clean_question(question: str) -> str:
    """Strip control characters and normalize; refuse empty or oversized questions."""
    if not isinstance(question, str):
        raise BadInputError("The question must be a string.")
    text = unicodedata.normalize("NFKC", question).translate(_CONTROL)
    text = " ".join(text.split())
    if not text:
        raise BadInputError("The question is empty; ask something about the GCN Circulars.")
    if len(text) > MAX_QUESTION_CHARS:
        raise BadInputError(
            f"The question is {len(text):,} characters long; the limit is "
            f"{MAX_QUESTION_CHARS:,}. Ask a shorter question."
        )
    return text
