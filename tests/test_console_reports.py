"""The console's Reports page over HTTP: real endpoint-test and load-test runs (the library calls
behind `gcn-rag endpoints test` and `gcn-rag loadtest`, against the console's own server), the
list with their numbers, one run with its plot, escaping, and plots served from the workspace's
reports folder only.

The runs' tables and plots live in a workspace of their own (``lab``), which the console's
pages read; the shared fixture workspace only provides the champion.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import requests

from consoles import ENDPOINT, QUESTION, Console, Serve, running_console, signed_in
from gcn_rag.console.sessions import SignInCodes
from gcn_rag.ops.loadtest import LoadTest, invocation_url, run_test
from gcn_rag.ops.monitor import Bucket
from gcn_rag.ops.report import loadtest_report, monitor_report
from gcn_rag.ops.results import new_run, result_rows, save_results
from gcn_rag.settings import Settings
from gcn_rag.tables import Catalog

SCRIPT = "<script>alert('x')</script> What is the redshift of GRB 221009A?"


class Runs(NamedTuple):
    console: Console
    lab: Settings
    test: str  # run ids
    loadtest: str
    refused: str  # a load test where every request was refused (no plot)
    monitor: str  # the monitoring plot's file name


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory,
    fixture_workspace: Settings,
    champion: dict[str, Any],
    serve_app: Serve,
) -> Iterator[Runs]:
    home = tmp_path_factory.mktemp("console-reports")
    lab = Settings.load(environ={}, home=home / "lab")
    with running_console(
        home, fixture_workspace, champion["version"], serve_app, pages_over=lab
    ) as console:
        yield Runs(console, lab, *_run_everything(console, lab))


def _run_everything(console: Console, lab: Settings) -> tuple[str, str, str, str]:
    catalog = Catalog.from_settings(lab)
    query = console.tokens["CAN_QUERY"]
    run_id, run_time = new_run()
    outcomes = run_test(invocation_url(console.url, ENDPOINT), query, [QUESTION, SCRIPT])
    save_results(
        catalog, "rag_endpoint_test_results", result_rows(run_id, run_time, ENDPOINT, 1, outcomes)
    )
    loadtest = LoadTest(console.url, ENDPOINT, query, [QUESTION], levels="1,2", requests=4)
    refused = LoadTest(
        console.url, ENDPOINT, console.tokens["CAN_VIEW"], [SCRIPT], levels="1", requests=2
    )
    for test in (loadtest, refused):
        for level in test.levels:
            test.run_level(level)
        test.save(catalog)
    loadtest_report(loadtest, lab.reports)  # as the CLI: a report only when something succeeded
    start = datetime(2025, 1, 1, tzinfo=UTC)
    bucket = Bucket("champion-1", start, 4, 4, 1.0, 20.0, 30.0, 31.0)
    monitor = monitor_report([bucket], lab.reports, "nasa-gcn-rag-assistant: 1m buckets")
    return run_id, loadtest.run_id, refused.run_id, monitor.name


def _get(client: requests.Session, runs: Runs, path: str) -> requests.Response:
    return client.get(f"{runs.console.url}/console{path}", allow_redirects=False, timeout=60)


def _row(html: str, run_id: str) -> str:
    found = re.search(rf'<tr data-run-id="{run_id}">(.*?)</tr>', html, re.S)
    assert found is not None, html
    return re.sub(r">\s+<", "><", found.group(1))


def test_the_list_shows_each_run_with_its_numbers_to_can_view(runs: Runs) -> None:
    viewer = signed_in(runs.console, "CAN_VIEW")
    page = _get(viewer, runs, "/reports")
    assert page.status_code == 200, page.text
    assert 'href="/console/reports">Reports</a>' in page.text  # in the nav
    test = _row(page.text, runs.test)
    assert "endpoint test" in test and ENDPOINT in test and "100.0%" in test
    assert re.search(r"<td>2</td><td>100.0%</td><td>[\d,.]+</td><td>[\d,.]+</td>", test), test
    loadtest = _row(page.text, runs.loadtest)
    assert "load test" in loadtest and "<td>1, 2</td><td>8</td><td>100.0%</td>" in loadtest
    assert "<td>yes</td>" in loadtest  # its plot is there
    refused = _row(page.text, runs.refused)
    assert "<td>2</td><td>0.0%</td><td>-</td>" in refused
    assert f'src="/console/reports/monitor/{runs.monitor}"' in page.text


def test_a_load_test_run_shows_its_levels_and_the_cli_plot(runs: Runs) -> None:
    viewer = signed_in(runs.console, "CAN_VIEW")
    page = _get(viewer, runs, f"/reports/loadtest/{runs.loadtest}")
    assert page.status_code == 200, page.text
    for level in (1, 2):
        assert f'<tr><th scope="row">{level}</th><td>4</td><td>4</td><td>100.0%</td>' in page.text
    src = f"/console/reports/loadtest/{runs.loadtest}/loadtest.png"
    assert f'src="{src}"' in page.text
    plot = viewer.get(runs.console.url + src, timeout=30)
    assert plot.status_code == 200 and plot.headers["content-type"] == "image/png"
    assert (
        plot.content == (runs.lab.reports / f"loadtest-{runs.loadtest}/loadtest.png").read_bytes()
    )
    monitor = _get(viewer, runs, f"/reports/monitor/{runs.monitor}")
    assert monitor.status_code == 200 and monitor.content.startswith(b"\x89PNG")


def test_a_refused_run_shows_why_and_has_no_plot(runs: Runs) -> None:
    page = _get(signed_in(runs.console, "CAN_VIEW"), runs, f"/reports/loadtest/{runs.refused}")
    assert page.status_code == 200, page.text
    assert 'id="no-plot"' in page.text and 'id="plot"' not in page.text
    assert "<td>403: 2</td>" in page.text  # the level's errors by status
    assert "PERMISSION_DENIED" in page.text  # each failed request's message
    assert "<script>alert" not in page.text and "&lt;script&gt;alert(" in page.text


def test_an_endpoint_test_run_shows_its_questions_escaped(runs: Runs) -> None:
    page = _get(signed_in(runs.console, "CAN_VIEW"), runs, f"/reports/test/{runs.test}")
    assert page.status_code == 200, page.text
    assert "<h1>Endpoint test <code>" in page.text
    assert f"<td>{QUESTION}</td>" in page.text and "GRB 221009A is z = 0.15" in page.text
    assert "<script>alert" not in page.text
    assert "<td>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; What is" in page.text


def test_the_pages_need_a_session(runs: Runs) -> None:
    anonymous = requests.Session()
    for path in (
        "/reports",
        f"/reports/test/{runs.test}",
        f"/reports/loadtest/{runs.loadtest}/loadtest.png",
        f"/reports/monitor/{runs.monitor}",
    ):
        response = _get(anonymous, runs, path)
        assert response.status_code == 303, path
        assert "/console/signin?next=" in response.headers["location"]


def test_unknown_runs_are_readable_404_pages(runs: Runs) -> None:
    viewer = signed_in(runs.console, "CAN_VIEW")
    for path in (
        "/reports/test/000000000000",
        f"/reports/other/{runs.test}",
        "/reports/test/x'%20OR%20'1'='1",
        f"/reports/test/{runs.loadtest}",  # a load test is not an endpoint test
    ):
        page = _get(viewer, runs, path)
        assert page.status_code == 404, path
        assert "Traceback" not in page.text and "<h1>" in page.text


def test_plots_come_from_the_reports_folder_only(runs: Runs) -> None:
    viewer = signed_in(runs.console, "CAN_VIEW")
    secret = runs.lab.home / "secret.png"
    secret.write_bytes(b"\x89PNG not for the console")
    reports = runs.lab.reports
    (reports / "loadtest-escape").mkdir()
    (reports / "loadtest-escape" / "loadtest.png").symlink_to(secret)
    (reports / "monitor-20990101-000000.png").symlink_to(secret)
    (reports / "loadtest-abc").mkdir()
    (reports / "loadtest-abc" / "report.html").write_text("<p>a report</p>")
    for path in (
        "/reports/loadtest/escape/loadtest.png",  # a link that leads out of reports/
        "/reports/monitor/monitor-20990101-000000.png",
        "/reports/loadtest/..%2F..%2Fsecret.png%00/loadtest.png",
        "/reports/loadtest/..%2Fsecret.png/loadtest.png",
        "/reports/monitor/..%2Fsecret.png",
        "/reports/monitor/%2E%2E%2Fsecret.png",
        "/reports/monitor/..%5Csecret.png",
        f"/reports/monitor/..%2F..%2F..%2F{runs.lab.home.name}%2Fsecret.png",
        "/reports/loadtest/abc/report.html",  # only the plot is served
        "/reports/monitor/report.html",
        "/reports/loadtest/missing/loadtest.png",
    ):
        response = _get(viewer, runs, path)
        assert response.status_code == 404, (path, response.status_code)
        assert b"not for the console" not in response.content, path
        assert response.headers["content-type"].startswith("text/html"), path


@pytest.mark.skipif(
    shutil.which("chromium") is None or shutil.which("chromedriver") is None,
    reason="needs Debian's chromium and chromium-driver (scripts/install-browser.sh)",
)
def test_a_person_reads_a_load_test_in_the_browser(
    runs: Runs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reports from the nav, a run from the list, its plot drawn; at 1280x800 and 420 px wide
    (screenshots in ``shots/``)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager downloads nothing
    options = webdriver.ChromeOptions()
    options.binary_location = str(shutil.which("chromium"))
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1280,800")
    browser = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    browser.implicitly_wait(10)
    shots = tmp_path / "shots"
    shots.mkdir()
    base = f"{runs.console.url}/console"
    try:
        code = SignInCodes(runs.console.home / "serving.db").issue("CAN_VIEW", "viewer")
        browser.get(f"{base}/signin?code={code}")
        browser.find_element(By.LINK_TEXT, "Reports").click()
        browser.find_element(By.LINK_TEXT, runs.loadtest).click()
        plot = browser.find_element(By.ID, "plot")
        assert browser.current_url == f"{base}/reports/loadtest/{runs.loadtest}"
        assert browser.execute_script("return arguments[0].naturalWidth", plot) == 1320
        browser.save_screenshot(str(shots / "reports-run.png"))
        browser.set_window_size(420, 800)
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= 420  # wide tables scroll inside their box, not the page
        browser.save_screenshot(str(shots / "reports-run-narrow.png"))
    finally:
        browser.quit()
