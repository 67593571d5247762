"""Split circulars into sentence-aware chunks that fit the embedding model's window.

A circular body is read as paragraphs. Leading author-list paragraphs ("A. B. Author (Inst),
… report on behalf of the Swift-XRT team:") become one ``header`` chunk that is stored but not
embedded (names are poor embedding material; lexical search still sees them). Table-like
paragraphs are kept line by line; prose paragraphs are unwrapped and split into sentences.
Units are packed greedily into ``text`` chunks whose embedded form

    EVENT: <event id or none> SUBJECT: <subject> --- <passage>

fits in ``max_tokens`` WordPiece tokens of all-MiniLM-L6-v2, counted with the model's own
``tokenizer.json``; each chunk starts with the last ``overlap_sentences`` units of the one
before it. A unit too long for any chunk is cut at word boundaries.

Token counts add up across whitespace: BERT pre-tokenization splits on whitespace and
punctuation, so the tokens of ``"a b"`` are the tokens of ``"a"`` then those of ``"b"``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gcn_rag.corpus.circulars import Circular, format_circular_id

if TYPE_CHECKING:
    from tokenizers import Tokenizer

SPECIAL_TOKENS = 2  # [CLS] ... [SEP]


@dataclasses.dataclass(frozen=True)
class ChunkerConfig:
    """Settings that decide chunk boundaries; part of every chunk's provenance."""

    max_tokens: int = 256
    overlap_sentences: int = 1
    version: int = 2  # bump when the splitting rules change

    def fingerprint(self) -> str:
        raw = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return f"v{self.version}-{hashlib.sha256(raw.encode()).hexdigest()[:10]}"


@dataclasses.dataclass(frozen=True, slots=True)
class Chunk:
    """A passage of one circular: ``chunk_text`` as published, ``embed_text`` as embedded."""

    chunk_id: str
    circular_id: float
    event_id: str | None
    subject: str
    created_on: datetime
    chunk_index: int
    kind: str  # "header" (author list, not embedded) | "text"
    chunk_text: str
    embed_text: str  # "" for header chunks
    n_tokens: int  # tokens of embed_text including [CLS]/[SEP]; 0 for header chunks


@dataclasses.dataclass(frozen=True, slots=True)
class Unit:
    text: str
    kind: str  # "header" | "sentence" | "line"
    joiner: str  # what separates it from the unit before it: " " or "\n"


def load_tokenizer(path: Path) -> Tokenizer:
    """The WordPiece tokenizer, with the file's truncation and padding switched off."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


# --- units ----------------------------------------------------------------------------------

_PARAGRAPH = re.compile(r"\n[ \t]*\n+")
_INITIALS = re.compile(r"\b[A-Z][a-z]?\.\s?(?:-?[A-Z][a-z]?\.\s?)*[A-Z][A-Za-z'\-]+")
_BODY_VERB = re.compile(
    r"\b(?:we|We|is|are|was|were|has|have|detected|observed|triggered|located)\b"
)
_REPORTS = re.compile(r"\b(?:reports?|on behalf of)\b[^.:]{0,90}[:,.]?\s*$", re.I)
# a column gap: two or more spaces not after sentence punctuation ("ends.  Next" is prose)
_COLUMNS = re.compile(r"[^\s.!?:;,] {2,}\S|\t|\|")
_ABBREV = frozenset(  # words whose trailing period does not end a sentence
    "al e.g i.e fig figs eq eqs ref refs circ circs no nos vs approx ca cf dr prof univ obs "
    "inst dept sci astron phys jan feb mar apr jun jul aug sep sept oct nov dec mag st mt "
    "resp incl corr est tel".split()
)
_INITIAL = re.compile(r"[a-z]|(?:[a-z]\.)+[a-z]")  # "j" of "J. Smith", "e.g" of "e.g."
_BOUNDARY = re.compile(r"[.!?][\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


def is_header(paragraph: str) -> bool:
    """Does this paragraph look like an author list ("A. Author (Inst), ... report:")?"""
    flat = " ".join(paragraph.split())
    names = _INITIALS.findall(flat)
    if _REPORTS.search(flat[-120:]) and (names or "(" in flat):
        return True
    if flat.endswith(":") and len(flat) < 300 and re.search(r"report|behalf", flat, re.I):
        return True
    return flat.count(",") >= 2 and len(names) >= 2 and not _BODY_VERB.search(flat)


def is_table(paragraph: str) -> bool:
    """Column-aligned lines (tables, coordinates, photometry) are kept line by line."""
    lines = [line for line in paragraph.splitlines() if line.strip()]
    if len(lines) < 2:
        return False
    aligned = sum(1 for line in lines if _COLUMNS.search(line.strip()))
    return aligned * 2 >= len(lines)


def split_sentences(text: str) -> list[str]:
    """Split unwrapped prose into sentences, not at "et al.", "GCN Circ.", initials or "Fig."."""
    return [text[start:end] for start, end in _sentence_bounds(text)]


def _sentence_bounds(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of ``text``, surrounding whitespace left out."""
    bounds: list[tuple[int, int]] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        head = text[start : match.start()]
        word = head.rsplit(None, 1)[-1] if head.strip() else ""
        stem = word.lstrip("(\"'[").lower()
        if stem in _ABBREV or _INITIAL.fullmatch(stem):
            continue  # "et al.", "J. Smith", "e.g."
        bounds.append(_trimmed(text, start, match.end()))
        start = match.end()
    if text[start:].strip():
        bounds.append(_trimmed(text, start, len(text)))
    return [(a, b) for a, b in bounds if b > a]


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    piece = text[start:end]
    return start + len(piece) - len(piece.lstrip()), start + len(piece.rstrip())


def sentence_spans(body: str) -> Iterator[tuple[int, str]]:
    """(offset in ``body``, sentence) for every sentence and table line after the author list.

    The same units as :func:`split_units`, with where each starts in the raw body, so a value
    read from a sentence can be pointed at in the circular; whitespace inside is unwrapped.
    """
    in_header, units, at = True, 0, 0
    for separator in [*_PARAGRAPH.finditer(body), None]:
        end = separator.start() if separator else len(body)
        paragraph, offset = body[at:end], at
        at = separator.end() if separator else len(body)
        if not paragraph.strip():
            continue
        if in_header and units < 4 and is_header(paragraph):
            units += 1
            continue
        in_header = False
        units += 1
        if is_table(paragraph):
            for line in re.finditer(r"[^\n]+", paragraph):
                if line.group().strip():
                    start, _ = _trimmed(paragraph, line.start(), line.end())
                    yield offset + start, line.group().strip()
            continue
        for start, stop in _sentence_bounds(paragraph):
            yield offset + start, " ".join(paragraph[start:stop].split())


def split_units(body: str) -> list[Unit]:
    """The body as header, sentence and table-line units, in reading order."""
    units: list[Unit] = []
    in_header = True
    for paragraph in _PARAGRAPH.split(body.strip()):
        if not paragraph.strip():
            continue
        if in_header and len(units) < 4 and is_header(paragraph):
            units.append(Unit(" ".join(paragraph.split()), "header", "\n"))
            continue
        in_header = False
        if is_table(paragraph):
            lines = [line.rstrip() for line in paragraph.splitlines() if line.strip()]
            units.extend(Unit(line, "line", "\n") for line in lines)
        else:
            sentences = split_sentences(" ".join(paragraph.split()))
            units.extend(
                Unit(s, "sentence", "\n" if i == 0 else " ") for i, s in enumerate(sentences)
            )
    return units


# --- packing --------------------------------------------------------------------------------


def embed_prefix(event_id: str | None, subject: str) -> str:
    return f"EVENT: {event_id or 'none'} SUBJECT: {subject} --- "


class Chunker:
    """Turns circulars into chunks; counts tokens in batches for speed."""

    def __init__(self, tokenizer: Tokenizer, config: ChunkerConfig | None = None) -> None:
        self.tokenizer = tokenizer
        self.config = config or ChunkerConfig()

    def _count(self, texts: Sequence[str]) -> list[int]:
        encode = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)
        return [len(e.ids) for e in encode(list(texts), add_special_tokens=False)]

    def chunk(self, circulars: Iterable[Circular], batch: int = 1000) -> Iterator[Chunk]:
        """Chunks of every circular, in order; memory bounded by ``batch`` circulars."""
        pending: list[Circular] = []
        for circular in circulars:
            pending.append(circular)
            if len(pending) >= batch:
                yield from self._chunk_batch(pending)
                pending = []
        if pending:
            yield from self._chunk_batch(pending)

    def _chunk_batch(self, circulars: list[Circular]) -> Iterator[Chunk]:
        unit_lists = [split_units(c.body) for c in circulars]
        prefixes = [embed_prefix(c.event_id, c.subject) for c in circulars]
        flat = [u.text for units in unit_lists for u in units]
        counts = iter(self._count(flat + prefixes))
        unit_counts = [[next(counts) for _ in units] for units in unit_lists]
        prefix_counts = [next(counts) for _ in prefixes]
        for circular, units, ncounts, prefix, nprefix in zip(
            circulars, unit_lists, unit_counts, prefixes, prefix_counts, strict=True
        ):
            yield from self._pack(circular, units, ncounts, prefix, nprefix)

    def _pack(
        self,
        circular: Circular,
        units: list[Unit],
        counts: list[int],
        prefix: str,
        prefix_tokens: int,
    ) -> Iterator[Chunk]:
        if prefix_tokens > self.config.max_tokens // 2:
            prefix = embed_prefix(circular.event_id, self._clip(circular.subject, 64))
            prefix_tokens = self._count([prefix])[0]
        budget = self.config.max_tokens - SPECIAL_TOKENS - prefix_tokens
        header = [u.text for u in units if u.kind == "header"]
        body = [(u, n) for u, n in zip(units, counts, strict=True) if u.kind != "header"]
        index = 0
        if header:
            yield self._make(circular, index, "header", "\n".join(header), "", 0)
            index += 1
        for passage, tokens in self._passages(body, budget):
            text = passage.strip()
            if text:
                embedded = prefix + text
                n = SPECIAL_TOKENS + prefix_tokens + tokens
                yield self._make(circular, index, "text", text, embedded, n)
                index += 1

    def _passages(self, body: list[tuple[Unit, int]], budget: int) -> Iterator[tuple[str, int]]:
        """Greedy packing with ``overlap_sentences`` units carried into the next passage."""
        pieces = [p for unit, n in body for p in self._fit(unit, n, budget)]
        current: list[tuple[Unit, int]] = []
        used = 0
        for unit, n in pieces:
            if current and used + n > budget:
                yield _join(current), used
                overlap = self.config.overlap_sentences
                carry = current[-overlap:] if overlap else []
                while carry and sum(c for _, c in carry) + n > budget:
                    carry = carry[1:]
                current, used = list(carry), sum(c for _, c in carry)
                if current:
                    current[0] = (dataclasses.replace(current[0][0], joiner=""), current[0][1])
            current.append((unit, n))
            used += n
        if current:
            yield _join(current), used

    def _fit(self, unit: Unit, n: int, budget: int) -> list[tuple[Unit, int]]:
        """Cut a unit longer than the budget at word boundaries into pieces that fit."""
        if n <= budget:
            return [(unit, n)]
        encoding = self.tokenizer.encode(unit.text, add_special_tokens=False)
        pieces: list[tuple[Unit, int]] = []
        start_token = 0
        while start_token < len(encoding.ids):
            end_token = min(start_token + budget, len(encoding.ids))
            if end_token < len(encoding.ids):
                # back off to the start of a word so no word is split across pieces
                word = encoding.word_ids[end_token]
                back = end_token
                while back > start_token + 1 and encoding.word_ids[back - 1] == word:
                    back -= 1
                end_token = back if back > start_token + 1 else end_token
            begin = encoding.offsets[start_token][0]
            end = encoding.offsets[end_token - 1][1]
            joiner = unit.joiner if not pieces else " "
            pieces.append((Unit(unit.text[begin:end], unit.kind, joiner), end_token - start_token))
            start_token = end_token
        return pieces

    def _clip(self, text: str, max_tokens: int) -> str:
        encoding = self.tokenizer.encode(text, add_special_tokens=False)
        if len(encoding.ids) <= max_tokens:
            return text
        return text[: encoding.offsets[max_tokens - 1][1]]

    @staticmethod
    def _make(circular: Circular, index: int, kind: str, text: str, embedded: str, n: int) -> Chunk:
        return Chunk(
            chunk_id=f"{format_circular_id(circular.circular_id)}_{index}",
            circular_id=circular.circular_id,
            event_id=circular.event_id,
            subject=circular.subject,
            created_on=circular.created_on,
            chunk_index=index,
            kind=kind,
            chunk_text=text,
            embed_text=embedded,
            n_tokens=n,
        )


def _join(units: list[tuple[Unit, int]]) -> str:
    return "".join((u.joiner if i else "") + u.text for i, (u, _) in enumerate(units))


def chunks_to_columns(chunks: Iterable[Chunk], fingerprint: str) -> dict[str, list[Any]]:
    """Column lists (one per field, plus ``chunker``) for building an Arrow table fast."""
    names = [f.name for f in dataclasses.fields(Chunk)]
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for chunk in chunks:
        for name in names:
            columns[name].append(getattr(chunk, name))
    columns["chunker"] = [fingerprint] * len(columns["chunk_id"])
    return columns
