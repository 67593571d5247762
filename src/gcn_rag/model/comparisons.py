"""Where a comparison of two versions is kept: an MLflow run, tags on both versions, a row.

- **MLflow run** in experiment ``nasa_gcn_rag_model``, named ``compare <A> vs <B>``, tagged
  ``gcn_rag.compare.version_a``/``version_b``; its metrics are per bench file and category
  (``dev.redshift.accuracy_a``, ``….p_accuracy``…) and latency; ``comparison.json`` holds the
  whole comparison, changed answers included.
- **Version tags**: ``gcn_rag.compared_with.<other version>`` = the run id, on both versions.
- **Table** ``rag_model_comparisons`` (in the workspace's catalog and schema, beside the other
  ``rag_*`` tables; append-only): one row per comparison, with headline columns for SQL and
  ``result``, the comparison as JSON (:meth:`Comparison.to_dict`).

:func:`fresh` finds a recorded comparison that ``gcn-rag model promote`` may reuse.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from gcn_rag.answer.evaluation import ALL
from gcn_rag.model import registry
from gcn_rag.model.compare import Comparison, bench_digest, compare
from gcn_rag.progress import SILENT, Reporter

if TYPE_CHECKING:
    from pathlib import Path

    import pyarrow as pa

    from gcn_rag.settings import Settings

TABLE = "rag_model_comparisons"
TAG_PREFIX = "gcn_rag.compared_with."


def table_schema() -> pa.Schema:
    """``rag_model_comparisons``: one row per comparison (A is the reference, B the candidate).

    ``accuracy_a``/``accuracy_b`` pool every bench item; ``worst_category`` is the
    ``file/category`` where B loses most accuracy against A (``worst_drop``, a share; <= 0
    when B loses nowhere) and ``min_p_value`` the smallest McNemar p over categories.
    """
    import pyarrow as pa

    utc = pa.timestamp("us", tz="UTC")
    text, number, count = pa.string(), pa.float64(), pa.int64()
    return pa.schema(
        [
            pa.field("comparison_id", text, nullable=False),
            pa.field("compared_at", utc, nullable=False),
            ("model_name", text),
            ("version_a", text),
            ("version_b", text),
            ("ref_a", text),
            ("ref_b", text),
            ("bench_files", text),
            ("bench_digest", text),
            ("items", count),
            ("accuracy_a", number),
            ("accuracy_b", number),
            ("worst_category", text),
            ("worst_drop", number),
            ("min_p_value", number),
            ("latency_a_p50_ms", number),
            ("latency_a_p95_ms", number),
            ("latency_b_p50_ms", number),
            ("latency_b_p95_ms", number),
            ("replay_source", text),
            ("replayed", count),
            ("replay_changed", count),
            ("result", text),
        ]
    )


def _pooled(comparison: Comparison, side: str) -> float | None:
    pooled = [c for c in comparison.categories if c.category == ALL]
    n = sum(c.n for c in pooled)
    if not n:
        return None
    return round(sum(c.n * (getattr(c.accuracy, side) or 0.0) for c in pooled) / n, 4)


def table_row(comparison: Comparison) -> dict[str, Any]:
    """The comparison as a row of :func:`table_schema`."""
    worst = max(comparison.categories, key=lambda c: c.accuracy.drop, default=None)
    return {
        "comparison_id": comparison.comparison_id,
        "compared_at": comparison.compared_at,
        "model_name": comparison.model_name,
        "version_a": comparison.version_a,
        "version_b": comparison.version_b,
        "ref_a": comparison.ref_a,
        "ref_b": comparison.ref_b,
        "bench_files": json.dumps(list(comparison.bench)),
        "bench_digest": comparison.bench_digest,
        "items": comparison.items,
        "accuracy_a": _pooled(comparison, "a"),
        "accuracy_b": _pooled(comparison, "b"),
        "worst_category": f"{worst.file}/{worst.category}" if worst else None,
        "worst_drop": round(worst.accuracy.drop, 4) if worst else None,
        "min_p_value": min((c.accuracy.p_value for c in comparison.categories), default=None),
        "latency_a_p50_ms": comparison.latency_a.p50_ms,
        "latency_a_p95_ms": comparison.latency_a.p95_ms,
        "latency_b_p50_ms": comparison.latency_b.p50_ms,
        "latency_b_p95_ms": comparison.latency_b.p95_ms,
        "replay_source": comparison.replay_source,
        "replayed": comparison.replayed,
        "replay_changed": len(comparison.changed),
        "result": json.dumps(comparison.to_dict(), ensure_ascii=False),
    }


def metrics(comparison: Comparison) -> dict[str, float]:
    """Flat MLflow metrics: per file and category both scores and the p-values, latency."""
    out: dict[str, float] = {}
    for c in comparison.categories:
        stem = re.sub(r"[^\w.\- /]", "_", f"{c.file.removesuffix('.jsonl')}.{c.category}")
        for name, paired in (("accuracy", c.accuracy), ("recall_at_5", c.recall)):
            if paired is None:
                continue
            for side, value in (("a", paired.a), ("b", paired.b)):
                if value is not None:
                    out[f"{stem}.{name}_{side}"] = value
            out[f"{stem}.p_{name}"] = paired.p_value
    for side, latency in (("a", comparison.latency_a), ("b", comparison.latency_b)):
        if latency.n:
            out[f"latency_{side}_p50_ms"] = latency.p50_ms
            out[f"latency_{side}_p95_ms"] = latency.p95_ms
    out["replayed"] = comparison.replayed
    out["replay_changed"] = len(comparison.changed)
    return out


def record(settings: Settings, comparison: Comparison) -> Comparison:
    """Keep ``comparison`` (run, version tags, table row); returns it with its run id."""
    import dataclasses
    import time

    import pyarrow as pa
    from mlflow.entities import Metric, Param

    from gcn_rag.tables import Catalog

    client = registry.configure(settings)
    experiment = client.get_experiment_by_name(registry.EXPERIMENT)
    assert experiment is not None  # configure() creates it
    a, b = comparison.version_a, comparison.version_b
    run = client.create_run(
        experiment.experiment_id,
        run_name=f"compare {a} vs {b}",
        tags={
            "gcn_rag.compare.model": comparison.model_name,
            "gcn_rag.compare.version_a": a,
            "gcn_rag.compare.version_b": b,
        },
    )
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in metrics(comparison).items()],
        params=[
            Param("bench_files", ", ".join(comparison.bench)[:6000] or "(none)"),
            Param("replay_source", comparison.replay_source or "(none)"),
        ],
    )
    kept = dataclasses.replace(comparison, comparison_id=run_id)
    client.log_text(run_id, json.dumps(kept.to_dict(), indent=2), "comparison.json")
    client.set_terminated(run_id)
    client.set_model_version_tag(comparison.model_name, a, TAG_PREFIX + b, run_id)
    client.set_model_version_tag(comparison.model_name, b, TAG_PREFIX + a, run_id)
    catalog = Catalog.from_settings(settings)
    catalog.append(TABLE, pa.Table.from_pylist([table_row(kept)], schema=table_schema()))
    return kept


def fresh(
    settings: Settings,
    version_a: str,
    version_b: str,
    *,
    bench_digest: str,
    replay_source: str,
    replayed: int,
    max_age: timedelta,
) -> Comparison | None:
    """The newest recorded comparison of A against B on the same bench files (contents) and
    the same replay (endpoint, count), no older than ``max_age``; None when there is none."""
    from gcn_rag.tables import Catalog

    catalog = Catalog.from_settings(settings)
    if not catalog.exists(TABLE) or max_age <= timedelta(0):
        return None
    since = datetime.now(UTC) - max_age
    wanted = {
        "version_a": version_a,
        "version_b": version_b,
        "bench_digest": bench_digest,
        "replay_source": replay_source,
        "replayed": replayed,
    }
    rows = [
        row
        for row in catalog.read(TABLE, columns=[*wanted, "compared_at", "result"]).to_pylist()
        if all(row[key] == value for key, value in wanted.items()) and row["compared_at"] >= since
    ]
    if not rows:
        return None
    newest = max(rows, key=lambda row: row["compared_at"])
    return Comparison.from_dict(json.loads(newest["result"]))


def compare_and_record(
    settings: Settings,
    ref_a: str,
    ref_b: str,
    *,
    bench: Sequence[Path] = (),
    replay: Sequence[str] = (),
    replay_source: str = "",
    reuse_within: timedelta = timedelta(0),
    reporter: Reporter = SILENT,
) -> Comparison:
    """A recorded comparison of A against B: a fresh one (no older than ``reuse_within``, on
    the same questions) if there is one, else a new one, run and recorded."""
    a, b = registry.resolve(settings, ref_a), registry.resolve(settings, ref_b)
    kept = fresh(
        settings,
        a.version,
        b.version,
        bench_digest=bench_digest(bench),
        replay_source=replay_source,
        replayed=len(replay),
        max_age=reuse_within,
    )
    if kept is not None:
        reporter.note(
            f"Reusing comparison {kept.comparison_id} of versions {a.version} and {b.version} "
            f"({kept.compared_at:%Y-%m-%d %H:%M} UTC)."
        )
        return kept
    found = compare(
        settings,
        ref_a,
        ref_b,
        bench=bench,
        replay=replay,
        replay_source=replay_source,
        reporter=reporter,
    )
    return record(settings, found)
