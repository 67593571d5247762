"""Served entities on Ray Serve (``gcn-rag serve --engine ray``).

:class:`RayEngine` is a :data:`~gcn_rag.model.registry.Loader`: where the local engine loads
a served entity's registered PyFunc into this process, it deploys the same model version as
a Ray Serve application (one deployment, ``replicas`` Ray replicas, each loading the PyFunc
from the version's artifacts) and returns a :class:`RayModel`, whose ``predict`` calls the
deployment through a ``DeploymentHandle``. Ray Serve's HTTP proxy stays off: the FastAPI
app (auth, capture, metrics, guardrails, limits, the Databricks routes) is the only front.

What maps to what:

- workload size -> the deployment's ``max_ongoing_requests`` per Ray replica (Small 4,
  Medium 16, Large 64); admission (queue, 429) is still the front's, per served entity.
- scale to zero -> ours: an idle entity's model is dropped by the front as in the local
  engine, and dropping a :class:`RayModel` deletes its application (its Ray replicas stop);
  the next request deploys it again (a cold start). Ray's own autoscaling to zero would
  hide the state the API shows and the cold start it counts.
- zero-downtime update -> ours: the new version's application is deployed and ready before
  the front swaps to it, and the old one is deleted once no request holds it.
- batching -> ours (:class:`~gcn_rag.serving.replicas.Batcher`, before the handle): one
  handle call per batch, not per request.
- shadow routes -> their copies run in the server's low-priority sidecar process, loaded
  locally (a pickled engine is the local loader), not on Ray.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import re
import threading
import uuid
import weakref
from typing import TYPE_CHECKING, Any

from gcn_rag.errors import BadInputError, GcnRagError, NotReadyError
from gcn_rag.serving.endpoints import WORKLOAD_SIZES

if TYPE_CHECKING:
    from gcn_rag.cluster import RayCluster
    from gcn_rag.settings import Settings

PREFIX = "gcn-rag-"  # every application this engine deploys is named so


@dataclasses.dataclass(frozen=True)
class _Metadata:
    metadata: dict[str, Any]  # what replicas.batchable reads of a PyFunc's metadata


class RayModel:
    """A served entity's model running as a Ray Serve application (``app``)."""

    def __init__(self, handle: Any, app: str, row_wise: bool) -> None:
        self.app = app
        self.metadata = _Metadata({"row_wise": row_wise})
        self._handle = handle

    def predict(self, frame: Any, params: dict[str, Any] | None = None) -> Any:
        """The PyFunc's predictions for ``frame``, computed by one of the Ray replicas.

        The model's own exception is raised as it is (not Ray's wrapper, whose text is the
        replica's traceback, host and pid), so the front answers as with the local engine.
        """
        try:
            return self._handle.predict.remote(frame, params).result()
        except Exception as exc:
            raised = _unwrapped(exc, self.app)
            if raised is exc:
                raise
            raise raised from None


class RayEngine:
    """Loads served entities as Ray Serve applications on ``cluster`` (see the module doc).

    ``replicas`` Ray replicas per served entity, each reserving ``cpus`` logical CPUs.
    :meth:`close` deletes every application it deployed and stops a private cluster.
    """

    def __init__(
        self, tracking_uri: str, cluster: RayCluster, *, replicas: int = 1, cpus: float = 1.0
    ) -> None:
        if replicas < 1:
            raise BadInputError(f"--ray-replicas must be at least 1; got {replicas}.")
        self.tracking_uri = tracking_uri
        self.cluster = cluster
        self.replicas = replicas
        self.cpus = cpus
        self._serve: Any = None
        self._lock = threading.Lock()  # one Serve control call at a time
        self._apps: set[str] = set()
        self._retired: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._deleter = threading.Thread(target=self._delete_retired, daemon=True)
        self._deleter.start()

    def start(self) -> None:
        """Connect to the cluster (starting a private one) and start Ray Serve, if not yet.

        Call it from the main thread before installing signal handlers: Ray's driver takes
        SIGTERM over, and a Serve call made after its handler ran aborts the process.
        """
        self._connect()

    def __call__(self, name: str, version: str) -> RayModel:
        """The Loader call: a Small entity of ``name`` version ``version``."""
        return self.load_entity({"entity_name": name, "entity_version": version})

    def load_entity(self, entity: dict[str, Any]) -> RayModel:
        """Deploy a served entity (its workload size sets the replicas' concurrency) and
        return its model once every Ray replica has loaded it."""
        name, version = str(entity["entity_name"]), str(entity["entity_version"])
        uri = self._artifacts(name, version)
        app = f"{PREFIX}{_slug(name)}-{version}-{uuid.uuid4().hex[:8]}"
        serve = self._connect()
        deployment = serve.deployment(
            _ServedModel,
            name="model",
            num_replicas=self.replicas,
            max_ongoing_requests=WORKLOAD_SIZES[entity.get("workload_size") or "Small"],
            max_constructor_retry_count=1,  # a model that fails to load fails the same again
            graceful_shutdown_wait_loop_s=0.2,
            ray_actor_options={"num_cpus": self.cpus},
        )
        with self._lock:
            self._apps.add(app)
            try:
                handle = serve.run(deployment.bind(uri), name=app, route_prefix=None)
                row_wise = bool(handle.row_wise.remote().result())
            except Exception as exc:
                self._delete(app)
                raise NotReadyError(f"Ray Serve could not deploy {name} {version}: {exc}") from exc
        model = RayModel(handle, app, row_wise)
        weakref.finalize(model, self._retired.put, app)  # dropped by the front -> deleted
        return model

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        """Pickled for a shadow route's sidecar process: the local MLflow loader, so mirrored
        copies run beside the server at low priority, as with the local engine."""
        from gcn_rag.model.registry import mlflow_loader

        return (mlflow_loader, (self.tracking_uri,))

    def applications(self) -> set[str]:
        """The applications deployed and not yet deleted."""
        with self._lock:
            return set(self._apps)

    def close(self) -> None:
        """Delete every application deployed here; stop the cluster if it is private."""
        self._retired.put(None)
        self._deleter.join(timeout=60)
        with self._lock:
            for app in sorted(self._apps):
                self._delete(app)
            self._serve = None  # a private cluster's Serve stops with it
        self.cluster.close()

    def _connect(self) -> Any:
        with self._lock:
            if self._serve is None:
                self.cluster.connect("serve")
                from ray import serve

                logging.getLogger("ray.serve").setLevel(logging.WARNING)  # INFO per deploy
                serve.start(proxy_location="Disabled")  # our app is the only HTTP front
                self._serve = serve
            return self._serve

    def _artifacts(self, name: str, version: str) -> str:
        """Where the version's model files are (what every Ray replica loads), so workers
        on other hosts need the artifact store, not the registry database."""
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        return str(client.get_model_version_download_uri(name, version))

    def _delete_retired(self) -> None:
        while (app := self._retired.get()) is not None:
            with self._lock:
                if app in self._apps and self._serve is not None:
                    self._delete(app)

    def _delete(self, app: str) -> None:
        """Delete ``app`` (the lock held); a cluster that is gone has nothing to delete."""
        self._apps.discard(app)
        if self._serve is not None:
            try:
                self._serve.delete(app)
            except Exception as exc:  # the cluster went away: nothing left to stop
                logging.getLogger(__name__).warning("could not delete %s: %s", app, exc)


def serving_engine(
    settings: Settings, engine: str, *, address: str | None = None, replicas: int = 1
) -> RayEngine | None:
    """The engine ``gcn-rag serve --engine`` names: None for ``local`` (models load into the
    server), or a :class:`RayEngine` on the cluster at ``address`` (default: a private one)."""
    from gcn_rag.cluster import RayCluster, import_ray, uses_ray
    from gcn_rag.model.registry import tracking_uri

    if not uses_ray(engine, address):
        if replicas != 1:
            raise BadInputError("--ray-replicas sizes Ray deployments; use it with --engine ray.")
        return None
    import_ray("serve")  # fail now, with the extra to install
    # 1 logical CPU per Ray replica lets a cluster place them by capacity; a private one is
    # this machine alone, where reserving would only cap how many entities fit (2 cores: 2)
    cpus = 1.0 if address is not None else 0.0
    return RayEngine(tracking_uri(settings), RayCluster(address), replicas=replicas, cpus=cpus)


def _unwrapped(exc: Exception, app: str) -> Exception:
    """What a failed handle call raises to the front: the model's exception for a
    ``RayTaskError``; a 503 without host details when Ray itself failed (a replica died)."""
    from ray.exceptions import RayError, RayTaskError
    from ray.serve.exceptions import RayServeException

    if isinstance(exc, RayTaskError):
        cause = exc.cause
        if isinstance(cause, RayError):  # not the model's (say, it could not be pickled)
            return GcnRagError(str(cause).splitlines()[0])
        return cause  # type: ignore[no-any-return]
    if isinstance(exc, RayError | RayServeException):
        logging.getLogger(__name__).warning("Ray Serve could not answer for %s: %s", app, exc)
        return NotReadyError(f"Ray Serve could not answer ({type(exc).__name__}); retry shortly.")
    return exc


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.rsplit(".", 1)[-1].lower()).strip("-")


class _ServedModel:
    """The deployment: one PyFunc per Ray replica, answering ``predict`` calls in threads."""

    def __init__(self, model_uri: str) -> None:
        _grpc_on_node_address()
        import mlflow

        self._model = mlflow.pyfunc.load_model(model_uri)

    def predict(self, frame: Any, params: dict[str, Any] | None) -> Any:
        return self._model.predict(frame, params=params)

    def row_wise(self) -> bool:
        from gcn_rag.serving.replicas import batchable

        return batchable(self._model)


def _grpc_on_node_address() -> None:
    """On a loopback cluster, have this Ray replica's inter-deployment gRPC server listen on
    127.0.0.1 too. Ray 2.60 binds it to ``[::]:0`` (every interface) with no setting to
    change it (ray-project/ray#64544); it starts after the constructor, so this runs first.
    Our handle calls do not use it (Ray actor calls do)."""
    import importlib

    ray: Any = importlib.import_module("ray")
    replica: Any = importlib.import_module("ray.serve._private.replica")
    address = str(ray.util.get_node_ip_address())
    original = getattr(replica, "add_port_to_grpc_server", None)
    if original is None or not address.startswith("127."):
        return

    def bind(server: Any, where: str) -> Any:
        return original(server, where.replace("[::]", address))

    replica.add_port_to_grpc_server = bind
