"""An endpoint's requests over a window, in buckets: count, errors, latency p50/p95/p99, and
the capture backlog — the numbers behind the endpoint page's charts.

Requests come from the inference table when the endpoint captures (exact latencies, and
history from before the server started), else from the live counters' ticks (since the server
started; percentiles interpolated in the latency histogram's buckets, as Prometheus does).
The backlog always comes from the ticks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from gcn_rag.errors import BadInputError
from gcn_rag.serving.metrics import BUCKETS_S

if TYPE_CHECKING:
    from gcn_rag.console.payloads import Requests
    from gcn_rag.console.timeline import Tick

QUANTILES = (0.5, 0.95, 0.99)
BUCKETS = 60


@dataclasses.dataclass(frozen=True)
class Window:
    """A chart window: its query-string key, its label and its length."""

    key: str
    label: str
    seconds: int

    @property
    def bucket_ms(self) -> int:
        return self.seconds * 1000 // BUCKETS


WINDOWS = (
    Window("15m", "15 minutes", 900),
    Window("1h", "1 hour", 3600),
    Window("6h", "6 hours", 6 * 3600),
    Window("24h", "24 hours", 24 * 3600),
)
DEFAULT_WINDOW = WINDOWS[1]


def window(key: str | None) -> Window:
    """The window called ``key`` (the default without one), or 400."""
    for found in WINDOWS:
        if found.key == (key or DEFAULT_WINDOW.key):
            return found
    keys = ", ".join(w.key for w in WINDOWS)
    raise BadInputError(f"There is no chart window {key!r}; choose one of {keys}.")


@dataclasses.dataclass(frozen=True)
class Series:
    """Per bucket (oldest first): requests, errors, latency quantiles in ms (None: no
    requests) and the highest backlog seen (None: not sampled); with totals over the window."""

    start_ms: int
    bucket_ms: int
    requests: tuple[int, ...]
    errors: tuple[int, ...]
    latency_ms: dict[float, tuple[float | None, ...]]
    backlog: tuple[int | None, ...]
    total_latency_ms: dict[float, float | None]
    source: str  # where the requests came from, for the page to say


def from_table(requests: Requests, ticks: Sequence[Tick], start_ms: int, w: Window) -> Series:
    """Buckets of the inference table's rows of one endpoint (and the ticks' backlog)."""
    import numpy as np

    rows = requests.since(start_ms)
    index = np.clip((rows.at_ms - start_ms) // w.bucket_ms, 0, BUCKETS - 1)
    counts = np.bincount(index, minlength=BUCKETS)
    errors = np.bincount(index, weights=rows.status >= 400, minlength=BUCKETS)
    latency: dict[float, list[float | None]] = {q: [None] * BUCKETS for q in QUANTILES}
    for bucket in np.flatnonzero(counts):
        values = rows.latency_ms[index == bucket]
        for q, found in zip(QUANTILES, np.quantile(values, QUANTILES), strict=True):
            latency[q][bucket] = float(found)
    overall = np.quantile(rows.latency_ms, QUANTILES) if len(rows.at_ms) else [None] * 3
    return Series(
        start_ms=start_ms,
        bucket_ms=w.bucket_ms,
        requests=tuple(int(n) for n in counts),
        errors=tuple(int(n) for n in errors),
        latency_ms={q: tuple(v) for q, v in latency.items()},
        backlog=_backlog(ticks, start_ms, w),
        total_latency_ms={
            q: None if v is None else float(v) for q, v in zip(QUANTILES, overall, strict=True)
        },
        source="inference table",
    )


def from_ticks(endpoint: str, ticks: Sequence[Tick], start_ms: int, w: Window) -> Series:
    """Buckets of the live counters' ticks of one endpoint."""
    requests, errors = [0] * BUCKETS, [0] * BUCKETS
    histograms = [[0] * (len(BUCKETS_S) + 1) for _ in range(BUCKETS)]
    for tick in ticks:
        counted = tick.counted.get(endpoint)
        if counted is None:
            continue
        bucket = min(max((tick.at_ms - start_ms) // w.bucket_ms, 0), BUCKETS - 1)
        requests[bucket] += counted[0]
        errors[bucket] += counted[1]
        histograms[bucket] = [a + b for a, b in zip(histograms[bucket], counted[2], strict=True)]
    total = [sum(column) for column in zip(*histograms, strict=True)]
    return Series(
        start_ms=start_ms,
        bucket_ms=w.bucket_ms,
        requests=tuple(requests),
        errors=tuple(errors),
        latency_ms={q: tuple(quantile_ms(q, h) for h in histograms) for q in QUANTILES},
        backlog=_backlog(ticks, start_ms, w),
        total_latency_ms={q: quantile_ms(q, total) for q in QUANTILES},
        source="live counters",
    )


def quantile_ms(q: float, counts: Sequence[int]) -> float | None:
    """The ``q`` quantile of a latency histogram (:data:`BUCKETS_S` counts, then +Inf), in ms,
    linear inside its bucket; None when it is empty."""
    total = sum(counts)
    if total == 0:
        return None
    rank, seen = q * total, 0
    for i, count in enumerate(counts):
        if count and seen + count >= rank:
            if i == len(BUCKETS_S):  # past the last bound: say the bound
                return BUCKETS_S[-1] * 1000
            low = BUCKETS_S[i - 1] if i else 0.0
            return (low + (BUCKETS_S[i] - low) * (rank - seen) / count) * 1000
        seen += count
    return BUCKETS_S[-1] * 1000


def _backlog(ticks: Sequence[Tick], start_ms: int, w: Window) -> tuple[int | None, ...]:
    """The highest backlog sampled in each bucket (None: no sample, or no capture)."""
    found: list[int | None] = [None] * BUCKETS
    for tick in ticks:
        if tick.backlog < 0 or tick.at_ms < start_ms:
            continue
        bucket = min((tick.at_ms - start_ms) // w.bucket_ms, BUCKETS - 1)
        found[bucket] = max(found[bucket] or 0, tick.backlog)
    return tuple(found)
