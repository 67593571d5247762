"""Shadow traffic: mirrored copies are answered and captured (flagged), never returned, and a
failing or slow shadow entity leaves the callers' answers and status codes as they were."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import mlflow
import pytest
import requests

from conftest import capturing_manager
from gcn_rag.model import registry
from gcn_rag.serving.app import create_app
from gcn_rag.serving.auth import TokenStore
from gcn_rag.serving.manager import EndpointManager
from gcn_rag.settings import Settings
from gcn_rag.tables import Catalog
from models import Broken, Lagging, Sleeper

Serve = Callable[[Any], AbstractContextManager[str]]
PAYLOAD = "sandbox.nasa_gcn_dev.shadowed_payload"
CAPTURE = {
    "catalog_name": "sandbox",
    "schema_name": "nasa_gcn_dev",
    "table_name_prefix": "shadowed",
}


@pytest.fixture(scope="module")
def models(fixture_workspace: Settings) -> dict[str, str]:
    """Registered test models: name -> version (an echo, a broken one, a slow one)."""
    mlflow.set_tracking_uri(registry.tracking_uri(fixture_workspace))
    mlflow.set_registry_uri(registry.tracking_uri(fixture_workspace))
    found = {}
    for short, model in (("echo", Sleeper()), ("broken", Broken()), ("lagging", Lagging())):
        name = f"sandbox.tests.shadow_{short}"
        info = mlflow.pyfunc.log_model(name=short, python_model=model, registered_model_name=name)
        found[short] = str(info.registered_model_version)
    return found


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shadow")


@pytest.fixture(scope="module")
def manager(
    home: Path, fixture_workspace: Settings, champion: dict[str, Any]
) -> Iterator[EndpointManager]:
    manager = capturing_manager(home, fixture_workspace)
    yield manager
    manager.close()


@pytest.fixture(scope="module")
def session(home: Path) -> requests.Session:
    client = requests.Session()
    token = TokenStore(home / "serving.db").create("CAN_MANAGE", "shadow-tests")
    client.headers["Authorization"] = f"Bearer {token}"
    return client


@pytest.fixture(scope="module")
def server(manager: EndpointManager, home: Path, serve_app: Serve) -> Iterator[str]:
    with serve_app(create_app(manager, TokenStore(home / "serving.db"))) as url:
        yield url


def _entity(name: str, model: str, version: str) -> dict[str, Any]:
    return {"name": name, "entity_name": model, "entity_version": version, "workload_size": "Small"}


def _create(session: requests.Session, url: str, body: dict[str, Any]) -> dict[str, Any]:
    response = session.post(f"{url}/api/2.0/serving-endpoints", json=body, timeout=30)
    assert response.status_code == 200, response.text
    deadline = time.monotonic() + 120
    while True:
        got: dict[str, Any] = session.get(
            f"{url}/api/2.0/serving-endpoints/{body['name']}", timeout=30
        ).json()
        if got["state"]["ready"] == "READY":
            return got
        assert time.monotonic() < deadline, f"{body['name']} never READY"
        time.sleep(0.1)


def _ask(session: requests.Session, url: str, endpoint: str, question: str) -> requests.Response:
    body: Any = {"dataframe_split": {"columns": ["question"], "data": [[question]]}}
    return session.post(f"{url}/serving-endpoints/{endpoint}/invocations", json=body, timeout=60)


def _metric(session: requests.Session, url: str, name: str, entity: str) -> int:
    text = session.get(f"{url}/metrics", timeout=10).text
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith(name + "{") and f'served_entity="{entity}"' in line
    )


def test_shadow_answers_are_captured_flagged_and_never_returned(
    server: str,
    session: requests.Session,
    manager: EndpointManager,
    home: Path,
    champion: dict[str, Any],
    models: dict[str, str],
) -> None:
    body = {
        "name": "shadowed",
        "config": {
            "served_entities": [
                _entity("live", registry.MODEL_NAME, champion["version"]),
                _entity("mirror", "sandbox.tests.shadow_echo", models["echo"]),
                _entity("buggy", "sandbox.tests.shadow_broken", models["broken"]),
            ],
            "traffic_config": {
                "routes": [{"served_model_name": "live", "traffic_percentage": 100}],
                "shadow_routes": [
                    {"served_model_name": "mirror", "shadow_percentage": 100},
                    {"served_model_name": "buggy", "shadow_percentage": 50},
                ],
            },
            "auto_capture_config": CAPTURE,
        },
    }
    got = _create(session, server, body)
    assert got["config"]["traffic_config"]["shadow_routes"] == [
        {"served_model_name": "mirror", "shadow_percentage": 100},
        {"served_model_name": "buggy", "shadow_percentage": 50},
    ]
    questions = [f"What is the redshift of GRB 2101{i:02d}A?" for i in range(10)]
    ids = {}
    for question in questions:
        response = _ask(session, server, "shadowed", question)
        assert response.status_code == 200, response.text
        assert response.headers["served-model-name"] == "live"
        answer = response.json()["predictions"][0]["answer"]
        assert answer != question  # the echo's answer never reaches the caller
        ids[response.headers["x-request-id"]] = question
    deadline = time.monotonic() + 60
    while _metric(session, server, "gcn_rag_shadow_requests_total", "buggy") < 5:
        assert time.monotonic() < deadline, "the shadow requests were not answered"
        time.sleep(0.1)
    while _metric(session, server, "gcn_rag_shadow_requests_total", "mirror") < 10:
        assert time.monotonic() < deadline, "the shadow requests were not answered"
        time.sleep(0.1)
    assert manager.capture is not None
    manager.capture.flush()
    rows = (
        Catalog(home / "warehouse")
        .sql(f"SELECT * FROM {PAYLOAD} WHERE endpoint_name = 'shadowed'")
        .to_pylist()
    )
    live = [r for r in rows if r["served_entity_id"] == "live"]
    assert sorted(r["databricks_request_id"] for r in live) == sorted(ids)
    assert all("SHADOW" not in r["logging_error_codes"] for r in live)
    mirrored = [r for r in rows if r["served_entity_id"] == "mirror"]
    assert len(mirrored) == 10 and all(r["status_code"] == 200 for r in mirrored)
    for row in mirrored:
        codes = row["logging_error_codes"]
        assert "SHADOW" in codes
        (primary,) = [c.removeprefix("SHADOW_OF:") for c in codes if c.startswith("SHADOW_OF:")]
        asked = ids[primary]  # joined to its live request: the same question, echoed
        assert json.loads(row["response"])["predictions"][0]["answer"] == asked
        assert json.loads(row["request"])["dataframe_split"]["data"] == [[asked]]
    failed = [r for r in rows if r["served_entity_id"] == "buggy"]
    assert len(failed) == 5 and all(r["status_code"] == 500 for r in failed)
    assert all("SHADOW" in r["logging_error_codes"] for r in failed)


def test_a_slow_shadow_is_dropped_and_counted_not_waited_for(
    server: str, session: requests.Session, models: dict[str, str]
) -> None:
    body = {
        "name": "laggard",
        "config": {
            "served_entities": [
                _entity("fast", "sandbox.tests.shadow_echo", models["echo"]),
                _entity("slow", "sandbox.tests.shadow_lagging", models["lagging"]),
            ],
            "traffic_config": {
                "routes": [{"served_model_name": "fast", "traffic_percentage": 100}],
                "shadow_routes": [{"served_model_name": "slow", "shadow_percentage": 100}],
            },
        },
    }
    _create(session, server, body)
    for i in range(100):
        response = _ask(session, server, "laggard", f"q{i}")
        assert response.status_code == 200
        assert response.json()["predictions"] == [{"answer": f"q{i}"}]
    dropped = _metric(session, server, "gcn_rag_shadow_dropped_total", "slow")
    answered = _metric(session, server, "gcn_rag_shadow_requests_total", "slow")
    assert dropped > 0  # 100 copies, a queue of 64 and 0.2 s each: some could not wait
    assert answered + dropped <= 100


@pytest.mark.parametrize(
    ("shadow", "message"),
    [
        ([{"served_model_name": "nope", "shadow_percentage": 10}], "unknown served entity"),
        ([{"served_model_name": "a", "shadow_percentage": 10}], "takes live traffic"),
        ([{"served_model_name": "b", "shadow_percentage": 101}], "shadow_percentage"),
        ([{"served_model_name": "b", "shadow_percentage": "x"}], "shadow_percentage"),
    ],
)
def test_bad_shadow_routes_are_400_naming_the_problem(
    server: str,
    session: requests.Session,
    models: dict[str, str],
    shadow: list[dict[str, Any]],
    message: str,
) -> None:
    body: Any = {
        "name": "badshadow",
        "config": {
            "served_entities": [
                _entity("a", "sandbox.tests.shadow_echo", models["echo"]),
                _entity("b", "sandbox.tests.shadow_echo", models["echo"]),
            ],
            "traffic_config": {
                "routes": [{"served_model_name": "a", "traffic_percentage": 100}],
                "shadow_routes": shadow,
            },
        },
    }
    response = session.post(f"{server}/api/2.0/serving-endpoints", json=body, timeout=30)
    assert response.status_code == 400
    assert message in response.json()["message"]
