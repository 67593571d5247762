"""Two registered versions side by side, offline: bench scores, paired tests, latency, replay.

Both versions are loaded from the registry as MLflow PyFunc models (what a server would load)
and asked every question of each bench file (``../shared/bench/*.jsonl`` or any file of that
format), one question per ``predict`` call, alternating which version goes first so neither
gets the warmer cache. Answers are scored with :mod:`gcn_rag.answer.evaluation` (the bench
scorer's rules); per bench file and category the comparison gives accuracy and recall@5 of
both, and for each a **paired test**: the items one version gets right and the other wrong
(the discordant pairs) under an exact McNemar test (a two-sided binomial test of the
discordant counts against 1/2). Latency is the time of each ``predict`` call (p50/p95 over
every question asked). Questions replayed from an endpoint's inference table have no key, so
they count only how many answers changed, and which.

:mod:`gcn_rag.model.comparisons` records a comparison; :mod:`gcn_rag.model.gate` decides a
promotion from one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gcn_rag.answer.evaluation import ALL, BenchItem, load_items, score, score_item
from gcn_rag.errors import BadInputError
from gcn_rag.progress import SILENT, Reporter
from gcn_rag.stats import percentile

if TYPE_CHECKING:
    from gcn_rag.settings import Settings

#: Where bench files are looked for when none is given (beside the checkout, as the
#: development sets are).
DEFAULT_BENCH = Path("../shared/bench")


def bench_files(given: Sequence[Path] = ()) -> list[Path]:
    """The files given, else every ``*.jsonl`` of :data:`DEFAULT_BENCH` (none when absent)."""
    if given:
        return list(given)
    return sorted(DEFAULT_BENCH.glob("*.jsonl")) if DEFAULT_BENCH.is_dir() else []


def bench_digest(paths: Sequence[Path]) -> str:
    """What the bench files hold (names and contents), so a comparison can be reused only on
    the same questions."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def exact_mcnemar(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value: the chance, if both versions were equally good, of a
    split of the discordant items at least this uneven (binomial, p = 1/2). 1.0 with no
    discordant item."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(a_only, b_only) + 1)) / float(1 << n)
    return min(1.0, 2 * tail)


@dataclasses.dataclass(frozen=True)
class Paired:
    """One metric of one category for both versions, and the paired test on it."""

    a: float | None  # the metric (accuracy or recall@5) of version A, as the scorer rounds it
    b: float | None
    a_only: int  # items A gets right (or ranks in the top 5) and B does not
    b_only: int
    p_value: float  # exact McNemar on a_only vs b_only

    @property
    def drop(self) -> float:
        """How much B loses against A, in points of share (0.05 = 5 points); negative: gains."""
        return (self.a or 0.0) - (self.b or 0.0)


@dataclasses.dataclass(frozen=True)
class CategoryResult:
    """One category of one bench file (``category == "all"``: the file pooled)."""

    file: str  # the bench file's name
    category: str
    n: int
    accuracy: Paired
    recall: Paired | None  # None for categories with no ranked item (unanswerable)

    def row(self) -> dict[str, Any]:
        """The category as one row of ``gcn-rag model compare``."""
        recall = self.recall
        return {
            "file": self.file,
            "category": self.category,
            "n": self.n,
            "acc A": self.accuracy.a,
            "acc B": self.accuracy.b,
            "A only": self.accuracy.a_only,
            "B only": self.accuracy.b_only,
            "p (acc)": round(self.accuracy.p_value, 4),
            "r@5 A": recall.a if recall else None,
            "r@5 B": recall.b if recall else None,
            "p (r@5)": round(recall.p_value, 4) if recall else None,
        }


@dataclasses.dataclass(frozen=True)
class Latency:
    p50_ms: float
    p95_ms: float
    n: int


@dataclasses.dataclass(frozen=True)
class Changed:
    """A replayed question whose answer differs between the versions."""

    question: str
    answer_a: str
    answer_b: str


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Version A against version B; ``comparison_id`` is the MLflow run once recorded."""

    model_name: str
    version_a: str
    version_b: str
    ref_a: str
    ref_b: str
    bench: tuple[str, ...]  # the bench files' paths as given
    bench_digest: str
    categories: tuple[CategoryResult, ...]
    latency_a: Latency
    latency_b: Latency
    replay_source: str = ""  # "<endpoint> (<table>)" when requests were replayed
    replayed: int = 0
    changed: tuple[Changed, ...] = ()
    compared_at: datetime = dataclasses.field(default_factory=lambda: datetime.now(UTC))
    comparison_id: str = ""

    @property
    def items(self) -> int:
        """Bench items asked (each file's pooled row counts them once)."""
        return sum(c.n for c in self.categories if c.category == ALL)

    def latency_rows(self) -> list[dict[str, Any]]:
        return [
            {"version": f"A = {self.version_a}", "requests": self.latency_a.n,
             "p50 ms": round(self.latency_a.p50_ms, 1), "p95 ms": round(self.latency_a.p95_ms, 1)},
            {"version": f"B = {self.version_b}", "requests": self.latency_b.n,
             "p50 ms": round(self.latency_b.p50_ms, 1), "p95 ms": round(self.latency_b.p95_ms, 1)},
        ]  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (``--json``, the MLflow artifact, the table's ``result``)."""
        out = dataclasses.asdict(self)
        out["compared_at"] = self.compared_at.isoformat()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Comparison:
        """The inverse of :meth:`to_dict`."""

        def paired(raw: dict[str, Any] | None) -> Paired | None:
            return Paired(**raw) if raw is not None else None

        categories = tuple(
            CategoryResult(
                file=c["file"],
                category=c["category"],
                n=c["n"],
                accuracy=Paired(**c["accuracy"]),
                recall=paired(c["recall"]),
            )
            for c in data["categories"]
        )
        return cls(
            **{
                **data,
                "bench": tuple(data["bench"]),
                "categories": categories,
                "latency_a": Latency(**data["latency_a"]),
                "latency_b": Latency(**data["latency_b"]),
                "changed": tuple(Changed(**c) for c in data["changed"]),
                "compared_at": datetime.fromisoformat(data["compared_at"]),
            }
        )


# --- running ---------------------------------------------------------------------------------


class _Timed:
    """A loaded version, timing each ``predict`` call."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.latencies_ms: list[float] = []

    def ask(self, question: str) -> dict[str, Any]:
        """The prediction for one question, as the scorer reads it (citations decoded)."""
        import pandas as pd

        start = time.perf_counter()
        frame = self.model.predict(pd.DataFrame({"question": [question]}))
        self.latencies_ms.append((time.perf_counter() - start) * 1000)
        row = frame.iloc[0].to_dict()
        citations = row.get("citations")
        if isinstance(citations, str):
            try:
                row["citations"] = json.loads(citations)
            except ValueError:
                row["citations"] = []
        return dict(row)

    def latency(self) -> Latency:
        found = self.latencies_ms
        return Latency(percentile(found, 0.5), percentile(found, 0.95), len(found))


def _ask_both(pair: tuple[_Timed, _Timed], question: str, turn: int) -> tuple[dict[str, Any], ...]:
    """Both versions' predictions; which goes first alternates with ``turn``."""
    first, second = (pair[0], pair[1]) if turn % 2 == 0 else (pair[1], pair[0])
    one, two = first.ask(question), second.ask(question)
    return (one, two) if turn % 2 == 0 else (two, one)


def _paired(
    a: Sequence[bool], b: Sequence[bool], share_a: float | None, share_b: float | None
) -> Paired:
    a_only = sum(x and not y for x, y in zip(a, b, strict=True))
    b_only = sum(y and not x for x, y in zip(a, b, strict=True))
    return Paired(share_a, share_b, a_only, b_only, exact_mcnemar(a_only, b_only))


def _categories(
    name: str, items: Sequence[BenchItem], predicted: tuple[dict[str, Any], dict[str, Any]]
) -> list[CategoryResult]:
    """Per category (and ``all``) of one file: scores as the scorer gives them, paired tests."""
    scores = [score(items, p) for p in predicted]
    results = []
    for category in scores[0]:
        chosen = [i for i in items if category in (ALL, i.category)]
        marks = [[score_item(i, p.get(i.id, {})) for i in chosen] for p in predicted]
        accuracy = _paired(
            [m.correct for m in marks[0]], [m.correct for m in marks[1]],
            scores[0][category].accuracy, scores[1][category].accuracy,
        )  # fmt: skip
        ranked = [(x, y) for x, y in zip(*marks, strict=True) if x.ranked]
        recall = None
        if ranked:
            hits = [
                [m.rank is not None and m.rank <= 5 for m in side]
                for side in zip(*ranked, strict=True)
            ]
            recall = _paired(
                hits[0], hits[1], scores[0][category].recall_at_5, scores[1][category].recall_at_5
            )
        results.append(CategoryResult(name, category, len(chosen), accuracy, recall))
    return results


def run_bench(
    pair: tuple[Any, Any], path: Path, reporter: Reporter = SILENT
) -> list[CategoryResult]:
    """Both loaded versions on one bench file, scored per category."""
    items = load_items(path)
    timed = (pair[0], pair[1])
    predicted: tuple[dict[str, Any], dict[str, Any]] = ({}, {})
    task = reporter.task(f"Comparing on {path.name}", len(items))
    try:
        for turn, item in enumerate(items):
            one, two = _ask_both(timed, item.question, turn)
            predicted[0][item.id], predicted[1][item.id] = one, two
            task.advance()
    finally:
        task.close()
    return _categories(path.name, items, predicted)


def run_replay(
    pair: tuple[Any, Any], questions: Sequence[str], reporter: Reporter = SILENT
) -> list[Changed]:
    """Both versions on replayed questions; the ones whose answers differ."""
    changed: list[Changed] = []
    if not questions:
        return changed
    task = reporter.task("Replaying requests", len(questions))
    try:
        for turn, question in enumerate(questions):
            one, two = _ask_both(pair, question, turn)
            if str(one.get("answer", "")) != str(two.get("answer", "")):
                changed.append(Changed(question, str(one["answer"]), str(two["answer"])))
            task.advance()
    finally:
        task.close()
    return changed


def compare(
    settings: Settings,
    ref_a: str,
    ref_b: str,
    *,
    bench: Sequence[Path] = (),
    replay: Sequence[str] = (),
    replay_source: str = "",
    reporter: Reporter = SILENT,
) -> Comparison:
    """Load versions ``ref_a`` and ``ref_b`` (numbers or aliases) from the registry and run
    both on every bench file and on the ``replay`` questions (nothing is recorded)."""
    from gcn_rag.model import registry

    a, b = registry.resolve(settings, ref_a), registry.resolve(settings, ref_b)
    if a.version == b.version:
        raise BadInputError(
            f"{ref_a} and {ref_b} are both version {a.version}; compare two different versions."
        )
    if not bench and not replay:
        raise BadInputError(
            f"Nothing to compare on: no bench file found in {DEFAULT_BENCH}/ and no replay; "
            "pass --bench FILE.jsonl or --replay N --endpoint NAME."
        )
    load = registry.mlflow_loader(registry.tracking_uri(settings))
    task = reporter.task(f"Loading versions {a.version} and {b.version}", None)
    try:
        pair = (_Timed(load(a.name, a.version)), _Timed(load(b.name, b.version)))
    finally:
        task.close()
    categories = [row for path in bench for row in run_bench(pair, path, reporter)]
    changed = run_replay(pair, replay, reporter)
    return Comparison(
        model_name=a.name,
        version_a=a.version,
        version_b=b.version,
        ref_a=ref_a,
        ref_b=ref_b,
        bench=tuple(str(path) for path in bench),
        bench_digest=bench_digest(bench),
        categories=tuple(categories),
        latency_a=pair[0].latency(),
        latency_b=pair[1].latency(),
        replay_source=replay_source,
        replayed=len(replay),
        changed=tuple(changed),
    )
