"""Operating a workspace's server from the CLI: updates are patches, HTTP commands reach the
active workspace's own server (never a copy's original), retries say what they wait for.

One real server (the `Server` that `gcn-rag up` and `serve` run) over a workspace of its own
whose registry holds two versions of the fixture model.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from rich.console import Console
from typer.testing import CliRunner

from gcn_rag.cli import app
from gcn_rag.errors import TooManyRequestsError
from gcn_rag.model import registry
from gcn_rag.progress import ConsoleReporter
from gcn_rag.serving.app import Server
from gcn_rag.serving.auth import TokenStore, manage_token
from gcn_rag.serving.client import NASAGCNRagClient, ServingClient
from gcn_rag.serving.deploy import EndpointSpec, bring_up
from gcn_rag.settings import Settings
from gcn_rag.tables import Catalog

NO_DATABRICKS = {"DATABRICKS_HOST": None, "DATABRICKS_TOKEN": None}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def workspace(
    fixture_workspace: Settings,
    champion: dict[str, Any],
    unloadable: tuple[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Settings:
    """A workspace of its own with the fixture registry (champion and an unloadable model)."""
    home = tmp_path_factory.mktemp("operate")
    with (
        sqlite3.connect(fixture_workspace.mlflow_store) as source,
        sqlite3.connect(home / "mlflow.db") as copy,
    ):
        source.backup(copy)
    shutil.copytree(fixture_workspace.mlflow_artifacts, home / "mlartifacts")
    return Settings.load(environ={}, home=home)


@pytest.fixture(scope="module")
def versions(workspace: Settings, champion: dict[str, Any]) -> tuple[str, str]:
    """Two registered versions of the same model."""
    second = registry.register(workspace, champion["logged"].model_uri)
    return champion["version"], second


@pytest.fixture(scope="module")
def server(workspace: Settings) -> Iterator[Server]:
    """The workspace's server, as `gcn-rag serve` runs it; the CLI token saved beside it."""
    manage_token(TokenStore(workspace.serving_state), workspace.token_file)
    server = Server(workspace, "127.0.0.1", _free_port())
    thread = threading.Thread(target=server.uvicorn.run, daemon=True)
    thread.start()
    assert server.wait_started()
    yield server
    server.stop()
    thread.join(timeout=30)
    server.manager.close()


def gcn_rag(settings: Settings, *args: str, **env: str) -> Any:
    """The CLI in this process; no --url and no DATABRICKS_* unless given."""
    return CliRunner().invoke(
        app, [*args, "--home", str(settings.home)], env={**NO_DATABRICKS, **env}
    )


def served(settings: Settings, name: str) -> dict[str, Any]:
    """What an endpoint serves, as `endpoints get --json` says: the fields updates may touch."""
    result = gcn_rag(settings, "endpoints", "get", name, "--json")
    assert result.exit_code == 0, result.output
    return summary(json.loads(result.stdout)["config"])


def summary(config: dict[str, Any]) -> dict[str, Any]:
    keys = ("entity_version", "workload_size", "scale_to_zero_enabled")
    entities = {
        e["name"]: (e["entity_name"].rsplit(".", 1)[-1], *(e[k] for k in keys))
        for e in config["served_entities"]
    }
    capture = config.get("auto_capture_config") or {}
    routes = {
        r["served_model_name"]: r["traffic_percentage"] for r in config["traffic_config"]["routes"]
    }
    prefix = capture.get("table_name_prefix") if capture.get("enabled") else None
    return {"entities": entities, "capture": prefix, "traffic": routes}


# --- 1. updates are patches --------------------------------------------------------------------


def test_endpoints_update_changes_only_what_it_names(
    server: Server, workspace: Settings, versions: tuple[str, str], unloadable: tuple[str, str]
) -> None:
    """Regression: `update NAME --version 3` on a Large, always-on, uncaptured endpoint came
    back Small, scale-to-zero and captured. Every option of `endpoints update`, one by one."""
    v1, v2 = versions
    short = registry.MODEL_NAME.rsplit(".", 1)[-1]

    def update(*options: str) -> dict[str, Any]:
        result = gcn_rag(workspace, "endpoints", "update", "kept", *options, "--json")
        assert result.exit_code == 0, result.output
        return served(workspace, "kept")

    created = gcn_rag(
        workspace,
        "endpoints",
        "create",
        "kept",
        "--version",
        v1,
        "--workload-size",
        "Large",
        "--no-scale-to-zero",
        "--capture",
        "",
    )
    assert created.exit_code == 0, created.output

    def one(version: str, size: str, zero: bool, capture: str | None) -> dict[str, Any]:
        name = f"{short}-{version}"
        return {
            "entities": {name: (short, version, size, zero)},
            "capture": capture,
            "traffic": {name: 100},
        }

    assert served(workspace, "kept") == one(v1, "Large", False, None)
    assert update("--version", v2) == one(v2, "Large", False, None)
    assert update("--workload-size", "Medium") == one(v2, "Medium", False, None)
    assert update("--scale-to-zero") == one(v2, "Medium", True, None)
    assert update("--capture", "kept_requests") == one(v2, "Medium", True, "kept_requests")
    assert update("--version", "champion") == one(v1, "Medium", True, "kept_requests")
    assert update("--no-scale-to-zero") == one(v1, "Medium", False, "kept_requests")
    assert update("--capture", "") == one(v1, "Medium", False, None)

    # --model: what is sent carries the rest over (that model cannot load: the old one serves)
    model, version = unloadable
    result = gcn_rag(
        workspace, "endpoints", "update", "kept", "--model", model, "--version", version,
        "--no-wait", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (pending,) = json.loads(result.stdout)["pending_config"]["served_entities"]
    assert (pending["entity_name"], pending["entity_version"]) == (model, version)
    assert (pending["workload_size"], pending["scale_to_zero_enabled"]) == ("Medium", False)
    failed = ServingClient(server.url, workspace.token_file.read_text().strip())
    with pytest.raises(Exception, match="failed to update"):
        failed.wait("kept", timeout=120)
    assert served(workspace, "kept") == one(v1, "Medium", False, None)

    # several served entities: --entity names the one to change; the traffic split stays
    split = workspace.home / "split.json"
    entity = {"entity_name": registry.MODEL_NAME, "workload_size": "Small"}
    split.write_text(
        json.dumps(
            {
                "served_entities": [
                    {**entity, "name": "current", "entity_version": v1},
                    {**entity, "name": "candidate", "entity_version": v2},
                ],
                "traffic_config": {
                    "routes": [
                        {"served_model_name": "current", "traffic_percentage": 90},
                        {"served_model_name": "candidate", "traffic_percentage": 10},
                    ]
                },
            }
        )
    )
    both = update("--config", str(split))
    assert both["traffic"] == {"current": 90, "candidate": 10}
    ambiguous = gcn_rag(workspace, "endpoints", "update", "kept", "--workload-size", "Large")
    assert ambiguous.exit_code == 1 and "name the one to change with --entity" in ambiguous.output
    after = update("--entity", "candidate", "--workload-size", "Large", "--version", v1)
    assert after == {
        "entities": {
            "current": (short, v1, "Small", False),
            "candidate": (short, v1, "Large", False),
        },
        "capture": None,
        "traffic": {"current": 90, "candidate": 10},
    }
    nothing = gcn_rag(workspace, "endpoints", "update", "kept")
    assert nothing.exit_code == 1 and "Nothing to change" in nothing.output
    mixed = gcn_rag(
        workspace, "endpoints", "update", "kept", "--config", str(split), "--version", v2
    )
    assert mixed.exit_code == 1 and "without other options" in mixed.output
    assert gcn_rag(workspace, "endpoints", "delete", "kept").exit_code == 0


def test_up_moves_the_version_and_keeps_what_the_operator_set(
    server: Server, workspace: Settings, versions: tuple[str, str]
) -> None:
    """`up` deploying a new champion keeps a size, scale-to-zero and capture set by hand,
    unless `up` itself was given them."""
    v1, v2 = versions
    token = workspace.token_file.read_text().strip()
    catalog = Catalog.from_settings(workspace)
    console = Console(record=True, width=200)
    notes = ConsoleReporter(console)

    def up(spec: EndpointSpec) -> dict[str, Any]:
        assert bring_up(server, "upped", spec, token, catalog, "What is a GRB?", notes)
        return served(workspace, "upped")

    first = up(EndpointSpec(registry.MODEL_NAME, v1))  # `up` with no options: the defaults
    assert list(first["entities"].values()) == [("gcn_rag_assistant", v1, "Small", True)]
    assert first["capture"] == "rag_inference"
    changed = gcn_rag(
        workspace, "endpoints", "update", "upped", "--workload-size", "Large",
        "--no-scale-to-zero", "--capture", "",
    )  # fmt: skip
    assert changed.exit_code == 0, changed.output
    moved = up(EndpointSpec(registry.MODEL_NAME, v2))  # a new champion
    assert list(moved["entities"].values()) == [("gcn_rag_assistant", v2, "Large", False)]
    assert moved["capture"] is None
    info = {r["key"]: r["value"] for r in catalog.read("rag_endpoint_info").to_pylist()}
    assert (info["model_version"], info["workload_size"]) == (v2, "Large")
    again = up(EndpointSpec(registry.MODEL_NAME, v2))
    assert again == moved and f"upped already serves version {v2}" in console.export_text()
    asked = up(EndpointSpec(registry.MODEL_NAME, v2, "Small"))  # `up --workload-size Small`
    assert list(asked["entities"].values()) == [("gcn_rag_assistant", v2, "Small", False)]
    assert gcn_rag(workspace, "endpoints", "delete", "upped").exit_code == 0


# --- 2. HTTP commands aim at the active workspace's own server -----------------------------------


def test_http_commands_reach_their_workspaces_server(
    server: Server, workspace: Settings, versions: tuple[str, str], tmp_path: Path
) -> None:
    """Regression: with no --url they all went to http://127.0.0.1:8080, whatever the workspace."""
    made = gcn_rag(workspace, "endpoints", "create", "aimed", "--version", versions[0], "--json")
    assert made.exit_code == 0, made.output
    listed = gcn_rag(workspace, "endpoints", "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert "aimed" in [e["name"] for e in json.loads(listed.stdout)]
    questions = tmp_path / "q.txt"
    questions.write_text("What is a GRB?\n")
    tested = gcn_rag(workspace, "endpoints", "test", "aimed", "--questions", str(questions))
    assert tested.exit_code == 0, tested.output
    assert f"Testing {server.url}/serving-endpoints/aimed/invocations" in tested.output
    loaded = gcn_rag(
        workspace, "loadtest", "aimed", "--concurrency", "1", "--requests", "2",
        "--questions", str(questions), "--json",
    )  # fmt: skip
    assert loaded.exit_code == 0, loaded.output
    assert [json.loads(line)["successes"] for line in loaded.stdout.splitlines()] == [2]
    # --url and DATABRICKS_HOST still win
    elsewhere = gcn_rag(workspace, "endpoints", "list", DATABRICKS_HOST="http://127.0.0.1:9")
    assert elsewhere.exit_code == 1 and "No serving API answers at http://127.0.0.1:9" in (
        elsewhere.output
    )
    assert gcn_rag(workspace, "endpoints", "delete", "aimed").exit_code == 0


def test_a_copied_workspace_does_not_drive_the_originals_server(
    server: Server, workspace: Settings, versions: tuple[str, str], tmp_path: Path
) -> None:
    """A copy holds the original's server record and a token valid there: it is refused."""
    made = gcn_rag(workspace, "endpoints", "create", "original", "--version", versions[0])
    assert made.exit_code == 0, made.output
    copy = Settings.load(environ={}, home=tmp_path / "copy")
    shutil.copytree(workspace.home, copy.home, ignore=shutil.ignore_patterns("mlartifacts"))
    for command in (("endpoints", "list"), ("endpoints", "delete", "original")):
        refused = gcn_rag(copy, *command)
        assert refused.exit_code == 1, refused.output
        assert f"The server at {server.url} serves another workspace, not {copy.home}" in (
            " ".join(refused.output.split())
        )
        assert "Traceback" not in refused.output
    assert gcn_rag(workspace, "endpoints", "get", "original").exit_code == 0  # not deleted
    assert gcn_rag(workspace, "endpoints", "delete", "original").exit_code == 0


def test_no_server_for_the_workspace_is_said_plainly(tmp_path: Path) -> None:
    """No server ever, then one killed without a chance to clean up: a clear message."""
    home = tmp_path / "lonely"
    settings = Settings.load(environ={}, home=home)
    never = gcn_rag(settings, "endpoints", "list")
    assert never.exit_code == 1 and "Traceback" not in never.output
    assert f"No server is running for workspace {home}; start one with `gcn-rag up`" in (
        " ".join(never.output.split())
    )
    manage_token(TokenStore(settings.serving_state), settings.token_file)
    port = _free_port()
    argv = [sys.executable, "-m", "gcn_rag", "serve", "--port", str(port), "--home", str(home)]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, "serve exited"
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=5).ok:
                    break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.1)
        running = gcn_rag(settings, "endpoints", "list")
        assert running.exit_code == 0 and "No endpoints" in running.output, running.output
    finally:
        process.kill()  # SIGKILL: its record stays behind
        process.wait(timeout=30)
    gone = gcn_rag(settings, "endpoints", "list")
    assert gone.exit_code == 1 and "Traceback" not in gone.output
    assert (
        f"No server is running for workspace {home} (its last one, at http://127.0.0.1:{port}"
        in (" ".join(gone.output.split()))
    )


# --- 3. and 4. ---------------------------------------------------------------------------------


def test_the_hidden_endpoint_alias_is_gone() -> None:
    """`endpoint` was a hidden copy of `endpoints`; the lab's README never uses it."""
    gone = CliRunner().invoke(app, ["endpoint", "list"])
    assert gone.exit_code == 2 and "No such command 'endpoint'" in gone.output
    assert CliRunner().invoke(app, ["endpoints", "--help"]).exit_code == 0


def test_the_client_says_when_it_waits_on_429(
    server: Server, workspace: Settings, versions: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Regression: NASAGCNRagClient slept through 429s without a word."""
    token = workspace.token_file.read_text().strip()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    entity = {"entity_name": registry.MODEL_NAME, "entity_version": versions[0]}
    session.post(
        f"{server.url}/api/2.0/serving-endpoints",
        json={
            "name": "scarce",
            "config": {"served_entities": [entity]},
            "ai_gateway": {"rate_limits": [{"calls": 1, "key": "endpoint"}]},
        },
        timeout=30,
    ).raise_for_status()
    ServingClient(server.url, token).wait("scarce", timeout=120)
    client = NASAGCNRagClient(
        f"{server.url}/serving-endpoints/scarce/invocations",
        token,
        max_retries=2,
        max_retry_wait_s=0.05,
    )
    with caplog.at_level(logging.WARNING, logger="gcn_rag.serving.client"):
        assert client.ask("What is a GRB?")["answer"]
        assert not caplog.records  # quiet when nothing is retried
        with pytest.raises(TooManyRequestsError):
            client.ask("What is a GRB?")
    said = [record.getMessage() for record in caplog.records]
    assert said == [
        "429 from the server (too many requests), retrying in 0.05 s (attempt 1/2)",
        "429 from the server (too many requests), retrying in 0.05 s (attempt 2/2)",
    ]
    ServingClient(server.url, token).delete("scarce")
