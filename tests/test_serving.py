"""A real server on loopback, driven by the real databricks-sdk, the lab's curl and client."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
import requests

from conftest import PREDICTION_COLUMNS
from gcn_rag.errors import PermissionDeniedError, UnauthenticatedError
from gcn_rag.model import packaging, registry
from gcn_rag.serving.app import create_app
from gcn_rag.serving.auth import TokenStore
from gcn_rag.serving.manager import EndpointManager
from gcn_rag.settings import Settings

ENDPOINT = "nasa-gcn-rag-assistant"


@pytest.fixture(scope="module")
def tokens(fixture_workspace: Settings) -> dict[str, str]:
    store = TokenStore(fixture_workspace.home / "serving.db")
    return {
        level: store.create(level, "tests") for level in ("CAN_VIEW", "CAN_QUERY", "CAN_MANAGE")
    }


@pytest.fixture(scope="module")
def session(tokens: dict[str, str]) -> requests.Session:
    """A client with a CAN_QUERY token, like the lab's."""
    client = requests.Session()
    client.headers["Authorization"] = f"Bearer {tokens['CAN_QUERY']}"
    return client


@pytest.fixture(scope="module")
def server(
    fixture_workspace: Settings,
    champion: dict[str, Any],
    tokens: dict[str, str],
    serve_app: Callable[[Any], AbstractContextManager[str]],
) -> Iterator[str]:
    manager = EndpointManager.for_settings(fixture_workspace)
    with serve_app(create_app(manager, TokenStore(fixture_workspace.home / "serving.db"))) as url:
        yield url
    manager.close()


@pytest.fixture(scope="module")
def workspace_client(server: str, tokens: dict[str, str]) -> Any:
    from databricks.sdk import WorkspaceClient

    return WorkspaceClient(host=server, token=tokens["CAN_MANAGE"])


@pytest.fixture(scope="module")
def endpoint(workspace_client: Any, champion: dict[str, Any]) -> str:
    from databricks.sdk.service.serving import EndpointCoreConfigInput, ServedEntityInput

    workspace_client.serving_endpoints.create_and_wait(
        name=ENDPOINT,
        config=EndpointCoreConfigInput(
            name=ENDPOINT,
            served_entities=[
                ServedEntityInput(
                    entity_name=registry.MODEL_NAME,
                    entity_version=champion["version"],
                    workload_size="Small",
                    scale_to_zero_enabled=True,
                )
            ],
        ),
    )
    return ENDPOINT


def test_sdk_get_and_list(workspace_client: Any, endpoint: str, champion: dict[str, Any]) -> None:
    got = workspace_client.serving_endpoints.get(endpoint)
    assert got.state.ready.value == "READY"
    assert got.state.config_update.value == "NOT_UPDATING"
    (entity,) = got.config.served_entities
    assert entity.entity_name == registry.MODEL_NAME
    assert entity.entity_version == champion["version"]
    assert entity.name == f"gcn_rag_assistant-{champion['version']}"
    assert entity.workload_size == "Small" and entity.scale_to_zero_enabled
    names = [e.name for e in workspace_client.serving_endpoints.list()]
    assert endpoint in names


def test_sdk_query(workspace_client: Any, endpoint: str) -> None:
    from databricks.sdk.service.serving import DataframeSplitInput

    response = workspace_client.serving_endpoints.query(
        name=endpoint,
        dataframe_split=DataframeSplitInput(
            columns=["question"], data=[["What is the redshift of GRB 221009A?"]]
        ),
    )
    (prediction,) = response.predictions
    assert prediction["answer"].startswith("The redshift of GRB 221009A is z = 0.15")
    assert json.loads(prediction["sources"]) == ["GRB 221009A"]


def test_the_labs_curl_without_content_type(
    server: str, endpoint: str, tokens: dict[str, str]
) -> None:
    body = json.dumps({"dataframe_split": {"columns": ["question"], "data": [["What is a GRB?"]]}})
    out = subprocess.run(
        [
            "curl",
            "-s",
            "-X",
            "POST",
            f"{server}/serving-endpoints/{endpoint}/invocations",
            "-H",
            f"Authorization: Bearer {tokens['CAN_QUERY']}",
            "-d",
            body,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    (prediction,) = json.loads(out.stdout)["predictions"]
    assert set(prediction) == set(PREDICTION_COLUMNS)


def test_headers_name_the_entity_and_time_the_model(
    server: str, endpoint: str, session: requests.Session, champion: dict[str, Any]
) -> None:
    response = session.post(
        f"{server}/serving-endpoints/{endpoint}/invocations",
        json={"inputs": ["What is a GRB?", "What is the redshift of GRB 221009A?"]},
        timeout=60,
    )
    assert response.headers["served-model-name"] == f"gcn_rag_assistant-{champion['version']}"
    timing = dict(
        part.strip().split(";dur=") for part in response.headers["server-timing"].split(",")
    )
    assert 0 < float(timing["model"]) <= float(timing["total"])
    assert len(response.json()["predictions"]) == 2
    assert all(isinstance(p["num_docs"], int) for p in response.json()["predictions"])


def test_the_labs_client(server: str, endpoint: str, tokens: dict[str, str]) -> None:
    class NASAGCNRagClient:  # verbatim from the lab's README
        def __init__(self, endpoint_url: str, token: str):
            self.endpoint_url = endpoint_url
            self.headers = {
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
            }

        def ask(self, question: str) -> dict:  # type: ignore[type-arg]
            payload = {"dataframe_split": {"columns": ["question"], "data": [[question]]}}
            response = requests.post(self.endpoint_url, headers=self.headers, json=payload)  # type: ignore[arg-type]
            return response.json()["predictions"][0]  # type: ignore[no-any-return]

    client = NASAGCNRagClient(
        f"{server}/serving-endpoints/{endpoint}/invocations", tokens["CAN_QUERY"]
    )
    result = client.ask("What is a gamma-ray burst?")
    assert result["answer"] and result["num_docs"] > 0


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"dataframe_records": [{"question": "What is a GRB?"}]}, None),
        ({"instances": ["What is a GRB?"]}, None),
        ({"inputs": {"question": ["What is a GRB?"]}, "params": {"k": 2}}, None),
        ({"nothing": 1}, "Send exactly one of"),
        ({"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}}, "'question' column"),
    ],
)
def test_input_formats_and_schema_errors(
    server: str, endpoint: str, body: Any, fragment: str | None, session: requests.Session
) -> None:
    response = session.post(
        f"{server}/serving-endpoints/{endpoint}/invocations", json=body, timeout=60
    )
    if fragment is None:
        assert response.status_code == 200, response.text
        assert response.headers["served-model-name"].startswith("gcn_rag_assistant-")
        assert len(response.json()["predictions"]) == 1
    else:
        assert response.status_code == 400
        assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert fragment in response.json()["message"]


def test_errors_have_databricks_shapes(
    server: str, workspace_client: Any, endpoint: str, session: requests.Session
) -> None:
    from databricks.sdk.errors import ResourceDoesNotExist

    with pytest.raises(ResourceDoesNotExist):
        workspace_client.serving_endpoints.get("no-such-endpoint")
    response = session.post(
        f"{server}/serving-endpoints/no-such-endpoint/invocations", data=b"{}", timeout=10
    )
    assert response.status_code == 404
    assert response.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    response = session.post(
        f"{server}/serving-endpoints/{endpoint}/invocations", data=b"{not json", timeout=10
    )
    assert response.status_code == 400
    assert session.get(f"{server}/.well-known/databricks-config", timeout=10).json() == {}


def test_a_missing_version_is_refused_at_once(
    workspace_client: Any, server: str, tokens: dict[str, str]
) -> None:
    """A version the registry does not have is a 404 when the endpoint is created (as a
    missing alias is), not an endpoint that fails later; a load that does fail later is in
    tests/test_hardening.py."""
    body: Any = {
        "name": "broken",
        "config": {
            "served_entities": [
                {
                    "entity_name": registry.MODEL_NAME,
                    "entity_version": "999",
                    "workload_size": "Small",
                }
            ]
        },
    }
    manage = {"Authorization": f"Bearer {tokens['CAN_MANAGE']}"}
    refused = requests.post(
        f"{server}/api/2.0/serving-endpoints", json=body, headers=manage, timeout=10
    )
    assert refused.status_code == 404
    assert refused.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert "'999'" in refused.json()["message"]
    assert "broken" not in [e.name for e in workspace_client.serving_endpoints.list()]


def test_update_config_swaps_with_requests_in_flight(
    workspace_client: Any,
    endpoint: str,
    server: str,
    fixture_workspace: Settings,
    session: requests.Session,
) -> None:
    from databricks.sdk.service.serving import ServedEntityInput

    from gcn_rag.tables import Catalog

    logged = packaging.log_assistant(
        fixture_workspace, Catalog(fixture_workspace.warehouse), fixture_workspace.home / "index"
    )
    new_version = registry.register(fixture_workspace, logged.model_uri)
    url = f"{server}/serving-endpoints/{endpoint}/invocations"
    body: Any = {"dataframe_split": {"columns": ["question"], "data": [["What is a GRB?"]]}}
    failures: list[int] = []
    served: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            response = session.post(url, json=body, timeout=60)
            if response.status_code != 200:
                failures.append(response.status_code)
            else:
                served.append(response.headers["served-model-name"])

    deadline = time.monotonic() + 120  # warm first: a cold start from zero is not the update
    while (warm := session.post(url, json=body, timeout=60)).status_code == 503:
        assert time.monotonic() < deadline, warm.text
        time.sleep(0.5)
    assert warm.status_code == 200, warm.text
    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        time.sleep(0.3)
        workspace_client.serving_endpoints.update_config_and_wait(
            name=endpoint,
            served_entities=[
                ServedEntityInput(
                    entity_name=registry.MODEL_NAME,
                    entity_version=new_version,
                    workload_size="Small",
                )
            ],
        )
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert failures == [] and len(served) > 2
    assert served[-1] == f"gcn_rag_assistant-{new_version}"
    got = workspace_client.serving_endpoints.get(endpoint)
    assert got.config.served_entities[0].entity_version == new_version
    assert got.config.config_version == 2 and got.pending_config is None


def test_a_failed_update_keeps_the_old_config_serving(
    workspace_client: Any,
    endpoint: str,
    server: str,
    session: requests.Session,
    unloadable: tuple[str, str],
) -> None:
    from databricks.sdk.service.serving import ServedEntityInput

    before = workspace_client.serving_endpoints.get(endpoint).config.served_entities[0]
    name, version = unloadable
    with pytest.raises(Exception, match=r"UPDATE_FAILED|failed"):
        workspace_client.serving_endpoints.update_config_and_wait(
            name=endpoint,
            served_entities=[
                ServedEntityInput(entity_name=name, entity_version=version, workload_size="Small")
            ],
        )
    got = workspace_client.serving_endpoints.get(endpoint)
    assert got.state.config_update.value == "UPDATE_FAILED"
    assert got.config.served_entities[0].entity_version == before.entity_version
    response = session.post(
        f"{server}/serving-endpoints/{endpoint}/invocations",
        json={"dataframe_split": {"columns": ["question"], "data": [["What is a GRB?"]]}},
        timeout=60,
    )
    assert response.status_code == 200
    logs = session.get(
        f"{server}/api/2.0/serving-endpoints/{endpoint}/served-models/x/logs", timeout=10
    ).json()["logs"]
    assert "load failed" in logs


def test_traffic_split_90_10(
    workspace_client: Any, server: str, session: requests.Session, champion: dict[str, Any]
) -> None:
    from databricks.sdk.service.serving import (
        EndpointCoreConfigInput,
        Route,
        ServedEntityInput,
        TrafficConfig,
    )

    version = champion["version"]  # two entities of one version: the split is about routing
    entities = [
        ServedEntityInput(
            name=name,
            entity_name=registry.MODEL_NAME,
            entity_version=version,
            workload_size="Small",
        )
        for name in ("blue", "green")
    ]
    workspace_client.serving_endpoints.create_and_wait(
        name="split",
        config=EndpointCoreConfigInput(
            name="split",
            served_entities=entities,
            traffic_config=TrafficConfig(
                routes=[
                    Route(served_model_name="blue", traffic_percentage=90),
                    Route(served_model_name="green", traffic_percentage=10),
                ]
            ),
        ),
    )
    body: Any = {"dataframe_split": {"columns": ["question"], "data": [["GRB 221009A?"]]}}
    served = [
        session.post(
            f"{server}/serving-endpoints/split/invocations", json=body, timeout=60
        ).headers["served-model-name"]
        for _ in range(1000)
    ]
    share = served.count("blue") / len(served)
    assert abs(share - 0.90) <= 0.03 and served.count("green") > 0
    workspace_client.serving_endpoints.delete("split")


def test_auth(server: str, endpoint: str, tokens: dict[str, str]) -> None:
    invoke = f"{server}/serving-endpoints/{endpoint}/invocations"
    body: Any = {"dataframe_split": {"columns": ["question"], "data": [["What is a GRB?"]]}}

    def call(method: str, url: str, token: str | None, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.request(method, url, headers=headers, timeout=60, **kw)

    missing = call("POST", invoke, None, json=body)
    assert missing.status_code == 401 and missing.json()["error_code"] == "UNAUTHENTICATED"
    assert call("POST", invoke, "dapi-not-a-token", json=body).status_code == 401
    viewer = call("POST", invoke, tokens["CAN_VIEW"], json=body)
    assert viewer.status_code == 403 and viewer.json()["error_code"] == "PERMISSION_DENIED"
    assert call("POST", invoke, tokens["CAN_QUERY"], json=body).status_code == 200
    listing = f"{server}/api/2.0/serving-endpoints"
    assert call("GET", listing, tokens["CAN_VIEW"]).status_code == 200
    assert call("GET", listing, None).status_code == 401
    assert call("DELETE", f"{listing}/{endpoint}", tokens["CAN_QUERY"]).status_code == 403
    assert call("POST", listing, tokens["CAN_QUERY"], json={"name": "x"}).status_code == 403
    assert requests.get(f"{server}/.well-known/databricks-config", timeout=10).json() == {}


def test_tokens_are_stored_hashed(fixture_workspace: Settings, tokens: dict[str, str]) -> None:
    raw = (fixture_workspace.home / "serving.db").read_bytes()
    assert all(token.encode() not in raw for token in tokens.values())


def test_a_token_made_elsewhere_works_at_once_and_unknown_ones_never(tmp_path: Path) -> None:
    """The server's store remembers tokens it has seen; new ones come from the database."""
    serving = TokenStore(tmp_path / "serving.db")
    assert serving.caller("dapi" + "0" * 32) is None
    made = TokenStore(tmp_path / "serving.db").create("CAN_QUERY", "made by the CLI")
    assert serving.authorize(f"Bearer {made}", "CAN_QUERY").name == "made by the CLI"
    assert serving.authorize(f"Bearer {made}", "CAN_VIEW").permission == "CAN_QUERY"
    with pytest.raises(PermissionDeniedError):
        serving.authorize(f"Bearer {made}", "CAN_MANAGE")
    with pytest.raises(UnauthenticatedError):
        serving.authorize("Bearer dapi" + "0" * 32, "CAN_VIEW")


def test_concurrent_requests_are_batched_with_the_same_answers(
    server: str, endpoint: str, session: requests.Session
) -> None:
    """A row-wise model gets concurrent requests coalesced into batches; answers unchanged."""
    from concurrent.futures import ThreadPoolExecutor

    questions = [
        "What is the redshift of GRB 221009A?",
        "What is a GRB?",
        "What X-ray afterglows were detected by Swift XRT?",
        "What is the T90 of GRB 221009A?",
    ] * 6
    url = f"{server}/serving-endpoints/{endpoint}/invocations"

    def ask(question: str) -> Any:
        response = session.post(url, json={"inputs": [question]}, timeout=60)
        assert response.status_code == 200, response.text
        return response.json()["predictions"][0]

    alone = {q: ask(q) for q in set(questions)}
    with ThreadPoolExecutor(8) as pool:  # Small: 4 slots and 4 queued, so none is refused
        together = list(pool.map(ask, questions))
    assert together == [alone[q] for q in questions]
    metrics = session.get(f"{server}/metrics", timeout=10).text
    batches = rows = 0.0
    for line in metrics.splitlines():
        if line.startswith("gcn_rag_batches_total{") and f'endpoint="{endpoint}"' in line:
            batches = float(line.split()[-1])
        if line.startswith("gcn_rag_batched_rows_total{") and f'endpoint="{endpoint}"' in line:
            rows = float(line.split()[-1])
    assert batches > 0 and rows > batches  # some predict calls answered several requests


def test_delete(workspace_client: Any, endpoint: str) -> None:
    from databricks.sdk.errors import ResourceDoesNotExist

    workspace_client.serving_endpoints.delete(endpoint)
    with pytest.raises(ResourceDoesNotExist):
        workspace_client.serving_endpoints.get(endpoint)


def test_endpoints_cli(
    server: str, tokens: dict[str, str], champion: dict[str, Any], fixture_workspace: Settings
) -> None:
    """`gcn-rag endpoints ...` drives the same API over HTTP; aliases resolve server-side."""
    from typer.testing import CliRunner

    from gcn_rag.cli import app

    def cli(*args: str, token: str = tokens["CAN_MANAGE"]) -> Any:
        common = ["--url", server, "--token", token, "--home", str(fixture_workspace.home)]
        return CliRunner().invoke(app, ["endpoints", *args, *common])

    created = cli("create", "cli-made", "--version", "champion", "--no-scale-to-zero", "--json")
    assert created.exit_code == 0, created.output
    body = json.loads(created.stdout)
    assert (body["state"]["ready"], body["state"]["config_update"]) == ("READY", "NOT_UPDATING")
    assert body["config"]["auto_capture_config"]["state"]["payload_table"]["name"] == (
        "rag_inference_payload"
    )
    assert body["config"]["served_entities"][0]["entity_version"] == champion["version"]
    listed = cli("list")
    assert listed.exit_code == 0 and "cli-made" in listed.stdout and "READY" in listed.stdout
    updated = cli(
        "update",
        "cli-made",
        "--version",
        champion["version"],
        "--workload-size",
        "Medium",
        "--json",
    )
    assert updated.exit_code == 0, updated.output
    assert json.loads(updated.stdout)["config"]["served_entities"][0]["workload_size"] == "Medium"
    refused = cli("delete", "cli-made", token=tokens["CAN_VIEW"])
    assert refused.exit_code == 1 and "needs CAN_MANAGE" in refused.output
    bad = cli("create", "cli-bad", "--version", "no-such-alias")
    assert bad.exit_code == 1 and "no version or alias 'no-such-alias'" in bad.output
    assert cli("delete", "cli-made").exit_code == 0
    gone = cli("get", "cli-made")
    assert gone.exit_code == 1 and "does not exist" in gone.output
    nowhere = CliRunner().invoke(app, ["endpoints", "list", "--url", "http://127.0.0.1:9"])
    assert nowhere.exit_code == 1 and "No serving API answers" in nowhere.output
