"""The console in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven
by Selenium): sign in with a one-time link, see the endpoint READY, ask and read a cited answer,
rate it 👍 with a comment, change a traffic split and a workload size as CAN_MANAGE and see them
in the API, be refused as CAN_VIEW, sign out. The Query and Inference pages also fit a 420 px
window.

Then the Models page and the Ask page, asked from the keyboard. Screenshots of each page go to
the test's temporary folder (``shots/``).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from consoles import (
    ENDPOINT,
    QUESTION,
    Console,
    Serve,
    another_version,
    entity_name,
    running_console,
    wait_ready,
)
from gcn_rag.console.sessions import SignInCodes
from gcn_rag.model import registry
from gcn_rag.settings import Settings

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (scripts/install-browser.sh)",
)


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Headless Chromium at 1280x800; Selenium Manager is kept offline (nothing downloaded)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1280,800")
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.implicitly_wait(10)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def console(
    tmp_path: Path, fixture_workspace: Settings, champion: dict[str, Any], serve_app: Serve
) -> Iterator[Console]:
    with running_console(
        tmp_path / "home", fixture_workspace, champion["version"], serve_app
    ) as running:
        yield running


def test_a_person_signs_in_asks_is_refused_and_signs_out(
    browser: Any, console: Console, champion: dict[str, Any], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    shots = tmp_path / "shots"
    shots.mkdir()
    base = f"{console.url}/console"

    def shot(name: str) -> None:
        browser.save_screenshot(str(shots / f"{name}.png"))

    split = _create_split(console, champion["version"])  # loads while we ask
    browser.get(f"{base}/endpoints")  # no session: the sign-in page
    assert browser.find_element(By.CSS_SELECTOR, "label[for=token]").text == "Access token"
    shot("01-signin")
    code = SignInCodes(console.home / "serving.db").issue("CAN_QUERY", "astronomer")
    browser.get(f"{base}/signin?code={code}")
    assert browser.current_url == f"{base}/endpoints"
    state = browser.find_element(By.CSS_SELECTOR, "#endpoints [data-state]")
    assert state.text == "READY"
    assert "astronomer" in browser.find_element(By.CSS_SELECTOR, ".who").text
    shot("02-endpoints")

    browser.find_element(By.LINK_TEXT, ENDPOINT).click()
    browser.find_element(By.ID, "query-link").click()
    box = browser.find_element(By.ID, "question")
    assert box.get_attribute("value") == QUESTION  # the model's input example
    box.clear()
    box.send_keys(QUESTION)
    browser.find_element(By.ID, "ask").click()
    answer = browser.find_element(By.ID, "answer").text
    assert answer.startswith("The redshift of GRB 221009A is z = 0.15")
    link = browser.find_element(By.CSS_SELECTOR, "#citations a")
    assert link.get_attribute("href").startswith("https://gcn.nasa.gov/circulars/")
    assert browser.find_element(By.CSS_SELECTOR, "#citations blockquote").text
    request_id = browser.find_element(By.ID, "request-id").text
    assert len(request_id) == 32
    shot("03-answer")
    _narrow(browser, lambda: shot("04-answer-narrow"))
    browser.find_element(By.ID, "comment").send_keys("Cited, and right.")
    browser.find_element(By.ID, "rate-positive").click()  # 👍
    assert request_id in browser.find_element(By.ID, "feedback-done").text
    browser.find_element(By.LINK_TEXT, "Inference table").click()
    deadline = time.monotonic() + 30
    while not browser.find_elements(By.CSS_SELECTOR, f'[data-request-id="{request_id}"]'):
        assert time.monotonic() < deadline, "the question never reached the inference table"
        time.sleep(0.3)
        browser.refresh()
    shot("05-inference-table")
    _narrow(browser, lambda: shot("05-inference-table-narrow"))
    _sign_out(browser, base)

    _sign_in(browser, base, console.tokens["CAN_MANAGE"])
    wait_ready(console.manager, split)
    browser.get(f"{base}/endpoints/{split}")
    for field, share in (("traffic-1", "70"), ("traffic-2", "30")):
        browser.find_element(By.ID, field).clear()
        browser.find_element(By.ID, field).send_keys(share)
    browser.find_element(By.ID, "save-config").click()
    assert "Update started" in browser.find_element(By.CSS_SELECTOR, "[role=status]").text
    shot("06-split-updating")
    wait_ready(console.manager, split)
    routes = _api(console, split)["config"]["traffic_config"]["routes"]
    assert [(r["served_model_name"], r["traffic_percentage"]) for r in routes] == [
        ("blue", 70),
        ("green", 30),
    ]
    console.manager.delete(split)
    browser.get(f"{base}/endpoints/{ENDPOINT}")
    _select(browser, "size-1", "Medium")
    browser.find_element(By.ID, "save-config").click()
    assert "Update started" in browser.find_element(By.CSS_SELECTOR, "[role=status]").text
    shot("06-endpoint-updating")
    wait_ready(console.manager)
    assert _api(console, ENDPOINT)["config"]["served_entities"][0]["workload_size"] == "Medium"
    _sign_out(browser, base)

    _sign_in(browser, base, console.tokens["CAN_VIEW"])
    browser.get(f"{base}/endpoints/{ENDPOINT}")
    save = browser.find_element(By.ID, "save-config")
    assert not save.is_enabled()  # the page says so; the server refuses anyway:
    shot("07-endpoint-as-viewer")
    browser.execute_script(
        "document.querySelectorAll('#config-form [disabled]').forEach(e => e.disabled = false)"
    )
    _select(browser, "size-1", "Large")
    browser.find_element(By.ID, "save-config").click()
    message = browser.find_element(By.ID, "error-message").text
    assert message == "This needs CAN_MANAGE; you are signed in with CAN_VIEW."
    shot("08-refused")
    assert console.manager.get(ENDPOINT)["config"]["served_entities"][0]["workload_size"] == (
        "Medium"
    )
    _sign_out(browser, base)
    browser.get(f"{base}/endpoints")
    assert browser.current_url.startswith(f"{base}/signin")


def test_a_person_reads_the_models_and_asks_from_the_keyboard(
    browser: Any, console: Console, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    shots = tmp_path / "shots"
    shots.mkdir()
    base = f"{console.url}/console"
    code = SignInCodes(console.home / "serving.db").issue("CAN_QUERY", "astronomer")
    browser.get(f"{base}/signin?code={code}")
    browser.find_element(By.LINK_TEXT, "Models").click()
    _arrive(browser, f"{base}/models")
    row = browser.find_element(By.CSS_SELECTOR, "#versions tbody tr")
    assert "@champion" in row.text and "index content hash" in row.text
    assert not browser.find_element(By.CSS_SELECTOR, "#alias-champion button").is_enabled()
    browser.save_screenshot(str(shots / "09-models.png"))
    browser.set_window_size(420, 800)
    browser.save_screenshot(str(shots / "10-models-narrow.png"))
    browser.set_window_size(1280, 800)

    browser.find_element(By.LINK_TEXT, "Ask").click()
    _arrive(browser, f"{base}/ask")
    box = browser.find_element(By.ID, "question")
    assert box == browser.switch_to.active_element  # the box has the focus: type and Enter
    box.send_keys(QUESTION, Keys.ENTER)
    answer = browser.find_element(By.ID, "answer").text
    assert answer.startswith("The redshift of GRB 221009A is z = 0.15")
    link = browser.find_element(By.CSS_SELECTOR, "#citations a")
    assert link.get_attribute("href").startswith("https://gcn.nasa.gov/circulars/")
    browser.save_screenshot(str(shots / "11-ask.png"))
    _sign_out(browser, base)


def test_the_endpoint_page_refreshes_its_charts_and_shows_a_version_change(
    browser: Any,
    console: Console,
    tmp_path: Path,
    fixture_workspace: Settings,
    champion: dict[str, Any],
) -> None:
    from selenium.webdriver.common.by import By

    shots = tmp_path / "shots"
    shots.mkdir()
    base = f"{console.url}/console"
    code = SignInCodes(console.home / "serving.db").issue("CAN_MANAGE", "operator")
    browser.get(f"{base}/signin?code={code}")
    browser.get(f"{base}/endpoints/{ENDPOINT}?window=15m")
    summary = browser.find_element(By.ID, "chart-rate-summary").text
    browser.execute_script("window.notReloaded = true")
    url = f"{console.url}/serving-endpoints/{ENDPOINT}/invocations"
    headers = {"Authorization": f"Bearer {console.tokens['CAN_QUERY']}"}
    for _ in range(2):
        answered = requests.post(url, json={"inputs": [QUESTION]}, headers=headers, timeout=60)
        assert answered.status_code == 200
    assert summary.startswith("No requests in the last 15 minutes")
    _until(
        browser,
        30,
        lambda b: b.find_element(By.ID, "chart-rate-summary").text.startswith("2 requests"),
    )
    assert browser.execute_script("return window.notReloaded") is True  # refreshed in place
    labels, width = browser.execute_script(
        "const svg = document.querySelector('#chart-latency svg');"
        "return [svg.getAttribute('aria-labelledby'), svg.getBoundingClientRect().width];"
    )
    assert labels == "chart-latency-title chart-latency-summary" and width > 250
    browser.save_screenshot(str(shots / "12-endpoint-charts.png"))
    _select(browser, "window", "1 hour")  # the script follows the window, without a reload
    _until(browser, 15, lambda b: "window=1h" in b.current_url)
    _until(
        browser, 15, lambda b: b.find_element(By.ID, "window-label").text.startswith("Last 1 hour")
    )
    assert browser.execute_script("return window.notReloaded") is True

    with another_version(fixture_workspace, champion) as new:
        browser.refresh()
        _select(browser, "version-1", f"v{new}")
        browser.find_element(By.ID, "save-config").click()
        _until(browser, 15, lambda b: "updated=1" in b.current_url)
        browser.execute_script("window.notReloaded = true")
        if browser.find_elements(By.ID, "update-progress"):
            browser.save_screenshot(str(shots / "13-endpoint-updating.png"))
        _until(
            browser,
            120,
            lambda b: (
                b.find_element(By.ID, "config-update").text == "NOT_UPDATING"
                and b.find_elements(By.CSS_SELECTOR, f'[data-entity="{entity_name(new)}"]')
            ),
        )
        assert browser.execute_script("return window.notReloaded") is True
        assert not browser.find_elements(By.ID, "update-progress")
        served = _api(console, ENDPOINT)["config"]["served_entities"]
        assert served[0]["entity_version"] == new
        browser.save_screenshot(str(shots / "14-endpoint-new-version.png"))

        def narrow_shots() -> None:
            browser.save_screenshot(str(shots / "15-endpoint-narrow.png"))
            browser.execute_script("document.getElementById('chart-rate').scrollIntoView()")
            browser.save_screenshot(str(shots / "16-endpoint-charts-narrow.png"))

        _narrow(browser, narrow_shots)
        wait_ready(console.manager)


def _create_split(console: Console, version: str) -> str:
    """Endpoint ``split``: two served entities of ``version``, blue and green, 50/50."""
    entity = {"entity_name": registry.MODEL_NAME, "entity_version": version}
    routes = [{"served_model_name": n, "traffic_percentage": 50} for n in ("blue", "green")]
    config = {
        "served_entities": [{**entity, "name": "blue"}, {**entity, "name": "green"}],
        "traffic_config": {"routes": routes},
    }
    console.manager.create({"name": "split", "config": config})
    return "split"


def _api(console: Console, name: str) -> dict[str, Any]:
    """``GET /api/2.0/serving-endpoints/{name}`` as CAN_VIEW."""
    got = requests.get(
        f"{console.url}/api/2.0/serving-endpoints/{name}",
        headers={"Authorization": f"Bearer {console.tokens['CAN_VIEW']}"},
        timeout=30,
    )
    assert got.status_code == 200, got.text
    return dict(got.json())


def _narrow(browser: Any, shots: Callable[[], None]) -> None:
    """In a 420 px window the page does not scroll sideways (its wide tables scroll inside
    their own box); ``shots()`` is called meanwhile; then back to 1280x800."""
    browser.set_window_size(420, 800)
    try:
        width, visible = browser.execute_script(
            "const d = document.documentElement; return [d.scrollWidth, d.clientWidth]"
        )
        assert width <= visible, f"{browser.current_url} scrolls sideways at 420 px"
        shots()
    finally:
        browser.set_window_size(1280, 800)


def _sign_in(browser: Any, base: str, token: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{base}/signin")
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    _arrive(browser, f"{base}/endpoints")


def _sign_out(browser: Any, base: str) -> None:
    from selenium.webdriver.common.by import By

    browser.find_element(By.ID, "signout").click()
    _arrive(browser, f"{base}/signin")


def _until(browser: Any, seconds: float, condition: Any) -> None:
    """Wait for ``condition(browser)``; the live part is replaced as it refreshes, so an
    element read at that moment is stale: read it again."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(
        browser, seconds, poll_frequency=0.3, ignored_exceptions=(StaleElementReferenceException,)
    )
    wait.until(condition)


def _arrive(browser: Any, url: str) -> None:
    """Wait for the page a click leads to (a click does not wait for the navigation)."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 10).until(expected_conditions.url_to_be(url))


def _select(browser: Any, element_id: str, value: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element(By.ID, element_id)).select_by_visible_text(value)
