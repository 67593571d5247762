"""The assistant: a question in, a short grounded answer with citations out.

The default answerer is extractive and deterministic. For a value question ("What is the
redshift of GRB 130427A?") it reads the value from sentences of the retrieved circulars,
leads with it, and cites the circulars that state it; when circulars disagree it says so and
cites each side. For a broad question it quotes the most relevant sentence of each of the top
circulars. When the question names an event that no circular mentions it abstains.

With a *generator* (an LLM, see ``gcn_rag.answer.generators``) the extractive answer is still made
first: it is the evidence check and the fallback. The LLM writes from the top passages; its
answer is kept only if every number and event id in it is in those passages and, for a value
question, it leads with the value the circulars state (the extractive one). Otherwise the
extractive answer stands and ``generator_fallback`` says why. Citations always come from
retrieval, never from the LLM's text; an abstention is never handed to the LLM.
"""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gcn_rag.answer.extraction import (
    Asked,
    Evidence,
    ValueGroup,
    can_state,
    find_values,
    first_value,
    group_values,
    parse_question,
    sentences,
    tolerance,
)
from gcn_rag.answer.open_questions import Reply, answer_open
from gcn_rag.answer.question import clean_question
from gcn_rag.corpus.circulars import circular_id_json, circular_url, format_circular_id, gcn_ref
from gcn_rag.corpus.events import question_event_ids
from gcn_rag.errors import BadInputError, NotFoundError
from gcn_rag.search.index import SearchIndex
from gcn_rag.search.retrieval import Filters, Hit, Mode, Retriever

if TYPE_CHECKING:
    from gcn_rag.answer.generators.base import Generator
    from gcn_rag.search.embedding import Embedder
    from gcn_rag.settings import Settings

#: The fields of a prediction row, in the PyFunc's column order (see :meth:`Answer.prediction`).
PREDICTION_FIELDS = (
    "answer",
    "sources",
    "num_docs",
    "citations",
    "generator_fallback",
    "measurements",
    "withheld",
)
ABSTAIN = "I don't have sufficient information in the available GCN Circulars"
VALUE_SCAN = 40  # circulars scanned for a value when the question names an event


@dataclasses.dataclass(frozen=True)
class Citation:
    circular_id: float
    event_id: str | None
    subject: str
    url: str
    score: float
    quote: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "circular_id": circular_id_json(self.circular_id),
            "event_id": self.event_id,
            "subject": self.subject,
            "url": self.url,
            "score": round(self.score, 6),
            "quote": self.quote,
        }


@dataclasses.dataclass(frozen=True)
class Answer:
    """What :meth:`Assistant.ask` returns (and the PyFunc serializes)."""

    question: str
    answer: str
    sources: list[str]  # sorted unique event ids of the citations
    num_docs: int
    citations: list[Citation]
    timings_ms: dict[str, float] = dataclasses.field(default_factory=dict)
    generator: str = "extractive"  # who wrote ``answer``
    generator_fallback: str = ""  # why an LLM's answer was replaced by the extractive one
    generated: str = ""  # the LLM's own text, kept or not (for logs and evaluation)
    # a value answer's values: {quantity, value, unit, circular_id, circulars}, best first
    measurements: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    withheld: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # from the LLM

    def prediction(self) -> dict[str, Any]:
        """The prediction row: the PyFunc's output columns (``PREDICTION_FIELDS``), as values."""
        values = self.to_dict()
        return {name: values[name] for name in PREDICTION_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.answer,
            "sources": self.sources,
            "num_docs": self.num_docs,
            "citations": [c.to_dict() for c in self.citations],
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
            "generator": self.generator,
            "generator_fallback": self.generator_fallback,
            "generated": self.generated,
            "measurements": self.measurements,
            "withheld": self.withheld,
        }


class Assistant:
    """Retrieval + extractive answering over one loaded index."""

    def __init__(
        self,
        index: SearchIndex,
        embedder: Embedder | None,
        generator: Generator | None = None,
        *,
        grounding_check: bool = True,
    ) -> None:
        self.index = index
        self.embedder = embedder
        self.retriever = Retriever(index, embedder)
        self.generator = generator
        self.grounding_check = grounding_check

    @classmethod
    def load(
        cls, settings: Settings, path: Path | None = None, *, generator: str | None = None
    ) -> Assistant:
        """The workspace's index; ``generator`` (default: the setting) picks who writes."""
        from gcn_rag.answer.generators import generator_config, make_generator
        from gcn_rag.search.embedding import Embedder
        from gcn_rag.search.index import DENSE_MAX_TOKENS

        embedder = Embedder.from_settings(settings, max_tokens=DENSE_MAX_TOKENS, threads=1)
        index = SearchIndex.load(path or settings.index, model_id=embedder.model_id)
        config = generator_config(settings, generator)
        kind = config.pop("kind")
        if kind == "local":
            config["cache"] = settings.cache
        return cls(index, embedder, make_generator(kind, config))

    def close(self) -> None:
        """Stop the generator's server, if any."""
        if self.generator is not None:
            self.generator.close()

    def ask(
        self,
        question: str,
        *,
        k: int = 5,
        filters: Filters | None = None,
        mode: Mode = "hybrid",
        event_aware: bool = True,
        use_generator: bool = True,
    ) -> Answer:
        """Answer ``question`` from the top ``k`` circulars (after ``filters``).

        ``event_aware=False`` ranks the whole corpus even when the question names an event
        (a baseline for evaluation: plain BM25 or plain dense retrieval).
        """
        start = time.perf_counter()
        text = clean_question(question)
        if not 1 <= k <= 100:
            raise BadInputError(f"k must be between 1 and 100, got {k}.")
        asked = parse_question(text, question_event_ids(text))
        timings: dict[str, float] = {}
        expand = asked.quantity.retrieval if asked is not None else ()
        # a named event narrows the ranking to its circulars: read further down for the value
        depth = max(k, VALUE_SCAN) if asked is not None and event_aware else k
        result = self.retriever.search(
            text,
            k=depth,
            filters=filters,
            mode=mode,
            expand=expand,
            event_aware=event_aware,
            timings=timings,
        )
        if result.excluded:  # answering from nothing would read as "they do not state it"
            raise NotFoundError(result.excluded)
        clock = time.perf_counter()
        if result.events and not result.event_found:
            answer = self._abstain(text, result.events, len(result.hits[:k]))
        elif asked is not None and result.events:
            answer = self._value_answer(text, asked, result.events, result.hits, k)
            if asked.also is not None and answer.measurements:  # RA, then Dec
                more = dataclasses.replace(asked, quantity=asked.also, also=None)
                answer = _joined(
                    answer, self._value_answer(text, more, result.events, result.hits, k)
                )
        elif result.events and (reply := self._open_reply(text, result.events[0])) is not None:
            answer = self._open_answer(text, reply, result.hits, k)
        else:
            answer = self._broad_answer(text, result.hits[:k])
        timings["answer"] = time.perf_counter() - clock
        if self.generator is not None and use_generator and answer.citations:
            clock = time.perf_counter()
            answer = self._generate(text, asked, answer, result.hits[:k])
            timings["generate"] = time.perf_counter() - clock
        timings["total"] = time.perf_counter() - start
        return dataclasses.replace(
            answer, timings_ms={name: 1000 * s for name, s in timings.items()}
        )

    def predict_row(
        self,
        row: Any,
        *,
        k: int = 5,
        mode: Mode = "hybrid",
        filters: Filters | None = None,
        event_aware: bool = True,
        use_generator: bool = True,
    ) -> dict[str, Any]:
        """One prediction record for a ``{"id", "question"}`` row; a bad row gets its error.

        The record is ``{"id", **Answer.prediction()}``, or ``{"id", "answer", "sources",
        "num_docs", "citations", "error"}`` when the row could not be answered (bad input, or
        filters that exclude every circular), so one bad row never sinks a batch.
        """
        row_id = row.get("id") if isinstance(row, dict) else None
        try:
            if not isinstance(row, dict) or "question" not in row:
                raise BadInputError('Each row must be a JSON object with a "question" field.')
            answer = self.ask(
                row["question"],
                k=k,
                mode=mode,
                filters=filters,
                event_aware=event_aware,
                use_generator=use_generator,
            )
        except (BadInputError, NotFoundError) as exc:
            return {
                "id": row_id,
                "answer": f"Error: {exc.message}",
                "sources": [],
                "num_docs": 0,
                "citations": [],
                "measurements": [],
                "withheld": [],
                "error": exc.message,
            }
        return {"id": row_id, **answer.prediction()}

    # --- answer kinds ------------------------------------------------------------------------

    def _generate(
        self, question: str, asked: Asked | None, extractive: Answer, hits: list[Hit]
    ) -> Answer:
        """The LLM's answer if it passes the grounding check, else the extractive one, marked."""
        from gcn_rag.answer.generators.base import ALL_WITHHELD, Context, screen
        from gcn_rag.answer.generators.grounding import grounding_problems
        from gcn_rag.errors import GcnRagError

        assert self.generator is not None
        name = getattr(self.generator, "name", type(self.generator).__name__)
        # the sentences the extractive answer cites first (they state the value), then the best
        # passage of each other top circular; one that carries instructions never reaches the LLM
        quotes = [
            Context(c.circular_id, c.event_id, c.subject, c.quote) for c in extractive.citations
        ]
        others = [Context(h.circular_id, h.event_id, h.subject, self._passage(h)) for h in hits]
        contexts, withheld = screen(quotes, others)
        extractive = dataclasses.replace(extractive, withheld=withheld)
        if not contexts:
            return dataclasses.replace(extractive, generator=name, generator_fallback=ALL_WITHHELD)
        try:
            text = self.generator.generate(question, contexts).strip()
        except GcnRagError as exc:
            return dataclasses.replace(
                extractive, generator=name, generator_fallback=f"generator failed: {exc.message}"
            )
        problems = grounding_problems(text, contexts) if self.grounding_check else []
        if self.grounding_check and asked is not None:
            wanted, got = first_value(extractive.answer), first_value(text)
            # within half the tolerance two reports may differ by (extraction.tolerance), so
            # an answer kept here is right whenever the extractive one is
            if wanted is not None and (
                got is None or abs(got - wanted) > tolerance(asked.quantity, wanted) / 2
            ):
                problems.append(f"does not lead with the stated value {wanted:g}")
        if not text:
            problems.append("empty answer")
        if problems:
            reason = "; ".join(problems)
            return dataclasses.replace(
                extractive, generator=name, generator_fallback=reason[:500], generated=text
            )
        return dataclasses.replace(extractive, answer=text, generator=name, generated=text)

    def _passage(self, hit: Hit) -> str:
        """The text the LLM reads for a hit: its best chunk, else the circular's first text."""
        if hit.best_chunk >= 0:
            return self.index.chunk_text(hit.best_chunk)
        for row in self.index.chunk_rows_of(hit.row):
            if self.index.chunk_kind(row) != "header":
                return self.index.chunk_text(row)
        return hit.subject

    def _abstain(self, question: str, events: list[str], num_docs: int) -> Answer:
        """Nothing in the corpus names the event: say so, cite nothing."""
        return Answer(question, f"{ABSTAIN} about {', '.join(events)}.", [], num_docs, [])

    def _value_answer(
        self, question: str, asked: Asked, events: list[str], hits: list[Hit], k: int
    ) -> Answer:
        evidence: list[Evidence] = []
        retracted = self.index.retracted_circulars()
        for hit in hits:
            if hit.circular_id in retracted:
                continue  # a later circular retracts this one: its values do not count
            texts = [hit.subject]  # subjects state values too ("confirmation of redshift z = 3.5")
            for row in self.index.chunk_rows_of(hit.row):
                chunk = self.index.chunk_text(row)
                if can_state(asked, chunk):  # split only chunks that can hold the value
                    texts.extend(sentences(chunk))
            for sentence in dict.fromkeys(texts):
                evidence.extend(find_values(asked, sentence, hit.subject, hit.row))
        values = [e for e in evidence if not e.limit]
        groups = group_values(asked.quantity, values)
        if not groups and evidence:  # only limits: no value, but not "not stated" either
            limits = group_values(asked.quantity, evidence)
            said = self._compose_value(question, asked, events[0], limits, hits, k)
            return dataclasses.replace(said, measurements=[])
        if not groups:
            broad = self._broad_answer(question, hits[:k])
            lead = f"The retrieved circulars about {events[0]} do not state its {asked.label}."
            return dataclasses.replace(broad, answer=f"{lead} {broad.answer}")
        named = asked.instrument
        if named and asked.by_instrument and all(e.instrument != named for e in values):
            # the asked instrument's value is not there: say so, then what others measured
            measured_by = groups[0].evidence[0].instrument
            others = dataclasses.replace(asked, instrument=measured_by, usual=False)
            answer = self._compose_value(question, others, events[0], groups, hits, k)
            lead = f"The retrieved circulars about {events[0]} do not state a {asked.label}."
            return dataclasses.replace(answer, answer=f"{lead} {answer.answer}")
        return self._compose_value(question, asked, events[0], groups, hits, k)

    def _compose_value(
        self,
        question: str,
        asked: Asked,
        event: str,
        groups: list[ValueGroup],
        hits: list[Hit],
        k: int,
    ) -> Answer:
        by_row = {hit.row: hit for hit in hits}
        quantity, best = asked.quantity, groups[0]
        # a second value counts as a disagreement when it is well supported on its own
        rivals = [
            g
            for g in groups[1:]
            if g.support >= 0.5 * best.support
            and abs(g.value - best.value) > tolerance(quantity, best.value)
        ][:1]
        shown = [best, *rivals]
        refs = [self._refs(g) for g in shown]
        said = [f"{quantity.prefix}{g.said(quantity.unit)}" for g in shown]
        if rivals:
            parts = [f"{s} ({r})" for s, r in zip(said, refs, strict=True)]
            text = f"Reported {asked.label} values for {event} differ: {' and '.join(parts)}."
        else:
            text = f"The {asked.label} of {event} is {said[0]} ({refs[0]})."
        citations: list[Citation] = []
        for group in shown:
            for ev in group.evidence:
                if len(citations) < k and all(
                    c.circular_id != self.index.circ_ids[ev.circular_row] for c in citations
                ):
                    citations.append(self._citation(by_row[ev.circular_row], ev.sentence))
        answer = self._finish(question, text, citations, len(hits))
        ids = [[float(self.index.circ_ids[row]) for row in group.rows] for group in shown]
        values = [
            {
                "quantity": quantity.key,
                "value": group.value,
                "unit": quantity.unit,
                "circular_id": circular_id_json(circulars[0]),
                "circulars": [circular_id_json(c) for c in circulars],
            }
            for group, circulars in zip(shown, ids, strict=True)
        ]
        return dataclasses.replace(answer, measurements=values)

    def _refs(self, group: ValueGroup) -> str:
        return "; ".join(gcn_ref(float(self.index.circ_ids[row])) for row in group.rows[:3])

    def _open_reply(self, question: str, event: str) -> Reply | None:
        """The dossier's answer to an open question about ``event`` (needs the measurements)."""
        if self.index.measurements is None:
            return None
        return answer_open(self.index, question, event)

    def _open_answer(self, question: str, reply: Reply, hits: list[Hit], k: int) -> Answer:
        scores = {hit.row: hit.score for hit in hits}
        citations = [
            Citation(
                circular_id=float(self.index.circ_ids[row]),
                event_id=self.index.event_ids[row],
                subject=self.index.subject(row),
                url=circular_url(float(self.index.circ_ids[row])),
                score=scores.get(row, 0.0),
                quote=_clip(quote),
            )
            for row, quote in reply.cited[:k]
        ]
        return self._finish(question, reply.text, citations, len(hits[:k]))

    def _broad_answer(self, question: str, hits: list[Hit]) -> Answer:
        if not hits:
            return Answer(question, f"{ABSTAIN} to answer this question.", [], 0, [])
        words = _content_words(question)
        citations = [self._citation(hit, self._best_sentence(hit, words)) for hit in hits]
        lines = [
            f"- {c.quote} (GCN {format_circular_id(c.circular_id)}"
            f"{', ' + c.event_id if c.event_id else ''})"
            for c in citations
        ]
        text = "From the GCN Circulars:\n" + "\n".join(lines)
        return self._finish(question, text, citations, len(hits))

    def _best_sentence(self, hit: Hit, words: set[str]) -> str:
        rows = [hit.best_chunk] if hit.best_chunk >= 0 else list(self.index.chunk_rows_of(hit.row))
        best, best_score = "", -1.0
        for row in rows:
            if self.index.chunk_kind(row) == "header":
                continue
            for sentence in sentences(self.index.chunk_text(row)):
                overlap = len(words & _content_words(sentence))
                score = overlap + (0.1 if len(sentence) < 400 else 0.0)
                if score > best_score:
                    best, best_score = sentence, score
        return _clip(best or hit.subject)

    def _citation(self, hit: Hit, quote: str) -> Citation:
        return Citation(
            circular_id=hit.circular_id,
            event_id=hit.event_id,
            subject=hit.subject,
            url=circular_url(hit.circular_id),
            score=hit.score,
            quote=_clip(quote),
        )

    @staticmethod
    def _finish(question: str, text: str, citations: list[Citation], num_docs: int) -> Answer:
        sources = sorted({c.event_id for c in citations if c.event_id})
        return Answer(question, text, sources, num_docs, citations)


_STOP = frozenset(
    "a an and are as at be by did do does for from has have how i in is it of on or that the "
    "their there these this to was were what when where which who why with".split()
)


def _joined(first: Answer, second: Answer) -> Answer:
    """Two value answers to one question, when the second states its value too."""
    if not second.measurements:
        return first
    cited = {c.circular_id for c in first.citations}
    more = [c for c in second.citations if c.circular_id not in cited]
    text, found = f"{first.answer} {second.answer}", first.measurements + second.measurements
    return dataclasses.replace(
        first, answer=text, citations=first.citations + more, measurements=found
    )


def _content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9][a-z0-9\-]+", text.lower()) if w not in _STOP}


def _clip(sentence: str, limit: int = 400) -> str:
    return sentence if len(sentence) <= limit else sentence[: limit - 1].rstrip() + "…"
