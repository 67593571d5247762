"""The client, `gcn-rag endpoints test`, `loadtest` and `monitor` against a real server."""

from __future__ import annotations

import json
import math
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from typer.testing import CliRunner

from conftest import capturing_manager
from gcn_rag.cli import app
from gcn_rag.errors import BadInputError, NotFoundError, NotReadyError, TooManyRequestsError
from gcn_rag.model import registry
from gcn_rag.ops.loadtest import check_target, parse_duration, parse_levels
from gcn_rag.ops.results import Outcome, summarize
from gcn_rag.serving.app import create_app
from gcn_rag.serving.auth import TokenStore
from gcn_rag.serving.client import NASAGCNRagClient
from gcn_rag.settings import Settings
from gcn_rag.stats import percentile
from gcn_rag.tables import Catalog

Serve = Callable[[Any], AbstractContextManager[str]]


@pytest.mark.parametrize("q", [0.0, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0])
@pytest.mark.parametrize("values", [[3.0], [5.0, 1.0], [1, 2, 3, 4, 10], list(range(101))])
def test_percentile_matches_numpys_linear_definition(values: list[float], q: float) -> None:
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q * 100)))


def test_percentile_edges() -> None:
    assert math.isnan(percentile([], 0.5))
    with pytest.raises(BadInputError):
        percentile([1.0], 1.5)


def test_summary_counts_and_error_breakdown() -> None:
    def o(ms: float, status: str = "success", code: int = 200) -> Outcome:
        return Outcome("q", "a", "[]", 1, ms, status, code)

    outcomes = [o(10), o(20), o(30), o(40), o(5, "error", 429), o(60_000, "timeout", 0)]
    s = summarize(outcomes, concurrency=4, duration_s=2.0)
    assert (s.requests, s.successes, s.success_rate) == (6, 4, 4 / 6)
    assert s.throughput == 2.0  # successful requests per second
    assert (s.latency_min, s.latency_mean, s.latency_max) == (10, 25, 40)
    assert s.latency_p50 == 25 and s.latency_p95 == pytest.approx(38.5)
    assert s.errors == {"429": 1, "timeout": 1}


def test_load_is_for_loopback_unless_allowed() -> None:
    check_target("http://127.0.0.1:8080", allow_remote=False)
    check_target("http://localhost:8080", allow_remote=False)
    with pytest.raises(BadInputError, match="--allow-remote"):
        check_target("https://example.cloud.databricks.com", allow_remote=False)
    check_target("https://example.cloud.databricks.com", allow_remote=True)
    assert parse_levels("1, 2,8") == [1, 2, 8]
    assert parse_duration("2m") == 120 and parse_duration("1.5") == 1.5
    for bad in ("0", "1,x", ""):
        with pytest.raises(BadInputError):
            parse_levels(bad)
    with pytest.raises(BadInputError):
        parse_duration("11m")


# --- against a real server --------------------------------------------------------------------


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("loadtest")


@pytest.fixture(scope="module")
def token(home: Path) -> str:
    return TokenStore(home / "serving.db").create("CAN_MANAGE", "loadtest-tests")


@pytest.fixture(scope="module")
def server(
    home: Path, fixture_workspace: Settings, champion: dict[str, Any], serve_app: Serve, token: str
) -> Iterator[str]:
    manager = capturing_manager(home, fixture_workspace)
    with serve_app(create_app(manager, TokenStore(home / "serving.db"))) as url:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        entity = {
            "entity_name": registry.MODEL_NAME,
            "entity_version": champion["version"],
            "workload_size": "Medium",
        }
        capture_config = {
            "catalog_name": "sandbox",
            "schema_name": "nasa_gcn_dev",
            "table_name_prefix": "rag_inference",
        }
        body: dict[str, Any] = {
            "name": "tested",
            "config": {"served_entities": [entity], "auto_capture_config": capture_config},
        }
        session.post(f"{url}/api/2.0/serving-endpoints", json=body, timeout=30).raise_for_status()
        deadline = time.monotonic() + 120
        while (
            session.get(f"{url}/api/2.0/serving-endpoints/tested", timeout=30).json()["state"][
                "ready"
            ]
            != "READY"
        ):
            assert time.monotonic() < deadline, "endpoint never READY"
            time.sleep(0.1)
        yield url
    manager.close()


def test_the_labs_client_with_retries(server: str, token: str, champion: dict[str, Any]) -> None:
    client = NASAGCNRagClient(f"{server}/serving-endpoints/tested/invocations", token)
    result = client.ask("What is the redshift of GRB 221009A?")
    assert result["answer"].startswith("The redshift of GRB 221009A is z = 0.15")
    many = client.ask_many(["What is a GRB?"] * 5 + ["What is the T90 of GRB 221009A?"], 4)
    assert len(many) == 6 and all(a["answer"] for a in many)
    with pytest.raises(NotFoundError, match="does not exist"):
        NASAGCNRagClient(f"{server}/serving-endpoints/nope/invocations", token).ask("x")
    # one call per minute: the second ask is retried after Retry-After (capped here), then fails
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    session.post(
        f"{server}/api/2.0/serving-endpoints",
        json={
            "name": "scarce",
            "config": {
                "served_entities": [
                    {"entity_name": registry.MODEL_NAME, "entity_version": champion["version"]}
                ]
            },
            "ai_gateway": {"rate_limits": [{"calls": 1, "key": "endpoint"}]},
        },
        timeout=30,
    ).raise_for_status()
    scarce = NASAGCNRagClient(
        f"{server}/serving-endpoints/scarce/invocations", token, max_retries=2, max_retry_wait_s=0.1
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            scarce.ask("What is a GRB?")
            break
        except NotReadyError:  # 503 until the model is loaded
            assert time.monotonic() < deadline, "scarce never became ready"
    with pytest.raises(TooManyRequestsError, match="1 calls per minute"):
        scarce.ask("What is a GRB?")
    assert scarce.retries >= 2


def _cli(*args: str, home: Path) -> Any:
    return CliRunner().invoke(app, [*args, "--home", str(home)])


def test_endpoint_test_writes_its_rows(server: str, token: str, home: Path, tmp_path: Path) -> None:
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "What is the redshift of GRB 221009A?"}\nWhat is a GRB?\n\n')
    result = _cli(
        "endpoints",
        "test",
        "tested",
        "--questions",
        str(questions),
        "--url",
        server,
        "--token",
        token,
        home=home,
    )
    assert result.exit_code == 0, result.output
    assert (
        "2 test row(s) appended to sandbox.nasa_gcn_dev.rag_endpoint_test_results" in result.stdout
    )
    rows = Catalog(home / "warehouse").read("rag_endpoint_test_results").to_pylist()
    assert [r["question"] for r in rows] == [
        "What is the redshift of GRB 221009A?",
        "What is a GRB?",
    ]
    assert all(r["status"] == "success" and r["status_code"] == 200 for r in rows)
    assert rows[0]["answer"].startswith("The redshift of GRB 221009A") and rows[0]["num_docs"] > 0
    assert json.loads(rows[0]["sources"]) == ["GRB 221009A"]
    assert len({r["run_id"] for r in rows}) == 1 and all(r["latency_ms"] > 0 for r in rows)
    refused = _cli("endpoints", "test", "tested", "--url", server, "--token", "bad", home=home)
    assert refused.exit_code == 1  # every question failed (401), and the rows say so
    every = Catalog(home / "warehouse").read("rag_endpoint_test_results").to_pylist()
    failed = [r for r in every if r["run_id"] != rows[0]["run_id"]]
    assert len(failed) == 10 and {(r["status"], r["status_code"]) for r in failed} == {
        ("error", 401)
    }


def test_loadtest_rows_and_report_hold_the_right_numbers(
    server: str, token: str, home: Path
) -> None:
    result = _cli(
        "loadtest",
        "tested",
        "--concurrency",
        "1,4",
        "--requests",
        "12",
        "--url",
        server,
        "--token",
        token,
        "--json",
        home=home,
    )
    assert result.exit_code == 0, result.output
    levels = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(s["concurrency"], s["requests"], s["successes"]) for s in levels] == [
        (1, 12, 12),
        (4, 12, 12),
    ]
    rows = Catalog(home / "warehouse").read("rag_endpoint_load_test_results").to_pylist()
    assert len(rows) == 24 and all(r["status"] == "success" for r in rows)
    for level in levels:
        mine = [r["latency_ms"] for r in rows if r["concurrency"] == level["concurrency"]]
        assert level["latency_p95"] == pytest.approx(percentile(mine, 0.95))
        assert level["latency_max"] == pytest.approx(max(mine))
    (report,) = (home / "reports").glob("loadtest-*")
    assert (report / "loadtest.png").stat().st_size > 10_000
    page = (report / "report.html").read_text()
    assert "<img" in page and "data:image/png;base64," in page and "closed loop" in page.lower()
    timed = _cli(
        "loadtest",
        "tested",
        "--concurrency",
        "2",
        "--duration",
        "1s",
        "--url",
        server,
        "--token",
        token,
        "--json",
        home=home,
    )
    assert timed.exit_code == 0, timed.output
    assert json.loads(timed.stdout)["requests"] >= 1
    remote = _cli("loadtest", "--url", "https://example.com", "--token", token, home=home)
    assert remote.exit_code == 1 and "--allow-remote" in remote.output


def test_monitor_from_the_payload_rows(server: str, home: Path, token: str) -> None:
    refused = requests.post(
        f"{server}/serving-endpoints/tested/invocations",
        json={"inputs": ["What is a GRB?"]},
        timeout=30,
    )  # a 401: counted as a request, not as a success
    assert refused.status_code == 401
    metrics = requests.get(
        f"{server}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30
    ).text
    for live in (
        "gcn_rag_in_flight",
        "gcn_rag_queued",
        "gcn_rag_cold_starts_total",
        "gcn_rag_capture_backlog_rows",
        "gcn_rag_request_duration_seconds_bucket",
    ):
        assert live in metrics
    deadline = time.monotonic() + 30
    catalog = Catalog(home / "warehouse")
    while True:  # the flusher commits every 0.2 s
        rows = catalog.read("rag_inference_payload").to_pylist()
        if refused.headers["x-request-id"] in {r["databricks_request_id"] for r in rows}:
            break
        assert time.monotonic() < deadline
        time.sleep(0.2)
    result = _cli("monitor", "tested", "--bucket", "1h", "--json", home=home)
    assert result.exit_code == 0, result.output
    found = [json.loads(line) for line in result.stdout.splitlines()]
    rows = [r for r in rows if r["endpoint_name"] == "tested"]
    assert sum(b["requests"] for b in found) == len(rows)
    ok = [float(r["execution_duration_ms"]) for r in rows if r["status_code"] == 200]
    if len(found) == 1:
        (bucket,) = found
        assert bucket["successes"] == len(ok)
        assert bucket["latency_p95"] == pytest.approx(percentile(ok, 0.95))
    pictured = _cli("monitor", "tested", home=home)
    assert pictured.exit_code == 0, pictured.output
    assert "Plot:" in pictured.stdout
    assert list((home / "reports").glob("monitor-*.png"))


def _strict(text: str) -> Any:
    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_runs_without_a_success_exit_1_and_json_stays_strict(
    server: str, home: Path, token: str
) -> None:
    """No token (every request a 401) or nothing listening: exit 1, a message that says what
    to do, no report; --json prints null, never NaN, for the latencies nobody measured."""
    since = datetime.now(UTC).isoformat()
    reports = set((home / "reports").glob("loadtest-*"))
    args = ("loadtest", "tested", "--concurrency", "1", "--requests", "3", "--json")
    refused = _cli(*args, "--url", server, "--token", "bad", home=home)
    assert refused.exit_code == 1, refused.output
    (level,) = [_strict(line) for line in refused.stdout.splitlines()]
    assert (level["requests"], level["successes"], level["latency_p95"]) == (3, 0, None)
    said = " ".join(refused.stderr.split())
    assert "No request succeeded (3 of 3 failed; 401: 3)" in said and "--token" in said
    assert "No report written" in said and set((home / "reports").glob("loadtest-*")) == reports
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{s.getsockname()[1]}"
    unheard = _cli(*args, "--url", nobody, "--token", token, home=home)
    assert unheard.exit_code == 1 and "Nothing answered" in " ".join(unheard.output.split())
    tested = _cli("endpoints", "test", "tested", "--url", nobody, "--token", token, home=home)
    assert tested.exit_code == 1 and "No request succeeded" in " ".join(tested.output.split())
    deadline = time.monotonic() + 30
    while True:  # the three 401s reach the payload table (flushed every 0.2 s)
        result = _cli("monitor", "tested", "--since", since, "--json", home=home)
        found = [_strict(line) for line in result.stdout.splitlines()]
        if sum(b["requests"] for b in found) >= 3:
            break
        assert time.monotonic() < deadline, result.output
        time.sleep(0.2)
    assert all(b["successes"] == 0 and b["latency_p95"] is None for b in found)


def _logged(*args: str, home: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in _cli(*args, "--json", home=home).stdout.splitlines()]


def test_piped_endpoint_tables_and_the_api_on_excluding_filters(
    server: str, home: Path, token: str
) -> None:
    listed = _cli("endpoints", "list", "--url", server, "--token", token, home=home)
    assert listed.exit_code == 0, listed.output
    header, *rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert len(header) > 2 and any(row[0] == "tested" for row in rows)
    assert all(len(row) == len(header) for row in rows) and "│" not in listed.stdout
    answer = requests.post(
        f"{server}/serving-endpoints/tested/invocations",
        json={
            "dataframe_records": [{"question": "What is the redshift of GRB 221009A?"}],
            "params": {"since": "2030-01-01"},
        },
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    (prediction,) = answer.json()["predictions"]
    assert prediction["answer"].startswith(
        "Error: No circular about GRB 221009A matches the filters (since 2030-01-01)"
    )
    assert prediction["num_docs"] == 0
    args = ("logs", "tested", "--status", "200", "--limit", "5")
    deadline = time.monotonic() + 60  # the capture flushes every 0.2 s: read when it settled
    while True:
        logged = _logged(*args, home=home)
        piped = _cli(*args, home=home)
        settled = logged and logged == _logged(*args, home=home)
        if settled or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    header, *rows = [line.split("\t") for line in piped.stdout.splitlines()]
    assert header[-2:] == ["question", "answer"] and 1 <= len(rows) == len(logged) <= 5
    for row, record in zip(rows, logged, strict=True):  # whole, where a terminal shows a head
        assert row[-2:] == [
            " ".join(record["question"].split()),
            " ".join(record["answer"].split()),
        ]
