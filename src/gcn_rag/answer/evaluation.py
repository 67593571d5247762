"""Score the assistant on a GCN question set, with the same numbers as the benchmark's scorer.

A question set is JSONL, one question per line (``../shared/bench/dev.jsonl`` and its held-out
twin). The rules are the benchmark's (``../shared/bench/README.md``), reproduced here to the
last rounding digit so that ``gcn-rag eval`` and ``score.py`` never disagree:

- **accuracy**: the *first* number of the answer, once event names, circular references,
  dates, times, bracketed references and energy bands are blanked out, must be within
  tolerance of an accepted value: the item's ``tol`` (the broad format: relative or
  absolute), else ``max(0.01, 1%)`` for redshifts (and any category other than ``t90``) and
  10% for T90 durations. Fluences are read with their power of ten ("2.3E-07"). For
  ``unanswerable`` items it is an abstention phrase with no sources.
- **recall@5 / mrr@10**: the rank of the first cited circular that states an accepted value,
  over every item except ``unanswerable`` ones; **abstained**: the share of those answered
  with "no information".

The one deliberate difference: a cited ``circular_id`` given as a string (``"18453.5"``) is
read as the number it spells, where ``score.py`` would count it as a miss.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gcn_rag.answer.extraction import first_value, first_value_scientific
from gcn_rag.errors import BadInputError

if TYPE_CHECKING:
    import pyarrow as pa

    from gcn_rag.tables import Catalog

HISTORY_TABLE = "rag_evaluation_history"
UNANSWERABLE = "unanswerable"
#: Categories whose values are read with their power of ten (fluences, ~1e-7 erg/cm^2).
SCIENTIFIC = frozenset({"fluence", "paraphrase_fluence"})
T90 = "t90"
ALL = "all"  # the pooled row; reserved, so no item may use it as its category
RECALL_AT = 5
MRR_AT = 10

_ABSTENTION = re.compile(
    r"(don'?t|do not) have (sufficient|enough) information|no information (about|on)"
    r"|not (mentioned|found) in the (available )?(gcn )?circulars",
    re.IGNORECASE,
)


@dataclasses.dataclass(frozen=True)
class BenchItem:
    """One question of a question set; fields the scorer does not use are not kept."""

    id: str
    category: str  # redshift | t90 | paraphrase | unanswerable | anything else
    question: str
    answers: tuple[str, ...]  # accepted values, as written in the file
    relevant_circulars: tuple[float, ...]  # circulars that state an accepted value
    event_id: str | None = None
    name_aliases: tuple[str, ...] = ()
    tol: tuple[str, float] | None = None  # ("rel", 0.1) or ("abs", 0.5): the broad format's


@dataclasses.dataclass(frozen=True)
class ItemScore:
    """How one prediction fared; ``ranked`` items count toward recall@5 and mrr@10."""

    id: str
    category: str
    correct: bool
    answered: bool
    ranked: bool
    rank: int | None = None  # of the first relevant citation, within the first 10
    abstained: bool = False  # an answerable item answered "no information"


@dataclasses.dataclass(frozen=True)
class CategoryScore:
    """The scores of one category (or of ``all``), rounded to 3 decimals as ``score.py`` does.

    ``recall_at_5`` and ``mrr_at_10`` are None when no item of the category is ranked (a
    category of unanswerable questions only).
    """

    n: int
    accuracy: float
    answered: float
    recall_at_5: float | None
    mrr_at_10: float | None
    abstained: float | None = None  # share of answerable items answered "no information"


# --- the question file ---------------------------------------------------------------------


def load_items(path: Path) -> list[BenchItem]:
    """Read a question set; every problem names its file and line and stops the run."""
    items: list[BenchItem] = []
    first_seen: dict[str, int] = {}
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        item = _parse_item(line, where)
        if item.id in first_seen:
            raise BadInputError(
                f"{where}: id {item.id!r} is already used on line {first_seen[item.id]}; "
                "give every question its own id."
            )
        first_seen[item.id] = number
        items.append(item)
    if not items:
        raise BadInputError(f"{path} holds no questions; expected one JSON object per line.")
    return items


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise BadInputError(
            f"Question file {path} does not exist; pass a JSONL file such as "
            "../shared/bench/dev.jsonl."
        )
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"Cannot read {path} as UTF-8 text ({exc}); check the file.") from exc


def _parse_item(line: str, where: str) -> BenchItem:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadInputError(
            f"{where}: not valid JSON ({exc.msg}, column {exc.colno}); "
            "each line must be one JSON object."
        ) from None
    if not isinstance(record, dict):
        raise BadInputError(f"{where}: expected a JSON object, got {type(record).__name__}.")
    missing = [key for key in ("id", "question", "category") if not _text(record.get(key))]
    if missing:
        raise BadInputError(
            f"{where}: missing or empty {', '.join(missing)}; every question needs a string "
            "id, question and category."
        )
    if record["category"] == ALL:
        raise BadInputError(
            f"{where}: category {ALL!r} is reserved for the pooled score; rename the category."
        )
    event_id = record.get("event_id")
    return BenchItem(
        id=record["id"],
        category=record["category"],
        question=record["question"],
        answers=_answers(record.get("answers"), where),
        relevant_circulars=_relevant(record.get("relevant_circulars"), where),
        event_id=event_id if isinstance(event_id, str) else None,
        name_aliases=tuple(
            str(a) for a in _list(record.get("name_aliases"), "name_aliases", where)
        ),
        tol=_tol(record.get("tol"), where),
    )


def _tol(raw: Any, where: str) -> tuple[str, float] | None:
    if raw is None:
        return None
    kind = raw.get("type") if isinstance(raw, dict) else None
    value = _finite(raw.get("value")) if isinstance(raw, dict) else None
    if kind not in ("rel", "abs") or value is None or value < 0:
        raise BadInputError(
            f'{where}: tol must be {{"type": "rel" or "abs", "value": a number}}, got {raw!r}.'
        )
    return kind, value


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _answers(raw: Any, where: str) -> tuple[str, ...]:
    values = _list(raw, "answers", where)
    for value in values:
        if isinstance(value, bool) or _finite(value) is None:
            raise BadInputError(f'{where}: answer {value!r} is not a number; write it as "0.151".')
    return tuple(str(value) for value in values)


def _relevant(raw: Any, where: str) -> tuple[float, ...]:
    ids = [circular_number(value) for value in _list(raw, "relevant_circulars", where)]
    if None in ids:
        raise BadInputError(
            f"{where}: relevant_circulars must be circular numbers such as 32648 or 18453.5."
        )
    return tuple(i for i in ids if i is not None)


def _list(raw: Any, field: str, where: str) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise BadInputError(f"{where}: {field} must be a JSON list.")
    return raw


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def circular_number(value: Any) -> float | None:
    """A circular id as a number: ``32648``, ``32648.0`` and ``"32648"`` are the same circular."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    return _finite(value)


# --- one answer ------------------------------------------------------------------------------


def answer_value(item: BenchItem, answer: str) -> float | None:
    """The value an answer gives, read as the scorer reads it for the item's category."""
    if item.category in SCIENTIFIC:
        return first_value_scientific(answer)
    return first_value(answer)


def value_ok(item: BenchItem, value: float | None) -> bool:
    """Whether ``value`` is within tolerance of one of the item's accepted values."""
    if value is None:
        return False
    return any(abs(value - float(a)) <= _limit(item, float(a)) for a in item.answers)


def _limit(item: BenchItem, accepted: float) -> float:
    if item.tol is not None:  # the broad format says it
        kind, size = item.tol
        return size * abs(accepted) if kind == "rel" else size
    if item.category == T90:  # durations: 10%, no absolute floor
        return 0.10 * accepted
    return max(0.01, 0.01 * accepted)


def is_abstention(answer: str) -> bool:
    """Whether the answer says the circulars hold no information on the question."""
    return _ABSTENTION.search(answer) is not None


def has_sources(sources: Any) -> bool:
    """Whether a prediction lists sources; a JSON string is decoded, an undecodable one counts."""
    if isinstance(sources, str) and sources:
        try:
            sources = json.loads(sources)
        except ValueError:
            return True
    return bool(sources)


def first_relevant_rank(citations: Any, relevant: Sequence[float]) -> int | None:
    """The 1-based rank of the first relevant citation among the first 10, if any.

    Entries that are not objects are skipped before ranking; an object without a readable
    ``circular_id`` still takes its rank.
    """
    if not isinstance(citations, list | tuple):
        return None
    cited = [c.get("circular_id") for c in citations if isinstance(c, Mapping)]
    wanted = set(relevant)
    for rank, raw in enumerate(cited[:MRR_AT], start=1):
        if circular_number(raw) in wanted:
            return rank
    return None


def score_item(item: BenchItem, prediction: Mapping[str, Any]) -> ItemScore:
    """Score one prediction (``{}`` when the item was not answered)."""
    raw = prediction.get("answer") or ""
    answer = raw if isinstance(raw, str) else str(raw)
    answered = bool(prediction)
    if item.category == UNANSWERABLE:
        correct = is_abstention(answer) and not has_sources(prediction.get("sources"))
        return ItemScore(item.id, item.category, correct, answered, ranked=False)
    rank = first_relevant_rank(prediction.get("citations"), item.relevant_circulars)
    correct = value_ok(item, answer_value(item, answer))
    abstained = is_abstention(answer)
    return ItemScore(item.id, item.category, correct, answered, True, rank, abstained)


# --- a run -------------------------------------------------------------------------------------


def score(
    items: Sequence[BenchItem], predictions: Mapping[str, Mapping[str, Any]]
) -> dict[str, CategoryScore]:
    """Scores per category (sorted), then ``all``; items without a prediction score zero.

    ``predictions`` maps item ids to ``{"answer", "sources", "citations"}`` with citations in
    rank order; predictions for unknown ids are ignored. No items, no scores.
    """
    results = [score_item(item, predictions.get(item.id, {})) for item in items]
    groups: dict[str, list[ItemScore]] = {}
    for result in results:
        groups.setdefault(result.category, []).append(result)
    scores = {category: _aggregate(groups[category]) for category in sorted(groups)}
    if results:
        scores[ALL] = _aggregate(results)
    return scores


def _aggregate(results: Sequence[ItemScore]) -> CategoryScore:
    # Sums run in item order, as in score.py, so the rounded figures agree to the last digit.
    n = len(results)
    ranked = [r for r in results if r.ranked]
    recall = mrr = abstained = None
    if ranked:
        hits = sum(r.rank is not None and r.rank <= RECALL_AT for r in ranked)
        recall = round(hits / len(ranked), 3)
        mrr = round(sum(1 / r.rank if r.rank else 0.0 for r in ranked) / len(ranked), 3)
        abstained = round(sum(r.abstained for r in ranked) / len(ranked), 3)
    return CategoryScore(
        n=n,
        accuracy=round(sum(r.correct for r in results) / n, 3),
        answered=round(sum(r.answered for r in results) / n, 3),
        recall_at_5=recall,
        mrr_at_10=mrr,
        abstained=abstained,
    )


def scores_table(scores: Mapping[str, CategoryScore]) -> list[dict[str, Any]]:
    """One row per category for printing, with the column names of ``score.py``."""
    return [
        {
            "category": category,
            "n": s.n,
            "accuracy": s.accuracy,
            "answered": s.answered,
            "recall@5": s.recall_at_5,
            "mrr@10": s.mrr_at_10,
            "abstained": s.abstained,
        }
        for category, s in scores.items()
    ]


# --- history ---------------------------------------------------------------------------------


def history_schema() -> pa.Schema:
    """``rag_evaluation_history``: one row per category per run; append-only.

    ``recall_at_5``/``mrr_at_10`` are null for categories without ranked items; ``config``
    is the run's settings as a JSON object of strings, so runs can be compared by setting.
    """
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("run_id", pa.string(), nullable=False),
            pa.field("evaluated_at", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field("questions_file", pa.string(), nullable=False),
            pa.field("category", pa.string(), nullable=False),
            pa.field("n", pa.int64(), nullable=False),
            pa.field("accuracy", pa.float64(), nullable=False),
            pa.field("answered", pa.float64(), nullable=False),
            pa.field("recall_at_5", pa.float64()),
            pa.field("mrr_at_10", pa.float64()),
            pa.field("config", pa.string(), nullable=False),
        ]
    )


def write_history(
    catalog: Catalog,
    scores: Mapping[str, CategoryScore],
    *,
    run_id: str,
    questions_file: str,
    config: Mapping[str, str],
) -> None:
    """Append one row per category of ``scores`` to ``rag_evaluation_history``, in one commit."""
    import pyarrow as pa

    if not scores:
        return
    evaluated_at = datetime.now(UTC)
    settings = json.dumps(dict(config), sort_keys=True)
    rows = [
        {
            "run_id": run_id,
            "evaluated_at": evaluated_at,
            "questions_file": questions_file,
            "category": category,
            "n": s.n,
            "accuracy": s.accuracy,
            "answered": s.answered,
            "recall_at_5": s.recall_at_5,
            "mrr_at_10": s.mrr_at_10,
            "config": settings,
        }
        for category, s in scores.items()
    ]
    catalog.append(HISTORY_TABLE, pa.Table.from_pylist(rows, schema=history_schema()))


def flat_metrics(scores: Mapping[str, CategoryScore]) -> dict[str, float]:
    """Scores as flat metric names for MLflow: ``redshift_accuracy``, ``all_recall_at_5``..."""
    metrics: dict[str, float] = {}
    for category, s in scores.items():
        metrics[f"{category}_accuracy"] = s.accuracy
        if s.recall_at_5 is not None:
            metrics[f"{category}_recall_at_5"] = s.recall_at_5
        if s.mrr_at_10 is not None:
            metrics[f"{category}_mrr_at_10"] = s.mrr_at_10
    return metrics
