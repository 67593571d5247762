"""Testing an endpoint: a sequential smoke test and a closed-loop load test.

Both record one :class:`~gcn_rag.ops.results.Outcome` per request (question, answer,
sources, num_docs, latency, status ``success | timeout | error``, HTTP status) for the lab's
result tables ``rag_endpoint_test_results`` and ``rag_endpoint_load_test_results``.

The load generator is *closed-loop*: at concurrency C, C clients each send their next request
as soon as the previous one is answered, so the offered load follows the server's speed and
throughput is what the server sustains. Every level is bounded by a request count or a
duration (and a hard cap on both), and targets must be on loopback unless allowed otherwise.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from gcn_rag import timespan
from gcn_rag.errors import BadInputError
from gcn_rag.ops.results import (
    Outcome,
    Summary,
    new_run,
    outcome,
    result_rows,
    save_results,
    summarize,
)
from gcn_rag.serving.protocol import query_body

if TYPE_CHECKING:
    from gcn_rag.tables import Catalog

MAX_REQUESTS = 100_000
MAX_DURATION_S = 600.0


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
    return query_body([question])


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
    return timespan.parse_duration(text, MAX_DURATION_S)


# --- questions and results ---------------------------------------------------------------------


def read_questions(path: Path | None, catalog: Catalog) -> list[str]:
    """The questions of ``path`` (JSONL with a ``question`` field, or one per line), or the
    lab's ``rag_test_questions`` (its ten questions when the table does not exist yet)."""
    from gcn_rag.corpus.lab_tables import TEST_QUESTIONS

    if path is None:
        if catalog.exists("rag_test_questions"):
            return [str(q) for q in catalog.read("rag_test_questions")["question"].to_pylist()]
        return [question for question, _, _ in TEST_QUESTIONS]
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"Cannot read {path} ({exc}).") from exc
    questions = []
    for number, line in enumerate(lines, start=1):
        if line.startswith("{"):
            try:
                question = json.loads(line).get("question")
            except (ValueError, AttributeError):
                question = None
            if not isinstance(question, str) or not question:
                raise BadInputError(f"{path}:{number}: no 'question' string in this line.")
            questions.append(question)
        elif line:
            questions.append(line)
    if not questions:
        raise BadInputError(f"{path} holds no questions.")
    return questions


class Tally:
    """A level's running counts, for a live display: how far along, ok, failed, rate."""

    def __init__(self, requests: int | None, duration_s: float | None) -> None:
        self.requests, self.duration_s = requests, duration_s
        self.ok = self.failed = 0
        self.started = time.monotonic()

    def add(self, outcome: Outcome) -> None:
        if outcome.status == "success":
            self.ok += 1
        else:
            self.failed += 1

    @property
    def completed(self) -> float:
        """Requests done, or seconds passed for a level that runs for a duration."""
        if self.requests is not None:
            return self.ok + self.failed
        return min(time.monotonic() - self.started, self.duration_s or 0.0)

    @property
    def status(self) -> str:
        rate = (self.ok + self.failed) / max(time.monotonic() - self.started, 1e-9)
        return f"{self.ok} ok, {self.failed} failed, {rate:.1f} req/s"


class LoadTest:
    """A closed-loop load test of one endpoint: its levels, its rows, its report.

    Checked when made (loopback target unless ``allow_remote``, levels, a request count or a
    duration within the caps), run level by level with :meth:`run_level`, then kept with
    :meth:`save` (the rows in ``rag_endpoint_load_test_results``) and
    :func:`gcn_rag.ops.report.loadtest_report` (the plot and the page).
    """

    def __init__(
        self,
        base_url: str,
        endpoint: str,
        token: str | None,
        questions: list[str],
        *,
        levels: str = "1,2,4,8",
        requests: int | None = None,
        duration: str | None = None,
        timeout_s: float = 60.0,
        allow_remote: bool = False,
    ) -> None:
        self.levels = parse_levels(levels)
        if requests is not None and duration is not None:
            raise BadInputError("Give --requests or --duration, not both.")
        self.duration_s = parse_duration(duration) if duration is not None else None
        self.requests = None if self.duration_s is not None else (requests or 100)
        if self.requests is not None and not 1 <= self.requests <= MAX_REQUESTS:
            raise BadInputError(f"--requests must be 1..{MAX_REQUESTS:,}.")
        check_target(base_url, allow_remote)
        self.endpoint = endpoint
        self.target = invocation_url(base_url, endpoint)
        self.token, self.questions, self.timeout_s = token, questions, timeout_s
        self.run_id, self.run_time = new_run()
        self.summaries: list[Summary] = []
        self.rows: list[dict[str, Any]] = []

    @property
    def per_level(self) -> str:
        """How much each level runs: ``100 requests`` or ``30 s``."""
        if self.requests is not None:
            return f"{self.requests} requests"
        return f"{self.duration_s:g} s"

    def run_level(self, level: int, on_each: Callable[[Outcome], None] | None = None) -> Summary:
        """Run one concurrency level to its end; its summary (rows are kept for :meth:`save`)."""
        outcomes, wall = asyncio.run(
            run_level(
                self.target,
                self.token,
                self.questions,
                level,
                requests=self.requests,
                duration_s=self.duration_s,
                timeout_s=self.timeout_s,
                on_each=on_each,
            )
        )
        summary = summarize(outcomes, level, wall)
        self.summaries.append(summary)
        self.rows += result_rows(self.run_id, self.run_time, self.endpoint, level, outcomes)
        return summary

    def save(self, catalog: Catalog) -> str:
        """Every request's row into ``rag_endpoint_load_test_results``; the table's name."""
        return save_results(catalog, "rag_endpoint_load_test_results", self.rows)
