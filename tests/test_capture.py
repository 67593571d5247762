"""Inference tables: every request into Delta, exactly once, across clean stops and crashes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
import requests
from typer.testing import CliRunner

from conftest import capture_row, capturing_manager
from gcn_rag.cli import app
from gcn_rag.model import registry
from gcn_rag.serving.app import create_app
from gcn_rag.serving.auth import TokenStore
from gcn_rag.serving.capture import CaptureRow, CaptureTarget, InferenceCapture, sampled
from gcn_rag.serving.manager import EndpointManager
from gcn_rag.serving.spool import read_segment
from gcn_rag.settings import Settings
from gcn_rag.tables import Catalog

PAYLOAD = "sandbox.nasa_gcn_dev.rag_inference_payload"
QUESTION = "What is the redshift of GRB 221009A?"
Serve = Callable[[Any], AbstractContextManager[str]]


def _capture(prefix: str = "rag_inference", **extra: Any) -> dict[str, Any]:
    return {
        "catalog_name": "sandbox",
        "schema_name": "nasa_gcn_dev",
        "table_name_prefix": prefix,
        **extra,
    }


def _body(question: str = QUESTION, **extra: Any) -> dict[str, Any]:
    return {"dataframe_split": {"columns": ["question"], "data": [[question]]}, **extra}


def _create(
    session: requests.Session, url: str, name: str, version: str, capture: dict[str, Any]
) -> None:
    entity = {"entity_name": registry.MODEL_NAME, "entity_version": version}
    body: dict[str, Any] = {
        "name": name,
        "config": {"served_entities": [entity], "auto_capture_config": capture},
    }
    response = session.post(f"{url}/api/2.0/serving-endpoints", json=body, timeout=30)
    assert response.status_code == 200, response.text
    deadline = time.monotonic() + 120
    while (
        session.get(f"{url}/api/2.0/serving-endpoints/{name}", timeout=30).json()["state"]["ready"]
        != "READY"
    ):
        assert time.monotonic() < deadline, f"{name} never READY"
        time.sleep(0.1)


# --- in process ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("capture")


@pytest.fixture(scope="module")
def token(home: Path) -> str:
    return TokenStore(home / "serving.db").create("CAN_MANAGE", "capture-tests")


@pytest.fixture(scope="module")
def manager(home: Path, fixture_workspace: Settings, champion: dict[str, Any]) -> Iterator[Any]:
    manager = capturing_manager(home, fixture_workspace, max_payload_bytes=4096)
    yield manager
    manager.close()


@pytest.fixture(scope="module")
def server(manager: EndpointManager, home: Path, serve_app: Serve) -> Iterator[str]:
    with serve_app(create_app(manager, TokenStore(home / "serving.db"))) as url:
        yield url


@pytest.fixture(scope="module")
def session(token: str) -> requests.Session:
    client = requests.Session()
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def _rows(home: Path, query: str) -> list[dict[str, Any]]:
    return list(Catalog(home / "warehouse").sql(query).to_pylist())


def test_every_request_is_one_row_with_its_status(
    server: str,
    session: requests.Session,
    manager: EndpointManager,
    champion: dict[str, Any],
    home: Path,
    token: str,
) -> None:
    _create(session, server, "captured", champion["version"], _capture())
    got = session.get(f"{server}/api/2.0/serving-endpoints/captured", timeout=30).json()
    assert got["config"]["auto_capture_config"]["state"]["payload_table"]["name"] == (
        "rag_inference_payload"
    )
    session.put(
        f"{server}/api/2.0/serving-endpoints/captured/ai-gateway",
        json={"rate_limits": [{"calls": 6, "key": "user", "renewal_period": "minute"}]},
        timeout=30,
    ).raise_for_status()
    invoke = f"{server}/serving-endpoints/captured/invocations"
    sent: Counter[int] = Counter()
    answered_ids = []
    for i in range(8):  # 6 answered, then the rate limit: 2 x 429
        response = session.post(invoke, json=_body(client_request_id=f"c-{i}"), timeout=60)
        sent[response.status_code] += 1
        if response.status_code == 200:
            answered_ids.append(response.headers["x-request-id"])
    for _ in range(2):
        sent[session.post(invoke, data=b"{not json", timeout=30).status_code] += 1
        sent[requests.post(invoke, json=_body(), timeout=30).status_code] += 1  # no token
    assert sent == {200: 6, 429: 2, 400: 2, 401: 2}
    assert requests.post(f"{server}/serving-endpoints/nope/invocations", timeout=30).status_code
    assert manager.capture is not None
    manager.capture.flush()

    rows = _rows(home, f"SELECT * FROM {PAYLOAD} WHERE endpoint_name = 'captured'")
    assert Counter(r["status_code"] for r in rows) == sent
    assert len({r["databricks_request_id"] for r in rows}) == len(rows)
    ok = [r for r in rows if r["status_code"] == 200]
    assert sorted(r["databricks_request_id"] for r in ok) == sorted(answered_ids)
    assert sorted(r["client_request_id"] for r in ok) == [f"c-{i}" for i in range(6)]
    assert all(r["served_entity_id"] == f"gcn_rag_assistant-{champion['version']}" for r in ok)
    assert all(json.loads(r["response"])["predictions"][0]["answer"] for r in ok)
    assert all(r["execution_duration_ms"] >= 0 and r["sampling_fraction"] == 1.0 for r in rows)
    assert {r["requester"] for r in rows} == {"capture-tests", "unauthenticated"}
    refused = [r for r in rows if r["status_code"] == 401]
    assert all(json.loads(r["response"])["error_code"] == "UNAUTHENTICATED" for r in refused)
    assert token not in json.dumps(rows, default=str)  # the requester, never the token


def test_the_labs_query_and_gcn_rag_logs(server: str, home: Path) -> None:
    lab = CliRunner().invoke(
        app,
        [
            "sql",
            "SELECT * FROM sandbox.nasa_gcn_dev.rag_inference_payload "
            "ORDER BY timestamp DESC LIMIT 10",
            "--home",
            str(home),
            "--json",
        ],
    )
    assert lab.exit_code == 0, lab.output
    assert len(lab.stdout.splitlines()) == 10
    logs = CliRunner().invoke(
        app, ["logs", "captured", "--status", "200", "--since", "1h", "--json", "--home", str(home)]
    )
    assert logs.exit_code == 0, logs.output
    shown = [json.loads(line) for line in logs.stdout.splitlines()]
    assert len(shown) == 6
    assert shown[0]["question"] == QUESTION
    assert shown[0]["answer"].startswith("The redshift of GRB 221009A is z = 0.15")
    table = CliRunner().invoke(app, ["logs", "--limit", "3", "--home", str(home)])
    assert table.exit_code == 0 and "3 request(s)" in table.output
    bad = CliRunner().invoke(app, ["logs", "--since", "yesterday", "--home", str(home)])
    assert bad.exit_code == 1 and "--since 'yesterday'" in bad.output


def test_sampling_and_oversized_payloads(
    server: str, session: requests.Session, champion: dict[str, Any], home: Path, manager: Any
) -> None:
    _create(
        session, server, "sampled", champion["version"], _capture("sampled", sampling_fraction=0.5)
    )
    ids = [
        session.post(
            f"{server}/serving-endpoints/sampled/invocations", json=_body(), timeout=60
        ).headers["x-request-id"]
        for _ in range(20)
    ]
    big = session.post(
        f"{server}/serving-endpoints/sampled/invocations",
        json=_body("What is the redshift of GRB 221009A? " + "x" * 6000),
        timeout=60,
    )
    assert big.status_code == 200
    manager.capture.flush()
    rows = _rows(home, "SELECT * FROM sandbox.nasa_gcn_dev.sampled_payload")
    kept = {r["databricks_request_id"] for r in rows}
    expected = {i for i in [*ids, big.headers["x-request-id"]] if sampled(i, 0.5)}
    assert kept == expected and 0 < len(kept) < 21
    assert all(r["sampling_fraction"] == 0.5 for r in rows)
    for row in rows:
        if row["databricks_request_id"] == big.headers["x-request-id"]:
            assert row["logging_error_codes"] == ["MAX_REQUEST_SIZE_EXCEEDED"]
            assert len(row["request"].encode()) <= 4096
    metrics = session.get(f"{server}/metrics", timeout=30).text
    assert "gcn_rag_capture_backlog_rows 0" in metrics
    state = session.get(f"{server}/api/2.0/serving-endpoints/sampled", timeout=30).json()
    assert state["state"]["capture"]["backlog_rows"] == 0
    assert state["state"]["capture"]["last_flush_timestamp"] > 0


def test_a_replayed_segment_is_not_written_twice(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "warehouse")
    target = CaptureTarget("sandbox.nasa_gcn_dev.replay_payload")

    def row(i: int) -> CaptureRow:
        return capture_row(i, 1_790_000_000_000 + i)

    first = InferenceCapture(tmp_path / "spool", catalog)
    for i in range(3):
        first.record(target, row(i))
    segment = first.spool.current
    saved = segment.read_bytes()
    first.close()  # committed, segment deleted
    # a crash between the commit and the delete leaves the segment behind, plus a torn line
    segment.write_bytes(saved + b'{"table": "sandbox.nasa_gcn_dev.replay_pay')
    assert len(read_segment(segment)) == 3
    again = InferenceCapture(tmp_path / "spool", catalog)
    assert again.stats()["backlog_rows"] == 3
    again.start()
    again.close()
    ids = catalog.read("sandbox.nasa_gcn_dev.replay_payload")["databricks_request_id"]
    assert sorted(ids.to_pylist()) == ["r0", "r1", "r2"]
    assert not list((tmp_path / "spool").glob("seg-*"))


# --- a real server process, stopped and killed mid-load ------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """`gcn-rag serve [OPTIONS]` in a subprocess on a workspace that shares the fixture's
    registry (``env`` adds to the environment)."""

    def __init__(self, home: Path, *options: str, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environ = {**os.environ, "GCN_RAG_CAPTURE_FLUSH_INTERVAL_S": "0.3", **(env or {})}
        self.log = (home / f"server-{self.port}.log").open("wb")
        argv = [sys.executable, "-m", "gcn_rag", "serve", "--port", str(self.port), *options]
        self.process = subprocess.Popen(
            [*argv, "--home", str(home)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=environ,
        )
        deadline = time.monotonic() + 120
        while True:
            assert self.process.poll() is None, (home / f"server-{self.port}.log").read_text()
            try:
                if requests.get(f"{self.url}/health", timeout=5).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)

    def stop(self, sig: int) -> int:
        self.process.send_signal(sig)
        code = self.process.wait(timeout=60)
        self.log.close()
        return code


def _load(url: str, token: str, seconds: float) -> tuple[list[str], threading.Event]:
    """Four clients asking until the server goes away; returns the answered request ids."""
    answered: list[str] = []
    stop = threading.Event()

    def client() -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        while not stop.is_set():
            try:
                response = session.post(
                    f"{url}/serving-endpoints/crashy/invocations", json=_body(), timeout=30
                )
            except requests.RequestException:
                return  # the server is gone
            if response.status_code == 200:
                answered.append(response.headers["x-request-id"])

    for _ in range(4):
        threading.Thread(target=client, daemon=True).start()
    time.sleep(seconds)
    return answered, stop


@pytest.fixture
def process_home(tmp_path: Path, fixture_workspace: Settings) -> Path:
    home = tmp_path / "workspace"
    home.mkdir()
    (home / "mlflow.db").symlink_to((fixture_workspace.home / "mlflow.db").resolve())
    return home


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_stopped_or_killed_mid_load_every_answered_request_is_there_once(
    process_home: Path, champion: dict[str, Any], sig: int
) -> None:
    token = TokenStore(process_home / "serving.db").create("CAN_MANAGE", "crash-tests")
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    server = ServerProcess(process_home)
    try:
        _create(session, server.url, "crashy", champion["version"], _capture())
        answered, stop = _load(server.url, token, seconds=2.5)
        code = server.stop(sig)
        stop.set()
    finally:
        if server.process.poll() is None:
            server.process.kill()
    assert code == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
    assert len(answered) > 10
    catalog = Catalog(process_home / "warehouse")
    if sig == signal.SIGTERM:
        assert not list((process_home / "capture").glob("seg-*.jsonl"))  # all flushed
    else:
        leftover = list((process_home / "capture").glob("seg-*.jsonl"))
        assert sum(len(read_segment(p)) for p in leftover) > 0  # the kill left rows to replay
        restarted = ServerProcess(process_home)  # replays the spool before serving
        assert restarted.stop(signal.SIGTERM) == 0
        assert all(not p.exists() for p in leftover)
    ids = catalog.read(PAYLOAD)["databricks_request_id"].to_pylist()
    assert len(ids) == len(set(ids)), "a request was written twice"
    assert set(answered) <= set(ids), f"{len(set(answered) - set(ids))} answered rows lost"
    shutil.rmtree(process_home / "capture", ignore_errors=True)


def test_small_files_are_compacted(tmp_path: Path) -> None:
    from deltalake import DeltaTable

    catalog = Catalog(tmp_path / "warehouse")
    capture = InferenceCapture(tmp_path / "spool", catalog, compact_every=3)
    target = CaptureTarget("sandbox.nasa_gcn_dev.small_payload")
    for flush in range(4):
        capture.record(
            target,
            CaptureRow(
                databricks_request_id=f"r{flush}",
                client_request_id=None,
                timestamp_ms=1_790_000_000_000,
                status_code=200,
                execution_duration_ms=1,
                request="{}",
                response="{}",
                served_entity_id="m-1",
                endpoint_name="e",
                requester="t",
            ),
        )
        assert capture.flush() == 1
    capture.close()
    table = DeltaTable(str(catalog.path(target.table)))
    assert len(table.file_uris()) == 2  # flushes 1-3 compacted into one file, then flush 4
    assert catalog.count(target.table) == 4
