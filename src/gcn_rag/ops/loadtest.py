"""Testing an endpoint: a sequential smoke test and a closed-loop load test, with summaries.

Both record one :class:`Outcome` per request (question, answer, sources, num_docs, latency,
status ``success | timeout | error``, HTTP status) for the lab's result tables
``rag_endpoint_test_results`` and ``rag_endpoint_load_test_results``.

The load generator is *closed-loop*: at concurrency C, C clients each send their next request
as soon as the previous one is answered, so the offered load follows the server's speed and
throughput is what the server sustains. Every level is bounded by a request count or a
duration (and a hard cap on both), and targets must be on loopback unless allowed otherwise.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import math
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from gcn_rag.errors import BadInputError

MAX_REQUESTS = 100_000
MAX_DURATION_S = 600.0
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


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0 <= q <= 1) by linear interpolation between closest ranks.

    Same definition as numpy's default and DuckDB's ``quantile_cont``; NaN for no values.
    """
    if not 0 <= q <= 1:
        raise BadInputError(f"A quantile is between 0 and 1; got {q}.")
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


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


def check_target(url: str, allow_remote: bool) -> None:
    """Refuse anything but loopback unless ``allow_remote`` (a load test is traffic)."""
    host = urlsplit(url).hostname or ""
    if allow_remote:
        return
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise BadInputError(
            f"{host or url} is not a loopback address; pass --allow-remote to send test "
            "traffic to another machine."
        )


def invocation_url(base: str, endpoint: str) -> str:
    return f"{base.rstrip('/')}/serving-endpoints/{endpoint}/invocations"


def body_for(question: str) -> dict[str, Any]:
    return {"dataframe_split": {"columns": ["question"], "data": [[question]]}}


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


# --- sequential test --------------------------------------------------------------------------


def run_test(
    url: str,
    token: str | None,
    questions: Sequence[str],
    timeout_s: float = 60.0,
    on_each: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Ask each question in turn (no retries: a test reports what happened)."""
    import requests

    session = requests.Session()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    outcomes = []
    for question in questions:
        started = time.perf_counter()
        try:
            response = session.post(
                url, json=body_for(question), headers=headers, timeout=timeout_s
            )
            try:
                payload: Any = response.json()
            except ValueError:
                payload = response.text
            code = response.status_code
        except requests.Timeout:
            code, payload = 0, f"timed out after {timeout_s:g} s"
        except requests.ConnectionError as exc:
            code, payload = 0, f"connection failed: {exc}"
        result = outcome(question, code, payload, (time.perf_counter() - started) * 1000)
        outcomes.append(result)
        if on_each is not None:
            on_each(result)
    return outcomes


# --- load test ---------------------------------------------------------------------------------


async def run_level(
    url: str,
    token: str | None,
    questions: Sequence[str],
    concurrency: int,
    *,
    requests: int | None = None,
    duration_s: float | None = None,
    timeout_s: float = 60.0,
    on_each: Callable[[Outcome], None] | None = None,
) -> tuple[list[Outcome], float]:
    """Closed loop at ``concurrency`` until ``requests`` are sent or ``duration_s`` passes."""
    import aiohttp

    if (requests is None) == (duration_s is None):
        raise BadInputError("Give either a request count or a duration.")
    if concurrency < 1:
        raise BadInputError(f"Concurrency must be at least 1; got {concurrency}.")
    budget = min(requests or MAX_REQUESTS, MAX_REQUESTS)
    stop_at = time.monotonic() + min(duration_s or MAX_DURATION_S, MAX_DURATION_S)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    outcomes: list[Outcome] = []
    issued = 0

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal issued
        while issued < budget and time.monotonic() < stop_at:
            question = questions[issued % len(questions)]
            issued += 1
            started = time.perf_counter()
            try:
                async with session.post(url, json=body_for(question)) as response:
                    code = response.status
                    text = await response.text()
                try:
                    payload: Any = json.loads(text)
                except ValueError:
                    payload = text
            except TimeoutError:
                code, payload = 0, f"timed out after {timeout_s:g} s"
            except aiohttp.ClientError as exc:
                code, payload = 0, f"connection failed: {exc}"
            result = outcome(question, code, payload, (time.perf_counter() - started) * 1000)
            outcomes.append(result)
            if on_each is not None:
                on_each(result)

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(
        connector=connector, headers=headers, timeout=timeout
    ) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return outcomes, wall


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


def parse_levels(text: str) -> list[int]:
    """``"1,2,4,8"`` -> ``[1, 2, 4, 8]``."""
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise BadInputError(f"--concurrency takes numbers like 1,2,4,8; got {text!r}.") from None
    if not levels or any(level < 1 or level > 1024 for level in levels):
        raise BadInputError(f"Concurrency levels must be 1..1024; got {text!r}.")
    return levels


def parse_duration(text: str) -> float:
    """``"30s"``, ``"2m"`` or ``"45"`` (seconds) -> seconds, at most 10 minutes."""
    units = {"s": 1.0, "m": 60.0}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        seconds = float(number) * units[unit]
    except ValueError:
        raise BadInputError(f"--duration takes 30s, 2m or seconds; got {text!r}.") from None
    if not 0 < seconds <= MAX_DURATION_S:
        raise BadInputError(f"--duration must be between 0 and {MAX_DURATION_S:g} s.")
    return seconds
