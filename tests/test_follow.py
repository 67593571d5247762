"""Endpoints that serve an alias follow it: moving ``champion`` (promote, rollback, `model
alias set`) switches them with the zero-downtime update, with requests in flight.

Here the alias is moved directly, on small test models; the same switch driven by the gate
(`gcn-rag model promote` and `model rollback` on two assistant versions) is
``test_lifecycle.py::test_promote_and_rollback_switch_an_endpoint_serving_champion_...``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import mlflow
import pytest
import requests

from gcn_rag.errors import GcnRagError
from gcn_rag.model import registry
from gcn_rag.model.registry import mlflow_loader, mlflow_resolver
from gcn_rag.serving.app import create_app
from gcn_rag.serving.manager import EndpointManager
from gcn_rag.serving.replicas import Limits
from gcn_rag.serving.store import EndpointStore
from gcn_rag.settings import Settings
from models import Shouter, Sleeper

Serve = Callable[[Any], AbstractContextManager[str]]
MODEL = "sandbox.tests.follower"


@pytest.fixture(scope="module")
def versions(fixture_workspace: Settings) -> tuple[str, str]:
    """Version 1 echoes the question, version 2 shouts it back."""
    uri = registry.tracking_uri(fixture_workspace)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    found = [
        str(
            mlflow.pyfunc.log_model(
                name="follower", python_model=model, registered_model_name=MODEL
            ).registered_model_version
        )
        for model in (Sleeper(), Shouter())
    ]
    return found[0], found[1]


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    fixture_workspace: Settings,
    versions: tuple[str, str],
    serve_app: Serve,
) -> Iterator[str]:
    home: Path = tmp_path_factory.mktemp("follow")
    uri = registry.tracking_uri(fixture_workspace)
    manager = EndpointManager(
        EndpointStore(home / "serving.db"),
        mlflow_loader(uri),
        Limits(alias_check_s=0.2),
        mlflow_resolver(uri),
    )
    with serve_app(create_app(manager)) as url:
        yield url
    manager.close()


def _get(url: str, name: str) -> dict[str, Any]:
    got: dict[str, Any] = requests.get(f"{url}/api/2.0/serving-endpoints/{name}", timeout=30).json()
    return got


def _wait(url: str, name: str, ready: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        got = _get(url, name)
        if ready(got):
            return got
        assert time.monotonic() < deadline, got
        time.sleep(0.1)


def _serving(version: str) -> Callable[[dict[str, Any]], bool]:
    def check(got: dict[str, Any]) -> bool:
        entity = got["config"]["served_entities"][0]
        return bool(
            got["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}
            and entity["entity_version"] == version
        )

    return check


def test_an_endpoint_serving_champion_follows_it_with_requests_in_flight(
    server: str, fixture_workspace: Settings, versions: tuple[str, str]
) -> None:
    first, second = versions
    registry.set_alias(fixture_workspace, "champion", first, name=MODEL)
    entity = {"entity_name": MODEL, "entity_version": "champion", "workload_size": "Small"}
    body: Any = {"name": "follower", "config": {"served_entities": [entity]}}
    assert requests.post(f"{server}/api/2.0/serving-endpoints", json=body, timeout=30).ok
    got = _wait(server, "follower", _serving(first))
    (served,) = got["config"]["served_entities"]
    assert served["entity_alias"] == "champion" and served["name"] == f"follower-{first}"

    answers: list[tuple[int, str]] = []
    stop = threading.Event()

    def ask() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                response = session.post(
                    f"{server}/serving-endpoints/follower/invocations",
                    json={"inputs": ["hello"]},
                    timeout=30,
                )
                text = response.json()["predictions"][0]["answer"] if response.ok else ""
                answers.append((response.status_code, text))

    clients = [threading.Thread(target=ask) for _ in range(3)]
    for client in clients:
        client.start()
    try:
        time.sleep(0.3)
        registry.set_alias(fixture_workspace, "champion", second, name=MODEL)  # as promote would
        got = _wait(server, "follower", _serving(second))
        deadline = time.monotonic() + 60
        while not any(text == "HELLO" for _, text in answers[-3:]):
            assert time.monotonic() < deadline, answers[-3:]
            time.sleep(0.05)
        registry.set_alias(fixture_workspace, "champion", first, name=MODEL)  # as rollback would
        got = _wait(server, "follower", _serving(first))
        time.sleep(0.3)
    finally:
        stop.set()
        for client in clients:
            client.join(30)
    assert {status for status, _ in answers} == {200}  # not one failed request
    texts = [text for _, text in answers]
    assert "HELLO" in texts and texts[-1] == "hello"  # the rollback restored the answers
    assert got["config"]["served_entities"][0]["name"] == f"follower-{first}"
    logs = requests.get(
        f"{server}/api/2.0/serving-endpoints/follower/served-models/x/logs", timeout=10
    ).json()["logs"]
    assert "alias moved" in logs

    registry.set_alias(fixture_workspace, "champion", second, name=MODEL)  # promoted again
    _wait(server, "follower", _serving(second))
    registry.set_alias(fixture_workspace, "champion", first, name=MODEL)
    got = _wait(server, "follower", _serving(first))

    # a config sent back as GET gave it, with another version number: that number pins it
    (entity,) = got["config"]["served_entities"]
    sent = {k: v for k, v in entity.items() if k != "state"} | {"entity_version": second}
    body = {"served_entities": [sent]}
    assert requests.put(
        f"{server}/api/2.0/serving-endpoints/follower/config", json=body, timeout=30
    ).ok
    got = _wait(server, "follower", _serving(second))
    assert "entity_alias" not in got["config"]["served_entities"][0]
    time.sleep(1.0)  # five alias checks: it stays
    assert _get(server, "follower")["config"]["served_entities"][0]["entity_version"] == second


def test_a_version_number_pins_the_entity(
    server: str, fixture_workspace: Settings, versions: tuple[str, str]
) -> None:
    first, second = versions
    registry.set_alias(fixture_workspace, "champion", first, name=MODEL)
    entity = {"entity_name": MODEL, "entity_version": first, "workload_size": "Small"}
    body: Any = {"name": "pinned", "config": {"served_entities": [entity]}}
    assert requests.post(f"{server}/api/2.0/serving-endpoints", json=body, timeout=30).ok
    got = _wait(server, "pinned", _serving(first))
    assert "entity_alias" not in got["config"]["served_entities"][0]
    registry.set_alias(fixture_workspace, "champion", second, name=MODEL)
    time.sleep(1.0)  # five alias checks
    assert _get(server, "pinned")["config"]["served_entities"][0]["entity_version"] == first


def test_challenger_beside_champion_as_a_split_then_as_a_shadow(
    server: str, fixture_workspace: Settings, versions: tuple[str, str]
) -> None:
    from gcn_rag.serving.arms import Challenger, serve_challenger
    from gcn_rag.serving.client import ServingClient
    from gcn_rag.serving.deploy import EndpointSpec, deploy

    first, second = versions
    registry.set_alias(fixture_workspace, "champion", first, name=MODEL)
    registry.set_alias(fixture_workspace, "challenger", second, name=MODEL)
    client = ServingClient(server)
    spec = EndpointSpec(MODEL, first, capture_prefix="", alias="champion")
    deploy(client, "ab", spec, fixture_workspace)
    got = serve_challenger(client, "ab", Challenger(second, percent=10))
    champion, challenger = f"follower-{first}", f"follower-{second}"
    assert {e["name"]: e.get("entity_alias") for e in got["config"]["served_entities"]} == {
        champion: "champion",
        challenger: "challenger",
    }
    answers = [client.query("ab", ["hello"])[0]["answer"] for _ in range(50)]
    assert answers.count("HELLO") == 5  # exactly 10% (smooth weighted round-robin)
    assert serve_challenger(client, "ab", Challenger(second, percent=10)) == client.get("ab")

    got = serve_challenger(client, "ab", Challenger(second, percent=50, shadow=True))
    assert got["config"]["traffic_config"]["shadow_routes"] == [
        {"served_model_name": challenger, "shadow_percentage": 50}
    ]
    answers = [client.query("ab", ["hello"])[0]["answer"] for _ in range(20)]
    assert answers == ["hello"] * 20  # the shadow's answers never reach the caller
    deadline = time.monotonic() + 60
    while (
        f'served_entity="{challenger}",status="200"'
        not in requests.get(f"{server}/metrics", timeout=10).text
    ):
        assert time.monotonic() < deadline, "no shadow request was answered"
        time.sleep(0.2)
    with pytest.raises(GcnRagError, match="already serves"):
        serve_challenger(client, "ab", Challenger(first))

    # the challenger is promoted: champion names its version, and the endpoint serves it alone
    registry.set_alias(fixture_workspace, "champion", second, name=MODEL)
    got = _wait(server, "ab", lambda g: len(g["config"]["served_entities"]) == 1)
    (entity,) = got["config"]["served_entities"]
    assert (entity["name"], entity["entity_version"]) == (challenger, second)
    assert got["config"]["traffic_config"] == {
        "routes": [{"served_model_name": challenger, "traffic_percentage": 100}]
    }
    assert client.query("ab", ["hello"])[0]["answer"] == "HELLO"


def test_followed_config_renames_and_merges() -> None:
    from gcn_rag.serving.endpoints import followed_config

    def entity(name: str, version: str, alias: str) -> dict[str, Any]:
        return {
            "name": name,
            "entity_name": "m.x",
            "entity_version": version,
            "entity_alias": alias,
        }

    config = {
        "served_entities": [entity("x-1", "1", "champion"), entity("blue", "2", "challenger")],
        "traffic_config": {
            "routes": [
                {"served_model_name": "x-1", "traffic_percentage": 90},
                {"served_model_name": "blue", "traffic_percentage": 10},
            ]
        },
    }
    moved = followed_config(config, {"x-1": "3"})  # champion moved on: renamed, split kept
    assert [(e["name"], e["entity_version"]) for e in moved["served_entities"]] == [
        ("x-3", "champion"),
        ("blue", "2"),
    ]
    assert moved["traffic_config"]["routes"][0] == {
        "served_model_name": "x-3",
        "traffic_percentage": 90,
    }
    merged = followed_config(config, {"x-1": "2"})  # champion is now the challenger's version
    assert [e["name"] for e in merged["served_entities"]] == ["x-2"]
    assert merged["traffic_config"] == {
        "routes": [{"served_model_name": "x-2", "traffic_percentage": 100}]
    }


def test_up_checks_its_challenger_options_before_starting(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gcn_rag.cli import app

    runner = CliRunner()
    home = ["--home", str(tmp_path)]  # a workspace with no model: nothing to challenge
    result = runner.invoke(app, ["up", "--shadow", *home])
    assert result.exit_code != 0 and "go with --challenger" in result.output
    result = runner.invoke(app, ["up", "--challenger", *home])
    assert result.exit_code != 0 and "gcn-rag model log --alias challenger" in result.output
