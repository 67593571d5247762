"""The live counters over time: what the endpoint charts read besides the inference table.

:class:`~gcn_rag.serving.metrics.Metrics` keeps totals since the server started and the
capture keeps its backlog (rows spooled, not yet committed to Delta) as one number. A
:class:`Timeline` samples both every few seconds (and whenever a chart is drawn) and keeps a
day of *ticks*: the requests, errors and latency-histogram counts of each endpoint since the
previous tick, and the backlog at that moment. Nothing is added to the request path.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import threading
import time
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gcn_rag.serving.manager import EndpointManager
    from gcn_rag.serving.metrics import Metrics

KEEP_S = 24 * 3600
INTERVAL_S = 5.0
Counts = tuple[int, int, tuple[int, ...]]  # requests, errors, latency histogram


@dataclasses.dataclass(frozen=True)
class Tick:
    """One sample: per endpoint, what was counted since the previous one; the backlog now
    (-1 when the server captures nothing)."""

    at_ms: int
    backlog: int
    counted: dict[str, Counts]


class Timeline:
    """A day of ticks of ``metrics`` and ``manager``'s capture backlog."""

    def __init__(self, metrics: Metrics, manager: EndpointManager, keep_s: float = KEEP_S) -> None:
        self.metrics = metrics
        self.manager = manager
        self.keep_ms = int(keep_s * 1000)
        self._lock = threading.Lock()
        self._ticks: collections.deque[Tick] = collections.deque()
        self._seen: dict[str, Counts] = {}
        self.started_ms = _now_ms()
        self.sample()

    def sample(self, now_ms: int | None = None) -> None:
        """Add a tick: the counters' growth since the last one, and the backlog."""
        now = _now_ms() if now_ms is None else now_ms
        capture = self.manager.capture
        backlog = int(capture.stats()["backlog_rows"]) if capture is not None else -1
        with self._lock:
            totals = self.metrics.totals()
            counted = {}
            for endpoint, (n, errors, histogram) in totals.items():
                seen = self._seen.get(endpoint)
                if seen is None:
                    counted[endpoint] = (n, errors, histogram)
                elif n != seen[0]:
                    grown = tuple(a - b for a, b in zip(histogram, seen[2], strict=True))
                    counted[endpoint] = (n - seen[0], errors - seen[1], grown)
            self._seen = totals
            self._ticks.append(Tick(now, backlog, counted))
            while self._ticks and self._ticks[0].at_ms < now - self.keep_ms:
                self._ticks.popleft()

    def since(self, start_ms: int) -> list[Tick]:
        """The ticks at or after ``start_ms``, oldest first."""
        with self._lock:
            return [tick for tick in self._ticks if tick.at_ms >= start_ms]

    def start(self, interval_s: float = INTERVAL_S) -> None:
        """Sample every ``interval_s`` in a daemon thread, until this timeline is dropped."""
        thread = threading.Thread(
            target=_sampling, args=(weakref.ref(self), interval_s), name="console-timeline"
        )
        thread.daemon = True
        thread.start()


def _sampling(timeline: weakref.ref[Timeline], interval_s: float) -> None:
    """The sampler's loop; it ends once the console (and so its timeline) is gone."""
    while True:
        time.sleep(interval_s)
        alive = timeline()
        if alive is None:
            return
        with contextlib.suppress(Exception):  # a race at shutdown: try again next time
            alive.sample()
        del alive


def _now_ms() -> int:
    return int(time.time() * 1000)
