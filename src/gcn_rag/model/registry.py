"""The model registry: versions, aliases and lineage in a local MLflow (SQLite + local artifacts).

Tracking and registry live in the workspace: ``<home>/mlflow.db`` and ``<home>/mlartifacts``,
so ``mlflow ui --backend-store-uri sqlite:///<home>/mlflow.db`` shows every run, its params,
its eval metrics and its lineage tags. Registered names are three-level as in Unity Catalog
(``sandbox.nasa_gcn_models.gcn_rag_assistant``); aliases (``champion``, ``challenger``) point
at versions.

Registering copies a run's lineage tags (corpus, index, code; see
:mod:`gcn_rag.model.packaging`) and metrics onto the version. :func:`model_loader` and
:func:`alias_resolver` are what a server loads models and pins aliases with.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gcn_rag.errors import BadInputError, NotFoundError
from gcn_rag.model.relocation import repoint_artifacts

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from gcn_rag.settings import Settings
    from gcn_rag.tables import Catalog

MODEL_NAME = "sandbox.nasa_gcn_models.gcn_rag_assistant"
EXPERIMENT = "nasa_gcn_rag_model"
DESCRIPTION = (
    "RAG assistant over the NASA GCN Circulars: hybrid BM25 + dense retrieval "
    "(all-MiniLM-L6-v2, onnxruntime), event-aware, extractive cited answers."
)
TAGS = {
    "domain": "astronomy",
    "use_case": "question answering over GCN Circulars",
    "model_type": "rag",
    "data_source": "NASA GCN Circulars",
    "llm": "extractive (no LLM)",
    "embedding": "sentence-transformers/all-MiniLM-L6-v2 (onnx int8)",
}


@dataclasses.dataclass(frozen=True)
class VersionInfo:
    name: str
    version: str
    aliases: list[str]
    run_id: str
    status: str
    created: int
    metrics: dict[str, float]
    tags: dict[str, str]

    def row(self) -> dict[str, Any]:
        """The version as one row of ``gcn-rag model list``."""
        return {
            "version": self.version,
            "aliases": ", ".join(self.aliases),
            "created": f"{datetime.fromtimestamp(self.created / 1000, UTC):%Y-%m-%d %H:%M}",
            "status": self.status,
            "run_id": self.run_id,
            "all_accuracy": self.metrics.get("all_accuracy"),
            "corpus": self.tags.get("corpus_count", ""),
        }

    def details(self) -> list[dict[str, Any]]:
        """The version in full as (key, value) rows: run, metrics, lineage tags."""
        return [
            {"key": "name", "value": self.name},
            {"key": "version", "value": self.version},
            {"key": "aliases", "value": ", ".join(self.aliases)},
            {"key": "run_id", "value": self.run_id},
            {"key": "uri", "value": f"models:/{self.name}/{self.version}"},
            *({"key": f"metric {k}", "value": f"{v:.3f}"} for k, v in sorted(self.metrics.items())),
            *(
                {"key": k, "value": v}
                for k, v in sorted(self.tags.items())
                if not k.startswith("metric.")
            ),
        ]


def configure(settings: Settings) -> MlflowClient:
    """Point MLflow at the workspace's SQLite store and return a client."""
    import mlflow
    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = tracking_uri(settings)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    if client.get_experiment_by_name(EXPERIMENT) is None:
        artifacts = settings.mlflow_artifacts
        artifacts.mkdir(parents=True, exist_ok=True)
        client.create_experiment(EXPERIMENT, artifact_location=artifacts.resolve().as_uri())
    mlflow.set_experiment(EXPERIMENT)
    return client


def tracking_uri(settings: Settings) -> str:
    """The workspace's MLflow store; a moved or copied workspace's artifact locations are
    re-pointed at its own ``mlartifacts`` first (see :mod:`gcn_rag.model.relocation`)."""
    settings.home.mkdir(parents=True, exist_ok=True)
    repoint_artifacts(settings.mlflow_store, settings.mlflow_artifacts, EXPERIMENT)
    return f"sqlite:///{settings.mlflow_store.resolve()}"


Loader = Callable[[str, str], Any]  # (entity_name, entity_version) -> object with .predict
Resolver = Callable[[str, str], str]  # (entity_name, alias) -> version number


def mlflow_loader(tracking_uri: str) -> Loader:
    """Load ``models:/<name>/<version>`` from the workspace's registry (picklable: a shadow
    entity's process loads its model with it)."""
    return MlflowLoader(tracking_uri)


@dataclasses.dataclass(frozen=True)
class MlflowLoader:
    tracking_uri: str

    def __call__(self, name: str, version: str) -> Any:
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        return mlflow.pyfunc.load_model(f"models:/{name}/{version}")


def mlflow_resolver(tracking_uri: str) -> Resolver:
    """The version number a reference names: an alias (``champion``) is resolved, a number
    is checked to exist; 404 for either when the registry has no such thing."""

    def resolve(name: str, ref: str) -> str:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        try:
            if ref.isdigit():
                return str(client.get_model_version(name, ref).version)
            return str(client.get_model_version_by_alias(name, ref.lstrip("@")).version)
        except MlflowException as exc:
            raise NotFoundError(
                f"{name} has no version or alias {ref!r}; see `gcn-rag model list`."
            ) from exc

    return resolve


def register(
    settings: Settings,
    model_uri: str,
    *,
    name: str = MODEL_NAME,
    tags: dict[str, str] | None = None,
) -> str:
    """Register a logged model as a new version of ``name``; returns the version."""
    import mlflow

    client = configure(settings)
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        client.create_registered_model(name, tags=TAGS, description=DESCRIPTION)
    version = mlflow.register_model(model_uri, name, tags=tags)
    run = client.get_run(version.run_id) if version.run_id else None
    if run is not None:
        for key, value in run.data.tags.items():
            if key.startswith(("corpus_", "git_", "gcn_rag_", "index_", "embedding_")):
                client.set_model_version_tag(name, version.version, key, value)
        for key, number in run.data.metrics.items():
            client.set_model_version_tag(name, version.version, f"metric.{key}", f"{number:.4f}")
    client.update_model_version(name, version.version, description=DESCRIPTION)
    return str(version.version)


#: registered-model tag ``gcn_rag.alias.<alias>`` = ``hand:<version>`` or ``auto:<version>``:
#: who last pointed the alias, and where
ALIAS_TAG = "gcn_rag.alias."


def set_alias(
    settings: Settings, alias: str, version: str, *, name: str = MODEL_NAME, by_hand: bool = False
) -> None:
    """Point ``alias`` at ``version``. ``by_hand`` pins it: ``gcn-rag up`` will not move an
    alias a person set (``gcn-rag model alias set``) until ``gcn-rag model promote``."""
    client = configure(settings)
    _check_version(client, name, version)
    client.set_registered_model_alias(name, alias, version)
    owner = "hand" if by_hand else "auto"
    client.set_registered_model_tag(name, ALIAS_TAG + alias, f"{owner}:{version}")


def delete_alias(settings: Settings, alias: str, *, name: str = MODEL_NAME) -> None:
    client = configure(settings)
    client.delete_registered_model_alias(name, alias)
    if ALIAS_TAG + alias in client.get_registered_model(name).tags:
        client.delete_registered_model_tag(name, ALIAS_TAG + alias)


def pinned(settings: Settings, alias: str, *, name: str = MODEL_NAME) -> str | None:
    """The version ``alias`` is pinned to, or None when gcn-rag may move it.

    Pinned: set by hand (``gcn-rag model alias set``), or moved outside gcn-rag (MLflow's UI
    or client) since gcn-rag last set it. Not pinned: no such alias, an alias gcn-rag set
    (``up``, ``model log --alias``, ``model promote``), or one older than these records.
    """
    from mlflow.exceptions import MlflowException

    client = configure(settings)
    try:
        model = client.get_registered_model(name)
    except MlflowException:
        return None
    version = model.aliases.get(alias)
    record = model.tags.get(ALIAS_TAG + alias)
    if version is None or record is None or record == f"auto:{version}":
        return None
    return str(version)


def versions(settings: Settings, *, name: str = MODEL_NAME) -> list[VersionInfo]:
    """Every version of ``name``, newest first, with aliases, run id and metrics."""
    client = configure(settings)
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        raise NotFoundError(
            f"No registered model {name}; run `gcn-rag model log --register` first."
        )
    found = client.search_model_versions(filter_string=f"name = '{name}'")
    by_version: dict[str, list[str]] = {}
    for alias, version in client.get_registered_model(name).aliases.items():
        by_version.setdefault(str(version), []).append(alias)
    out = []
    for v in sorted(found, key=lambda v: -int(v.version)):
        metrics = client.get_run(v.run_id).data.metrics if v.run_id else {}
        out.append(
            VersionInfo(
                name=name,
                version=str(v.version),
                aliases=sorted(by_version.get(str(v.version), [])),
                run_id=v.run_id or "",
                status=str(v.status),
                created=int(v.creation_timestamp or 0),
                metrics=dict(metrics),
                tags=dict(v.tags),
            )
        )
    return out


@dataclasses.dataclass(frozen=True)
class ModelSummary:
    """One registered model as a listing shows it: its newest version ("" when it has none),
    its aliases (alias -> version) and when it last changed (ms since the epoch)."""

    name: str
    latest: str
    aliases: dict[str, str]
    updated: int


def registered_models(settings: Settings) -> list[ModelSummary]:
    """Every registered model in the workspace's registry, by name: one
    ``search_registered_models`` call (another per 1,000 models)."""
    client = configure(settings)
    found: list[ModelSummary] = []
    token: str | None = None
    while True:
        page = client.search_registered_models(max_results=1000, page_token=token)
        for model in page:
            numbers = [int(v.version) for v in model.latest_versions or []]
            aliases = {str(a): str(v) for a, v in sorted((model.aliases or {}).items())}
            updated = int(model.last_updated_timestamp or model.creation_timestamp or 0)
            latest = str(max(numbers)) if numbers else ""
            found.append(ModelSummary(str(model.name), latest, aliases, updated))
        token = page.token
        if not token:
            return sorted(found, key=lambda m: m.name)


def resolve(settings: Settings, ref: str, *, name: str = MODEL_NAME) -> VersionInfo:
    """A version by number ("3") or alias ("champion" / "@champion")."""
    for info in versions(settings, name=name):
        if ref.lstrip("@") in info.aliases or ref == info.version:
            return info
    raise NotFoundError(f"{name} has no version or alias {ref!r}; see `gcn-rag model list`.")


def _check_version(client: MlflowClient, name: str, version: str) -> None:
    from mlflow.exceptions import MlflowException

    if not version.isdigit():
        raise BadInputError(f"A version is a number, got {version!r}.")
    try:
        client.get_model_version(name, version)
    except MlflowException as exc:
        raise NotFoundError(f"{name} has no version {version}; see `gcn-rag model list`.") from exc


def set_version_tags(
    settings: Settings, version: str, tags: dict[str, str], *, name: str = MODEL_NAME
) -> None:
    client = configure(settings)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)


def model_tag(settings: Settings, key: str, *, name: str = MODEL_NAME) -> str | None:
    """A tag of the registered model (None when unset)."""
    value = configure(settings).get_registered_model(name).tags.get(key)
    return None if value is None else str(value)


def set_model_tag(settings: Settings, key: str, value: str, *, name: str = MODEL_NAME) -> None:
    configure(settings).set_registered_model_tag(name, key, value)


def source(settings: Settings, info: VersionInfo) -> str:
    """The logged model a version was registered from (``models:/m-…``)."""
    return str(configure(settings).get_model_version(info.name, info.version).source)


def write_model_info(
    catalog: Catalog, info: VersionInfo, model_uri: str, *, extra: dict[str, str] | None = None
) -> None:
    """The lab's ``rag_model_info`` (key, value) table for a registered version; ``extra``
    rows follow (a promotion's decision). Each write is one commit of the table's history."""
    import pyarrow as pa

    rows = {
        "model_name": info.name,
        "model_version": info.version,
        "model_uri": f"models:/{info.name}/{info.version}",
        "logged_model_uri": model_uri,
        "run_id": info.run_id,
        "aliases": ",".join(info.aliases),
        **{f"metric.{k}": f"{v:.4f}" for k, v in sorted(info.metrics.items())},
        **{k: v for k, v in info.tags.items() if k.startswith("corpus_")},
        **(extra or {}),
    }
    catalog.overwrite(
        "rag_model_info",
        pa.table({"key": list(rows), "value": list(rows.values())}),
        description="the registered assistant model (key, value)",
    )
