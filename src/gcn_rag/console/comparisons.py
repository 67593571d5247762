"""Recorded comparisons of two versions (``gcn-rag model compare``, ``model promote``) as the
Models page lists them and as one comparison's page shows it, read from the
``rag_model_comparisons`` table (:mod:`gcn_rag.model.comparisons`)."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime
from typing import Any

from gcn_rag.errors import NotFoundError
from gcn_rag.model.compare import Comparison, Paired
from gcn_rag.model.comparisons import TABLE
from gcn_rag.tables import Catalog

DASH = "\N{EN DASH}"  # where a value was not measured
LISTED = 20  # comparisons on the Models page, newest first
CHANGED_SHOWN = 200  # changed answers on a comparison's page
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # an MLflow run id (32 hex digits)


def when(moment: datetime | None) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if moment else ""


def share(value: float | None) -> str:
    """A share (accuracy, recall) as the pages print it; a dash when not measured."""
    return DASH if value is None else f"{value:.3f}"


def points(a: float | None, b: float | None) -> str:
    """B against A in points of share (+ B gains, - B loses)."""
    if a is None or b is None:
        return DASH
    return f"{(b - a) * 100:+.1f}"


def p_value(value: float | None) -> str:
    return DASH if value is None else f"{value:.3g}"


def ms(value: float | None) -> str:
    return DASH if value is None else f"{value:.1f} ms"


@dataclasses.dataclass(frozen=True)
class ComparisonRow:
    """One recorded comparison in the Models page's table; ``verdict`` is the decision of a
    promotion that used it ("" when none did)."""

    comparison_id: str
    compared_at: str
    version_a: str
    version_b: str
    ref_a: str
    ref_b: str
    items: int
    accuracy_a: str
    accuracy_b: str
    worst: str  # "-50.0 points in bench.jsonl/redshift", or "none" when B loses nowhere
    min_p: str
    p95_a: str
    p95_b: str
    verdict: str


def _worst(row: dict[str, Any]) -> str:
    drop = row["worst_drop"]
    if drop is None or drop <= 0:
        return "none"
    return f"{-drop * 100:+.1f} points in {row['worst_category']}"


def recent(catalog: Catalog, verdicts: dict[str, str], limit: int = LISTED) -> list[ComparisonRow]:
    """The newest ``limit`` comparisons (none when nothing was compared yet)."""
    if not catalog.exists(TABLE):
        return []
    table = catalog.name(TABLE)
    query = (
        "SELECT comparison_id, compared_at, version_a, version_b, ref_a, ref_b, items, "
        "accuracy_a, accuracy_b, worst_category, worst_drop, min_p_value, latency_a_p95_ms, "
        f"latency_b_p95_ms FROM {table} ORDER BY compared_at DESC LIMIT {int(limit)}"
    )
    return [
        ComparisonRow(
            comparison_id=str(row["comparison_id"]),
            compared_at=when(row["compared_at"]),
            version_a=str(row["version_a"]),
            version_b=str(row["version_b"]),
            ref_a=str(row["ref_a"] or ""),
            ref_b=str(row["ref_b"] or ""),
            items=int(row["items"] or 0),
            accuracy_a=share(row["accuracy_a"]),
            accuracy_b=share(row["accuracy_b"]),
            worst=_worst(row),
            min_p=p_value(row["min_p_value"]),
            p95_a=ms(row["latency_a_p95_ms"]),
            p95_b=ms(row["latency_b_p95_ms"]),
            verdict=verdicts.get(str(row["comparison_id"]), ""),
        )
        for row in catalog.sql(query, tables=[table]).to_pylist()
    ]


def one(catalog: Catalog, comparison_id: str) -> Comparison:
    """The comparison recorded as ``comparison_id``, whole; 404 when there is none."""
    missing = NotFoundError(
        f"No comparison {comparison_id!r} is recorded here; the Models page lists the ones "
        "there are (`gcn-rag model compare A B` records one)."
    )
    if not _ID.fullmatch(comparison_id) or not catalog.exists(TABLE):
        raise missing
    table = catalog.name(TABLE)
    query = f"SELECT result FROM {table} WHERE comparison_id = '{comparison_id}' LIMIT 1"
    rows = catalog.sql(query, tables=[table]).to_pylist()
    if not rows:
        raise missing
    return Comparison.from_dict(json.loads(rows[0]["result"]))


@dataclasses.dataclass(frozen=True)
class MetricView:
    """One paired metric of a category: both values, B - A in points, the McNemar p."""

    a: str
    b: str
    difference: str
    p_value: str
    flips: str  # "2 / 0": items only A got right / only B


def metric_view(paired: Paired | None) -> MetricView:
    if paired is None:
        return MetricView(DASH, DASH, DASH, DASH, DASH)
    return MetricView(
        share(paired.a),
        share(paired.b),
        points(paired.a, paired.b),
        p_value(paired.p_value),
        f"{paired.a_only} / {paired.b_only}",
    )


@dataclasses.dataclass(frozen=True)
class CategoryView:
    file: str
    category: str
    n: int
    accuracy: MetricView
    recall: MetricView
    loses: bool  # B loses accuracy or recall@5 here


def category_views(comparison: Comparison) -> list[CategoryView]:
    return [
        CategoryView(
            c.file,
            c.category,
            c.n,
            metric_view(c.accuracy),
            metric_view(c.recall),
            c.accuracy.drop > 0 or (c.recall is not None and c.recall.drop > 0),
        )
        for c in comparison.categories
    ]
