"""A workspace is relocatable: copied or moved, it logs, loads and serves its own models and
writes nothing into the original (issue 20, problem 3)."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from gcn_rag.model import registry
from gcn_rag.settings import Settings

pytestmark = pytest.mark.slow

MOVED = "This workspace was moved or copied"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _gcn_rag(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "gcn_rag", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _up(home: Path) -> subprocess.CompletedProcess[str]:
    done = _gcn_rag(home, "up", "--check", "--port", str(_free_port()))
    assert "A: The redshift of GRB 221009A is z = 0.15" in done.stdout
    return done


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` (not following the cache symlink): size and mtime."""
    return {
        str(path.relative_to(root)): (path.lstat().st_size, path.lstat().st_mtime_ns)
        for path in root.rglob("*")
        if not path.is_symlink() and path.is_file()
    }


def _set_writable(root: Path, writable: bool) -> None:
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        write = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
        path.chmod(mode | stat.S_IWUSR if writable else mode & ~write)


@pytest.fixture
def served(fixture_workspace: Settings, tmp_path: Path) -> Iterator[Path]:
    """A workspace `up` has run in (model, endpoint, token, endpoint info table), made
    read-only for the test (writable again afterwards, so it can be removed)."""
    home = tmp_path / "original"
    home.mkdir()
    for part in ("warehouse", "index"):
        shutil.copytree(fixture_workspace.home / part, home / part)
    (home / "cache").symlink_to(fixture_workspace.cache.resolve(), target_is_directory=True)
    _up(home)
    try:
        yield home
    finally:
        _set_writable(home, True)


def _load_champion(home: Path) -> str:
    """Load champion through ``models:/`` (as the README's snippet does) and ask it."""
    import mlflow

    settings = Settings.load(environ={}, home=home)
    registry.configure(settings)
    model = mlflow.pyfunc.load_model(f"models:/{registry.MODEL_NAME}@champion")
    (answer,) = model.predict(["What is the redshift of GRB 221009A?"])["answer"]
    return str(answer)


def test_a_copied_workspace_uses_its_own_store_and_leaves_the_original_alone(
    served: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(served, copy, symlinks=True)
    _set_writable(served, False)
    before = _snapshot(served)

    first = _up(copy)
    assert MOVED in first.stderr and str(copy / "mlartifacts") in first.stderr
    assert "champion is version 1, up to date" in first.stdout
    logged = _gcn_rag(copy, "model", "log", "--register", "--no-eval")
    assert "Registered sandbox.nasa_gcn_models.gcn_rag_assistant version 2" in logged.stdout
    assert MOVED not in logged.stderr  # re-pointed once
    # MLflow's CloudPickle notice is gone, its other messages are not
    assert "CloudPickle" not in logged.stderr and "mlflow" in logged.stderr
    listed = _gcn_rag(copy, "model", "list")
    assert "champion" in listed.stdout and "2" in listed.stdout
    asked = _gcn_rag(copy, "ask", "What is the redshift of GRB 221009A?")
    assert "0.15" in asked.stdout
    assert "0.15" in _load_champion(copy)

    assert _snapshot(served) == before
    store = registry.configure(Settings.load(environ={}, home=copy))
    run = store.get_run(registry.versions(Settings.load(environ={}, home=copy))[0].run_id)
    assert run.info.artifact_uri.startswith((copy / "mlartifacts").resolve().as_uri())


def test_a_moved_workspace_serves_and_loads_from_where_it_is(served: Path, tmp_path: Path) -> None:
    moved = tmp_path / "moved"
    served.rename(moved)
    served.mkdir()  # the fixture restores this one; it must stay empty
    try:
        first = _up(moved)
        assert MOVED in first.stderr and "champion is version 1, up to date" in first.stdout
        assert "0.15" in _load_champion(moved)
        assert list(served.iterdir()) == []
    finally:
        shutil.rmtree(moved)


def test_a_store_linked_from_another_workspace_keeps_its_artifacts(
    settings: Settings, tmp_path: Path
) -> None:
    """A workspace whose ``mlflow.db`` links to another's shares that registry: nothing is
    re-pointed (its models stay where the linked store keeps them)."""
    registry.configure(settings)
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "mlflow.db").symlink_to(settings.mlflow_store.resolve())
    registry.tracking_uri(Settings.load(home=linked))
    with closing(sqlite3.connect(settings.mlflow_store)) as db:
        (location,) = db.execute(
            "SELECT artifact_location FROM experiments WHERE name = ?", (registry.EXPERIMENT,)
        ).fetchone()
    assert location == settings.mlflow_artifacts.resolve().as_uri()
