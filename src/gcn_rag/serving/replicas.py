"""Served entities at run time: their models, concurrency slots, queues, batches and limits.

Each served entity is a :class:`Replica`: its model (or ``None`` once scaled to zero), as many
concurrent requests as its workload size allows (Small 4, Medium 16, Large 64), a queue of the
same length whose requests wait at most ``queue_timeout_s`` for a slot, and 429 +
``Retry-After`` beyond that. With ``scale_to_zero_enabled``, an entity idle for
``scale_to_zero_idle_s`` is unloaded (memory returned to the OS); the next request loads it
again (a cold start) and waits up to ``cold_start_wait_s``, then gets 503 + ``Retry-After``
while the load goes on. Concurrent requests to a row-wise model are batched
(:class:`Batcher`); the AI gateway's ``rate_limits`` are counted by :class:`RateLimiter`.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import dataclasses
import gc
import json
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gcn_rag.errors import NotReadyError, TooManyRequestsError
from gcn_rag.serving.endpoints import WORKLOAD_SIZES

if TYPE_CHECKING:
    from gcn_rag.model.registry import Loader
    from gcn_rag.settings import Settings


class RateLimiter:
    """Sliding one-minute windows of calls, per endpoint or per (endpoint, user)."""

    PERIOD_S = 60.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._calls: dict[tuple[str, ...], collections.deque[float]] = {}

    def check(self, endpoint: str, limits: list[dict[str, Any]], caller: str) -> None:
        """Count one call against every limit, or raise 429 (counting nothing)."""
        now = self._clock()
        keyed = [
            ((endpoint, caller) if limit["key"] == "user" else (endpoint,), int(limit["calls"]))
            for limit in limits
        ]
        with self._lock:
            for key, calls in keyed:
                window = self._calls.setdefault(key, collections.deque())
                while window and window[0] <= now - self.PERIOD_S:
                    window.popleft()
                if len(window) >= calls:
                    retry = max(1, math.ceil(window[-calls] + self.PERIOD_S - now))
                    who = "you" if len(key) == 2 else "this endpoint"
                    raise TooManyRequestsError(
                        f"Rate limit: {calls} calls per minute for {who}; retry in {retry} s.",
                        retry_after=retry,
                    )
            for key, _ in keyed:
                self._calls[key].append(now)


@dataclasses.dataclass(frozen=True)
class Limits:
    """Timeouts and scale-to-zero timing of a server (from :class:`Settings`)."""

    request_timeout_s: float = 120.0
    queue_timeout_s: float = 2.0
    scale_to_zero_idle_s: float = 1800.0
    cold_start_wait_s: float = 30.0
    max_rows: int = 1000  # rows per request: bounds how long one request holds a model
    alias_check_s: float = 5.0  # how often served aliases (champion) are checked for moves

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            request_timeout_s=settings.request_timeout_s,
            queue_timeout_s=settings.queue_timeout_s,
            scale_to_zero_idle_s=settings.scale_to_zero_idle_s,
            cold_start_wait_s=settings.cold_start_wait_s,
            max_rows=settings.request_max_rows,
        )


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc only)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def load_model(loader: Loader, entity: dict[str, Any]) -> Any:
    """Load a served entity's model. An engine that sizes what it deploys by the entity (its
    workload size; :class:`gcn_rag.serving.ray_engine.RayEngine`) is given the whole entity
    through its ``load_entity``; a plain Loader its name and version."""
    sized = getattr(loader, "load_entity", None)
    if sized is not None:
        return sized(entity)
    return loader(entity["entity_name"], entity["entity_version"])


def batchable(model: Any) -> bool:
    """Whether a loaded PyFunc model says its output rows match its input rows one to one."""
    metadata = getattr(getattr(model, "metadata", None), "metadata", None) or {}
    return bool(metadata.get("row_wise"))


@dataclasses.dataclass
class _Request:
    frame: Any
    params: dict[str, Any] | None
    key: str
    result: Any = None
    error: BaseException | None = None
    taken: bool = False  # in a batch (its own or another request's)
    done: bool = False


class Batcher:
    """Coalesce concurrent requests to a row-wise model into one ``predict`` per batch.

    Opportunistic: a request that finds a free runner slot runs at once, taking with it every
    request already waiting with the same params (up to ``max_rows`` rows); nothing waits
    for a batch to fill, so a lone request pays nothing. At most ``parallel`` batches run at
    a time (one per core). If a batch fails, its requests are retried one by one, so one
    bad request cannot fail the others.
    """

    def __init__(self, max_rows: int = 16, parallel: int = 2) -> None:
        self.max_rows = max_rows
        self.parallel = parallel
        self.batches = 0
        self.rows = 0
        self._pending: list[_Request] = []
        self._running = 0
        self._cond = threading.Condition()

    def predict(self, model: Any, frame: Any, params: dict[str, Any] | None) -> Any:
        key = json.dumps(params or {}, sort_keys=True, default=str)
        mine = _Request(frame, params, key)
        with self._cond:
            self._pending.append(mine)
            while not mine.taken and self._running >= self.parallel:
                self._cond.wait()
            batch = None if mine.taken else self._take(mine)
            if batch is None:  # another runner took it along
                while not mine.done:
                    self._cond.wait()
            else:
                self._running += 1
        if batch is not None:
            try:
                self._run(model, batch)
            finally:
                with self._cond:
                    self._running -= 1
                    self._cond.notify_all()
        if mine.error is not None:
            raise mine.error
        return mine.result

    def _take(self, first: _Request) -> list[_Request]:
        batch, rows = [first], len(first.frame)
        for request in self._pending:
            if request is not first and request.key == first.key:
                if rows + len(request.frame) > self.max_rows:
                    break
                batch.append(request)
                rows += len(request.frame)
        for request in batch:
            request.taken = True
        self._pending = [r for r in self._pending if not r.taken]
        return batch

    def _run(self, model: Any, batch: list[_Request]) -> None:
        import pandas as pd

        try:
            if len(batch) == 1:
                batch[0].result = model.predict(batch[0].frame, params=batch[0].params)
            else:
                frames = [r.frame for r in batch]
                merged = pd.concat(frames, ignore_index=True)
                out = model.predict(merged, params=batch[0].params)
                if len(out) != len(merged):
                    raise ValueError("the model's output rows do not match its input rows")
                start = 0
                for request in batch:
                    end = start + len(request.frame)
                    request.result = out.iloc[start:end].reset_index(drop=True)
                    start = end
        except Exception as exc:
            if len(batch) > 1:
                for request in batch:
                    self._run(model, [request])
                return
            batch[0].error = exc
        with self._cond:
            self.batches += 1
            self.rows += sum(len(r.frame) for r in batch)
            for request in batch:
                request.done = True
            self._cond.notify_all()


class Replica:
    """One served entity: its model, concurrency slots, queue and scale-to-zero state."""

    def __init__(self, entity: dict[str, Any], loader: Loader, model: Any | None = None) -> None:
        self.entity = entity
        self.name = str(entity["name"])
        self.limit = WORKLOAD_SIZES[entity["workload_size"]]
        self.scale_to_zero = bool(entity.get("scale_to_zero_enabled"))
        self.model = model
        self.in_flight = 0
        self.queued = 0
        self.cold_starts = 0
        self.last_cold_start_s: float | None = None
        self.last_used = time.monotonic()
        self.batcher = Batcher()
        self._loader = loader
        self._loading = False
        self._load_error = ""
        self._cond = threading.Condition()

    @classmethod
    def loaded(cls, entity: dict[str, Any], loader: Loader) -> Replica:
        """A replica of ``entity`` with its model loaded now (blocking)."""
        return cls(entity, loader, load_model(loader, entity))

    def same_model(self, entity: dict[str, Any]) -> bool:
        return (entity["entity_name"], entity["entity_version"]) == (
            self.entity["entity_name"],
            self.entity["entity_version"],
        )

    def acquire(self, queue_timeout_s: float) -> None:
        """Take a slot, waiting in a queue as long as the slots; else 429."""
        with self._cond:
            if self.in_flight >= self.limit:
                if self.queued >= self.limit:
                    raise TooManyRequestsError(
                        f"Served entity {self.name} is at its limit of {self.limit} concurrent "
                        f"requests with {self.queued} queued; retry shortly or use a larger "
                        "workload_size.",
                    )
                self.queued += 1
                try:
                    got = self._cond.wait_for(lambda: self.in_flight < self.limit, queue_timeout_s)
                finally:
                    self.queued -= 1
                if not got:
                    raise TooManyRequestsError(
                        f"Served entity {self.name} stayed at its limit of {self.limit} "
                        f"concurrent requests for {queue_timeout_s:g} s; retry shortly.",
                    )
            self.in_flight += 1

    def predict(self, frame: Any, params: dict[str, Any] | None, limits: Limits) -> Any:
        """Answer one request within the concurrency limit, loading the model if scaled to zero."""
        self.acquire(limits.queue_timeout_s)
        try:
            model = self.ready_model(limits.cold_start_wait_s)
            if batchable(model):
                return self.batcher.predict(model, frame, params or None)
            return model.predict(frame, params=params or None)
        finally:
            self.release()

    def release(self) -> None:
        with self._cond:
            self.in_flight -= 1
            self.last_used = time.monotonic()
            self._cond.notify_all()

    def ready_model(self, wait_s: float) -> Any:
        """The loaded model; after scale-to-zero, load it (a cold start) and wait ``wait_s``."""
        with self._cond:
            self.last_used = time.monotonic()
            if self.model is not None:
                return self.model
            if not self._loading:
                self._loading = True
                threading.Thread(target=self._cold_start, daemon=True).start()
            self._cond.wait_for(lambda: self.model is not None or not self._loading, wait_s)
            if self.model is not None:
                return self.model
            if not self._loading:
                raise NotReadyError(f"Served entity {self.name} failed to load: {self._load_error}")
            raise NotReadyError(
                f"Served entity {self.name} is starting from zero (cold start); retry shortly.",
                retry_after=5,
            )

    def _cold_start(self) -> None:
        started = time.perf_counter()
        model, error = None, ""
        try:
            model = load_model(self._loader, self.entity)
        except Exception as exc:  # reported to the waiting requests, retried on the next one
            error = f"{type(exc).__name__}: {exc}"
        with self._cond:
            self.model, self._load_error, self._loading = model, error, False
            if model is not None:
                self.cold_starts += 1
                self.last_cold_start_s = time.perf_counter() - started
            self.last_used = time.monotonic()
            self._cond.notify_all()

    def unload_if_idle(self, idle_s: float) -> bool:
        """Scale to zero when idle for ``idle_s`` with nothing in flight; True if unloaded."""
        with self._cond:
            idle = time.monotonic() - self.last_used >= idle_s
            if not (self.scale_to_zero and idle and self.model is not None and not self.in_flight):
                return False
            self.model = None
        release_memory()
        return True

    def state(self) -> tuple[str, str]:
        if self.model is None and self._loading:
            return "DEPLOYMENT_READY", "Starting from zero (cold start)."
        if self.model is None:
            return "DEPLOYMENT_READY", "Scaled to zero; the next request starts it."
        return "DEPLOYMENT_READY", ""


class TrafficSplit:
    """Which served entity takes an endpoint's next request, by its routes' percentages.

    Smooth weighted round-robin: exact percentages over every 100 requests, interleaved.
    (Random picks would only be right on average; 90/10 over 1,000 requests lands within a
    point of 90 here every time.)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._credit: dict[str, dict[str, int]] = {}  # endpoint -> entity -> credit

    def pick(self, endpoint: str, routes: list[dict[str, Any]]) -> str:
        with self._lock:
            credit = self._credit.setdefault(endpoint, {})
            best = ""
            for route in routes:
                target = str(route["served_model_name"])
                credit[target] = credit.get(target, 0) + int(route["traffic_percentage"])
                if not best or credit[target] > credit[best]:
                    best = target
            credit[best] -= 100
        return best

    def reset(self, endpoint: str) -> None:
        """Start over (the endpoint's routes changed)."""
        with self._lock:
            self._credit.pop(endpoint, None)
