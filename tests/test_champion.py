"""`up` re-logs only when the index content, code or config changed, and leaves a pinned
champion alone; `model promote` hands champion back (issue 20, problem 2)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

import gcn_rag
from gcn_rag.cli import app
from gcn_rag.cli.up import _champion
from gcn_rag.model import champion, registry
from gcn_rag.model.packaging import fingerprint
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


@pytest.fixture
def logged(
    champion: dict[str, Any],
    fixture_workspace: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Settings:
    """A copy of the fixture workspace with the session's champion in its registry (copied
    with the MLflow store, not logged again); run where no question file is found."""
    home = tmp_path / "logged"
    home.mkdir()
    for part in ("warehouse", "index", "mlartifacts"):
        shutil.copytree(fixture_workspace.home / part, home / part)
    shutil.copy2(fixture_workspace.mlflow_store, home / "mlflow.db")
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


def test_up_logs_again_for_a_config_change_and_not_for_a_serving_setting(
    logged: Settings,
) -> None:
    served = champion.plan(logged).serve
    assert served is not None  # the session's champion was built from this workspace
    known = [v.version for v in registry.versions(logged)]
    version, said = _up_model(logged)  # nothing changed: nothing logged
    assert version == served.version and "logging" not in said
    config = logged.home / "config.toml"
    config.write_text("request_timeout_s = 30.0\n")  # the server's, not the model's
    version, said = _up_model(Settings.load(environ={}, home=logged.home))
    assert version == served.version and "logging" not in said

    config.write_text("llm_max_tokens = 200\n")  # goes into the model's config
    changed = Settings.load(environ={}, home=logged.home)
    before, after = fingerprint(logged), fingerprint(changed)
    assert [key for key in before if before[key] != after[key]] == ["gcn_rag_config_hash"]
    version, said = _up_model(changed)
    assert "logging, registering" in said
    assert [v.version for v in registry.versions(logged)] == [version, *known]
    assert _up_model(changed) == (version, f"Model: champion is version {version}, up to date.\n")

    config.unlink()  # back to the settings champion was first built with: no new version
    version, said = _up_model(logged)
    assert version == served.version and "was built from this index, code and config" in said
    assert len(registry.versions(logged)) == len(known) + 1


_PLAN = """
import json, sys
from pathlib import Path
import gcn_rag
from gcn_rag.model import champion
from gcn_rag.settings import Settings

settings = Settings.load(environ={}, home=Path(sys.argv[1]))
unedited = champion.plan(settings).serve
edited = Path(gcn_rag.__file__).parent / "answer" / "assistant.py"
edited.write_text(edited.read_text() + "# an edit to the answerer\\n")
after = champion.plan(settings).serve  # as the next `up` would decide
print(json.dumps({
    "package": gcn_rag.__file__,
    "unedited": unedited and unedited.version,
    "edited": after and after.version,
}))
"""


def test_a_code_change_needs_a_new_version(logged: Settings, tmp_path: Path) -> None:
    """The code hash is read from the sources of the package that runs (they travel with the
    model): a copy of the package elsewhere matches champion; once one of its files is edited
    it matches no version, so `up` logs a new one."""
    package = tmp_path / "src" / "gcn_rag"
    shutil.copytree(
        Path(gcn_rag.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__")
    )
    done = subprocess.run(
        [sys.executable, "-c", _PLAN, str(logged.home)],
        capture_output=True, text=True, timeout=300, check=True,
        env={**os.environ, "PYTHONPATH": str(package.parent)},
    )  # fmt: skip
    found = json.loads(done.stdout.splitlines()[-1])
    assert Path(found["package"]).parent == package  # the copy ran
    served = champion.plan(logged).serve
    assert served is not None and found["unedited"] == served.version
    assert found["edited"] is None
