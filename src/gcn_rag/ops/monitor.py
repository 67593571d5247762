"""Monitoring from the inference table: per served entity and time bucket, from real rows.

Latency here is ``execution_duration_ms`` (the time in the model, as Databricks logs it);
success means HTTP 200. Percentiles use :func:`gcn_rag.ops.loadtest.percentile`.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from gcn_rag.errors import BadInputError
from gcn_rag.ops.loadtest import percentile
from gcn_rag.serving.capture import payload_query

if TYPE_CHECKING:
    from gcn_rag.tables import Catalog

BLOCKS = " ▁▂▃▄▅▆▇█"


@dataclasses.dataclass(frozen=True)
class Bucket:
    served_entity: str
    start: datetime
    requests: int
    successes: int
    success_rate: float
    latency_p50: float
    latency_p95: float
    latency_p99: float


def buckets(
    catalog: Catalog,
    table: str,
    *,
    endpoint: str | None = None,
    since_ms: int | None = None,
    bucket_s: int = 60,
) -> list[Bucket]:
    """Requests, success rate and latency percentiles per served entity and bucket."""
    if bucket_s < 1:
        raise BadInputError("The bucket must be at least one second.")
    columns = "served_entity_id, timestamp_ms, status_code, execution_duration_ms"
    query = payload_query(catalog, table, columns, endpoint=endpoint, since_ms=since_ms)
    groups: dict[tuple[str, int], list[tuple[int, float]]] = {}
    for row in catalog.sql(query).to_pylist():
        key = (row["served_entity_id"] or "(none)", row["timestamp_ms"] // (bucket_s * 1000))
        groups.setdefault(key, []).append((row["status_code"], float(row["execution_duration_ms"])))
    out = []
    for (entity, index), rows in sorted(groups.items()):
        ok = [ms for code, ms in rows if code == 200]
        out.append(
            Bucket(
                served_entity=entity,
                start=datetime.fromtimestamp(index * bucket_s, tz=UTC),
                requests=len(rows),
                successes=len(ok),
                success_rate=len(ok) / len(rows),
                latency_p50=percentile(ok, 0.5),
                latency_p95=percentile(ok, 0.95),
                latency_p99=percentile(ok, 0.99),
            )
        )
    return out


def sparkline(values: list[float]) -> str:
    """Unicode blocks scaled to the largest value (NaN as a space)."""
    finite = [v for v in values if v == v]
    top = max(finite, default=0.0)
    if top <= 0:
        return " " * len(values)
    return "".join(
        " " if v != v else BLOCKS[max(1, round(v / top * (len(BLOCKS) - 1)))] for v in values
    )
