"""The serving contract against ``gcn-rag serve --engine ray`` on a local two-node Ray cluster.

A Ray head and a second node (standing for a second machine) run on 127.0.0.1 under a
private ``RAY_TMPDIR``; ``gcn-rag serve --engine ray --address`` runs in a subprocess on the
fixture workspace. The contract tests of ``test_serving`` (databricks-sdk create/get/query/
update/delete, the lab's curl and client, auth, batching, the CLI) and the 429, rate-limit
and metrics/openapi tests of ``test_serving_limits`` run here as they are, against that
server; its 504-and-500 test runs on a front of its own with a Ray engine. The tests below
add scale to zero and back, the inference table, loopback only, and nothing left running.

Left out, each about what is decided before the engine is called, or covered below:
- ``test_traffic_split_90_10``: routing; its 1,000 requests would double this module's time;
- the token tests and ``test_one_server_per_workspace``: the token and endpoint stores;
- ``test_wrong_method_and_oversized_bodies_are_clear_errors``: refused before routing;
- ``test_a_request_that_times_out_is_captured_once_as_504``: the front's deadline and spool,
  checked on Ray by the 504 test (+20 s on Ray for nothing new);
- ``test_a_cold_start_past_the_bound_is_503_with_retry_after``: the front's wait bound; the
  Ray cold start itself is the scale-to-zero test's (+30 s on Ray);
- ``test_scale_to_zero_unloads_and_the_next_request_cold_starts``: it reads the memory the
  server's process gives back; on Ray the replicas' processes stop (the test below).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

import test_serving as contract
import test_serving_limits as limits
from clusters import listening, outside_loopback, session_processes
from gcn_rag.model import registry
from gcn_rag.settings import Settings
from gcn_rag.tables import Catalog
from test_capture import ServerProcess, _body, _capture, _create

# The contract, run here against the Ray engine in its own order (the fixtures they use are
# theirs too, but for ``server`` and ``token``, defined below).
tokens, session, workspace_client, endpoint = (
    contract.tokens,
    contract.session,
    contract.workspace_client,
    contract.endpoint,
)
test_sdk_get_and_list = contract.test_sdk_get_and_list
test_sdk_query = contract.test_sdk_query
test_the_labs_curl_without_content_type = contract.test_the_labs_curl_without_content_type
test_headers_name_the_entity_and_time_the_model = (
    contract.test_headers_name_the_entity_and_time_the_model
)
test_the_labs_client = contract.test_the_labs_client
test_input_formats_and_schema_errors = contract.test_input_formats_and_schema_errors
test_errors_have_databricks_shapes = contract.test_errors_have_databricks_shapes
test_a_missing_version_is_refused_at_once = contract.test_a_missing_version_is_refused_at_once
test_update_config_swaps_with_requests_in_flight = (
    contract.test_update_config_swaps_with_requests_in_flight
)
test_a_failed_update_keeps_the_old_config_serving = (
    contract.test_a_failed_update_keeps_the_old_config_serving
)
test_auth = contract.test_auth
test_concurrent_requests_are_batched_with_the_same_answers = (
    contract.test_concurrent_requests_are_batched_with_the_same_answers
)
test_delete = contract.test_delete
test_endpoints_cli = contract.test_endpoints_cli
sleeper, client, sleepy = limits.sleeper, limits.client, limits.sleepy
test_small_allows_4_concurrent_then_queues_briefly_then_429 = (
    limits.test_small_allows_4_concurrent_then_queues_briefly_then_429
)
test_rate_limit_per_user_from_the_ai_gateway = limits.test_rate_limit_per_user_from_the_ai_gateway
test_metrics_and_openapi_through_the_sdk = limits.test_metrics_and_openapi_through_the_sdk
pytestmark = pytest.mark.slow
TESTS = Path(__file__).parent
SRC = TESTS.parent / "src"
IDLE_S = 4.0  # the server's scale_to_zero_idle_s: long enough not to unload mid-test


class LocalRay:
    """A Ray head and a second node on 127.0.0.1 (``ray.cluster_utils.Cluster``), with
    this worktree's code and the tests' models importable by its workers."""

    def __init__(self, ray_tmp: str) -> None:
        self.ray_tmp = ray_tmp
        self._saved = {k: os.environ.get(k) for k in ("RAY_TMPDIR", "PYTHONPATH")}
        path = os.pathsep.join(filter(None, [str(SRC), str(TESTS), os.environ.get("PYTHONPATH")]))
        os.environ.update(RAY_TMPDIR=ray_tmp, PYTHONPATH=path)
        from gcn_rag.cluster import import_ray

        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # as gcn_rag.cluster does
        import_ray()
        import ray._private.ray_constants as constants
        from ray.cluster_utils import Cluster

        self._constants, self._was = constants, constants.ENABLE_RAY_CLUSTER
        constants.ENABLE_RAY_CLUSTER = False
        node: dict[str, Any] = {"num_cpus": 4, "node_ip_address": "127.0.0.1"}
        self.cluster: Any = Cluster(
            initialize_head=True, head_node_args={**node, "include_dashboard": False}
        )
        self.cluster.add_node(**node)
        self.cluster.wait_for_nodes()
        self.address = str(self.cluster.address)

    def stop(self) -> None:
        if self.cluster is None:
            return
        self.cluster.shutdown()
        self.cluster = None
        self._constants.ENABLE_RAY_CLUSTER = self._was
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)


@pytest.fixture(scope="module")
def ray_tmp() -> Iterator[str]:
    """A short private temp root (unix socket paths are limited); it names this session's
    processes, so other Ray clusters on the machine do not confuse the checks."""
    path = tempfile.mkdtemp(prefix="gr", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def local_ray(ray_tmp: str) -> Iterator[LocalRay]:
    pytest.importorskip("ray.serve", reason="Ray Serve is an optional extra: gcn-rag[ray]")
    cluster = LocalRay(ray_tmp)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def ray_server(
    local_ray: LocalRay, fixture_workspace: Settings, champion: dict[str, Any]
) -> Iterator[ServerProcess]:
    # a queue that gives up before the Sleeper's 1 s answers free a slot, for the 429 test
    limits = {"GCN_RAG_QUEUE_TIMEOUT_S": "0.9", "GCN_RAG_SCALE_TO_ZERO_IDLE_S": str(IDLE_S)}
    options = ("--engine", "ray", "--address", local_ray.address)
    server = ServerProcess(fixture_workspace.home, *options, env=limits)
    yield server
    if server.process.poll() is None:
        server.stop(signal.SIGTERM)


@pytest.fixture(scope="module")
def server(ray_server: ServerProcess) -> str:
    """What the contract tests call: the Ray-engine server's URL."""
    return ray_server.url


@pytest.fixture(scope="module")
def token(tokens: dict[str, str]) -> str:
    """test_serving_limits' client token, from this server's workspace."""
    return tokens["CAN_MANAGE"]


@pytest.fixture
def loader(local_ray: LocalRay, fixture_workspace: Settings) -> Iterator[Any]:
    """A Ray engine on the local cluster (this process joins it), for a test that starts a
    front of its own; its applications are deleted after the test."""
    from gcn_rag.cluster import RayCluster
    from gcn_rag.serving.ray_engine import RayEngine

    engine = RayEngine(registry.tracking_uri(fixture_workspace), RayCluster(local_ray.address))
    engine.start()
    yield engine
    engine.close()


def test_timeout_is_504_and_model_errors_are_500(
    loader: Any, serve_app: limits.Serve, sleeper: str, tmp_path: Path
) -> None:
    """test_serving_limits' test, on a front of its own with that module's limits: its 2 s
    request timeout would be too short for the Ray cold starts of the server above."""
    from gcn_rag.serving.app import create_app
    from gcn_rag.serving.auth import TokenStore
    from gcn_rag.serving.manager import EndpointManager
    from gcn_rag.serving.store import EndpointStore

    state = tmp_path / "serving.db"
    manager = EndpointManager(EndpointStore(state), loader, limits.LIMITS)
    client = requests.Session()
    client.headers["Authorization"] = f"Bearer {TokenStore(state).create('CAN_MANAGE', 'ray')}"
    try:
        with serve_app(create_app(manager, TokenStore(state))) as url:
            limits._create(client, url, "sleepy", limits.SLEEPER, sleeper)
            assert loader.applications(), "the model is not on Ray"
            limits.test_timeout_is_504_and_model_errors_are_500(client, url, "sleepy")
    finally:
        manager.close()


def _applications(ray_tmp: str) -> set[str]:
    """The gcn-rag Ray Serve applications with a live replica in the session (a replica's
    process title is ``ray::ServeReplica:<application>:<deployment>``)."""
    titles = (" ".join(p.cmdline()) for p in session_processes(ray_tmp))
    prefix = "ray::ServeReplica:"
    apps = (t.removeprefix(prefix).split(":")[0] for t in titles if t.startswith(prefix))
    return {app for app in apps if app.startswith("gcn-rag-")}


def _wait(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_every_ray_process_listens_on_loopback_only(
    ray_tmp: str, sleepy: str, ray_server: ServerProcess
) -> None:
    processes = session_processes(ray_tmp)
    names = {p.name() for p in processes}
    assert {"gcs_server", "raylet"} <= names, names
    assert _applications(ray_tmp), "no Ray Serve replica runs"
    sockets = listening(processes)
    assert len(sockets) > 10  # GCS, raylets, agents, workers, replicas, the serve driver
    assert outside_loopback(sockets) == []


def test_scale_to_zero_deletes_the_application_and_the_next_request_deploys_it(
    client: requests.Session, server: str, champion: dict[str, Any], ray_tmp: str
) -> None:
    question = "What is the redshift of GRB 221009A?"
    before = _applications(ray_tmp)
    version = champion["version"]
    limits._create(client, server, "zero", registry.MODEL_NAME, version, scale_to_zero_enabled=True)
    (deployed,) = _applications(ray_tmp) - before
    zero = {"endpoint": "zero"}
    first = limits._ask(client, server, "zero", question)
    assert first.status_code == 200
    _wait(
        lambda: limits._metric(_metrics(client, server), "gcn_rag_model_loaded", **zero) == 0,
        "never scaled to zero",
    )
    (entity,) = client.get(f"{server}/api/2.0/serving-endpoints/zero", timeout=10).json()["config"][
        "served_entities"
    ]
    assert entity["state"]["deployment_state_message"].startswith("Scaled to zero")
    _wait(lambda: deployed not in _applications(ray_tmp), "the application was not deleted")
    again = limits._ask(client, server, "zero", question)
    assert again.status_code == 200 and again.json() == first.json()
    text = _metrics(client, server)
    assert limits._metric(text, "gcn_rag_cold_starts_total", endpoint="zero") == 1
    assert limits._metric(text, "gcn_rag_model_loaded", endpoint="zero") == 1
    (redeployed,) = _applications(ray_tmp) - before
    assert redeployed != deployed
    assert client.delete(f"{server}/api/2.0/serving-endpoints/zero", timeout=10).ok
    _wait(lambda: redeployed not in _applications(ray_tmp), "a deleted endpoint kept its replica")


def test_every_answered_request_is_one_row_of_the_inference_table(
    client: requests.Session, server: str, champion: dict[str, Any], fixture_workspace: Settings
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    _create(client, server, "ray-captured", champion["version"], _capture("ray_inference"))
    url = f"{server}/serving-endpoints/ray-captured/invocations"

    def ask(i: int) -> str:
        response = client.post(url, json=_body(f"What is GRB 2210{i:02d}A?"), timeout=60)
        assert response.status_code == 200, response.text
        return str(response.headers["x-request-id"])

    with ThreadPoolExecutor(4) as pool:
        answered = list(pool.map(ask, range(12)))
    assert client.delete(f"{server}/api/2.0/serving-endpoints/ray-captured", timeout=10).ok
    table = "sandbox.nasa_gcn_dev.ray_inference_payload"
    _wait(lambda: set(answered) <= set(_ids(fixture_workspace, table)), "rows missing")
    ids = _ids(fixture_workspace, table)
    assert sorted(ids) == sorted(answered), "a request was written twice, or one not asked"


def _metrics(client: requests.Session, server: str) -> str:
    return client.get(f"{server}/metrics", timeout=10).text


def _ids(settings: Settings, table: str) -> list[str]:
    catalog = Catalog(settings.warehouse)
    try:
        return [str(i) for i in catalog.read(table)["databricks_request_id"].to_pylist()]
    except Exception:  # not written yet
        return []


def test_stopping_deletes_every_application_and_nothing_is_left_running(
    ray_server: ServerProcess, local_ray: LocalRay, ray_tmp: str
) -> None:
    assert _applications(ray_tmp), "nothing was deployed"
    assert ray_server.stop(signal.SIGTERM) == 0
    # the server deleted its applications before exiting; the cluster (not its own) runs on
    _wait(lambda: not _applications(ray_tmp), f"left deployed: {_applications(ray_tmp)}")
    log = (ray_server.home / f"server-{ray_server.port}.log").read_text()
    assert "Traceback" not in log, log
    local_ray.stop()
    _wait(lambda: not session_processes(ray_tmp), "Ray processes left after the cluster stopped")
    assert listening(session_processes(ray_tmp)) == []


def test_a_shadow_sidecar_gets_the_local_loader(fixture_workspace: Settings) -> None:
    """Shadow copies run in a local child process, which is handed the server's loader."""
    import pickle

    from gcn_rag.cluster import RayCluster
    from gcn_rag.model.registry import MlflowLoader, tracking_uri
    from gcn_rag.serving.ray_engine import RayEngine

    engine = RayEngine(tracking_uri(fixture_workspace), RayCluster("127.0.0.1:1"))
    try:
        assert pickle.loads(pickle.dumps(engine)) == MlflowLoader(engine.tracking_uri)
    finally:
        engine.close()  # never connected: nothing to stop


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--engine", "ray"], "install it with `pip install 'gcn-rag[ray]'`"),
        (["--address", "127.0.0.1:6379"], "use it with --engine ray"),
        (["--ray-replicas", "2"], "use it with --engine ray"),
        (["--engine", "spark"], "use one of: local, ray"),
    ],
)
def test_serve_engine_errors_say_what_to_do(
    options: list[str], message: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from gcn_rag.cli import app

    for name in ("ray", "ray.serve"):  # as without the extra
        monkeypatch.setitem(sys.modules, name, None)
    result = CliRunner().invoke(app, ["serve", *options, "--home", str(settings.home)])
    assert result.exit_code == 1
    assert message in result.output
