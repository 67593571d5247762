"""``gcn-rag index --engine ray``: Ray Data embeds the same batches into the same bytes, and
the local Ray it started is gone afterwards."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clusters import listening, outside_loopback, session_processes
from gcn_rag.cli import app
from gcn_rag.cluster import RayCluster, on_loopback
from gcn_rag.search.index import DENSE, MANIFEST
from gcn_rag.settings import Settings

runner = CliRunner()


def _fresh_workspace(root: Path, source: Settings, assets: Path) -> Settings:
    """The fixture workspace's tables, with the shared assets but an EMPTY embedding cache
    (the shared one would answer every lead passage, and nothing would be embedded)."""
    home = root / "workspace"
    shutil.copytree(source.warehouse, home / "warehouse")
    (home / "cache").mkdir()
    for name in ("downloads", "packaged"):
        (home / "cache" / name).symlink_to(assets / name, target_is_directory=True)
    return Settings.load(environ={}, home=home)


def _index(settings: Settings, *options: str) -> str:
    result = runner.invoke(app, ["index", "--force", *options, "--home", str(settings.home)])
    assert result.exit_code == 0, result.output
    return result.output


def _wait_until_gone(ray_tmp: str) -> None:
    """Wait (30 s at most) until no process of the Ray session under ``ray_tmp`` is left;
    found by their environment too, as embedding actors rename their command line."""
    deadline = time.monotonic() + 30
    while left := session_processes(ray_tmp):
        assert time.monotonic() < deadline, f"Ray processes left: {left}"
        time.sleep(0.2)


@pytest.mark.slow
def test_index_engine_ray_writes_the_local_vectors_and_stops_its_cluster(
    fixture_workspace: Settings,
    asset_cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'gcn-rag[ray]'")
    pytest.importorskip("ray.data", reason="Ray Data is missing: pip install 'gcn-rag[ray]'")
    settings = _fresh_workspace(tmp_path, fixture_workspace, asset_cache)
    local = _index(settings)
    assert "embedded 46 new lead passages" in local
    local_dense = (settings.index / DENSE).read_bytes()
    local_manifest = (settings.index / MANIFEST).read_text()
    shutil.rmtree(settings.embedding_cache)  # so Ray embeds every lead passage itself

    # a short private temp root (unix socket paths are limited): it names this session's
    # processes, so other Ray clusters on the machine do not confuse the leftover check
    ray_tmp = tempfile.mkdtemp(prefix="gr", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)
    try:
        on_ray = _index(settings, "--engine", "ray")
        assert "embedded 46 new lead passages" in on_ray
        assert (settings.index / DENSE).read_bytes() == local_dense
        manifest = (settings.index / MANIFEST).read_text()
        assert _model_id(manifest) == _model_id(local_manifest)
        assert list(Path(ray_tmp).glob("ray/session_*")), "Ray did not run under RAY_TMPDIR"
        _wait_until_gone(ray_tmp)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _model_id(manifest: str) -> str:
    import json

    return str(json.loads(manifest)["embedding"]["model_id"])


def test_index_engine_is_checked_before_anything_runs(settings: Settings) -> None:
    unknown = runner.invoke(app, ["index", "--engine", "spark", "--home", str(settings.home)])
    assert unknown.exit_code == 1
    assert "Unknown engine 'spark'; use one of: local, ray." in unknown.output
    stray = runner.invoke(
        app, ["index", "--address", "10.0.0.1:6379", "--home", str(settings.home)]
    )
    assert stray.exit_code == 1
    assert "use it with --engine ray" in stray.output


@pytest.mark.slow
def test_a_private_cluster_listens_on_loopback_only_and_stops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ray 2.60 would swap 127.0.0.1 for the machine's address and listen everywhere."""
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'gcn-rag[ray]'")
    ray_tmp = tempfile.mkdtemp(prefix="gr", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "1")  # what RayCluster must undo
    try:
        with RayCluster(num_cpus=1) as cluster:
            ray = cluster.connect()
            task = ray.remote(on_loopback)  # a worker process runs it
            assert ray.get(task.remote(None)) is True
            sockets = listening(session_processes(ray_tmp))
            assert {name for _, _, name in sockets} >= {"gcs_server", "raylet"}
            assert outside_loopback(sockets) == []
        _wait_until_gone(ray_tmp)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_on_loopback() -> None:
    assert on_loopback(None) and on_loopback("127.0.0.1:6379") and on_loopback("localhost:1")
    assert not on_loopback("10.0.0.5:6379") and not on_loopback("head.example.org:6379")
