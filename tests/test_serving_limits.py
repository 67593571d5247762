"""Workload limits, timeouts, scale-to-zero, rate limits, metrics and openapi, over HTTP.

A second real model, ``Sleeper``, is logged to the fixture workspace's registry: its answers
echo the question, ``sleep:<s>`` makes it take that long and ``raise:<msg>`` makes it fail,
so the server's limits can be driven exactly.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import mlflow
import pytest
import requests

from gcn_rag.model import registry
from gcn_rag.model.registry import mlflow_loader
from gcn_rag.serving.app import create_app
from gcn_rag.serving.auth import TokenStore
from gcn_rag.serving.capture import InferenceCapture
from gcn_rag.serving.manager import EndpointManager
from gcn_rag.serving.replicas import Limits
from gcn_rag.serving.store import EndpointStore
from gcn_rag.settings import Settings
from gcn_rag.tables import Catalog
from models import Sleeper

SLEEPER = "sandbox.tests.sleeper"
Serve = Callable[[Any], AbstractContextManager[str]]
LIMITS = Limits(  # the ``server`` fixture's (test_ray_serving's front on Ray has them too)
    request_timeout_s=2.0, queue_timeout_s=0.3, scale_to_zero_idle_s=1.0, cold_start_wait_s=60
)


@pytest.fixture(scope="module")
def sleeper(fixture_workspace: Settings) -> str:
    """The Sleeper model registered as version 1 of ``sandbox.tests.sleeper``."""
    mlflow.set_tracking_uri(registry.tracking_uri(fixture_workspace))
    mlflow.set_registry_uri(registry.tracking_uri(fixture_workspace))
    info = mlflow.pyfunc.log_model(
        name="sleeper", python_model=Sleeper(), registered_model_name=SLEEPER
    )
    return str(info.registered_model_version)


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("limits") / "serving.db"


@pytest.fixture(scope="module")
def token(state: Path) -> str:
    return TokenStore(state).create("CAN_MANAGE", "limits-tests")


def _manager(workspace: Settings, state: Path, limits: Limits) -> EndpointManager:
    loader = mlflow_loader(registry.tracking_uri(workspace))
    return EndpointManager(EndpointStore(state), loader, limits)


@pytest.fixture(scope="module")
def server(
    fixture_workspace: Settings, state: Path, serve_app: Serve, sleeper: str
) -> Iterator[str]:
    manager = _manager(fixture_workspace, state, LIMITS)
    with serve_app(create_app(manager, TokenStore(state))) as url:
        yield url
    manager.close()


@pytest.fixture(scope="module")
def client(token: str) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def _create(
    client: requests.Session, server: str, name: str, entity: str, version: str, **extra: Any
) -> None:
    served: dict[str, Any] = {
        "entity_name": entity,
        "entity_version": version,
        "workload_size": "Small",
    }
    body: dict[str, Any] = {"name": name, "config": {"served_entities": [{**served, **extra}]}}
    response = client.post(f"{server}/api/2.0/serving-endpoints", json=body, timeout=10)
    assert response.status_code == 200, response.text
    deadline = time.monotonic() + 120
    while (
        client.get(f"{server}/api/2.0/serving-endpoints/{name}", timeout=10).json()["state"][
            "ready"
        ]
        != "READY"
    ):
        assert time.monotonic() < deadline, f"{name} did not turn READY"
        time.sleep(0.1)


def _ask(client: requests.Session, server: str, name: str, question: str) -> requests.Response:
    return client.post(
        f"{server}/serving-endpoints/{name}/invocations",
        json={"inputs": [question]},
        timeout=60,
    )


@pytest.fixture(scope="module")
def sleepy(client: requests.Session, server: str, sleeper: str) -> str:
    _create(client, server, "sleepy", SLEEPER, sleeper)
    return "sleepy"


def _metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (summed over unlisted labels)."""
    total, found = 0.0, False
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            total, found = total + float(match.group(2)), True
    assert found, f"no {name} {labels} in metrics"
    return total


def test_small_allows_4_concurrent_then_queues_briefly_then_429(
    client: requests.Session, server: str, sleepy: str
) -> None:
    # 12 requests of 1 s at once: 4 run, 4 queue for 0.3 s and give up, 4 find the queue full.
    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(lambda _: _ask(client, server, sleepy, "sleep:1"), range(12)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 4 + [429] * 8
    for response in responses:
        if response.status_code == 429:
            assert response.headers["Retry-After"] == "1"
            assert response.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
            assert "limit of 4 concurrent requests" in response.json()["message"]
    # the slots are free again
    assert _ask(client, server, sleepy, "hello").json() == {"predictions": [{"answer": "hello"}]}
    text = client.get(f"{server}/metrics", timeout=10).text
    assert _metric(text, "gcn_rag_requests_total", endpoint=sleepy, status="429") == 8
    assert _metric(text, "gcn_rag_concurrency_limit", endpoint=sleepy) == 4
    assert _metric(text, "gcn_rag_in_flight", endpoint=sleepy) == 0


def test_timeout_is_504_and_model_errors_are_500(
    client: requests.Session, server: str, sleepy: str
) -> None:
    slow = _ask(client, server, sleepy, "sleep:3")
    assert slow.status_code == 504
    assert slow.json()["error_code"] == "DEADLINE_EXCEEDED"
    assert "2 s" in slow.json()["message"]
    failed = _ask(client, server, sleepy, "raise:the model broke")
    assert failed.status_code == 500
    assert failed.json() == {
        "error_code": "INTERNAL_ERROR",
        "message": "RuntimeError: the model broke",
    }
    assert "Traceback" not in failed.text
    assert _ask(client, server, sleepy, "fine").status_code == 200


def test_a_request_that_times_out_is_captured_once_as_504(
    fixture_workspace: Settings, serve_app: Serve, sleeper: str, tmp_path: Path
) -> None:
    """The model answers after the client got 504: that late answer is not logged as well."""
    capture = InferenceCapture(tmp_path / "capture", Catalog(tmp_path / "warehouse"))
    capture.start()
    manager = EndpointManager(
        EndpointStore(tmp_path / "serving.db"),
        mlflow_loader(registry.tracking_uri(fixture_workspace)),
        Limits(request_timeout_s=0.3),
        capture=capture,
    )
    with serve_app(create_app(manager)) as url:
        anonymous = requests.Session()
        table = {"catalog_name": "sandbox", "schema_name": "t", "table_name_prefix": "slow"}
        entity = {"entity_name": SLEEPER, "entity_version": sleeper}
        config: dict[str, Any] = {"served_entities": [entity], "auto_capture_config": table}
        created = anonymous.post(
            f"{url}/api/2.0/serving-endpoints", json={"name": "late", "config": config}, timeout=10
        )
        assert created.status_code == 200, created.text
        deadline = time.monotonic() + 60
        while _ask(anonymous, url, "late", "ready?").status_code != 200:
            assert time.monotonic() < deadline, "late never answered"
            time.sleep(0.1)
        late = _ask(anonymous, url, "late", "sleep:1")
        assert late.status_code == 504
        time.sleep(1.5)  # the model has answered by now, to nobody
        fine = _ask(anonymous, url, "late", "fine")
        assert fine.status_code == 200
    manager.close()  # flushes the capture
    rows = Catalog(tmp_path / "warehouse").sql(
        "SELECT databricks_request_id, status_code FROM sandbox.t.slow_payload"
    )
    logged = sorted((r["databricks_request_id"], r["status_code"]) for r in rows.to_pylist())
    assert (late.headers["x-request-id"], 504) in logged
    assert (fine.headers["x-request-id"], 200) in logged
    assert len({request_id for request_id, _ in logged}) == len(logged)  # each id once


def test_wrong_method_and_oversized_bodies_are_clear_errors(
    client: requests.Session, server: str, sleepy: str
) -> None:
    path = f"{server}/serving-endpoints/{sleepy}/invocations"
    got = client.get(path, timeout=10)
    assert got.status_code == 405
    assert got.json()["error_code"] == "METHOD_NOT_ALLOWED"
    assert "POST" in got.json()["message"]
    huge = b'{"inputs": ["' + b"x" * (17 * 2**20) + b'"]}'
    too_big = client.post(path, data=huge, timeout=60)
    assert too_big.status_code == 400
    assert "16 MB" in too_big.json()["message"]
    assert _ask(client, server, sleepy, "still here").json() == {
        "predictions": [{"answer": "still here"}]
    }


def test_rate_limit_per_user_from_the_ai_gateway(
    server: str, token: str, client: requests.Session, sleeper: str
) -> None:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.serving import (
        AiGatewayRateLimit,
        AiGatewayRateLimitKey,
        AiGatewayRateLimitRenewalPeriod,
    )

    _create(client, server, "rated", SLEEPER, sleeper)
    w = WorkspaceClient(host=server, token=token)
    w.serving_endpoints.put_ai_gateway(
        "rated",
        rate_limits=[
            AiGatewayRateLimit(
                calls=3,
                key=AiGatewayRateLimitKey.USER,
                renewal_period=AiGatewayRateLimitRenewalPeriod.MINUTE,
            )
        ],
    )
    got = w.serving_endpoints.get("rated")
    assert got.ai_gateway is not None and got.ai_gateway.rate_limits is not None
    assert got.ai_gateway.rate_limits[0].calls == 3
    codes = [_ask(client, server, "rated", "hi").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    refused = _ask(client, server, "rated", "hi")
    assert 55 <= int(refused.headers["Retry-After"]) <= 60
    assert "3 calls per minute for you" in refused.json()["message"]
    bad = client.put(
        f"{server}/api/2.0/serving-endpoints/rated/ai-gateway",
        json={"rate_limits": [{"calls": 0}]},
        timeout=10,
    )
    assert bad.status_code == 400 and "positive integer" in bad.json()["message"]


def test_scale_to_zero_unloads_and_the_next_request_cold_starts(
    client: requests.Session, server: str, champion: dict[str, Any]
) -> None:
    question = "What is the redshift of GRB 221009A?"
    _create(
        client, server, "zero", registry.MODEL_NAME, champion["version"], scale_to_zero_enabled=True
    )
    first = _ask(client, server, "zero", question)
    assert first.status_code == 200
    loaded_rss = _metric(
        client.get(f"{server}/metrics", timeout=10).text, "process_resident_memory_bytes"
    )
    deadline = time.monotonic() + 30
    while True:  # idle for 1 s -> unloaded by the reaper
        text = client.get(f"{server}/metrics", timeout=10).text
        if _metric(text, "gcn_rag_model_loaded", endpoint="zero") == 0:
            break
        assert time.monotonic() < deadline, "never scaled to zero"
        time.sleep(0.2)
    released = loaded_rss - _metric(text, "process_resident_memory_bytes")
    (entity,) = client.get(f"{server}/api/2.0/serving-endpoints/zero", timeout=10).json()["config"][
        "served_entities"
    ]
    assert entity["state"]["deployment_state_message"].startswith("Scaled to zero")
    again = _ask(client, server, "zero", question)
    assert again.status_code == 200
    assert again.json() == first.json()
    text = client.get(f"{server}/metrics", timeout=10).text
    assert _metric(text, "gcn_rag_cold_starts_total", endpoint="zero") == 1
    assert _metric(text, "gcn_rag_last_cold_start_seconds", endpoint="zero") > 0
    assert _metric(text, "gcn_rag_model_loaded", endpoint="zero") == 1
    assert released > 20 * 2**20, f"scale-to-zero released only {released / 2**20:.0f} MB"


def test_a_cold_start_past_the_bound_is_503_with_retry_after(
    fixture_workspace: Settings,
    serve_app: Serve,
    sleeper: str,
    tmp_path: Path,
) -> None:
    limits = Limits(scale_to_zero_idle_s=0.2, cold_start_wait_s=0.01)
    manager = _manager(fixture_workspace, tmp_path / "serving.db", limits)
    with serve_app(create_app(manager)) as url:
        anonymous = requests.Session()
        _create(anonymous, url, "cold", SLEEPER, sleeper, scale_to_zero_enabled=True)
        deadline = time.monotonic() + 30
        while "Scaled to zero" not in json.dumps(
            anonymous.get(f"{url}/api/2.0/serving-endpoints/cold", timeout=10).json()
        ):
            assert time.monotonic() < deadline, "never scaled to zero"
            time.sleep(0.1)
        busy = _ask(anonymous, url, "cold", "hi")
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "5"
        assert "cold start" in busy.json()["message"]
        deadline = time.monotonic() + 60
        while (answer := _ask(anonymous, url, "cold", "hi")).status_code == 503:
            assert time.monotonic() < deadline, "cold start never finished"
            time.sleep(0.05)
        assert answer.json() == {"predictions": [{"answer": "hi"}]}
    manager.close()


def test_metrics_and_openapi_through_the_sdk(
    server: str, token: str, client: requests.Session, sleepy: str
) -> None:
    from databricks.sdk import WorkspaceClient

    w = WorkspaceClient(host=server, token=token)
    assert _ask(client, server, sleepy, "count me").status_code == 200
    exported = w.serving_endpoints.export_metrics(sleepy).contents
    assert exported is not None
    text = exported.read().decode()
    assert _metric(text, "gcn_rag_requests_total", endpoint=sleepy, status="200") >= 1
    assert _metric(text, "gcn_rag_request_duration_seconds_count", endpoint=sleepy) >= 1
    assert 'endpoint="rated"' not in text  # only this endpoint's samples
    spec_stream = w.serving_endpoints.get_open_api(sleepy).contents
    assert spec_stream is not None
    spec = json.loads(spec_stream.read())
    assert spec["openapi"].startswith("3.")
    assert f"/serving-endpoints/{sleepy}/invocations" in spec["paths"]
    assert requests.get(f"{server}/metrics", timeout=10).status_code == 401


def test_one_server_per_workspace(server: str, state: Path, tmp_path: Path) -> None:
    """A second server on the same state fails at start, naming the first one's pid."""
    from gcn_rag.errors import AlreadyExistsError

    with pytest.raises(AlreadyExistsError, match=rf"pid {os.getpid()}\) is serving"):
        EndpointStore(state)
    EndpointStore(tmp_path / "serving.db").close()  # another workspace is free
