"""Serving endpoints with the Databricks Model Serving shapes: state, models, invocations.

An endpoint serves one or more *served entities* (a registered model name + version); its
traffic config splits requests between them by percentage. Endpoint definitions persist in
``<home>/serving.db`` (SQLite) and are restored when the server restarts; models are loaded
in a background thread, so ``create`` returns at once with ``state.config_update =
IN_PROGRESS`` and the endpoint turns ``READY`` when every entity has loaded (or
``UPDATE_FAILED``, with the reason in the endpoint's logs).

``update_config`` loads the new config in the background (``pending_config``,
``config_update = IN_PROGRESS``) while the old one serves, then both swap in one step under
the lock; a failed load leaves the old config serving with ``UPDATE_FAILED`` and the reason in
the logs.

Each served entity is a :class:`Replica`: its model (or ``None`` once scaled to zero), as many
concurrent requests as its workload size allows (Small 4, Medium 16, Large 64), a queue of the
same length whose requests wait at most ``queue_timeout_s`` for a slot, and 429 +
``Retry-After`` beyond that. With ``scale_to_zero_enabled``, an entity idle for
``scale_to_zero_idle_s`` is unloaded (memory returned to the OS); the next request loads it
again (a cold start) and waits up to ``cold_start_wait_s``, then gets 503 + ``Retry-After``
while the load goes on. The AI gateway's ``rate_limits`` (calls per minute per endpoint or
per user) are enforced here too.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import dataclasses
import fcntl
import gc
import json
import math
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gcn_rag.settings import Settings

from gcn_rag.errors import (
    AlreadyExistsError,
    BadInputError,
    NotFoundError,
    NotReadyError,
    TooManyRequestsError,
)
from gcn_rag.serving.capture import (
    CaptureTarget,
    InferenceCapture,
    capture_target,
    normalize_capture_config,
    payload_table,
)

WORKLOAD_SIZES = {"Small": 4, "Medium": 16, "Large": 64}
READY, NOT_READY = "READY", "NOT_READY"
NOT_UPDATING, IN_PROGRESS, UPDATE_FAILED = "NOT_UPDATING", "IN_PROGRESS", "UPDATE_FAILED"


Loader = Callable[[str, str], Any]  # (entity_name, entity_version) -> object with .predict
Resolver = Callable[[str, str], str]  # (entity_name, alias) -> version number


def mlflow_loader(tracking_uri: str) -> Loader:
    """Load ``models:/<name>/<version>`` from the workspace's registry."""

    def load(name: str, version: str) -> Any:
        import mlflow

        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        return mlflow.pyfunc.load_model(f"models:/{name}/{version}")

    return load


def mlflow_resolver(tracking_uri: str) -> Resolver:
    """Resolve a registered model alias (``champion``) to its version number."""

    def resolve(name: str, alias: str) -> str:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        try:
            return str(client.get_model_version_by_alias(name, alias.lstrip("@")).version)
        except MlflowException as exc:
            raise NotFoundError(
                f"{name} has no version or alias {alias!r}; see `gcn-rag model list`."
            ) from exc

    return resolve


@dataclasses.dataclass
class Endpoint:
    """One endpoint as stored; :meth:`to_api` gives the Databricks JSON shape."""

    name: str
    id: str
    creator: str
    creation_timestamp: int
    config: dict[str, Any]
    ready: str = NOT_READY
    config_update: str = IN_PROGRESS
    last_updated_timestamp: int = 0
    logs: list[str] = dataclasses.field(default_factory=list)
    pending_config: dict[str, Any] | None = None
    ai_gateway: dict[str, Any] | None = None

    def to_api(self, states: dict[str, tuple[str, str]]) -> dict[str, Any]:
        """``states``: entity name -> (deployment state, message) for the loaded entities."""
        entities = []
        for entity in self.config["served_entities"]:
            last_log = self.logs[-1] if self.logs else ""
            state, message = states.get(entity["name"], ("DEPLOYMENT_CREATING", last_log))
            entities.append(
                {**entity, "state": {"deployment": state, "deployment_state_message": message}}
            )
        api = {
            "name": self.name,
            "id": self.id,
            "creator": self.creator,
            "creation_timestamp": self.creation_timestamp,
            "last_updated_timestamp": self.last_updated_timestamp or self.creation_timestamp,
            "state": {"ready": self.ready, "config_update": self.config_update},
            "config": {**self.config, "served_entities": entities},
        }
        if self.pending_config is not None:
            api["pending_config"] = self.pending_config
        if self.ai_gateway is not None:
            api["ai_gateway"] = self.ai_gateway
        return api


def normalize_config(raw: Any, resolve: Resolver | None = None) -> dict[str, Any]:
    """Validate a create request's ``config`` and fill Databricks' defaults.

    With ``resolve``, an ``entity_version`` that names an alias (``champion``) is pinned to
    the version it points at now.
    """
    if not isinstance(raw, dict) or not raw.get("served_entities"):
        raise BadInputError("config.served_entities must list at least one served entity.")
    entities = []
    for item in raw["served_entities"]:
        if not isinstance(item, dict) or not item.get("entity_name"):
            raise BadInputError("Each served entity needs an entity_name.")
        version = str(item.get("entity_version") or "")
        if version and not version.isdigit() and resolve is not None:
            version = resolve(str(item["entity_name"]), version)
        if not version.isdigit():
            raise BadInputError(
                "entity_version must be a version number (or an alias such as champion), "
                f"got {item.get('entity_version')!r}."
            )
        size = item.get("workload_size") or "Small"
        if size not in WORKLOAD_SIZES:
            raise BadInputError(f"workload_size must be one of {', '.join(WORKLOAD_SIZES)}.")
        short = str(item["entity_name"]).rsplit(".", 1)[-1]
        entities.append(
            {
                "name": item.get("name") or f"{short}-{version}",
                "entity_name": item["entity_name"],
                "entity_version": version,
                "workload_size": size,
                "workload_type": item.get("workload_type") or "CPU",
                "scale_to_zero_enabled": bool(item.get("scale_to_zero_enabled", False)),
            }
        )
    names = [e["name"] for e in entities]
    routes = (raw.get("traffic_config") or {}).get("routes") or [
        {"served_model_name": names[0], "traffic_percentage": 100}
    ]
    for route in routes:
        target = route.get("served_model_name") or route.get("served_entity_name")
        if target not in names:
            raise BadInputError(f"Traffic route names unknown served entity {target!r}.")
        route["served_model_name"] = target
    if sum(int(r.get("traffic_percentage", 0)) for r in routes) != 100:
        raise BadInputError("Traffic percentages must add up to 100.")
    config = {
        "served_entities": entities,
        "traffic_config": {"routes": routes},
        "config_version": 1,
    }
    if raw.get("auto_capture_config"):
        config["auto_capture_config"] = normalize_capture_config(raw["auto_capture_config"])
    return config


def open_state(path: Path, schema: str) -> tuple[sqlite3.Connection, threading.Lock]:
    """The server's SQLite state file (``<home>/serving.db``), shared across threads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), check_same_thread=False)
    lock = threading.Lock()
    with lock, db:
        db.execute(schema)
    return db, lock


class EndpointStore:
    """Endpoint definitions in SQLite, so they survive a restart.

    One server owns a workspace's endpoints at a time: the store holds an exclusive lock on
    ``serving.lock`` beside the database until :meth:`close` (or the process ends), so a
    second server on the same workspace fails at start instead of overwriting the first's
    state.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._owner = open(path.with_name("serving.lock"), "a+", encoding="utf-8")  # noqa: SIM115
        try:
            fcntl.flock(self._owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._owner.seek(0)
            pid = self._owner.read().strip() or "unknown"
            self._owner.close()
            raise AlreadyExistsError(
                f"Another gcn-rag server (pid {pid}) is serving the endpoints of "
                f"{path.parent}; stop it first, or give this one another GCN_RAG_HOME."
            ) from None
        self._owner.truncate(0)
        self._owner.write(str(os.getpid()))
        self._owner.flush()
        self._db, self._lock = open_state(
            path, "CREATE TABLE IF NOT EXISTS endpoints (name TEXT PRIMARY KEY, body TEXT NOT NULL)"
        )

    def close(self) -> None:
        """Release the workspace for another server."""
        with self._lock:
            self._owner.close()
            self._db.close()

    def save(self, endpoint: Endpoint) -> None:
        body = json.dumps(dataclasses.asdict(endpoint))
        with self._lock:
            if self._owner.closed:
                return  # closed: a late background save must not resurrect state
            with self._db:
                self._db.execute(
                    "INSERT OR REPLACE INTO endpoints VALUES (?, ?)", (endpoint.name, body)
                )

    def delete(self, name: str) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM endpoints WHERE name = ?", (name,))

    def all(self) -> list[Endpoint]:
        with self._lock:
            rows = self._db.execute("SELECT body FROM endpoints ORDER BY name").fetchall()
        return [Endpoint(**json.loads(body)) for (body,) in rows]


AI_GATEWAY_FIELDS = (
    "guardrails",
    "inference_table_config",
    "rate_limits",
    "usage_tracking_config",
    "fallback_config",
)


def normalize_ai_gateway(raw: Any) -> dict[str, Any]:
    """Validate a ``PUT …/ai-gateway`` body; rate limits are checked, the rest is stored."""
    if not isinstance(raw, dict):
        raise BadInputError("The AI gateway config must be a JSON object.")
    unknown = sorted(set(raw) - set(AI_GATEWAY_FIELDS))
    if unknown:
        raise BadInputError(
            f"Unknown AI gateway field(s) {unknown}; known: {', '.join(AI_GATEWAY_FIELDS)}."
        )
    if raw.get("inference_table_config"):
        raw["inference_table_config"] = normalize_capture_config(
            raw["inference_table_config"], "inference_table_config"
        )
    limits = raw.get("rate_limits") or []
    if not isinstance(limits, list):
        raise BadInputError("rate_limits must be a list.")
    for limit in limits:
        calls = limit.get("calls") if isinstance(limit, dict) else None
        if not isinstance(calls, int) or isinstance(calls, bool) or calls < 1:
            raise BadInputError("Each rate limit needs 'calls', a positive integer.")
        limit.setdefault("key", "endpoint")
        limit.setdefault("renewal_period", "minute")
        if limit["key"] not in ("endpoint", "user"):
            raise BadInputError("A rate limit's key must be 'endpoint' or 'user'.")
        if limit["renewal_period"] != "minute":
            raise BadInputError("A rate limit's renewal_period must be 'minute'.")
    return {k: v for k, v in raw.items() if v is not None}


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

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            request_timeout_s=settings.request_timeout_s,
            queue_timeout_s=settings.queue_timeout_s,
            scale_to_zero_idle_s=settings.scale_to_zero_idle_s,
            cold_start_wait_s=settings.cold_start_wait_s,
        )


def _release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc only)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


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
            model = self._loader(self.entity["entity_name"], self.entity["entity_version"])
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
        _release_memory()
        return True

    def state(self) -> tuple[str, str]:
        if self.model is None and self._loading:
            return "DEPLOYMENT_READY", "Starting from zero (cold start)."
        if self.model is None:
            return "DEPLOYMENT_READY", "Scaled to zero; the next request starts it."
        return "DEPLOYMENT_READY", ""


class EndpointManager:
    """Endpoints, their served entities (replicas), request routing and admission."""

    def __init__(
        self,
        store: EndpointStore,
        loader: Loader,
        limits: Limits | None = None,
        resolve: Resolver | None = None,
        capture: InferenceCapture | None = None,
    ) -> None:
        self.store = store
        self.loader = loader
        self.resolve = resolve
        self.capture = capture
        self.limits = limits or Limits()
        self.rate_limiter = RateLimiter()
        self._lock = threading.RLock()
        self._endpoints = {e.name: e for e in store.all()}
        self._replicas: dict[str, dict[str, Replica]] = {}  # endpoint -> entity name -> replica
        self._credit: dict[str, dict[str, int]] = {}  # traffic routing state per endpoint
        self._stop = threading.Event()
        for endpoint in self._endpoints.values():
            self._start_loading(endpoint, restart=True)
        interval = max(0.05, min(5.0, self.limits.scale_to_zero_idle_s / 4))
        self._reaper = threading.Thread(target=self._reap, args=(interval,), daemon=True)
        self._reaper.start()

    @classmethod
    def for_settings(cls, settings: Settings) -> EndpointManager:
        """The workspace's endpoints (``<home>/serving.db``) over its MLflow registry."""
        from gcn_rag.model.registry import tracking_uri
        from gcn_rag.tables import Catalog

        uri = tracking_uri(settings)
        store = EndpointStore(settings.home / "serving.db")  # first: it owns the workspace
        capture = InferenceCapture(
            settings.home / "capture",
            Catalog(settings.warehouse, settings.catalog, settings.schema),
            flush_interval_s=settings.capture_flush_interval_s,
        )
        capture.start()  # replays what a crashed server left, before serving anything
        return cls(
            store,
            mlflow_loader(uri),
            Limits.from_settings(settings),
            mlflow_resolver(uri),
            capture,
        )

    def close(self) -> None:
        """Flush captured requests, stop the scale-to-zero thread, release the workspace."""
        self._stop.set()
        if self.capture is not None:
            self.capture.close()
        with self._lock:
            self.store.close()

    def capture_target(self, name: str) -> CaptureTarget | None:
        """Where ``name``'s requests are captured (None: not captured, or no such endpoint)."""
        with self._lock:
            endpoint = self._endpoints.get(name)
        if endpoint is None or self.capture is None:
            return None
        return capture_target(name, endpoint.config, endpoint.ai_gateway)

    # --- management --------------------------------------------------------------------------

    def create(self, body: Any, creator: str = "local") -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise BadInputError("The request needs a 'name' and a 'config'.")
        name = body["name"]
        if not name or not all(c.isalnum() or c in "-_" for c in name):
            raise BadInputError(f"Endpoint name {name!r}: use letters, digits, '-' and '_'.")
        config = normalize_config(body.get("config"), self.resolve)
        gateway = normalize_ai_gateway(body["ai_gateway"]) if body.get("ai_gateway") else None
        with self._lock:
            if name in self._endpoints:
                raise AlreadyExistsError(f"Endpoint {name} already exists.")
            endpoint = Endpoint(
                name=name,
                id=uuid.uuid4().hex,
                creator=creator,
                creation_timestamp=int(time.time() * 1000),
                config=config,
                ai_gateway=gateway,
            )
            self._endpoints[name] = endpoint
            self.store.save(endpoint)
        self._start_loading(endpoint)
        return self.get(name)

    def update_config(self, name: str, body: Any) -> dict[str, Any]:
        """Load a new config in the background while the current one keeps serving.

        On success the new models and config replace the old ones in one step; on failure
        the old config keeps serving, ``config_update`` is ``UPDATE_FAILED`` and the logs
        say why.
        """
        config = normalize_config(body, self.resolve)
        with self._lock:
            endpoint = self.require(name)
            if "auto_capture_config" not in config and "auto_capture_config" in endpoint.config:
                config["auto_capture_config"] = endpoint.config["auto_capture_config"]
            if endpoint.config_update == IN_PROGRESS:
                raise AlreadyExistsError(
                    f"Endpoint {name} is already being updated; wait for it to finish."
                )
            config["config_version"] = int(endpoint.config.get("config_version", 1)) + 1
            endpoint.pending_config = config
            endpoint.config_update = IN_PROGRESS
            self.store.save(endpoint)
        self._start_loading(endpoint, config)
        return self.get(name)

    def put_ai_gateway(self, name: str, body: Any) -> dict[str, Any]:
        """Store the AI gateway config; its rate limits apply from the next request."""
        gateway = normalize_ai_gateway(body)
        with self._lock:
            endpoint = self.require(name)
            endpoint.ai_gateway = gateway
            endpoint.last_updated_timestamp = int(time.time() * 1000)
            self.store.save(endpoint)
        return gateway

    def get(self, name: str) -> dict[str, Any]:
        endpoint = self.require(name)
        with self._lock:
            states = {n: r.state() for n, r in self._replicas.get(name, {}).items()}
        if endpoint.config_update == UPDATE_FAILED:
            reason = endpoint.logs[-1] if endpoint.logs else ""
            for entity in endpoint.config["served_entities"]:
                states.setdefault(entity["name"], ("DEPLOYMENT_FAILED", reason))
        api = endpoint.to_api(states)
        capture = api["config"].get("auto_capture_config")
        if capture and capture.get("enabled"):
            table = payload_table(name, capture)
            api["config"]["auto_capture_config"] = {
                **capture,
                "state": {"payload_table": {"name": table.rsplit(".", 1)[-1]}},
            }
        if self.capture is not None and self.capture_target(name) is not None:
            api["state"]["capture"] = self.capture.stats()
        return api

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            names = sorted(self._endpoints)
        return [self.get(name) for name in names]

    def delete(self, name: str) -> None:
        with self._lock:
            self.require(name)
            del self._endpoints[name]
            self._replicas.pop(name, None)
            self.store.delete(name)
        _release_memory()

    def logs(self, name: str) -> str:
        return "\n".join(self.require(name).logs)

    def replicas(self) -> dict[str, dict[str, Replica]]:
        """A snapshot of every endpoint's replicas (for metrics)."""
        with self._lock:
            return {name: dict(replicas) for name, replicas in self._replicas.items()}

    # --- invocations -------------------------------------------------------------------------

    def route(self, name: str, entity: str | None = None, caller: str = "") -> Replica:
        """Pick the served entity for one request, after the endpoint's rate limits."""
        endpoint = self.require(name)
        with self._lock:
            replicas = self._replicas.get(name, {})
        if endpoint.ready != READY or not replicas:
            raise NotReadyError(f"Endpoint {name} is not ready yet; retry shortly.", 5)
        limits = (endpoint.ai_gateway or {}).get("rate_limits")
        if limits:
            self.rate_limiter.check(name, limits, caller)
        target = entity or self._route(endpoint)
        if target not in replicas:
            raise NotFoundError(
                f"Endpoint {name} has no served entity {target!r}; "
                f"it serves {', '.join(sorted(replicas))}."
            )
        return replicas[target]

    def predict(self, replica: Replica, frame: Any, params: dict[str, Any] | None) -> Any:
        """Run one request on ``replica`` within its concurrency limit (blocking)."""
        replica.acquire(self.limits.queue_timeout_s)
        try:
            model = replica.ready_model(self.limits.cold_start_wait_s)
            if batchable(model):
                return replica.batcher.predict(model, frame, params or None)
            return model.predict(frame, params=params or None)
        finally:
            replica.release()

    def invoke(
        self, name: str, frame: Any, params: dict[str, Any] | None, entity: str | None = None
    ) -> tuple[Any, str]:
        """Route and run a request; returns (predictions DataFrame, served entity name)."""
        replica = self.route(name, entity)
        return self.predict(replica, frame, params), replica.name

    def _route(self, endpoint: Endpoint) -> str:
        """Smooth weighted round-robin: exact percentages over every 100 requests, interleaved.

        (Random picks would only be right on average; 90/10 over 1,000 requests lands within
        a point of 90 here every time.)
        """
        routes = endpoint.config["traffic_config"]["routes"]
        with self._lock:
            credit = self._credit.setdefault(endpoint.name, {})
            best = ""
            for route in routes:
                target = str(route["served_model_name"])
                credit[target] = credit.get(target, 0) + int(route["traffic_percentage"])
                if not best or credit[target] > credit[best]:
                    best = target
            credit[best] -= 100
        return best

    # --- loading and scale-to-zero -----------------------------------------------------------

    def require(self, name: str) -> Endpoint:
        """The endpoint called ``name``, or a 404-style error that says how to list them."""
        with self._lock:
            endpoint = self._endpoints.get(name)
        if endpoint is None:
            raise NotFoundError(
                f"Endpoint {name} does not exist; list them with GET /api/2.0/serving-endpoints."
            )
        return endpoint

    def _start_loading(
        self, endpoint: Endpoint, config: dict[str, Any] | None = None, restart: bool = False
    ) -> None:
        target = config if config is not None else endpoint.config
        thread = threading.Thread(target=self._load, args=(endpoint, target, restart), daemon=True)
        thread.start()

    def _load(self, endpoint: Endpoint, config: dict[str, Any], restart: bool) -> None:
        """Build the replicas of ``config``, reusing loaded models of the same version.

        At a restart, scale-to-zero entities start unloaded (they load on the first request).
        """
        with self._lock:
            current = dict(self._replicas.get(endpoint.name, {}))
        replicas: dict[str, Replica] = {}
        try:
            for entity in config["served_entities"]:
                old = current.get(entity["name"])
                if old is not None and old.same_model(entity) and old.model is not None:
                    replicas[entity["name"]] = Replica(entity, self.loader, old.model)
                    continue
                if restart and entity.get("scale_to_zero_enabled"):
                    replicas[entity["name"]] = Replica(entity, self.loader)
                    continue
                endpoint.logs.append(
                    f"loading {entity['entity_name']} version {entity['entity_version']}"
                )
                model = self.loader(entity["entity_name"], entity["entity_version"])
                replicas[entity["name"]] = Replica(entity, self.loader, model)
        except Exception as exc:  # a failed load is reported on the endpoint, not raised
            endpoint.logs.append(f"load failed: {type(exc).__name__}: {exc}")
            with self._lock:
                endpoint.config_update = UPDATE_FAILED
                endpoint.pending_config = None
                endpoint.last_updated_timestamp = int(time.time() * 1000)
                self.store.save(endpoint)
            return
        with self._lock:
            if self._endpoints.get(endpoint.name) is not endpoint:
                return  # deleted while loading
            self._replicas[endpoint.name] = replicas  # the swap: one assignment under the lock
            self._credit.pop(endpoint.name, None)
            endpoint.config = config
            endpoint.pending_config = None
            endpoint.ready, endpoint.config_update = READY, NOT_UPDATING
            endpoint.last_updated_timestamp = int(time.time() * 1000)
            endpoint.logs.append(f"ready (config version {config.get('config_version', 1)})")
            self.store.save(endpoint)
        if current:
            _release_memory()

    def _reap(self, interval: float) -> None:
        while not self._stop.wait(interval):
            for name, replicas in self.replicas().items():
                for replica in replicas.values():
                    if replica.unload_if_idle(self.limits.scale_to_zero_idle_s):
                        self._log(name, f"{replica.name}: scaled to zero after idling")

    def _log(self, name: str, line: str) -> None:
        with self._lock:
            endpoint = self._endpoints.get(name)
            if endpoint is not None:
                endpoint.logs.append(line)
