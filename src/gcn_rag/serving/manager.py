"""The endpoint manager: endpoints, their served entities, request routing and admission.

Endpoint definitions persist in ``<home>/serving.db`` (:mod:`gcn_rag.serving.store`) and are
restored when the server restarts; models are loaded in a background thread, so ``create``
returns at once with ``state.config_update = IN_PROGRESS`` and the endpoint turns ``READY``
when every entity has loaded (or ``UPDATE_FAILED``, with the reason in the endpoint's logs).

``update_config`` loads the new config in the background (``pending_config``,
``config_update = IN_PROGRESS``) while the old one serves, then both swap in one step under
the lock; a failed load leaves the old config serving with ``UPDATE_FAILED`` and the reason in
the logs. Served entities at run time are :mod:`gcn_rag.serving.replicas`.
"""

from __future__ import annotations

import builtins
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from gcn_rag.errors import (
    AlreadyExistsError,
    BadInputError,
    GcnRagError,
    NotFoundError,
    NotReadyError,
    SourceUnavailableError,
)
from gcn_rag.serving.capture import (
    CaptureTarget,
    InferenceCapture,
    capture_target,
    check_capture,
    payload_table,
)
from gcn_rag.serving.endpoints import (
    IN_PROGRESS,
    NOT_READY,
    NOT_UPDATING,
    READY,
    UPDATE_FAILED,
    Endpoint,
    check_name,
    followed_config,
    normalize_ai_gateway,
    normalize_config,
)
from gcn_rag.serving.guarding import CITED_EMAILS, EndpointGuards
from gcn_rag.serving.replicas import Limits, RateLimiter, Replica, TrafficSplit, release_memory
from gcn_rag.serving.store import EndpointStore

if TYPE_CHECKING:
    from gcn_rag.model.registry import Loader, Resolver
    from gcn_rag.settings import Settings


class ShadowQueue(Protocol):
    """What the manager sees of the shadow traffic (:class:`gcn_rag.serving.shadow.Shadows`)."""

    @property
    def queued(self) -> int: ...

    def close(self) -> None: ...


class EndpointManager:
    """Endpoints, their served entities (replicas), request routing and admission."""

    def __init__(
        self,
        store: EndpointStore,
        loader: Loader,
        limits: Limits | None = None,
        resolve: Resolver | None = None,
        capture: InferenceCapture | None = None,
        cited_emails: str = "mask",
    ) -> None:
        if cited_emails not in CITED_EMAILS:
            raise BadInputError(
                f"guardrail_cited_emails must be {' or '.join(CITED_EMAILS)}; got {cited_emails!r}."
            )
        self.store = store
        self.cited_emails = cited_emails  # see gcn_rag.serving.guarding
        self.is_token: Callable[[str], bool] | None = None
        self._guards: dict[str, tuple[Any, EndpointGuards | None]] = {}
        self.loader = loader
        self.resolve = resolve
        self.capture = capture
        self.limits = limits or Limits()
        self.rate_limiter = RateLimiter()
        self._lock = threading.RLock()
        self._endpoints = {e.name: e for e in store.all()}
        self._replicas: dict[str, dict[str, Replica]] = {}  # endpoint -> entity name -> replica
        self.traffic = TrafficSplit()
        self.shadows: ShadowQueue | None = None  # set by the invocations path that feeds it
        self._stop = threading.Event()
        for endpoint in self._endpoints.values():
            if endpoint.pending_config is not None:  # the server stopped mid-update
                version = endpoint.pending_config.get("config_version")
                endpoint.logs.append(
                    f"update to config version {version} interrupted by a restart; the previous "
                    "config serves again: send the update again"
                )
                endpoint.pending_config = None
            endpoint.ready = NOT_READY  # until its models are loaded again (or fail to)
            self._start_loading(endpoint, restart=True)
        interval = max(
            0.05, min(5.0, self.limits.scale_to_zero_idle_s / 4, self.limits.alias_check_s)
        )
        self._followed: dict[tuple[str, str], str] = {}  # (endpoint, entity) -> version tried
        self._reaper = threading.Thread(target=self._reap, args=(interval,), daemon=True)
        self._reaper.start()

    @classmethod
    def for_settings(cls, settings: Settings, loader: Loader | None = None) -> EndpointManager:
        """The workspace's endpoints (``<home>/serving.db``) over its MLflow registry, loaded
        into this process or by ``loader`` (an engine's: ``serving.ray_engine``)."""
        from gcn_rag.model.registry import mlflow_loader, mlflow_resolver, tracking_uri
        from gcn_rag.tables import Catalog

        uri = tracking_uri(settings)
        store = EndpointStore(settings.serving_state)  # first: it owns the workspace
        capture = InferenceCapture(
            settings.capture_spool,
            Catalog.from_settings(settings),
            flush_interval_s=settings.capture_flush_interval_s,
        )
        capture.start()  # replays what a crashed server left, before serving anything
        return cls(
            store,
            loader or mlflow_loader(uri),
            Limits.from_settings(settings),
            mlflow_resolver(uri),
            capture,
            settings.guardrail_cited_emails,
        )

    def close(self) -> None:
        """Flush captured requests, stop the scale-to-zero thread, release the workspace."""
        self._stop.set()
        if self.shadows is not None:  # its last row is spooled before capture flushes
            self.shadows.close()
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

    def guardrails(self, name: str) -> EndpointGuards | None:
        """``name``'s guardrails (None: none on, or no such endpoint), rebuilt only when its
        AI gateway config was replaced."""
        with self._lock:
            endpoint = self._endpoints.get(name)
        gateway = endpoint.ai_gateway if endpoint is not None else None
        cached = self._guards.get(name)
        if cached is not None and cached[0] is gateway:
            return cached[1]
        config = (gateway or {}).get("guardrails")
        guards = EndpointGuards.build(config, self.is_token, self.cited_emails)
        self._guards[name] = (gateway, guards)
        return guards

    def recognise_tokens(self, is_token: Callable[[str], bool]) -> None:
        """Let the PII guardrails tell this server's bearer tokens (from its token store)."""
        self.is_token = is_token
        self._guards.clear()

    # --- management --------------------------------------------------------------------------

    def create(self, body: Any, creator: str = "local") -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise BadInputError("The request needs a 'name' and a 'config'.")
        name = check_name(body["name"])
        config = normalize_config(body.get("config"), self.resolve)
        gateway = normalize_ai_gateway(body["ai_gateway"]) if body.get("ai_gateway") else None
        _check_capture(name, config, gateway)
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
            self._persist(endpoint)  # first: a create that cannot be kept leaves nothing
            self._endpoints[name] = endpoint
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
            _check_capture(name, config, endpoint.ai_gateway)
            endpoint.pending_config, endpoint.config_update = config, IN_PROGRESS
            try:
                self._persist(endpoint)
            except GcnRagError:
                endpoint.pending_config, endpoint.config_update = None, NOT_UPDATING
                raise
        self._start_loading(endpoint, config)
        return self.get(name)

    def put_ai_gateway(self, name: str, body: Any) -> dict[str, Any]:
        """Store the AI gateway config; its rate limits apply from the next request."""
        gateway = normalize_ai_gateway(body)
        with self._lock:
            endpoint = self.require(name)
            _check_capture(name, endpoint.config, gateway)
            previous = endpoint.ai_gateway, endpoint.last_updated_timestamp
            endpoint.ai_gateway = gateway
            endpoint.last_updated_timestamp = int(time.time() * 1000)
            try:
                self._persist(endpoint)
            except GcnRagError:
                endpoint.ai_gateway, endpoint.last_updated_timestamp = previous
                raise
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
            try:
                self.store.delete(name)  # first: a delete that cannot be kept changes nothing
            except Exception as exc:
                raise _unsaved(name, exc) from exc
            del self._endpoints[name]
            self._replicas.pop(name, None)
            self._guards.pop(name, None)
        release_memory()

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
        target = entity or self.traffic.pick(
            endpoint.name, endpoint.config["traffic_config"]["routes"]
        )
        if target not in replicas:
            raise NotFoundError(
                f"Endpoint {name} has no served entity {target!r}; "
                f"it serves {', '.join(sorted(replicas))}."
            )
        return replicas[target]

    def mirrors(self, name: str) -> bool:
        """Whether ``name`` has shadow routes (no lock: a config is swapped whole)."""
        endpoint = self._endpoints.get(name)
        return bool(endpoint and endpoint.config["traffic_config"].get("shadow_routes"))

    def shadow_replicas(
        self, name: str, primary: str, take: Callable[[str, str, int], bool]
    ) -> builtins.list[Replica]:
        """The shadow entities that mirror this request of ``name`` (answered by ``primary``):
        those of its ``shadow_routes`` whose share ``take(endpoint, entity, percent)`` picks."""
        with self._lock:
            endpoint = self._endpoints.get(name)
            replicas = self._replicas.get(name, {})
        if endpoint is None:
            return []
        routes = endpoint.config["traffic_config"].get("shadow_routes") or []
        return [
            replicas[route["served_model_name"]]
            for route in routes
            if route["served_model_name"] != primary
            and route["served_model_name"] in replicas
            and take(name, route["served_model_name"], int(route["shadow_percentage"]))
        ]

    def shadow_models(self) -> set[tuple[str, str]]:
        """(entity name, version) of every served entity some endpoint mirrors traffic to."""
        with self._lock:
            endpoints = list(self._endpoints.values())
        found = set()
        for config in (endpoint.config for endpoint in endpoints):
            shadows = {
                r["served_model_name"] for r in config["traffic_config"].get("shadow_routes", [])
            }
            found |= {
                (str(e["entity_name"]), str(e["entity_version"]))
                for e in config["served_entities"] if e["name"] in shadows
            }  # fmt: skip
        return found

    def predict(self, replica: Replica, frame: Any, params: dict[str, Any] | None) -> Any:
        """Run one request on ``replica`` within its concurrency limit (blocking)."""
        return replica.predict(frame, params, self.limits)

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
                replicas[entity["name"]] = Replica.loaded(entity, self.loader)
        except Exception as exc:  # a failed load is reported on the endpoint, not raised
            endpoint.logs.append(f"load failed: {type(exc).__name__}: {exc}")
            with self._lock:
                if self._endpoints.get(endpoint.name) is not endpoint:
                    return  # deleted while loading: nothing to record, nothing to bring back
                endpoint.config_update = UPDATE_FAILED
                endpoint.pending_config = None
                endpoint.last_updated_timestamp = int(time.time() * 1000)
                self._persist_quietly(endpoint)
            return
        with self._lock:
            if self._endpoints.get(endpoint.name) is not endpoint:
                return  # deleted while loading
            self._replicas[endpoint.name] = replicas  # the swap: one assignment under the lock
            self.traffic.reset(endpoint.name)
            endpoint.config = config
            endpoint.pending_config = None
            endpoint.ready, endpoint.config_update = READY, NOT_UPDATING
            endpoint.last_updated_timestamp = int(time.time() * 1000)
            endpoint.logs.append(f"ready (config version {config.get('config_version', 1)})")
            self._persist_quietly(endpoint)
        if current:
            release_memory()

    def _persist(self, endpoint: Endpoint) -> None:
        """Save ``endpoint``, or raise 503 saying nothing was changed."""
        try:
            self.store.save(endpoint)
        except Exception as exc:
            raise _unsaved(endpoint.name, exc) from exc

    def _persist_quietly(self, endpoint: Endpoint) -> None:
        """Save in the background: a failure goes in the endpoint's logs (kept in memory)."""
        try:
            self.store.save(endpoint)
        except Exception as exc:
            endpoint.logs.append(f"state not saved ({type(exc).__name__}: {exc})")

    def _reap(self, interval: float) -> None:
        """Scale idle entities to zero; follow served aliases (every ``alias_check_s``)."""
        checked = time.monotonic()
        while not self._stop.wait(interval):
            for name, replicas in self.replicas().items():
                for replica in replicas.values():
                    if replica.unload_if_idle(self.limits.scale_to_zero_idle_s):
                        self._log(name, f"{replica.name}: scaled to zero after idling")
            if time.monotonic() - checked >= self.limits.alias_check_s:
                checked = time.monotonic()
                self.follow_aliases()

    def follow_aliases(self) -> None:
        """Update every endpoint whose served entity follows an alias (it was created or
        updated with ``entity_version: "champion"``) that now names another version: the
        same zero-downtime update as the API's, logged on the endpoint. A move whose update
        failed to load is not retried until the alias moves again."""
        if self.resolve is None:
            return
        with self._lock:
            endpoints = [e for e in self._endpoints.values() if e.config_update != IN_PROGRESS]
        for endpoint in endpoints:
            moved = {}
            for entity in endpoint.config["served_entities"]:
                alias = entity.get("entity_alias")
                if not alias:
                    continue
                try:
                    version = self.resolve(str(entity["entity_name"]), str(alias))
                except Exception:  # the alias is gone (or the registry busy): stay, retry
                    continue
                key = (endpoint.name, entity["name"])
                failed = endpoint.config_update == UPDATE_FAILED
                if version != entity["entity_version"] and not (
                    failed and self._followed.get(key) == version
                ):
                    self._followed[key] = version
                    moved[entity["name"]] = version
            if moved:
                self._follow(endpoint, moved)

    def _follow(self, endpoint: Endpoint, moved: dict[str, str]) -> None:
        said = ", ".join(f"{name} -> version {version}" for name, version in moved.items())
        self._log(endpoint.name, f"alias moved ({said}): updating")
        try:
            self.update_config(endpoint.name, followed_config(endpoint.config, moved))
        except GcnRagError as exc:
            self._log(endpoint.name, f"could not follow the alias: {exc.message}")

    def _log(self, name: str, line: str) -> None:
        with self._lock:
            if (endpoint := self._endpoints.get(name)) is not None:
                endpoint.logs.append(line)


def _check_capture(name: str, config: dict[str, Any], gateway: dict[str, Any] | None) -> None:
    """400 unless both places an endpoint may capture into are valid table names."""
    if config.get("auto_capture_config"):
        check_capture(name, config["auto_capture_config"], "auto_capture_config")
    if gateway and gateway.get("inference_table_config"):
        check_capture(name, gateway["inference_table_config"], "inference_table_config")


def _unsaved(name: str, exc: Exception) -> GcnRagError:
    return SourceUnavailableError(
        f"The server's state could not be saved ({type(exc).__name__}: {exc}), so endpoint "
        f"{name} was not changed; free disk space and retry."
    )
