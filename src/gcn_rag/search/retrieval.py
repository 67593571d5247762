"""Search over a loaded index: lexical (BM25), dense (cosine), and their fusion.

The unit of retrieval is the circular: BM25 scores every chunk and a circular takes its best
chunk's score; the dense score is the cosine between the question and the circular's lead
passage. Hybrid ranking fuses the two rankings with reciprocal rank fusion (RRF), which needs
no score calibration between the two.

Event awareness: when the question names an event (and no explicit event filter is given),
only circulars about that event — or naming it, under any alias — are ranked. When no
circular names it, :attr:`SearchResult.event_found` is False and the caller can abstain; when
the filters leave nothing to rank, :attr:`SearchResult.excluded` says so.
"""

from __future__ import annotations

import dataclasses
import re
import time
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from gcn_rag.corpus.events import event_key, normalize_event_id, question_event_ids
from gcn_rag.errors import BadInputError
from gcn_rag.search.index import STOPWORDS, SearchIndex, query_event_tokens

if TYPE_CHECKING:
    import numpy as np

    from gcn_rag.search.embedding import Embedder

Mode = Literal["hybrid", "lexical", "dense"]
MODES: tuple[Mode, ...] = ("hybrid", "lexical", "dense")
RRF_K = 60


def parse_mode(mode: str) -> Mode:
    """``mode`` as a retrieval mode, or a clear error."""
    for known in MODES:
        if mode == known:
            return known
    raise BadInputError(f"Unknown mode {mode!r}; use hybrid, lexical or dense.")


@dataclasses.dataclass(frozen=True)
class Filters:
    """Restrict a search. ``event`` is exact (alias-aware) or a prefix ending in ``%``/``*``."""

    event: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    min_circular_id: float | None = None
    max_circular_id: float | None = None

    def is_empty(self) -> bool:
        return self == Filters()

    def describe(self) -> str:
        """The filters in words: ``event GRB 130427A, since 2030-01-01``."""
        parts = [f"event {self.event}"] if self.event else []
        for word, when in (("since", self.since), ("until", self.until)):
            if when is not None:
                parts.append(f"{word} {when:%Y-%m-%d %H:%M:%S}".removesuffix(" 00:00:00"))
        for word, number in (("from", self.min_circular_id), ("to", self.max_circular_id)):
            if number is not None:
                parts.append(f"{word} circular {number:g}")
        return ", ".join(parts)


@dataclasses.dataclass(frozen=True)
class Hit:
    """One retrieved circular and the chunk that matched best."""

    row: int  # circular row in the index
    circular_id: float
    event_id: str | None
    subject: str
    created_on: datetime
    score: float
    best_chunk: int  # chunk row, -1 when only the dense signal found it


@dataclasses.dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    events: list[str]  # events named in the question
    event_found: bool  # False when the question names events no circular mentions
    # why nothing was ranked when the filters (within the named event's circulars, if any)
    # leave no circular: "No circular about GRB 130427A matches the filters (...)"; else ""
    excluded: str = ""


def filter_mask(index: SearchIndex, filters: Filters) -> np.ndarray | None:
    """Boolean mask over circular rows, or None when nothing is filtered."""
    import numpy as np

    if filters.is_empty():
        return None
    mask = np.ones(len(index.circ_ids), dtype=bool)
    if filters.event:
        mask &= _event_mask(index, filters.event)
    if filters.since:
        mask &= index.circ_created_us >= int(filters.since.timestamp() * 1_000_000)
    if filters.until:
        mask &= index.circ_created_us <= int(filters.until.timestamp() * 1_000_000)
    if filters.min_circular_id is not None:
        mask &= index.circ_ids >= filters.min_circular_id
    if filters.max_circular_id is not None:
        mask &= index.circ_ids <= filters.max_circular_id
    return mask


def _event_mask(index: SearchIndex, pattern: str) -> np.ndarray:
    """Rows whose event is ``pattern`` (alias-aware), or starts with it (``GRB%``)."""
    import numpy as np

    mask = np.zeros(len(index.circ_ids), dtype=bool)
    raw = pattern.strip()
    if raw.endswith(("%", "*")):
        prefix = event_key(raw.rstrip("%*"))
        for row, event in enumerate(index.event_ids):
            if event and event_key(event).startswith(prefix):
                mask[row] = True
        return mask
    canonical = normalize_event_id(raw)
    if canonical is None:
        keys = {event_key(raw)}
        for row, event in enumerate(index.event_ids):
            if event and event_key(event) in keys:
                mask[row] = True
        return mask
    mask[index.rows_about([canonical])] = True
    return mask


_WORD = re.compile(r"(?u)\b\w\w+\b")


class Retriever:
    """Ranks circulars for a question: ``lexical``, ``dense`` or fused ``hybrid``."""

    def __init__(self, index: SearchIndex, embedder: Embedder | None) -> None:
        self.index = index
        self.embedder = embedder
        import bm25s.stopwords as sw

        self._stop = set(sw.STOPWORDS_EN) if STOPWORDS == "en" else set()

    def tokens(self, question: str, events: list[str], extra: tuple[str, ...] = ()) -> list[str]:
        words = [w for w in _WORD.findall(question.lower()) if w not in self._stop]
        return words + list(extra) + query_event_tokens(events)

    def search(
        self,
        question: str,
        *,
        k: int = 5,
        filters: Filters | None = None,
        mode: Mode = "hybrid",
        expand: tuple[str, ...] = (),
        event_aware: bool = True,
        timings: dict[str, float] | None = None,
    ) -> SearchResult:
        """The top ``k`` circulars for ``question`` under ``filters``.

        ``timings`` (seconds per step: filter, lexical, embed, dense, fuse) is filled if given.
        """
        import numpy as np

        clock = _Clock(timings)
        filters = filters or Filters()
        events = question_event_ids(question)
        mask = filter_mask(self.index, filters)
        event_found, scoped_to = True, ""
        if events and event_aware and not filters.event:
            about = self.index.rows_about(events)
            event_found = about.size > 0
            if event_found:
                scoped_to = f" about {', '.join(events)}"
                scoped = np.zeros(len(self.index.circ_ids), dtype=bool)
                scoped[about] = True
                mask = scoped if mask is None else mask & scoped
        clock.lap("filter")
        if mask is not None and not mask.any():
            excluded = (
                ""
                if filters.is_empty()
                else (
                    f"No circular{scoped_to} matches the filters ({filters.describe()}); widen or "
                    "drop them to get an answer."
                )
            )
            return SearchResult([], events, event_found, excluded)
        lexical = dense = chunk_scores = None
        if mode in ("hybrid", "lexical"):
            lexical, chunk_scores = self._lexical(self.tokens(question, events, expand), mask)
            clock.lap("lexical")
        if mode in ("hybrid", "dense"):
            dense = self._dense(question, mask, clock)
        rows, scores = self._rank(lexical, dense, mask, k)
        hits = [
            self._hit(int(r), float(s), self._best_chunk(int(r), chunk_scores))
            for r, s in zip(rows, scores, strict=True)
        ]
        clock.lap("fuse")
        return SearchResult(hits, events, event_found)

    def _hit(self, row: int, score: float, best_chunk: int) -> Hit:
        return Hit(
            row=row,
            circular_id=float(self.index.circ_ids[row]),
            event_id=self.index.event_ids[row],
            subject=self.index.subject(row),
            created_on=self.index.created_on(row),
            score=score,
            best_chunk=best_chunk,
        )

    def _lexical(
        self, tokens: list[str], mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Per-circular BM25 score (its best chunk's) and the per-chunk scores."""
        import numpy as np

        n = len(self.index.circ_ids)
        if not tokens:
            return np.zeros(n, dtype=np.float32), None
        chunk_scores = np.asarray(self.index.bm25.get_scores(tokens), dtype=np.float32)
        per_circ = np.maximum.reduceat(chunk_scores, self.index.chunk_starts[:-1])
        if mask is not None:
            per_circ[~mask] = 0.0
        return per_circ, chunk_scores

    def _best_chunk(self, row: int, chunk_scores: np.ndarray | None) -> int:
        """The circular's best-scoring chunk, or -1 when only the dense signal found it."""
        import numpy as np

        rows = self.index.chunk_rows_of(row)
        if chunk_scores is None or not len(rows):
            return -1
        segment = chunk_scores[rows.start : rows.stop]
        best = int(np.argmax(segment))
        return rows.start + best if segment[best] > 0 else -1

    def _dense(self, question: str, mask: np.ndarray | None, clock: _Clock) -> np.ndarray:
        if self.embedder is None:
            raise BadInputError("Dense retrieval needs an embedder; load the assistant fully.")
        import numpy as np

        query = self.embedder.embed_query(question)
        clock.lap("embed")
        if mask is None:
            scores: np.ndarray = self.index.dense @ query
        else:  # score only the circulars in scope (often a few dozen)
            scores = np.full(len(self.index.circ_ids), -2.0, dtype=np.float32)
            rows = np.flatnonzero(mask)
            scores[rows] = self.index.dense[rows] @ query
        clock.lap("dense")
        return scores

    def _rank(
        self,
        lexical: np.ndarray | None,
        dense: np.ndarray | None,
        mask: np.ndarray | None,
        k: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        import numpy as np

        allowed = np.ones(len(self.index.circ_ids), bool) if mask is None else mask
        if lexical is not None and dense is None:
            # inside an explicit scope every circular qualifies; unscoped, only matches do
            valid = allowed if mask is not None else allowed & (lexical > 0)
            return _top(lexical, valid, k)
        assert dense is not None
        if lexical is None:
            return _top(dense, allowed, k)
        depth = max(100, 4 * k)
        lex_rows, _ = _top(lexical, allowed & (lexical > 0), depth)
        den_rows, _ = _top(dense, allowed, depth)
        fused: dict[int, float] = {}
        for ranking in (lex_rows, den_rows):
            for rank, row in enumerate(ranking):
                fused[int(row)] = fused.get(int(row), 0.0) + 1.0 / (RRF_K + rank + 1)
        ordered = sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:k]
        return (
            np.array([r for r, _ in ordered], dtype=np.int64),
            np.array([s for _, s in ordered], dtype=np.float32),
        )


class _Clock:
    """Accumulates seconds per named step into an optional dict."""

    def __init__(self, sink: dict[str, float] | None) -> None:
        self.sink = sink
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        if self.sink is not None:
            self.sink[name] = self.sink.get(name, 0.0) + now - self.last
        self.last = now


def _top(scores: np.ndarray, valid: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    rows = np.flatnonzero(valid)
    if rows.size > k:
        part = np.argpartition(-scores[rows], k - 1)[:k]
        rows = rows[part]
    order = np.lexsort((rows, -scores[rows]))
    rows = rows[order]
    return rows, scores[rows]
