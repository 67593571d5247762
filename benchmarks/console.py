"""Console page times with a full workspace and 10,000 inference rows.

usage: python benchmarks/console.py [--home DIR] [--rows 10000] [--gets 40] [--version N]
                                    [--screenshots DIR]

Needs a workspace with a registered assistant (--home, else GCN_RAG_HOME, else ~/.gcn-rag;
`gcn-rag up` makes one). A real server on a free loopback port serves the console over that
workspace (its tables, registry, index and reports), with its own scratch serving state
(endpoints, tokens, capture spool), so the workspace's endpoints are left alone. It:

1. deploys endpoint ``bench-console`` (the champion, or --version) capturing into a table of
   its own, ``bench_console_<pid>_payload`` in the workspace's warehouse, asks it one real
   question over HTTP, then records --rows rows through the real capture path
   (``InferenceCapture.record`` with that request's body and answer, spread over the last 24
   hours, 1 in 20 a 429 or 500), flushed every 200 rows (so ~50 commits and one compaction,
   as a busy server leaves them);
2. when the workspace has no load-test or endpoint-test runs, runs a small real one of each
   (as `gcn-rag loadtest` / `gcn-rag endpoints test` do) for the Reports pages;
3. signs in with a CAN_MANAGE token and GETs each page --gets times, page after page in
   rotating order, with the baseline ``GET /api/2.0/serving-endpoints`` (the JSON API's list,
   bearer token) in every round; prints p50 / p95 per page and its p50 over the baseline's.

On the way out the endpoint, its payload table, and any runs, tables and report folders the
benchmark made are deleted; nothing that was in the workspace is changed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import socket
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from gcn_rag.console import console_for
from gcn_rag.model import registry
from gcn_rag.model.registry import mlflow_loader
from gcn_rag.ops.loadtest import LoadTest, invocation_url, run_test
from gcn_rag.ops.report import loadtest_report
from gcn_rag.ops.results import new_run, result_rows, save_results
from gcn_rag.serving.app import create_app
from gcn_rag.serving.auth import TokenStore
from gcn_rag.serving.capture import CaptureRow, CaptureTarget, InferenceCapture
from gcn_rag.serving.manager import EndpointManager
from gcn_rag.serving.store import EndpointStore
from gcn_rag.settings import Settings
from gcn_rag.tables import Catalog

ENDPOINT = "nasa-gcn-rag-assistant"  # in the scratch serving state: the Ask page's default
QUESTION = "What is the redshift of GRB 221009A?"
RESULT_TABLES = ("rag_endpoint_load_test_results", "rag_endpoint_test_results")
DAY_MS = 24 * 3600 * 1000


@dataclass
class Bench:
    url: str
    manager: EndpointManager
    capture: InferenceCapture
    token: str
    table: str  # the payload table's full name


@contextlib.contextmanager
def serving(settings: Settings, scratch: Path, version: str) -> Iterator[Bench]:
    """A uvicorn server over ``settings`` with endpoint ``bench-console`` READY."""
    import uvicorn

    store = TokenStore(scratch / "serving.db")
    token = store.create("CAN_MANAGE", "benchmark")
    catalog = Catalog.from_settings(settings)
    capture = InferenceCapture(scratch / "capture", catalog, flush_interval_s=2.0)
    capture.start()
    loader = mlflow_loader(registry.tracking_uri(settings))
    manager = EndpointManager(EndpointStore(scratch / "serving.db"), loader, capture=capture)
    app = create_app(manager, store, console=console_for(settings))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    prefix = f"bench_console_{os.getpid()}"
    table = f"{settings.catalog}.{settings.schema}.{prefix}_payload"
    try:
        while not server.started:
            time.sleep(0.05)
        _deploy(manager, version, settings, prefix)
        yield Bench(f"http://127.0.0.1:{port}", manager, capture, token, table)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        manager.close()
        shutil.rmtree(catalog.path(table), ignore_errors=True)


def _deploy(manager: EndpointManager, version: str, settings: Settings, prefix: str) -> None:
    entity: dict[str, Any] = {"entity_name": registry.MODEL_NAME, "entity_version": version}
    entity |= {"workload_size": "Small", "scale_to_zero_enabled": False}
    capture = {"catalog_name": settings.catalog, "schema_name": settings.schema}
    capture["table_name_prefix"] = prefix
    manager.create(
        {
            "name": ENDPOINT,
            "config": {"served_entities": [entity]} | {"auto_capture_config": capture},
        }
    )
    deadline = time.monotonic() + 600
    while manager.get(ENDPOINT)["state"]["ready"] != "READY":
        if time.monotonic() > deadline:
            raise SystemExit(f"{ENDPOINT} never became READY: {manager.logs(ENDPOINT)}")
        time.sleep(0.2)


def fill(bench: Bench, rows: int) -> tuple[str, float]:
    """One real question, then ``rows`` captured rows like it; (a request id, seconds)."""
    answered = requests.post(
        invocation_url(bench.url, ENDPOINT),
        json={"dataframe_records": [{"question": QUESTION}]},
        headers={"Authorization": f"Bearer {bench.token}"},
        timeout=300,
    )
    answered.raise_for_status()
    request = json.dumps({"dataframe_records": [{"question": QUESTION}]})
    target = CaptureTarget(bench.table)
    now = int(time.time() * 1000)
    started = time.perf_counter()
    request_id = ""
    for i in range(rows):
        status = (429, 500)[i % 2] if i % 20 == 19 else 200
        request_id = uuid.uuid4().hex
        row = CaptureRow(
            databricks_request_id=request_id,
            client_request_id=None,
            timestamp_ms=now - DAY_MS + i * DAY_MS // rows,
            status_code=status,
            execution_duration_ms=40 + i % 60,
            request=request,
            response=answered.text if status == 200 else '{"error_code": "X", "message": "x"}',
            served_entity_id=f"{ENDPOINT}-entity",
            endpoint_name=ENDPOINT,
            requester="benchmark",
        )
        bench.capture.record(target, row)
        if i % 200 == 199:
            bench.capture.flush()
    bench.capture.flush()
    return request_id, time.perf_counter() - started


@contextlib.contextmanager
def report_runs(settings: Settings, bench: Bench) -> Iterator[tuple[str, str]]:
    """(kind, run id) of a run the Reports pages show: the newest there is, else a small real
    load test and endpoint test made here (and removed afterwards)."""
    catalog = Catalog.from_settings(settings)
    if catalog.exists(RESULT_TABLES[0]):
        newest = catalog.sql(
            f"SELECT run_id FROM {RESULT_TABLES[0]} ORDER BY run_time DESC LIMIT 1"
        ).to_pylist()
        if newest:
            yield "loadtest", str(newest[0]["run_id"])
            return
    made = [t for t in RESULT_TABLES if not catalog.exists(t)]
    had_reports = settings.reports.exists()
    test = LoadTest(bench.url, ENDPOINT, bench.token, [QUESTION], levels="1,2", requests=10)
    try:
        for level in test.levels:
            test.run_level(level)
        test.save(catalog)
        loadtest_report(test, settings.reports)
        run_id, run_time = new_run()
        outcomes = run_test(invocation_url(bench.url, ENDPOINT), bench.token, [QUESTION] * 3)
        rows = result_rows(run_id, run_time, ENDPOINT, 1, outcomes)
        save_results(catalog, RESULT_TABLES[1], rows)
        yield "loadtest", test.run_id
    finally:
        for table in made:  # only tables that did not exist before, holding only our runs
            shutil.rmtree(catalog.path(table), ignore_errors=True)
        shutil.rmtree(settings.reports / f"loadtest-{test.run_id}", ignore_errors=True)
        if not had_reports and not any(settings.reports.iterdir()):
            settings.reports.rmdir()


def timed(client: requests.Session, url: str) -> float:
    """One GET in ms; anything but 200 stops the benchmark."""
    started = time.perf_counter()
    response = client.get(url, timeout=60)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise SystemExit(f"{url}: {response.status_code}\n{response.text[:2000]}")
    return elapsed


def measure(bench: Bench, pages: dict[str, str], gets: int) -> dict[str, list[float]]:
    """Each page ``gets`` times, rotating the order every round; the API baseline each round."""
    browser = requests.Session()
    signed = browser.post(
        f"{bench.url}/console/signin", data={"token": bench.token}, allow_redirects=False
    )
    assert signed.status_code == 303, signed.text
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {bench.token}"
    targets = {"baseline": (api, f"{bench.url}/api/2.0/serving-endpoints")}
    targets |= {name: (browser, bench.url + path) for name, path in pages.items()}
    names = list(targets)
    for client, url in targets.values():  # warm-up: first loads (templates, MLflow, DuckDB)
        timed(client, url)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(gets):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(timed(*targets[name]))
    return times


def shoot(url: str, token: str, folder: Path) -> None:
    """The README's pictures, in Debian's headless Chromium at 1100x720, as small PNGs:
    the endpoint page, an answer on the Ask page, the inference table."""
    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager downloads nothing
    options = webdriver.ChromeOptions()
    options.binary_location = str(shutil.which("chromium"))
    for argument in ("--headless=new", "--no-sandbox", "--window-size=1100,720"):
        options.add_argument(argument)
    browser = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    browser.implicitly_wait(30)
    folder.mkdir(parents=True, exist_ok=True)

    def save(name: str) -> None:
        path = folder / f"console-{name}.png"
        browser.save_screenshot(str(path))
        Image.open(path).convert("RGB").quantize(64).save(path, optimize=True)
        print(f"{path}: {path.stat().st_size // 1024} kB")

    try:
        browser.get(f"{url}/console/signin")
        browser.find_element(By.ID, "token").send_keys(token, Keys.ENTER)
        browser.find_element(By.ID, "endpoints")
        browser.get(f"{url}/console/endpoints/{ENDPOINT}")
        save("endpoint")
        browser.get(f"{url}/console/ask")
        browser.find_element(By.ID, "question").send_keys(QUESTION, Keys.ENTER)
        browser.find_element(By.ID, "answer")
        save("ask")
        browser.get(f"{url}/console/inference")
        save("inference")
    finally:
        browser.quit()


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", default=None, help="The workspace (default: GCN_RAG_HOME).")
    parser.add_argument("--rows", type=int, default=10_000, help="Inference rows to capture.")
    parser.add_argument("--gets", type=int, default=40, help="GETs per page.")
    parser.add_argument("--version", default=None, help="Model version (default: champion).")
    parser.add_argument("--screenshots", type=Path, default=None, help="Save PNGs of pages.")
    args = parser.parse_args()
    settings = Settings.load(home=args.home)
    version = args.version or registry.resolve(settings, "champion").version
    print(
        f"workspace {settings.home}, version {version}; {platform.machine()}, "
        f"{os.cpu_count()} cores, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    with (
        tempfile.TemporaryDirectory(prefix="bench-console-") as scratch,
        serving(settings, Path(scratch), version) as bench,
    ):
        request_id, took = fill(bench, args.rows)
        count = Catalog.from_settings(settings).count(bench.table)
        print(f"{count:,} rows in {bench.table} ({took:.1f} s to capture)")
        with report_runs(settings, bench) as (kind, run_id):
            pages = {
                "endpoints": "/console/endpoints",
                "endpoint": f"/console/endpoints/{ENDPOINT}",
                "query": f"/console/endpoints/{ENDPOINT}/query",
                "inference": "/console/inference",
                "inference, filtered": f"/console/inference?endpoint={ENDPOINT}&status=500",
                "one request": f"/console/inference/{request_id}",
                "models": "/console/models",
                "ask": "/console/ask",
                "reports": "/console/reports",
                "one report": f"/console/reports/{kind}/{run_id}",
            }
            times = measure(bench, pages, args.gets)
            if args.screenshots is not None:
                shoot(bench.url, bench.token, args.screenshots)
    base = statistics.median(times["baseline"])
    print(f"\n{'page':<22}{'p50 ms':>9}{'p95 ms':>9}{'p50 / baseline':>16}")
    for name, values in times.items():
        p50 = statistics.median(values)
        print(f"{name:<22}{p50:9.1f}{_p(values, 0.95):9.1f}{p50 / base:16.1f}")
    worst = max((statistics.median(v), n) for n, v in times.items())
    print(f"\nslowest p50: {worst[1]} {worst[0]:.1f} ms ({args.gets} GETs each)")


if __name__ == "__main__":
    main()
