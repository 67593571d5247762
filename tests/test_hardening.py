"""Bad input, hostile input and unlucky state: each a clear 4xx, none able to stop capture.

Every test here is a defect found by probing the server (issue 14), kept as a regression
test: it failed before the fix.
"""

from __future__ import annotations

import sqlite3
import threading
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
from models import Sleeper

Serve = Callable[[Any], AbstractContextManager[str]]
ECHO = "sandbox.tests.echo"
CAPTURE: dict[str, Any] = {"catalog_name": "sandbox", "schema_name": "hardening"}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hardening")


@pytest.fixture(scope="module")
def tokens(home: Path) -> dict[str, str]:
    store = TokenStore(home / "serving.db")
    return {
        level: store.create(level, level.lower().replace("can_", ""))
        for level in ("CAN_VIEW", "CAN_QUERY", "CAN_MANAGE")
    }


@pytest.fixture(scope="module")
def echo(fixture_workspace: Settings) -> str:
    mlflow.set_tracking_uri(registry.tracking_uri(fixture_workspace))
    mlflow.set_registry_uri(registry.tracking_uri(fixture_workspace))
    info = mlflow.pyfunc.log_model(name="echo", python_model=Sleeper(), registered_model_name=ECHO)
    return str(info.registered_model_version)


@pytest.fixture(scope="module")
def manager(home: Path, fixture_workspace: Settings, champion: dict[str, Any]) -> Iterator[Any]:
    manager = capturing_manager(home, fixture_workspace, resolve=True, flush_interval_s=0.1)
    yield manager
    manager.close()


@pytest.fixture(scope="module")
def server(manager: EndpointManager, home: Path, serve_app: Serve) -> Iterator[str]:
    with serve_app(create_app(manager, TokenStore(home / "serving.db"))) as url:
        yield url


@pytest.fixture(scope="module")
def manage(tokens: dict[str, str]) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {tokens['CAN_MANAGE']}"
    return session


def _create(session: requests.Session, url: str, name: str, config: dict[str, Any]) -> None:
    response = session.post(
        f"{url}/api/2.0/serving-endpoints", json={"name": name, "config": config}, timeout=30
    )
    assert response.status_code == 200, response.text
    deadline = time.monotonic() + 120
    while session.get(f"{url}/api/2.0/serving-endpoints/{name}", timeout=30).json()["state"][
        "ready"
    ] != ("READY"):
        assert time.monotonic() < deadline, f"{name} never READY"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def assistant(manage: requests.Session, server: str, champion: dict[str, Any]) -> str:
    entity = {"entity_name": registry.MODEL_NAME, "entity_version": champion["version"]}
    capture = {**CAPTURE, "table_name_prefix": "assistant"}
    _create(
        manage, server, "assistant", {"served_entities": [entity], "auto_capture_config": capture}
    )
    return "assistant"


@pytest.fixture(scope="module")
def echoing(manage: requests.Session, server: str, echo: str) -> str:
    entity = {"entity_name": ECHO, "entity_version": echo, "workload_size": "Medium"}
    capture = {**CAPTURE, "table_name_prefix": "echo"}
    _create(
        manage, server, "echoing", {"served_entities": [entity], "auto_capture_config": capture}
    )
    return "echoing"


def _rows(home: Path, table: str, request_id: str, wait_s: float = 20) -> list[dict[str, Any]]:
    """The captured rows of one request, once flushed."""
    catalog = Catalog(home / "warehouse")
    deadline = time.monotonic() + wait_s
    while True:
        if catalog.exists(table):
            rows = catalog.sql(
                f"SELECT * FROM {table} WHERE databricks_request_id = '{request_id}'"
            ).to_pylist()
            if rows:
                return list(rows)
        if time.monotonic() > deadline:
            return []
        time.sleep(0.1)


def _invoke(session: requests.Session, url: str, name: str, **kwargs: Any) -> requests.Response:
    kwargs.setdefault("timeout", 60)
    return session.post(f"{url}/serving-endpoints/{name}/invocations", **kwargs)


# --- invocations ------------------------------------------------------------------------------


def test_an_oversized_body_to_a_capturing_endpoint_is_answered_at_once(
    manage: requests.Session, server: str, assistant: str, home: Path
) -> None:
    """It used to hang: the handler read the consumed body again and waited for a disconnect."""
    huge = b'{"inputs": ["' + b"x" * (17 * 2**20) + b'"]}'
    response = _invoke(manage, server, assistant, data=huge, timeout=30)
    assert response.status_code == 400 and "16 MB" in response.json()["message"]
    (row,) = _rows(home, "sandbox.hardening.assistant_payload", response.headers["x-request-id"])
    assert row["status_code"] == 400
    assert "MAX_REQUEST_SIZE_EXCEEDED" in row["logging_error_codes"]
    assert "over the limit: not kept" in row["request"]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"k": "abc"}, "k"),
        ({"k": None}, "k"),
        ({"k": 0}, "k"),
        ({"k": True}, "k"),
        ({"since": 12}, "since"),
        ({"since": "last tuesday"}, "since"),
        ({"mode": "bogus"}, "mode"),
        ({"event_filter": ["GRB%"]}, "event_filter"),
    ],
)
def test_bad_params_are_400s_that_name_the_param(
    manage: requests.Session, server: str, assistant: str, params: dict[str, Any], named: str
) -> None:
    body = {"inputs": ["What is the redshift of GRB 221009A?"], "params": params}
    response = _invoke(manage, server, assistant, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert named in response.json()["message"]


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b'{"inputs": [1, 2]}', "string"),
        (b'{"inputs": [NaN]}', ""),
        (b'{"inputs": ["\\ud800"]}', "surrogate"),
        (b'{"inputs": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", "nested too deeply"),
        (b'{"inputs": ["\xff\xfe"]}', "not valid JSON"),
    ],
)
def test_questions_no_model_can_take_are_400s(
    manage: requests.Session, server: str, assistant: str, raw: bytes, fragment: str
) -> None:
    response = _invoke(manage, server, assistant, data=raw)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["message"]
    assert set(response.json()) == {"error_code", "message"}


def test_empty_requests_answer_nothing_in_every_format(
    manage: requests.Session, server: str, assistant: str
) -> None:
    bodies: list[dict[str, Any]] = [
        {"instances": []},
        {"inputs": []},
        {"dataframe_records": []},
        {"dataframe_split": {"columns": ["question"], "data": []}},
    ]
    for body in bodies:
        response = _invoke(manage, server, assistant, json=body)
        assert response.status_code == 200, (body, response.text)
        assert response.json() == {"predictions": []}


def test_rows_per_request_are_bounded(
    manage: requests.Session, server: str, echoing: str, manager: EndpointManager
) -> None:
    limit = manager.limits.max_rows
    response = _invoke(manage, server, echoing, json={"inputs": ["q"] * (limit + 1)})
    assert response.status_code == 400
    assert f"limit is {limit:,} per request" in response.json()["message"]
    assert _invoke(manage, server, echoing, json={"inputs": ["q"] * limit}).status_code == 200


def test_a_refused_caller_is_named_and_little_of_their_body_is_kept(
    tokens: dict[str, str], server: str, echoing: str, home: Path
) -> None:
    viewer = {"Authorization": f"Bearer {tokens['CAN_VIEW']}"}
    big = {"inputs": ["x" * 100_000]}
    refused = requests.post(
        f"{server}/serving-endpoints/{echoing}/invocations", json=big, headers=viewer, timeout=30
    )
    assert refused.status_code == 403
    (row,) = _rows(home, "sandbox.hardening.echo_payload", refused.headers["x-request-id"])
    assert row["requester"] == "view"  # the token's name, not "unauthenticated"
    assert len(row["request"]) <= 1024
    assert "REQUEST_NOT_KEPT_UNAUTHENTICATED" in row["logging_error_codes"]
    lowercase = {"Authorization": f"bearer {tokens['CAN_QUERY']}"}
    ok = requests.post(
        f"{server}/serving-endpoints/{echoing}/invocations",
        json={"inputs": ["scheme names are case-insensitive"]},
        headers=lowercase,
        timeout=30,
    )
    assert ok.status_code == 200


def test_requests_in_flight_during_a_delete_are_captured(
    manage: requests.Session, server: str, echo: str, home: Path
) -> None:
    entity = {"entity_name": ECHO, "entity_version": echo, "workload_size": "Medium"}
    capture = {**CAPTURE, "table_name_prefix": "doomed"}
    _create(manage, server, "doomed", {"served_entities": [entity], "auto_capture_config": capture})
    answered: list[requests.Response] = []

    def ask() -> None:
        answered.append(_invoke(manage, server, "doomed", json={"inputs": ["sleep:1"]}))

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(0.4)
    assert manage.delete(f"{server}/api/2.0/serving-endpoints/doomed", timeout=30).ok
    for thread in threads:
        thread.join(timeout=60)
    ok = [r for r in answered if r.status_code == 200]
    assert len(ok) == 6
    for response in ok:
        assert _rows(home, "sandbox.hardening.doomed_payload", response.headers["x-request-id"])


def test_unknown_routes_answer_in_the_error_shape(manage: requests.Session, server: str) -> None:
    missing = manage.get(f"{server}/api/2.0/no-such-thing", timeout=10)
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    wrong = manage.patch(f"{server}/api/2.0/serving-endpoints", timeout=10)
    assert wrong.status_code == 405 and wrong.json()["error_code"] == "METHOD_NOT_ALLOWED"


# --- management ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"served_entities": [{"entity_name": "m", "workload_size": ["Small"]}]}, "workload_size"),
        ({"served_entities": "x"}, "served_entities"),
        ({"served_entities": []}, "served_entities"),
        ({"served_entities": [{"entity_name": "m"}], "traffic_config": []}, "traffic_config"),
        ({"served_entities": [{"entity_name": "m"}], "traffic_config": {"routes": "x"}}, "routes"),
        (
            {
                "served_entities": [{"entity_name": "m"}],
                "traffic_config": {
                    "routes": [{"served_model_name": "m-1", "traffic_percentage": "abc"}]
                },
            },
            "traffic_percentage",
        ),
        (
            {"served_entities": [{"entity_name": "m", "scale_to_zero_enabled": {"a": 1}}]},
            "scale_to_zero_enabled",
        ),
        ({"served_entities": [{"entity_name": 5}]}, "entity_name"),
    ],
)
def test_management_type_errors_are_400s_that_name_the_field(
    manage: requests.Session, server: str, config: Any, field: str
) -> None:
    created = manage.post(
        f"{server}/api/2.0/serving-endpoints", json={"name": "typed", "config": config}, timeout=10
    )
    assert created.status_code == 400, created.text
    assert field in created.json()["message"]
    updated = manage.put(
        f"{server}/api/2.0/serving-endpoints/typed/config", json=config, timeout=10
    )
    # the shape is checked before the endpoint is looked up, so no 404 for the missing "typed"
    assert updated.status_code == 400, updated.text
    assert updated.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert field in updated.json()["message"]


def test_deep_nesting_and_bodies_that_are_not_objects_are_400s(
    manage: requests.Session, server: str
) -> None:
    for raw in (b"[" * 10_000 + b"]" * 10_000, b"[]", b'"name"', b"{}"):
        response = manage.post(f"{server}/api/2.0/serving-endpoints", data=raw, timeout=10)
        assert response.status_code == 400, (raw[:20], response.text)
        assert set(response.json()) == {"error_code", "message"}


@pytest.mark.parametrize(
    "name", ["caf\u00e9", "a" * 64, "has space", "", "dots.in.name", "\uff46\uff55\uff4c\uff4c"]
)
def test_endpoint_names_are_ascii_and_bounded(
    manage: requests.Session, server: str, champion: dict[str, Any], name: str
) -> None:
    entity = {"entity_name": registry.MODEL_NAME, "entity_version": champion["version"]}
    body: dict[str, Any] = {"name": name, "config": {"served_entities": [entity]}}
    response = manage.post(f"{server}/api/2.0/serving-endpoints", json=body, timeout=10)
    assert response.status_code == 400, response.text
    assert "Endpoint name" in response.json()["message"]


def test_a_capture_table_name_that_cannot_exist_is_refused_at_create(
    manage: requests.Session, server: str, champion: dict[str, Any]
) -> None:
    """`9lives` is a fine endpoint name, but `9lives_payload` is no table: refused at once,
    instead of a table that stopped capture for every endpoint."""
    entity = {"entity_name": registry.MODEL_NAME, "entity_version": champion["version"]}
    config: dict[str, Any] = {"served_entities": [entity], "auto_capture_config": dict(CAPTURE)}
    body: dict[str, Any] = {"name": "9lives", "config": config}
    refused = manage.post(f"{server}/api/2.0/serving-endpoints", json=body, timeout=10)
    assert refused.status_code == 400
    assert "9lives_payload" in refused.json()["message"]
    fixed = {**config, "auto_capture_config": {**CAPTURE, "table_name_prefix": "lives"}}
    _create(manage, server, "9lives", fixed)
    assert manage.delete(f"{server}/api/2.0/serving-endpoints/9lives", timeout=10).ok


@pytest.mark.parametrize(
    "routes",
    [
        [
            {"served_model_name": "a", "traffic_percentage": 150},
            {"served_model_name": "b", "traffic_percentage": -50},
        ],
        [
            {"served_model_name": "a", "traffic_percentage": 50},
            {"served_model_name": "a", "traffic_percentage": 50},
        ],
    ],
)
def test_invalid_traffic_splits_are_refused(
    manage: requests.Session, server: str, echo: str, routes: list[dict[str, Any]]
) -> None:
    entities = [
        {"name": "a", "entity_name": ECHO, "entity_version": echo},
        {"name": "b", "entity_name": ECHO, "entity_version": echo},
    ]
    config: dict[str, Any] = {"served_entities": entities, "traffic_config": {"routes": routes}}
    body: dict[str, Any] = {"name": "split", "config": config}
    response = manage.post(f"{server}/api/2.0/serving-endpoints", json=body, timeout=10)
    assert response.status_code == 400, response.text


def test_a_deleted_endpoint_whose_load_failed_stays_deleted(
    manage: requests.Session, server: str, home: Path, unloadable: tuple[str, str]
) -> None:
    """The failed-load path saved the endpoint back after a quick delete (11 of 15 tries)."""
    name, version = unloadable
    config = {"served_entities": [{"entity_name": name, "entity_version": version}]}
    for attempt in range(5):
        endpoint = f"ghost-{attempt}"
        created = manage.post(
            f"{server}/api/2.0/serving-endpoints",
            json={"name": endpoint, "config": config},
            timeout=10,
        )
        assert created.status_code == 200, created.text
        assert manage.delete(f"{server}/api/2.0/serving-endpoints/{endpoint}", timeout=10).ok
    time.sleep(3)  # every load has failed by now
    with sqlite3.connect(home / "serving.db") as db:
        stored = [row[0] for row in db.execute("SELECT name FROM endpoints")]
    assert not [n for n in stored if n.startswith("ghost-")]
    listed = manage.get(f"{server}/api/2.0/serving-endpoints", timeout=10).json()["endpoints"]
    assert not [e for e in listed if e["name"].startswith("ghost-")]


def test_idle_and_slow_header_connections_are_closed(settings: Settings) -> None:
    """uvicorn alone held them for ever (5,000 in a probe): a header timeout closes them."""
    import socket

    from gcn_rag.serving.app import Server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    quick = Settings.load(environ={}, home=settings.home, header_timeout_s=0.5)
    server = Server(quick, "127.0.0.1", port, no_auth=True)
    thread = threading.Thread(target=server.uvicorn.run, daemon=True)
    thread.start()
    try:
        assert server.wait_started()
        idle = socket.create_connection(("127.0.0.1", port))
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # never finishes its headers
        assert requests.get(f"{server.url}/health", timeout=5).text == "ok"
        for sock in (idle, slow):
            sock.settimeout(5)
            started = time.monotonic()
            assert sock.recv(1) == b""  # closed by the server
            assert time.monotonic() - started < 3
            sock.close()
    finally:
        server.stop()
        thread.join(timeout=30)
        server.manager.close()
