"""`up` re-logs only when the index content, code or config changed, and leaves a pinned
champion alone; `model promote` hands champion back (issue 20, problem 2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from gcn_rag.cli import app
from gcn_rag.cli.up import _champion
from gcn_rag.model import champion, registry
from gcn_rag.search.index import MANIFEST, MEASUREMENTS, content_hash, replace_measurements
from gcn_rag.settings import Settings
from gcn_rag.tables import Catalog

runner = CliRunner()


@pytest.fixture
def workspace(
    fixture_workspace: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """A copy of the indexed fixture workspace, no model yet; run where no question file is
    found, so logging a model does not evaluate first."""
    home = tmp_path / "workspace"
    home.mkdir()
    for part in ("warehouse", "index"):
        shutil.copytree(fixture_workspace.home / part, home / part)
    (home / "cache").symlink_to(fixture_workspace.cache.resolve(), target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    return Settings.load(environ={}, home=home)


def _cli(settings: Settings, *args: str) -> str:
    result = runner.invoke(app, [*args, "--home", str(settings.home)])
    assert result.exit_code == 0, result.output
    return result.output


def _up_model(settings: Settings) -> tuple[str, str]:
    """What `up` does about the model: the version it serves, and what it said."""
    console = Console(record=True, width=300)
    version = _champion(settings, console)
    return version, console.export_text()


def _fewer_measurements(settings: Settings) -> None:
    """Change what the index answers from, as `gcn-rag index` does when values change."""
    table = Catalog.from_settings(settings).read("gcn_measurements")
    replace_measurements(settings.index, table.slice(0, table.num_rows // 2), version=99)


def test_content_hash_ignores_when_and_where_an_index_was_built(workspace: Settings) -> None:
    index = workspace.index
    before = content_hash(index)
    manifest = json.loads((index / MANIFEST).read_text())
    manifest["built_at"] = "2001-01-01T00:00:00+00:00"
    manifest["corpus"]["chunks_path"] = "/elsewhere/gcn_circulars_chunks"
    manifest["corpus"]["chunks_version"] = 7
    (index / MANIFEST).write_text(json.dumps(manifest))
    assert content_hash(index) == before
    _cli(workspace, "index", "--force")  # rebuilt from the same chunks
    assert content_hash(index) == before
    _fewer_measurements(workspace)  # only measurements.arrow (and its version) change
    assert (index / MEASUREMENTS).is_file() and content_hash(index) != before


def test_up_logs_again_only_for_new_content_and_never_moves_a_pinned_champion(
    workspace: Settings,
) -> None:
    version, said = _up_model(workspace)
    assert version == "1" and "logging, registering" in said
    _cli(workspace, "index", "--force")  # same content, new build time
    version, said = _up_model(workspace)
    assert version == "1" and "champion is version 1, up to date" in said

    _fewer_measurements(workspace)  # the index content changed: a new version
    version, said = _up_model(workspace)
    assert version == "2" and "Alias champion -> version 2" in said

    assert "(pinned)" in _cli(workspace, "model", "alias", "set", "champion", "1")  # rollback
    version, said = _up_model(workspace)
    assert version == "1"
    assert (
        "champion is pinned to version 1 by hand (built from another index, code or config); "
        "run `gcn-rag model promote` to move it." in said
    )
    assert [v.version for v in registry.versions(workspace)] == ["2", "1"]
    assert registry.resolve(workspace, "champion").version == "1"

    assert "-> version 2 (not pinned" in _cli(workspace, "model", "promote")  # the newest
    assert _up_model(workspace)[0] == "2"
    _cli(workspace, "model", "promote", "1")  # unpinned, so up moves it to the matching one
    version, said = _up_model(workspace)
    assert version == "2" and "version 2 was built from this index, code and config" in said
    assert [v.version for v in registry.versions(workspace)] == ["2", "1"]  # nothing logged


def test_an_alias_moved_outside_gcn_rag_counts_as_pinned(workspace: Settings) -> None:
    _up_model(workspace)
    _cli(workspace, "model", "log", "--register", "--no-eval")
    assert registry.pinned(workspace, champion.CHAMPION) is None
    client = registry.configure(workspace)
    client.set_registered_model_alias(registry.MODEL_NAME, "champion", "2")  # e.g. MLflow's UI
    assert registry.pinned(workspace, champion.CHAMPION) == "2"
    _cli(workspace, "model", "alias", "delete", "champion")
    assert registry.pinned(workspace, champion.CHAMPION) is None
