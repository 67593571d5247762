"""Serving endpoints with the Databricks Model Serving shapes: state, models, invocations.

An endpoint serves one or more *served entities* (a registered model name + version); its
traffic config splits requests between them by percentage. Endpoint definitions persist in
``<home>/serving.db`` (SQLite) and are restored when the server restarts; models are loaded
in a background thread, so ``create`` returns at once with ``state.config_update =
IN_PROGRESS`` and the endpoint turns ``READY`` when every entity has loaded (or
``UPDATE_FAILED``, with the reason in the endpoint's logs).

Covered so far: create / get / list / delete, invocations, and ``update_config``: the new
config loads in the background (``pending_config``, ``config_update = IN_PROGRESS``) while the
old one serves, then both swap in one step under the lock; a failed load leaves the old config
serving with ``UPDATE_FAILED`` and the reason in the logs. Still to come (see the issue):
workload-size concurrency limits and 429s, scale-to-zero, auth, inference capture.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gcn_rag.errors import AlreadyExistsError, BadInputError, NotFoundError, NotReadyError

WORKLOAD_SIZES = {"Small": 4, "Medium": 16, "Large": 64}
READY, NOT_READY = "READY", "NOT_READY"
NOT_UPDATING, IN_PROGRESS, UPDATE_FAILED = "NOT_UPDATING", "IN_PROGRESS", "UPDATE_FAILED"


Loader = Callable[[str, str], Any]  # (entity_name, entity_version) -> object with .predict


def mlflow_loader(tracking_uri: str) -> Loader:
    """Load ``models:/<name>/<version>`` from the workspace's registry."""

    def load(name: str, version: str) -> Any:
        import mlflow

        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        return mlflow.pyfunc.load_model(f"models:/{name}/{version}")

    return load


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

    def to_api(self, loaded: dict[str, str]) -> dict[str, Any]:
        entities = []
        for entity in self.config["served_entities"]:
            state = loaded.get(entity["name"], "DEPLOYMENT_CREATING")
            message = "" if state == "DEPLOYMENT_READY" else self.logs[-1] if self.logs else ""
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
        return api


def normalize_config(raw: Any) -> dict[str, Any]:
    """Validate a create request's ``config`` and fill Databricks' defaults."""
    if not isinstance(raw, dict) or not raw.get("served_entities"):
        raise BadInputError("config.served_entities must list at least one served entity.")
    entities = []
    for item in raw["served_entities"]:
        if not isinstance(item, dict) or not item.get("entity_name"):
            raise BadInputError("Each served entity needs an entity_name.")
        version = str(item.get("entity_version") or "")
        if not version.isdigit():
            raise BadInputError(
                f"entity_version must be a version number, got {item.get('entity_version')!r}."
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
        config["auto_capture_config"] = raw["auto_capture_config"]
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
    """Endpoint definitions in SQLite, so they survive a restart."""

    def __init__(self, path: Path) -> None:
        self._db, self._lock = open_state(
            path, "CREATE TABLE IF NOT EXISTS endpoints (name TEXT PRIMARY KEY, body TEXT NOT NULL)"
        )

    def save(self, endpoint: Endpoint) -> None:
        body = json.dumps(dataclasses.asdict(endpoint))
        with self._lock, self._db:
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


class EndpointManager:
    """Endpoints, their loaded models, and request routing."""

    def __init__(self, store: EndpointStore, loader: Loader) -> None:
        self.store = store
        self.loader = loader
        self._lock = threading.RLock()
        self._endpoints = {e.name: e for e in store.all()}
        self._models: dict[str, dict[str, Any]] = {}  # endpoint -> entity name -> model
        self._credit: dict[str, dict[str, int]] = {}  # traffic routing state per endpoint
        for endpoint in self._endpoints.values():
            self._start_loading(endpoint)

    # --- management --------------------------------------------------------------------------

    def create(self, body: Any, creator: str = "local") -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise BadInputError("The request needs a 'name' and a 'config'.")
        name = body["name"]
        if not name or not all(c.isalnum() or c in "-_" for c in name):
            raise BadInputError(f"Endpoint name {name!r}: use letters, digits, '-' and '_'.")
        config = normalize_config(body.get("config"))
        with self._lock:
            if name in self._endpoints:
                raise AlreadyExistsError(f"Endpoint {name} already exists.")
            endpoint = Endpoint(
                name=name,
                id=uuid.uuid4().hex,
                creator=creator,
                creation_timestamp=int(time.time() * 1000),
                config=config,
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
        config = normalize_config(body)
        with self._lock:
            endpoint = self.require(name)
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

    def get(self, name: str) -> dict[str, Any]:
        endpoint = self.require(name)
        loaded = {entity: "DEPLOYMENT_READY" for entity in self._models.get(name, {})}
        if endpoint.config_update == UPDATE_FAILED:
            loaded = {
                e["name"]: loaded.get(e["name"], "DEPLOYMENT_FAILED")
                for e in endpoint.config["served_entities"]
            }
        return endpoint.to_api(loaded)

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            names = sorted(self._endpoints)
        return [self.get(name) for name in names]

    def delete(self, name: str) -> None:
        with self._lock:
            self.require(name)
            del self._endpoints[name]
            self._models.pop(name, None)
            self.store.delete(name)

    def logs(self, name: str) -> str:
        return "\n".join(self.require(name).logs)

    # --- invocations -------------------------------------------------------------------------

    def invoke(
        self, name: str, frame: Any, params: dict[str, Any] | None, entity: str | None = None
    ) -> tuple[Any, str]:
        """Route a request; returns (predictions DataFrame, served entity name)."""
        endpoint = self.require(name)
        models = self._models.get(name, {})
        if endpoint.ready != READY or not models:
            raise NotReadyError(f"Endpoint {name} is not ready yet; retry shortly.")
        target = entity or self._route(endpoint)
        if target not in models:
            raise NotFoundError(f"Endpoint {name} has no served entity {target!r}.")
        return models[target].predict(frame, params=params or None), target

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

    # --- loading -----------------------------------------------------------------------------

    def require(self, name: str) -> Endpoint:
        """The endpoint called ``name``, or a 404-style error that says how to list them."""
        with self._lock:
            endpoint = self._endpoints.get(name)
        if endpoint is None:
            raise NotFoundError(
                f"Endpoint {name} does not exist; list them with GET /api/2.0/serving-endpoints."
            )
        return endpoint

    def _start_loading(self, endpoint: Endpoint, config: dict[str, Any] | None = None) -> None:
        target = config if config is not None else endpoint.config
        thread = threading.Thread(target=self._load, args=(endpoint, target), daemon=True)
        thread.start()

    def _load(self, endpoint: Endpoint, config: dict[str, Any]) -> None:
        current = self._models.get(endpoint.name, {})
        loaded: dict[str, Any] = {}
        try:
            for entity in config["served_entities"]:
                reuse = next((m for n, m in current.items() if n == entity["name"]), None)
                if reuse is not None:
                    loaded[entity["name"]] = reuse
                    continue
                endpoint.logs.append(
                    f"loading {entity['entity_name']} version {entity['entity_version']}"
                )
                loaded[entity["name"]] = self.loader(
                    entity["entity_name"], entity["entity_version"]
                )
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
            self._models[endpoint.name] = loaded  # the swap: one assignment under the lock
            self._credit.pop(endpoint.name, None)
            endpoint.config = config
            endpoint.pending_config = None
            endpoint.ready, endpoint.config_update = READY, NOT_UPDATING
            endpoint.last_updated_timestamp = int(time.time() * 1000)
            endpoint.logs.append(f"ready (config version {config.get('config_version', 1)})")
            self.store.save(endpoint)
