"""The chat prompt: the lab's guidelines, then the passages (within a token budget), then the
question."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from gcn_rag.answer.generators.base import Context
from gcn_rag.corpus.circulars import format_circular_id

#: What the model must answer, verbatim, when the context does not hold the answer.
INSUFFICIENT = (
    "I don't have sufficient information in the available GCN Circulars to answer this question."
)

SYSTEM_PROMPT = f"""You answer questions about NASA GCN Circulars for astronomers.
Guidelines:
1. Answer only from the context below. Never use outside knowledge.
2. If the context is insufficient, answer exactly: {INSUFFICIENT}
3. Cite the event ids and circular numbers (as "GCN <number>") that support the answer.
4. Be precise with numbers and units: copy values, uncertainties and units as written.
5. Be concise: at most a few sentences."""

_MIN_CUT_TOKENS = 50  # a cut passage shorter than this is noise: leave it out instead
_WORD = re.compile(r"[^\W\d_]+")


def build_messages(
    question: str, contexts: Sequence[Context], *, max_context_tokens: int = 1500
) -> list[dict[str, str]]:
    """The chat messages for one question: the lab's guidelines, then context and question.

    Passages keep their rank order; they are kept whole while they fit ``max_context_tokens``
    (as :func:`estimate_tokens` counts), the first one that does not fit is cut at a word
    boundary, and the rest are left out, so the best evidence always reaches the model.
    """
    blocks: list[str] = []
    room = max_context_tokens
    for ctx in contexts:
        header = _passage_header(ctx)
        text = _tidy(ctx.text)
        text_room = room - estimate_tokens(header) - 1
        needed = estimate_tokens(text)
        if needed > text_room:
            if not blocks or text_room >= _MIN_CUT_TOKENS:
                blocks.append(f"{header}\n{_cut(text, text_room)}")
            break
        blocks.append(f"{header}\n{text}")
        room = text_room - needed - 2
    body = "\n\n".join(blocks) if blocks else "(no circulars were retrieved)"
    user = f"Context from NASA GCN Circulars:\n\n{body}\n\nQuestion: {question.strip()}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def estimate_tokens(text: str) -> int:
    """A tokenizer-free token count for budgets: each digit, symbol and line break counts one
    token (SmolLM2 and many other tokenizers split numbers into digits, and circulars are
    dense with numbers) and a word one per four letters.

    On the fixture circulars this is within -16 %/+27 % of SmolLM2's real count (median
    +3 %), where "4 characters a token" undercounts number-heavy circulars by up to 2x.
    """
    words = sum(max(1.0, len(word) / 4) for word in _WORD.findall(text))
    symbols = sum(1 for char in text if not char.isspace() and not char.isalpha())
    return math.ceil(words + symbols + text.count("\n"))


def _passage_header(ctx: Context) -> str:
    event = f" ({ctx.event_id})" if ctx.event_id else ""
    return f"### GCN {format_circular_id(ctx.circular_id)}{event}\nSubject: {ctx.subject.strip()}"


def _tidy(text: str) -> str:
    """Collapse runs of blanks and blank lines (tables stay one row a line): fewer tokens."""
    lines = (" ".join(line.split()) for line in text.strip().splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


def _cut(text: str, budget: int) -> str:
    """The longest run of whole words of ``text`` within ``budget`` tokens, marked as cut."""
    end = 0
    for piece in re.finditer(r"\S+\s*", text):
        budget -= estimate_tokens(piece[0])
        if budget < 0:
            break
        end = piece.end()
    return text[:end].rstrip() + " […]"
