"""Reading the inference table: recent requests (``gcn-rag logs``) and, per served entity and
time bucket, requests, success rate and latency (``gcn-rag monitor``), from real rows; and
the guardrail decisions the rows record in ``logging_error_codes``.

Latency here is ``execution_duration_ms`` (the time in the model, as Databricks logs it);
success means HTTP 200. Percentiles use :func:`gcn_rag.ops.results.percentile`.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gcn_rag.errors import BadInputError, NotFoundError
from gcn_rag.serving.endpoints import check_name
from gcn_rag.serving.protocol import request_question, response_answer
from gcn_rag.stats import percentile

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

    def row(self) -> dict[str, Any]:
        return {
            "bucket (UTC)": f"{self.start:%Y-%m-%d %H:%M:%S}",
            "served entity": self.served_entity,
            "requests": self.requests,
            "success": f"{self.success_rate:.1%}",
            "p50 ms": round(self.latency_p50, 1),
            "p95 ms": round(self.latency_p95, 1),
            "p99 ms": round(self.latency_p99, 1),
        }


def endpoint_is(endpoint: str, column: str = "endpoint_name") -> str:
    """The SQL condition ``column = '<endpoint>'``, once the name is a valid endpoint name
    (so it can be quoted as it is), else 400."""
    return f"{column} = '{check_name(endpoint)}'"


def payload_query(
    catalog: Catalog,
    table: str,
    columns: str,
    *,
    endpoint: str | None = None,
    since_ms: int | None = None,
    status: int | None = None,
) -> str:
    """``SELECT columns FROM <payload table> WHERE …`` for the given filters (validated)."""
    name = catalog.name(table)
    if not catalog.exists(name):
        raise NotFoundError(
            f"No captured requests yet: {name} does not exist (endpoints capture into it "
            "once they serve a request with auto_capture_config enabled)."
        )
    where = []
    if endpoint is not None:
        where.append(endpoint_is(endpoint))
    if since_ms is not None:
        where.append(f"timestamp_ms >= {int(since_ms)}")
    if status is not None:
        where.append(f"status_code = {int(status)}")
    return f"SELECT {columns} FROM {name} {'WHERE ' + ' AND '.join(where) if where else ''}"


@dataclasses.dataclass(frozen=True)
class Request:
    """One captured request, as ``gcn-rag logs`` shows it."""

    time: datetime
    endpoint: str
    served_entity: str
    status: int
    latency_ms: int
    requester: str
    question: str
    answer: str  # or the error message

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "time": self.time.isoformat(timespec="seconds")}


def recent_requests(
    catalog: Catalog,
    table: str,
    *,
    limit: int,
    endpoint: str | None = None,
    since_ms: int | None = None,
    status: int | None = None,
) -> list[Request]:
    """The newest ``limit`` captured requests, newest first, with their question and answer."""
    if limit < 1:
        raise BadInputError("--limit must be at least 1.")
    query = payload_query(
        catalog,
        table,
        "timestamp, endpoint_name, served_entity_id, status_code, execution_duration_ms, "
        "requester, request, response",
        endpoint=endpoint,
        since_ms=since_ms,
        status=status,
    )
    query += f" ORDER BY timestamp_ms DESC LIMIT {int(limit)}"
    return [
        Request(
            time=row["timestamp"],
            endpoint=row["endpoint_name"],
            served_entity=row["served_entity_id"],
            status=row["status_code"],
            latency_ms=row["execution_duration_ms"],
            requester=row["requester"],
            question=request_question(row["request"]),
            answer=response_answer(row["response"]),
        )
        for row in catalog.sql(query).to_pylist()
    ]


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


@dataclasses.dataclass(frozen=True)
class Decision:
    """How many requests one guardrail rule masked or blocked, on one side (input, output; or
    ``passage``: a retrieved passage WITHHELD from the LLM)."""

    stage: str
    rule: str
    behavior: str
    requests: int

    def row(self) -> dict[str, Any]:
        return {
            "side": self.stage,
            "rule": self.rule,
            "behavior": self.behavior,
            "requests": self.requests,
        }


def guardrail_decisions(
    catalog: Catalog, table: str, *, endpoint: str | None = None, since_ms: int | None = None
) -> list[Decision]:
    """Requests per guardrail decision (``GUARDRAIL_<SIDE>_<BEHAVIOR>:<rule>`` codes)."""
    codes = payload_query(
        catalog, table, "unnest(logging_error_codes) AS code", endpoint=endpoint, since_ms=since_ms
    )
    query = (
        f"SELECT code, count(*) AS n FROM ({codes}) WHERE code LIKE 'GUARDRAIL%' "
        "GROUP BY code ORDER BY code"
    )
    found = []
    for row in catalog.sql(query).to_pylist():
        head, _, rule = str(row["code"]).partition(":")
        parts = head.split("_")
        if len(parts) == 3:
            found.append(Decision(parts[1].lower(), rule, parts[2], int(row["n"])))
    return found


def sparkline(values: list[float]) -> str:
    """Unicode blocks scaled to the largest value (NaN as a space)."""
    finite = [v for v in values if v == v]
    top = max(finite, default=0.0)
    if top <= 0:
        return " " * len(values)
    return "".join(
        " " if v != v else BLOCKS[max(1, round(v / top * (len(BLOCKS) - 1)))] for v in values
    )


def replay_questions(catalog: Catalog, table: str, *, endpoint: str, limit: int) -> list[str]:
    """The questions of an endpoint's last ``limit`` successful requests, oldest first (the
    first question of each request, as ``gcn-rag logs`` shows it)."""
    found = recent_requests(catalog, table, limit=limit, endpoint=endpoint, status=200)
    return [request.question for request in reversed(found) if request.question]
