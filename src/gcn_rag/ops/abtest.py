"""A/B on live traffic: each arm of an endpoint, side by side with 95% intervals, and a verdict.

An *arm* is a served entity's live requests, or its shadow (mirrored) requests: a row whose
``logging_error_codes`` hold ``SHADOW`` is the mirrored copy of a caller's request, answered by
that entity and never returned, so it forms its own arm (``<entity> (shadow)``) and never
counts in the entity's live arm. Per arm, from the inference table's rows over a window:

- requests, and the error rate (status not 200) over all of them;
- latency p50/p95/p99 (``execution_duration_ms``) of the successful ones;
- over the answers of successful requests (one per prediction): the abstention rate
  (:func:`gcn_rag.answer.evaluation.is_abstention`), the generator fallback rate (a
  ``generator_fallback`` reason given), and the no-citation rate (of the answers that do not
  abstain, those with no citations);
- the positive share of the requests rated in the ``rag_feedback`` table (the newest rating of
  a request counts), joined on ``databricks_request_id``.

Each proportion carries its Wilson interval. Each arm is compared with the reference arm (the
live arm with the most requests, or one named): the difference of each proportion with
Newcombe's interval, of latency p50 and p95 with a seeded bootstrap interval. The verdict is
"worse" or "better" when the interval excludes 0, else "no measurable difference" ("no data"
when a side has nothing to measure). Samples are taken as independent, which is exact for
arms of a traffic split and conservative for a shadow arm against its primary.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import TYPE_CHECKING, Any

from gcn_rag.answer.evaluation import has_sources, is_abstention
from gcn_rag.errors import BadInputError
from gcn_rag.ops.monitor import endpoint_is, payload_query
from gcn_rag.stats import bootstrap_difference, newcombe, percentile, wilson

if TYPE_CHECKING:
    from gcn_rag.tables import Catalog

FEEDBACK_TABLE = "rag_feedback"
SHADOW = "SHADOW"  # in logging_error_codes: a mirrored request, never returned to the caller
WORSE, BETTER, SAME, NO_DATA = "worse", "better", "no measurable difference", "no data"
NO_FEEDBACK = "no feedback yet"


@dataclasses.dataclass(frozen=True)
class Rate:
    """A proportion ``hits / total`` with its 95% Wilson interval."""

    hits: int
    total: int

    @property
    def value(self) -> float:
        return self.hits / self.total if self.total else math.nan

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.hits, self.total)

    def text(self) -> str:
        if not self.total:
            return "-"
        low, high = self.interval
        return f"{self.value:.1%} [{low:.1%}, {high:.1%}] ({self.hits}/{self.total})"

    def to_dict(self) -> dict[str, Any]:
        low, high = self.interval
        return {
            "hits": self.hits,
            "total": self.total,
            "rate": self.value,
            "low": low,
            "high": high,
        }


@dataclasses.dataclass(frozen=True)
class Arm:
    """One served entity's live requests, or its shadow requests, over the window."""

    label: str
    entity: str
    shadow: bool
    requests: int
    errors: Rate
    abstentions: Rate
    fallbacks: Rate
    uncited: Rate
    feedback: Rate  # positive ratings of the rated requests
    latency_ms: tuple[float, ...]  # of the successful requests

    def to_dict(self) -> dict[str, Any]:
        rates = {m.key: getattr(self, m.key).to_dict() for m in METRICS if m.quantile is None}
        latency = {f"p{round(q * 100)}": percentile(self.latency_ms, q) for q in QUANTILES}
        return {
            "label": self.label,
            "entity": self.entity,
            "shadow": self.shadow,
            "requests": self.requests,
            **rates,
            "latency_ms": {**latency, "n": len(self.latency_ms)},
        }


@dataclasses.dataclass(frozen=True)
class Metric:
    """A figure of an arm: a proportion (``key`` names the arm's :class:`Rate`) or a latency
    quantile; ``compared``: whether arms are compared on it."""

    name: str
    key: str
    higher_is_worse: bool = True
    quantile: float | None = None
    compared: bool = True

    def cell(self, arm: Arm, feedback: bool) -> str:
        if self.quantile is not None:
            value = percentile(arm.latency_ms, self.quantile)
            return "-" if math.isnan(value) else f"{value:.1f}"
        if self.key == "feedback" and not arm.feedback.total:
            return NO_FEEDBACK if not feedback else "no ratings"
        return str(getattr(arm, self.key).text())


QUANTILES = (0.5, 0.95, 0.99)
METRICS = (
    Metric("error rate", "errors"),
    Metric("latency p50 ms", "latency", quantile=0.5),
    Metric("latency p95 ms", "latency", quantile=0.95),
    Metric("latency p99 ms", "latency", quantile=0.99, compared=False),
    Metric("abstention rate", "abstentions"),
    Metric("generator fallback rate", "fallbacks"),
    Metric("no-citation rate", "uncited"),
    Metric("positive feedback", "feedback", higher_is_worse=False),
)


@dataclasses.dataclass(frozen=True)
class Difference:
    """``arm`` minus ``reference`` on one metric, with its 95% interval and the verdict."""

    arm: str
    reference: str
    metric: str
    value: float
    low: float
    high: float
    verdict: str

    def text(self, percent: bool) -> str:
        if self.verdict == NO_DATA:
            return NO_DATA
        if percent:
            scaled = [100 * v for v in (self.value, self.low, self.high)]
            return f"{scaled[0]:+.1f} pp [{scaled[1]:+.1f}, {scaled[2]:+.1f}] {self.verdict}"
        return f"{self.value:+.1f} ms [{self.low:+.1f}, {self.high:+.1f}] {self.verdict}"


def verdict(low: float, high: float, higher_is_worse: bool = True) -> str:
    """ "worse"/"better" when the interval of (arm - reference) excludes 0, else no difference."""
    if math.isnan(low) or math.isnan(high):
        return NO_DATA
    if low > 0:
        return WORSE if higher_is_worse else BETTER
    if high < 0:
        return BETTER if higher_is_worse else WORSE
    return SAME


def compare(arm: Arm, reference: Arm, *, seed: int = 0) -> tuple[Difference, ...]:
    """``arm`` against ``reference`` on every compared metric."""
    timed = [m for m in METRICS if m.compared and m.quantile is not None]
    latency = bootstrap_difference(
        arm.latency_ms, reference.latency_ms, [m.quantile or 0.0 for m in timed], seed=seed
    )
    intervals = dict(zip((m.name for m in timed), latency, strict=True))
    found = []
    for metric in METRICS:
        if not metric.compared:
            continue
        if metric.name in intervals:
            d, low, high = intervals[metric.name]
        else:
            mine, theirs = getattr(arm, metric.key), getattr(reference, metric.key)
            d, low, high = newcombe(mine.hits, mine.total, theirs.hits, theirs.total)
        judged = verdict(low, high, metric.higher_is_worse)
        found.append(Difference(arm.label, reference.label, metric.name, d, low, high, judged))
    return tuple(found)


@dataclasses.dataclass(frozen=True)
class ABTest:
    """An endpoint's arms over a window, each compared with the reference arm."""

    endpoint: str
    reference: str
    arms: tuple[Arm, ...]
    differences: tuple[Difference, ...]
    feedback: bool  # whether the feedback table exists

    def rows(self) -> list[dict[str, str]]:
        """One row per metric: each arm's figure, then each other arm's difference."""
        others = [a.label for a in self.arms if a.label != self.reference]
        by = {(d.arm, d.metric): d for d in self.differences}
        rows = [
            {"metric": "requests", **{_head(a.label, self): str(a.requests) for a in self.arms}}
            | {f"{o} vs {self.reference}": "" for o in others}
        ]
        for metric in METRICS:
            row = {"metric": metric.name}
            row |= {_head(a.label, self): metric.cell(a, self.feedback) for a in self.arms}
            for other in others:
                found = by.get((other, metric.name))
                text = found.text(metric.quantile is None) if found else ""
                if metric.key == "feedback" and not self.feedback:
                    text = NO_FEEDBACK
                row[f"{other} vs {self.reference}"] = text
            rows.append(row)
        return rows

    def lines(self) -> list[dict[str, Any]]:
        """The arms and differences as JSON objects, each with a ``kind``."""
        arms = [
            {"kind": "arm", "endpoint": self.endpoint, **a.to_dict()}
            | {"is_reference": a.label == self.reference, "feedback_table": self.feedback}
            for a in self.arms
        ]
        diffs = [
            {"kind": "difference", "endpoint": self.endpoint, **dataclasses.asdict(d)}
            for d in self.differences
        ]
        return arms + diffs


def _head(label: str, test: ABTest) -> str:
    return f"{label} (reference)" if label == test.reference else label


@dataclasses.dataclass
class _Tally:
    """Counts of one arm while the rows are read."""

    requests: int = 0
    errors: int = 0
    latency: list[float] = dataclasses.field(default_factory=list)
    answers: int = 0
    abstentions: int = 0
    fallbacks: int = 0
    answering: int = 0  # answers that do not abstain
    uncited: int = 0
    rated: int = 0
    positive: int = 0

    def add(self, row: dict[str, Any], rating: bool | None) -> None:
        self.requests += 1
        if rating is not None:
            self.rated += 1
            self.positive += rating
        if row["status_code"] != 200:
            self.errors += 1
            return
        self.latency.append(float(row["execution_duration_ms"] or 0))
        for prediction in _predictions(row["response"]):
            self.answers += 1
            abstains = is_abstention(str(prediction.get("answer") or ""))
            self.abstentions += abstains
            self.fallbacks += bool(prediction.get("generator_fallback"))
            if not abstains:
                self.answering += 1
                self.uncited += not _cites(prediction.get("citations"))

    def arm(self, label: str, entity: str, shadow: bool) -> Arm:
        return Arm(
            label=label,
            entity=entity,
            shadow=shadow,
            requests=self.requests,
            errors=Rate(self.errors, self.requests),
            abstentions=Rate(self.abstentions, self.answers),
            fallbacks=Rate(self.fallbacks, self.answers),
            uncited=Rate(self.uncited, self.answering),
            feedback=Rate(self.positive, self.rated),
            latency_ms=tuple(self.latency),
        )


def _cites(citations: Any) -> bool:
    """Whether a prediction cites anything: its citations as a JSON text (decoded only when
    it is not plainly empty: decoding every row's would double the cost) or as a list."""
    if isinstance(citations, str) and "".join(citations.split()) in ("", "[]", "null"):
        return False
    return has_sources(citations)


def _predictions(response: str | None) -> list[dict[str, Any]]:
    """The prediction objects of a captured response body (none when it is not one)."""
    try:
        body = json.loads(response or "")
    except ValueError:
        return []
    found = body.get("predictions") if isinstance(body, dict) else None
    return [p for p in found if isinstance(p, dict)] if isinstance(found, list) else []


def ratings(catalog: Catalog, endpoint: str) -> dict[str, bool] | None:
    """Per request id, whether its newest rating is positive (None: no feedback table)."""
    name = catalog.name(FEEDBACK_TABLE)
    if not catalog.exists(name):
        return None
    query = (
        f"SELECT databricks_request_id, rating FROM {name} WHERE {endpoint_is(endpoint)} "
        "AND rating IN ('positive', 'negative') ORDER BY timestamp_ms"
    )
    rows = catalog.sql(query, tables=[name]).to_pylist()
    return {str(r["databricks_request_id"]): r["rating"] == "positive" for r in rows}


def has_shadow(catalog: Catalog, table: str, endpoint: str, *, since_ms: int) -> bool:
    """Whether ``endpoint`` has shadow rows in ``table`` since ``since_ms`` (a cheap look
    before the whole comparison; False when the table does not exist)."""
    if not catalog.exists(catalog.name(table)):
        return False
    codes = payload_query(
        catalog, table, "logging_error_codes", endpoint=endpoint, since_ms=since_ms
    )
    query = (
        f"SELECT count(*) AS n FROM ({codes}) WHERE list_contains(logging_error_codes, '{SHADOW}')"
    )
    return bool(catalog.sql(query, tables=[table]).column("n")[0].as_py())


def ab_test(
    catalog: Catalog,
    table: str,
    endpoint: str,
    *,
    since_ms: int | None = None,
    reference: str | None = None,
    seed: int = 0,
) -> ABTest:
    """The A/B comparison of ``endpoint``'s arms in the payload table ``table``."""
    columns = (
        "databricks_request_id, served_entity_id, status_code, execution_duration_ms, "
        "response, logging_error_codes"
    )
    query = payload_query(catalog, table, columns, endpoint=endpoint, since_ms=since_ms)
    rated = ratings(catalog, endpoint)
    tallies: dict[tuple[str, bool], _Tally] = {}
    for row in catalog.sql(query, tables=[table]).to_pylist():
        shadow = SHADOW in (row["logging_error_codes"] or ())
        key = (str(row["served_entity_id"] or "(none)"), shadow)
        rating = (rated or {}).get(str(row["databricks_request_id"]))
        tallies.setdefault(key, _Tally()).add(row, None if shadow else rating)
    arms = tuple(
        t.arm(f"{entity} (shadow)" if shadow else entity, entity, shadow)
        for (entity, shadow), t in sorted(tallies.items())
    )
    chosen = _reference(arms, reference)
    if chosen is None:
        return ABTest(endpoint, "", arms, (), rated is not None)
    differences = tuple(
        d for arm in arms if arm is not chosen for d in compare(arm, chosen, seed=seed)
    )
    return ABTest(endpoint, chosen.label, arms, differences, rated is not None)


def _reference(arms: tuple[Arm, ...], named: str | None) -> Arm | None:
    """The arm called ``named`` (its label, or the entity's live arm), else the live arm with
    the most requests (None: no arms)."""
    if named is not None:
        for arm in sorted(arms, key=lambda a: a.label != named):  # an exact label first
            if arm.label == named or (arm.entity == named and not arm.shadow):
                return arm
        known = ", ".join(a.label for a in arms) or "none in this window"
        raise BadInputError(f"No arm {named!r} to compare with; the arms are: {known}.")
    live = [a for a in arms if not a.shadow] or list(arms)
    return min(live, key=lambda a: (-a.requests, a.label), default=None)
