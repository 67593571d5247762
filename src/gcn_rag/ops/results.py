"""What endpoint tests and load tests record: one :class:`Outcome` per request, a
:class:`Summary` per level, and the rows of the lab's result tables
(``rag_endpoint_test_results``, ``rag_endpoint_load_test_results``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gcn_rag.stats import percentile

if TYPE_CHECKING:
    from gcn_rag.tables import Catalog

RESULT_COLUMNS = (
    "run_id",
    "run_time",
    "endpoint_name",
    "concurrency",
    "question",
    "answer",
    "sources",
    "num_docs",
    "latency_ms",
    "status",
    "status_code",
)


@dataclasses.dataclass
class Outcome:
    """One request's result."""

    question: str
    answer: str
    sources: str
    num_docs: int
    latency_ms: float
    status: str  # success | timeout | error
    status_code: int  # 0 when no HTTP response came back


@dataclasses.dataclass(frozen=True)
class Summary:
    """One concurrency level (or one test run): counts, throughput, latency percentiles."""

    concurrency: int
    requests: int
    successes: int
    success_rate: float
    duration_s: float
    throughput: float  # successful requests per second
    latency_min: float
    latency_mean: float
    latency_p50: float
    latency_p95: float
    latency_p99: float
    latency_max: float
    errors: dict[str, int]  # "429", "timeout", "connection" ... -> count

    def row(self) -> dict[str, Any]:
        """One load-test level as a table row."""
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "ok": self.successes,
            "success": f"{self.success_rate:.1%}",
            "req/s": round(self.throughput, 1),
            "mean ms": round(self.latency_mean, 1),
            "p50": round(self.latency_p50, 1),
            "p95": round(self.latency_p95, 1),
            "p99": round(self.latency_p99, 1),
            "max": round(self.latency_max, 1),
            "errors": ", ".join(f"{k}: {v}" for k, v in self.errors.items()) or "-",
        }

    def test_row(self) -> dict[str, Any]:
        """A sequential test run as a table row."""
        return {
            "questions": self.requests,
            "successes": self.successes,
            "errors": self.requests - self.successes,
            "min ms": round(self.latency_min, 1),
            "mean ms": round(self.latency_mean, 1),
            "median ms": round(self.latency_p50, 1),
            "p95 ms": round(self.latency_p95, 1),
            "max ms": round(self.latency_max, 1),
        }


def summarize(outcomes: Sequence[Outcome], concurrency: int, duration_s: float) -> Summary:
    """Counts, success rate, throughput and latency percentiles (of successful requests)."""
    ok = [o.latency_ms for o in outcomes if o.status == "success"]
    errors = Counter(
        str(o.status_code) if o.status_code else o.status for o in outcomes if o.status != "success"
    )
    return Summary(
        concurrency=concurrency,
        requests=len(outcomes),
        successes=len(ok),
        success_rate=len(ok) / len(outcomes) if outcomes else math.nan,
        duration_s=duration_s,
        throughput=len(ok) / duration_s if duration_s > 0 else math.nan,
        latency_min=min(ok, default=math.nan),
        latency_mean=sum(ok) / len(ok) if ok else math.nan,
        latency_p50=percentile(ok, 0.5),
        latency_p95=percentile(ok, 0.95),
        latency_p99=percentile(ok, 0.99),
        latency_max=max(ok, default=math.nan),
        errors=dict(sorted(errors.items())),
    )


#: What to do when every request failed the same way, by error key (see ``Summary.errors``).
_REMEDIES = {
    "401": "The server refused the token: pass --token or set DATABRICKS_TOKEN (`gcn-rag up` "
    "saves one in the workspace).",
    "403": "The token may not query this endpoint: use a token with CAN_QUERY or more.",
    "404": "There is no such endpoint: see `gcn-rag endpoints list`.",
    "error": "Nothing answered: start the server (`gcn-rag up` or `gcn-rag serve`) or check --url.",
    "timeout": "Every request timed out: check the server, or raise --timeout.",
}


def no_success(summaries: Sequence[Summary]) -> str | None:
    """Why a test or load test failed as a whole: no request succeeded (None when one did).

    Such a run measured nothing (no latency, no throughput); the message counts the failures
    and says what to do about the commonest one.
    """
    if any(summary.successes for summary in summaries):
        return None
    total = sum(summary.requests for summary in summaries)
    if not total:
        return "No request was sent; give more --requests or a longer --duration."
    errors: Counter[str] = Counter()
    for summary in summaries:
        errors.update(summary.errors)
    counts = ", ".join(f"{key}: {count}" for key, count in errors.most_common())
    remedy = _REMEDIES.get(errors.most_common(1)[0][0], "") if errors else ""
    return f"No request succeeded ({total} of {total} failed; {counts}). {remedy}".rstrip()


def outcome(question: str, status_code: int, payload: Any, latency_ms: float) -> Outcome:
    """An :class:`Outcome` from an HTTP answer (or ``status_code`` 0 and a reason)."""
    if status_code == 200 and isinstance(payload, dict) and payload.get("predictions"):
        first = payload["predictions"][0]
        first = first if isinstance(first, dict) else {"answer": first}
        sources = first.get("sources", "")
        return Outcome(
            question,
            str(first.get("answer", "")),
            sources if isinstance(sources, str) else json.dumps(sources),
            int(first.get("num_docs") or 0),
            latency_ms,
            "success",
            200,
        )
    if isinstance(payload, dict) and "message" in payload:
        message = f"{payload.get('error_code', 'ERROR')}: {payload['message']}"
    else:
        message = str(payload)[:500]
    timed_out = status_code == 504 or (status_code == 0 and message.startswith("timed out"))
    status = "timeout" if timed_out else "error"
    return Outcome(question, message, "[]", 0, latency_ms, status, status_code)


def result_rows(
    run_id: str, run_time: datetime, endpoint: str, concurrency: int, outcomes: Sequence[Outcome]
) -> list[dict[str, Any]]:
    """Rows for ``rag_endpoint_test_results`` / ``rag_endpoint_load_test_results``."""
    return [
        {
            "run_id": run_id,
            "run_time": run_time,
            "endpoint_name": endpoint,
            "concurrency": concurrency,
            **dataclasses.asdict(o),
        }
        for o in outcomes
    ]


def new_run() -> tuple[str, datetime]:
    return uuid.uuid4().hex[:12], datetime.now(UTC)


def results_table(rows: list[dict[str, Any]]) -> Any:
    """The rows as Arrow with stable types (an empty run still has the columns)."""
    import pyarrow as pa

    schema = pa.schema(
        [
            ("run_id", pa.string()),
            ("run_time", pa.timestamp("ms", tz="UTC")),
            ("endpoint_name", pa.string()),
            ("concurrency", pa.int32()),
            ("question", pa.string()),
            ("answer", pa.string()),
            ("sources", pa.string()),
            ("num_docs", pa.int32()),
            ("latency_ms", pa.float64()),
            ("status", pa.string()),
            ("status_code", pa.int32()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def save_results(catalog: Catalog, table: str, rows: list[dict[str, Any]]) -> str:
    """Append result rows to ``table`` in one commit; returns the table's full name."""
    name = catalog.name(table)
    catalog.append(name, results_table(rows))
    return str(name)
