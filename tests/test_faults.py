"""Faults: foreign files and lines in the spool, a table that cannot be written, a full disk,
a kill during a config update. None may stop capture or serving for the rest, and every lost
row is counted. (A corrupt Delta table under `gcn-rag sql` is in tests/test_cli.py.)"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from gcn_rag.errors import SourceUnavailableError
from gcn_rag.model import registry
from gcn_rag.model.registry import mlflow_loader
from gcn_rag.serving.auth import TokenStore
from gcn_rag.serving.capture import CaptureRow, CaptureTarget, InferenceCapture
from gcn_rag.serving.manager import EndpointManager
from gcn_rag.serving.metrics import _capture_text
from gcn_rag.serving.store import EndpointStore
from gcn_rag.settings import Settings
from gcn_rag.tables import Catalog
from test_capture import ServerProcess, _body, _create, process_home

__all__ = ["process_home"]  # a fixture, shared with tests/test_capture.py

GOOD = CaptureTarget("sandbox.faults.good_payload")


def _row(i: int, size: int = 10) -> CaptureRow:
    return CaptureRow(
        databricks_request_id=f"r{i}",
        client_request_id=None,
        timestamp_ms=1_790_000_000_000 + i,
        status_code=200,
        execution_duration_ms=3,
        request=json.dumps({"inputs": ["x" * size]}),
        response="{}",
        served_entity_id="m-1",
        endpoint_name="e",
        requester="t",
    )


def _ids(catalog: Catalog, table: str) -> list[str]:
    if not catalog.exists(table):
        return []
    return sorted(
        catalog.read(table, ["databricks_request_id"])["databricks_request_id"].to_pylist()
    )


def test_foreign_files_and_lines_in_the_spool_are_set_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gcn_rag.serving.capture")
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "seg-abc.jsonl").write_text('{"table": "x"}\n')  # used to stop the server starting
    (spool / "notes.txt").write_text("hello\n")
    good = {"table": GOOD.table, "row": {**vars(_row(1)), "logging_error_codes": []}}
    (spool / "seg-000000007.jsonl").write_text(
        json.dumps(good) + "\n" + '{"foo": 1}\n' + "[1, 2]\n" + '{"table": "t", "row": {}}\n'
    )
    catalog = Catalog(tmp_path / "warehouse")
    capture = InferenceCapture(spool, catalog)
    assert {p.name for p in capture.spool.set_aside_files} == {"seg-abc.jsonl", "notes.txt"}
    capture.start()  # replays the leftover segment
    capture.record(GOOD, _row(2))
    capture.close()
    assert _ids(catalog, GOOD.table) == ["r1", "r2"]
    stats = capture.stats()
    assert stats["quarantined_rows"] == 3 and stats["backlog_rows"] == 0
    assert stats["quarantined_files"] == 2
    # the good flush after the quarantine clears last_error, not where the lines went
    assert stats["last_error"] == ""
    assert stats["last_quarantine"] == str(spool / "quarantine" / "seg-000000007.jsonl")
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for name in ("seg-abc.jsonl", "notes.txt"):
        assert sum(str(spool / "quarantine" / name) in line for line in logged) == 1, logged
    (lines,) = [line for line in logged if str(spool / "seg-000000007.jsonl") in line]
    assert lines.startswith("capture: 3 bad line(s)"), lines
    metrics: list[str] = []
    _capture_text(metrics, stats)
    assert "gcn_rag_capture_quarantined_files_total 2" in metrics
    assert "gcn_rag_capture_quarantined_rows_total 3" in metrics
    quarantined = sorted(p.name for p in (spool / "quarantine").iterdir())
    assert quarantined == ["notes.txt", "seg-000000007.jsonl", "seg-abc.jsonl"]
    assert len((spool / "quarantine" / "seg-000000007.jsonl").read_text().splitlines()) == 3
    assert not list(spool.glob("seg-*.jsonl"))


def test_a_table_that_cannot_be_written_does_not_hold_up_the_others(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "warehouse")
    capture = InferenceCapture(tmp_path / "spool", catalog, max_attempts=2)
    bad = CaptureTarget("sandbox.faults.9lives_payload")  # no table can have this name
    for i in range(3):
        capture.record(GOOD, _row(i))
        capture.record(bad, _row(100 + i))
    capture.flush()
    assert _ids(catalog, GOOD.table) == ["r0", "r1", "r2"]
    assert capture.stats()["backlog_rows"] == 3  # the bad table's rows wait for a retry
    assert "9lives_payload" in capture.stats()["last_error"]
    capture.record(GOOD, _row(3))
    capture.flush()  # the second failure: set aside, counted
    assert _ids(catalog, GOOD.table) == ["r0", "r1", "r2", "r3"]
    assert capture.stats()["quarantined_rows"] == 3 and capture.stats()["backlog_rows"] == 0
    capture.close()
    (aside,) = (tmp_path / "spool" / "quarantine").glob("*9lives_payload*")
    assert len(aside.read_text().splitlines()) == 3


@contextlib.contextmanager
def _small_disk(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``path`` (needs root, as in CI), unmounted afterwards."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_disk_loses_only_the_rows_it_counts(tmp_path: Path) -> None:
    """A write cut short by a full disk used to leave a torn line that swallowed the next row
    (and was not counted)."""
    catalog = Catalog(tmp_path / "warehouse")
    with _small_disk(tmp_path / "disk", "64k") as disk:
        capture = InferenceCapture(disk / "spool", catalog, flush_interval_s=3600)
        attempted = 60
        for i in range(attempted):
            capture.record(GOOD, _row(i, size=3000))  # ~3 KB a row: the disk fills up
        stats = capture.stats()
        assert stats["write_errors"] > 0
        kept = attempted - stats["write_errors"]
        capture.flush()  # commits what was kept, and frees the disk
        assert len(_ids(catalog, GOOD.table)) == kept
        capture.record(GOOD, _row(1000))
        capture.close()
    assert len(_ids(catalog, GOOD.table)) == kept + 1


def test_a_create_that_cannot_be_saved_leaves_no_endpoint(
    tmp_path: Path, fixture_workspace: Settings, unloadable: tuple[str, str]
) -> None:
    """A full disk used to leave a zombie: in memory, IN_PROGRESS forever, 409 on retry."""
    with _small_disk(tmp_path / "disk", "256k") as disk:
        manager = EndpointManager(
            EndpointStore(disk / "serving.db"),
            mlflow_loader(registry.tracking_uri(fixture_workspace)),
        )
        name, version = unloadable
        body = {
            "name": "zombie",
            "config": {"served_entities": [{"entity_name": name, "entity_version": version}]},
        }
        filler = disk / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as out:
            while True:
                out.write(b"\0" * 4096)
                out.flush()
        with pytest.raises(SourceUnavailableError, match="could not be saved"):
            manager.create(body)
        assert manager.list() == []
        filler.unlink()
        assert manager.create(body)["name"] == "zombie"  # no 409: nothing was left behind
        manager.close()


@pytest.mark.slow
def test_killed_during_a_config_update_it_comes_back_on_the_old_config(
    process_home: Path, champion: dict[str, Any], fixture_workspace: Settings
) -> None:
    import mlflow

    from models import SLOW, SlowToLoad

    mlflow.set_tracking_uri(registry.tracking_uri(fixture_workspace))
    mlflow.set_registry_uri(registry.tracking_uri(fixture_workspace))
    slow = mlflow.pyfunc.log_model(
        name="slow", python_model=SlowToLoad(), registered_model_name=SLOW
    )
    token = TokenStore(process_home / "serving.db").create("CAN_MANAGE", "kill-tests")
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    server = ServerProcess(process_home)
    try:
        entity = {"entity_name": registry.MODEL_NAME, "entity_version": champion["version"]}
        _create(session, server.url, "steady", champion["version"], {})
        update = {
            "served_entities": [
                {"entity_name": SLOW, "entity_version": str(slow.registered_model_version)}
            ]
        }
        started = session.put(
            f"{server.url}/api/2.0/serving-endpoints/steady/config", json=update, timeout=30
        )
        assert started.json()["state"]["config_update"] == "IN_PROGRESS"
        assert server.stop(signal.SIGKILL) == -signal.SIGKILL  # the new model is still loading
        server = ServerProcess(process_home)
        deadline = time.monotonic() + 120
        while (
            got := session.get(f"{server.url}/api/2.0/serving-endpoints/steady", timeout=30).json()
        )["state"]["config_update"] == "IN_PROGRESS":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert got["state"]["config_update"] == "NOT_UPDATING" and "pending_config" not in got
        (served,) = got["config"]["served_entities"]
        assert (served["entity_name"], served["entity_version"]) == (
            entity["entity_name"],
            entity["entity_version"],
        )
        answered = session.post(
            f"{server.url}/serving-endpoints/steady/invocations", json=_body(), timeout=60
        )
        assert answered.status_code == 200
        logs = session.get(
            f"{server.url}/api/2.0/serving-endpoints/steady/served-models/x/logs", timeout=30
        ).json()["logs"]
        assert "interrupted by a restart" in logs
    finally:
        if server.process.poll() is None:
            server.stop(signal.SIGTERM)


def test_after_a_restart_an_endpoint_is_not_ready_until_its_models_are_loaded(
    tmp_path: Path, fixture_workspace: Settings
) -> None:
    """Regression: a restored endpoint said READY while its model loaded (requests got 503)."""
    import mlflow

    from models import SLOW, SlowToLoad

    uri = registry.tracking_uri(fixture_workspace)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    slow = mlflow.pyfunc.log_model(
        name="slow", python_model=SlowToLoad(), registered_model_name=SLOW
    )
    entity = {"entity_name": SLOW, "entity_version": str(slow.registered_model_version)}
    body = {"name": "restored", "config": {"served_entities": [entity]}}

    def started() -> EndpointManager:
        return EndpointManager(EndpointStore(tmp_path / "serving.db"), mlflow_loader(uri))

    def ready_when_loaded(manager: EndpointManager) -> None:
        deadline = time.monotonic() + 120
        while manager.get("restored")["state"]["ready"] != "READY":
            assert time.monotonic() < deadline, manager.logs("restored")
            time.sleep(0.05)
        assert manager.replicas()["restored"]  # READY means it can answer

    first = started()
    first.create(body)
    ready_when_loaded(first)
    first.close()
    again = started()  # the same state file: the endpoint is restored and loads its model
    try:
        state = again.get("restored")["state"]
        assert state == {"ready": "NOT_READY", "config_update": "NOT_UPDATING"}
        ready_when_loaded(again)
    finally:
        again.close()
