"""Live serving counters in the Prometheus text format (``GET /metrics``).

Counters and the latency histogram are recorded by the server once per invocation, whatever
its outcome; gauges (in flight, queued, loaded, cold starts) are read from the replicas when
scraped. Labels: ``endpoint``, ``served_entity`` and, on the request counter, ``status``;
guardrail decisions are counted per ``endpoint``, ``stage``, ``rule`` and ``behavior`` (each
rule once per request that tripped it; ``stage="passage"``, ``behavior="WITHHELD"`` counts the
requests whose model kept a retrieved passage from its LLM).
"""

from __future__ import annotations

import bisect
import math
import os
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gcn_rag.guardrails.policy import Hit
    from gcn_rag.serving.manager import EndpointManager
    from gcn_rag.serving.replicas import Replica

BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)


class _Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS_S) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS_S, seconds)] += 1
        self.total += seconds


class Metrics:
    """Request counts by status and latency histograms, per endpoint and served entity."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self._latency: dict[tuple[str, str], _Histogram] = defaultdict(_Histogram)
        self._guardrails: dict[tuple[str, str, str, str], int] = defaultdict(int)
        self._shadow: dict[tuple[str, str, int], int] = defaultdict(int)
        self._shadow_dropped: dict[tuple[str, str], int] = defaultdict(int)

    def record(self, endpoint: str, entity: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(endpoint, entity, status)] += 1
            self._latency[(endpoint, entity)].observe(seconds)

    def guardrail_hits(self, endpoint: str, hits: list[Hit]) -> None:
        """Count one request's guardrail decisions (each distinct one once)."""
        with self._lock:
            for hit in dict.fromkeys(hits):
                self._guardrails[(endpoint, hit.stage, hit.rule, hit.behavior)] += 1

    def shadow(self, endpoint: str, entity: str, status: int) -> None:
        """Count one shadow (mirrored) request by its outcome; live counters are untouched."""
        with self._lock:
            self._shadow[(endpoint, entity, status)] += 1

    def shadow_dropped(self, endpoint: str, entity: str) -> None:
        """Count a mirrored copy dropped (queue full, or waited too long behind live traffic)."""
        with self._lock:
            self._shadow_dropped[(endpoint, entity)] += 1

    def totals(self) -> dict[str, tuple[int, int, tuple[int, ...]]]:
        """Per endpoint since the server started: requests, errors (status >= 400) and the
        latency histogram's bucket counts (:data:`BUCKETS_S`, then +Inf), for the console."""
        with self._lock:
            requests = list(self._requests.items())
            latency = [(ep, list(h.counts)) for (ep, _), h in self._latency.items()]
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for (ep, _, status), n in requests:
            counts[ep][0] += n
            counts[ep][1] += n if status >= 400 else 0
        buckets: dict[str, list[int]] = defaultdict(lambda: [0] * (len(BUCKETS_S) + 1))
        for ep, histogram in latency:
            buckets[ep] = [a + b for a, b in zip(buckets[ep], histogram, strict=True)]
        return {ep: (n, errors, tuple(buckets[ep])) for ep, (n, errors) in counts.items()}

    def render(self, manager: EndpointManager, endpoint: str | None = None) -> str:
        """The Prometheus exposition text, for one endpoint or all of them."""
        out: list[str] = []
        self._requests_text(out, endpoint)
        self._guardrail_text(out, endpoint)
        self._shadow_text(out, endpoint)
        if manager.shadows is not None:
            _family(out, "gcn_rag_shadow_queued", "gauge", "Mirrored copies waiting to be asked.")
            out.append(f"gcn_rag_shadow_queued {manager.shadows.queued}")
        _replica_text(out, manager, endpoint)
        if manager.capture is not None:
            _capture_text(out, manager.capture.stats())
        _family(out, "process_resident_memory_bytes", "gauge", "Resident memory of the server.")
        out.append(f"process_resident_memory_bytes {resident_bytes()}")
        return "\n".join(out) + "\n"

    def _requests_text(self, out: list[str], endpoint: str | None) -> None:
        """Request counts by status and the latency histogram."""
        with self._lock:
            requests = sorted(self._requests.items())
            latency = sorted((k, list(h.counts), h.total) for k, h in self._latency.items())
        _family(out, "gcn_rag_requests_total", "counter", "Invocations by HTTP status.")
        for (ep, entity, status), n in requests:
            if endpoint is None or ep == endpoint:
                out.append(f'gcn_rag_requests_total{{{_labels(ep, entity)},status="{status}"}} {n}')
        _family(out, "gcn_rag_request_duration_seconds", "histogram", "Invocation latency.")
        for (ep, entity), counts, total in latency:
            if endpoint is not None and ep != endpoint:
                continue
            labels, cumulative = _labels(ep, entity), 0
            for bound, count in zip((*BUCKETS_S, float("inf")), counts, strict=True):
                cumulative += count
                le = "+Inf" if bound == float("inf") else f"{bound:g}"
                out.append(
                    f'gcn_rag_request_duration_seconds_bucket{{{labels},le="{le}"}} {cumulative}'
                )
            out.append(f"gcn_rag_request_duration_seconds_sum{{{labels}}} {sample(total)}")
            out.append(f"gcn_rag_request_duration_seconds_count{{{labels}}} {cumulative}")

    def guardrail_counts(self, endpoint: str) -> dict[tuple[str, str, str], int]:
        """``endpoint``'s guardrail decisions since the server started, by (stage, rule,
        behavior), for the console."""
        with self._lock:
            return {
                (stage, rule, behavior): n
                for (ep, stage, rule, behavior), n in sorted(self._guardrails.items())
                if ep == endpoint
            }

    def _guardrail_text(self, out: list[str], endpoint: str | None) -> None:
        with self._lock:
            counts = sorted(self._guardrails.items())
        name = "gcn_rag_guardrail_hits_total"
        _family(
            out,
            name,
            "counter",
            "Requests a guardrail rule masked or blocked (passage: kept from the LLM).",
        )
        for (ep, stage, rule, behavior), n in counts:
            if endpoint is None or ep == endpoint:
                labels = f'endpoint="{_escape(ep)}",stage="{stage}",rule="{_escape(rule)}"'
                out.append(f'{name}{{{labels},behavior="{behavior}"}} {n}')

    def _shadow_text(self, out: list[str], endpoint: str | None) -> None:
        with self._lock:
            answered = sorted(self._shadow.items())
            dropped = sorted(self._shadow_dropped.items())
        name = "gcn_rag_shadow_requests_total"
        _family(out, name, "counter", "Mirrored (shadow) requests by the shadow's status.")
        for (ep, entity, status), n in answered:
            if endpoint is None or ep == endpoint:
                out.append(f'{name}{{{_labels(ep, entity)},status="{status}"}} {n}')
        name = "gcn_rag_shadow_dropped_total"
        _family(out, name, "counter", "Mirrored copies dropped: queue full or live load.")
        for (ep, entity), n in dropped:
            if endpoint is None or ep == endpoint:
                out.append(f"{name}{{{_labels(ep, entity)}}} {n}")


#: (name, type, help, value of a replica) of the gauges read from the replicas when scraped.
_REPLICA_GAUGES: tuple[tuple[str, str, str, Callable[[Replica], float]], ...] = (
    ("gcn_rag_in_flight", "gauge", "Requests being answered.", lambda r: r.in_flight),
    ("gcn_rag_queued", "gauge", "Requests waiting for a slot.", lambda r: r.queued),
    ("gcn_rag_concurrency_limit", "gauge", "Slots (workload size).", lambda r: r.limit),
    (
        "gcn_rag_model_loaded",
        "gauge",
        "1 if loaded, 0 if scaled to zero.",
        lambda r: int(r.model is not None),
    ),
    ("gcn_rag_cold_starts_total", "counter", "Loads after scale-to-zero.", lambda r: r.cold_starts),
    (
        "gcn_rag_last_cold_start_seconds",
        "gauge",
        "Duration of the last cold start.",
        lambda r: r.last_cold_start_s or 0.0,
    ),
    (
        "gcn_rag_batches_total",
        "counter",
        "predict calls made by the batcher (row-wise models).",
        lambda r: r.batcher.batches,
    ),
    (
        "gcn_rag_batched_rows_total",
        "counter",
        "Rows those predict calls answered (rows / batches = mean batch size).",
        lambda r: r.batcher.rows,
    ),
)

#: (name, type, help, key in the capture stats) of the capture gauges.
_CAPTURE_GAUGES = (
    ("gcn_rag_capture_backlog_rows", "gauge", "Captured rows not yet in Delta.", "backlog_rows"),
    ("gcn_rag_capture_flushed_rows_total", "counter", "Captured rows in Delta.", "flushed_rows"),
    ("gcn_rag_capture_write_errors_total", "counter", "Rows the spool lost.", "write_errors"),
    (
        "gcn_rag_capture_quarantined_rows_total",
        "counter",
        "Spooled lines set aside (not records, or their table could not be written).",
        "quarantined_rows",
    ),
    (
        "gcn_rag_capture_quarantined_files_total",
        "counter",
        "Files in the spool folder that are not segments, set aside.",
        "quarantined_files",
    ),
)


def _replica_text(out: list[str], manager: EndpointManager, endpoint: str | None) -> None:
    replicas = [
        (ep, r)
        for ep, rs in sorted(manager.replicas().items())
        if endpoint is None or ep == endpoint
        for r in rs.values()
    ]
    for name, kind, help_text, value in _REPLICA_GAUGES:
        _family(out, name, kind, help_text)
        for ep, replica in replicas:
            out.append(f"{name}{{{_labels(ep, replica.name)}}} {sample(value(replica))}")


def _capture_text(out: list[str], stats: dict[str, Any]) -> None:
    for name, kind, help_text, key in _CAPTURE_GAUGES:
        _family(out, name, kind, help_text)
        out.append(f"{name} {sample(stats[key])}")
    name = "gcn_rag_capture_last_flush_timestamp_seconds"
    _family(out, name, "gauge", "Last flush.")
    out.append(f"{name} {sample(stats['last_flush_timestamp'] / 1000)}")


def sample(value: float) -> str:
    """A sample value as the exposition format reads it back exactly: integers in full, other
    floats by ``repr`` (the shortest text that parses to the same float), ``NaN``/``+Inf``.

    ``:g`` keeps six digits, which turns a Unix time into ``1.79596e+09`` (off by an hour).
    """
    if isinstance(value, int):  # bool too: True is 1
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def _family(out: list[str], name: str, kind: str, help_text: str) -> None:
    out.append(f"# HELP {name} {help_text}")
    out.append(f"# TYPE {name} {kind}")


def _labels(endpoint: str, entity: str) -> str:
    return f'endpoint="{_escape(endpoint)}",served_entity="{_escape(entity)}"'


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def resident_bytes() -> int:
    """This process's resident set size (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
