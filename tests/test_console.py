"""The web console over HTTP: sign-in, sessions, permission levels, CSRF, escaping, errors.

A real server on loopback with the console mounted (tests/consoles.py); requests acts as the
browser. The real-browser walk-through is tests/test_console_browser.py.
"""

from __future__ import annotations

import dataclasses
import html
import json
import re
import time
from pathlib import Path
from typing import Any

import requests

from consoles import (
    ENDPOINT,
    QUESTION,
    Console,
    Serve,
    csrf,
    get_page,
    post_form,
    running_console,
    signed_in,
    wait_ready,
)
from gcn_rag.console.sessions import SignInCodes
from gcn_rag.settings import Settings


def test_pages_need_a_session_and_the_signin_form_says_why(console: Console) -> None:
    anonymous = requests.Session()
    response = get_page(anonymous, console, "/endpoints")
    assert response.status_code == 303
    assert response.headers["location"] == "/console/signin?next=%2Fconsole%2Fendpoints"
    form = get_page(anonymous, console, "/signin?next=/console/endpoints")
    assert form.status_code == 200 and '<label for="token">Access token</label>' in form.text
    refused = post_form(anonymous, console, "/signout", {})
    assert refused.status_code == 401 and "sign in again" in refused.text
    bad = post_form(anonymous, console, "/signin", {"token": "dapi-not-a-token"})
    assert bad.status_code == 401
    assert "not known here" in bad.text and bad.headers["content-type"].startswith("text/html")
    assert "set-cookie" not in bad.headers


def test_signing_in_sets_a_strict_httponly_cookie_and_returns_where_you_were(
    console: Console,
) -> None:
    client = requests.Session()
    response = post_form(
        client,
        console,
        "/signin",
        {"token": console.tokens["CAN_VIEW"], "next": f"/console/endpoints/{ENDPOINT}"},
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/console/endpoints/{ENDPOINT}"
    cookie = response.headers["set-cookie"]
    for flag in ("HttpOnly", "SameSite=Strict", "Path=/console"):
        assert flag in cookie
    assert console.tokens["CAN_VIEW"] not in cookie  # the session id, never the token
    page = get_page(client, console, "/endpoints")
    assert page.status_code == 200 and "can_view-user" in page.text
    assert re.search(r'data-state="READY"', page.text)
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    outside = post_form(
        client,
        console,
        "/signin",
        {"token": console.tokens["CAN_VIEW"], "next": "//evil.example/x"},
    )
    assert outside.headers["location"] == "/console/endpoints"


def test_a_one_time_link_signs_in_once(console: Console) -> None:
    code = SignInCodes(console.home / "serving.db").issue("CAN_QUERY", "link-user")
    first = requests.Session()
    response = get_page(first, console, f"/signin?code={code}")
    assert response.status_code == 303 and response.headers["location"] == "/console/endpoints"
    assert "link-user" in get_page(first, console, "/endpoints").text
    again = get_page(requests.Session(), console, f"/signin?code={code}")
    assert again.status_code == 401 and "used already or has expired" in again.text
    expired = SignInCodes(console.home / "serving.db").issue("CAN_VIEW", "late", ttl_s=-1)
    assert get_page(requests.Session(), console, f"/signin?code={expired}").status_code == 401


def test_each_level_is_held_on_every_action(console: Console) -> None:
    viewer = signed_in(console, "CAN_VIEW")
    page = get_page(viewer, console, f"/endpoints/{ENDPOINT}/query")
    assert page.status_code == 200 and 'id="ask" disabled' in page.text
    asked = post_form(
        viewer,
        console,
        f"/endpoints/{ENDPOINT}/query",
        {"csrf": csrf(page.text), "question": QUESTION},
    )
    assert asked.status_code == 403 and "This needs CAN_QUERY" in asked.text
    querier = signed_in(console, "CAN_QUERY")
    before = _version(console)
    page = get_page(querier, console, f"/endpoints/{ENDPOINT}")
    assert 'id="save-config" disabled' in page.text
    change = {"csrf": csrf(page.text), f"workload_size:{_entity(console)}": "Medium"}
    refused = post_form(querier, console, f"/endpoints/{ENDPOINT}/config", change)
    assert refused.status_code == 403 and "This needs CAN_MANAGE" in refused.text
    assert _version(console) == before


def test_changes_need_the_sessions_csrf_value_and_a_same_site_origin(console: Console) -> None:
    manager = signed_in(console, "CAN_MANAGE")
    before = _version(console)
    page = get_page(manager, console, f"/endpoints/{ENDPOINT}")
    entity = _entity(console)
    change = {
        f"workload_size:{entity}": "Medium",
        f"scale_to_zero:{entity}": "on",
        f"traffic:{entity}": "100",
    }
    for forged in (
        {},
        {"csrf": "guess"},
        {"csrf": csrf(get_page(signed_in(console, "CAN_MANAGE"), console, "/endpoints").text)},
    ):
        refused = post_form(manager, console, f"/endpoints/{ENDPOINT}/config", {**change, **forged})
        assert refused.status_code == 403 and "another site" in refused.text
    elsewhere = post_form(
        manager,
        console,
        f"/endpoints/{ENDPOINT}/config",
        {**change, "csrf": csrf(page.text)},
        headers={"Origin": "http://evil.example"},
    )
    assert elsewhere.status_code == 403
    assert _version(console) == before
    done = post_form(
        manager,
        console,
        f"/endpoints/{ENDPOINT}/config",
        {**change, "csrf": csrf(page.text)},
        headers={"Origin": console.url},
    )
    assert done.status_code == 303 and done.headers["location"].endswith("?updated=1")
    got = wait_ready(console.manager)
    assert got["config"]["config_version"] == before + 1
    assert got["config"]["served_entities"][0]["workload_size"] == "Medium"
    api = requests.get(
        f"{console.url}/api/2.0/serving-endpoints/{ENDPOINT}",
        headers={"Authorization": f"Bearer {console.tokens['CAN_VIEW']}"},
        timeout=30,
    )
    assert api.json()["config"]["served_entities"][0]["workload_size"] == "Medium"


def test_an_answer_with_its_citations_latency_and_request_id(console: Console) -> None:
    client = signed_in(console, "CAN_QUERY")
    page = get_page(client, console, f"/endpoints/{ENDPOINT}/query")
    result = post_form(
        client,
        console,
        f"/endpoints/{ENDPOINT}/query",
        {"csrf": csrf(page.text), "question": QUESTION},
    )
    assert result.status_code == 200
    assert re.search(
        r'id="answer" class="answer">The redshift of GRB 221009A is z = 0.15', result.text
    )
    assert re.search(
        r'<a href="https://gcn.nasa.gov/circulars/\d+" rel="noreferrer">GCN \d+</a>', result.text
    )
    request_id = re.search(r'id="request-id">([0-9a-f]{32})<', result.text)
    assert request_id is not None
    assert re.search(r"Status 200 · \d+ ms on the server", result.text)
    metrics = requests.get(
        f"{console.url}/metrics",
        headers={"Authorization": f"Bearer {console.tokens['CAN_VIEW']}"},
        timeout=30,
    ).text
    assert re.search(rf'endpoint="{ENDPOINT}".*status="200"\}} [1-9]', metrics)


def test_a_question_with_markup_shows_as_text(console: Console) -> None:
    client = signed_in(console, "CAN_QUERY")
    page = get_page(client, console, f"/endpoints/{ENDPOINT}/query")
    question = '<script>alert("x")</script> What is the redshift of GRB 221009A?'
    result = post_form(
        client,
        console,
        f"/endpoints/{ENDPOINT}/query",
        {"csrf": csrf(page.text), "question": question},
    )
    assert result.status_code == 200
    assert "<script>" not in result.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in result.text
    raw = json.dumps({"inputs": ["<img src=x onerror=alert(1)>"]})
    shown = post_form(
        client, console, f"/endpoints/{ENDPOINT}/query", {"csrf": csrf(page.text), "raw": raw}
    )
    assert "<img" not in shown.text and "&lt;img src=x onerror=alert(1)&gt;" in shown.text


def test_the_inference_table_shows_each_request_escaped_and_filtered(console: Console) -> None:
    client = signed_in(console, "CAN_QUERY")
    page = get_page(client, console, f"/endpoints/{ENDPOINT}/query")
    question = "<b>bold</b> What is the redshift of GRB 221009A?"
    asked = post_form(
        client,
        console,
        f"/endpoints/{ENDPOINT}/query",
        {"csrf": csrf(page.text), "question": question},
    )
    found = re.search(r'id="request-id">([0-9a-f]{32})<', asked.text)
    assert found is not None
    request_id = found.group(1)
    viewer = signed_in(console, "CAN_VIEW")
    deadline = time.monotonic() + 30
    while request_id not in (table := get_page(viewer, console, "/inference").text):
        assert time.monotonic() < deadline, "the request never reached the inference table"
        time.sleep(0.2)
    assert "&lt;b&gt;bold&lt;/b&gt;" in table and "<b>bold" not in table
    assert "can_query-user" in table  # the session's caller, as the requester
    entity = _entity(console)
    assert request_id in get_page(viewer, console, f"/inference?status=200&entity={entity}").text
    assert request_id not in get_page(viewer, console, "/inference?status=500").text
    assert request_id not in get_page(viewer, console, "/inference?entity=other-1").text
    detail = get_page(viewer, console, f"/inference/{request_id}")
    assert detail.status_code == 200 and "&#34;dataframe_split&#34;" in detail.text
    assert "The redshift of GRB 221009A" in detail.text
    assert get_page(viewer, console, "/inference/" + "0" * 32).status_code == 404
    bad = get_page(viewer, console, "/inference?status=abc")
    assert bad.status_code == 400 and "HTTP status code" in bad.text
    assert get_page(viewer, console, "/inference?entity=x'%20OR%201=1").status_code == 400


def test_errors_are_pages_not_stack_traces(console: Console) -> None:
    client = signed_in(console, "CAN_QUERY")
    missing = get_page(client, console, "/endpoints/no-such-endpoint")
    assert missing.status_code == 404 and "does not exist" in missing.text
    assert missing.headers["content-type"].startswith("text/html")
    assert get_page(client, console, "/nowhere").status_code == 404
    page = get_page(client, console, f"/endpoints/{ENDPOINT}/query")
    bad = post_form(
        client,
        console,
        f"/endpoints/{ENDPOINT}/query",
        {"csrf": csrf(page.text), "raw": "{not json"},
    )
    assert bad.status_code == 200 and re.search(r'Status 400.*id="error-message"', bad.text, re.S)
    assert "Traceback" not in bad.text


def test_signing_out_ends_the_session(console: Console) -> None:
    client = signed_in(console, "CAN_VIEW")
    page = get_page(client, console, "/endpoints")
    old = {cookie.name: cookie.value or "" for cookie in client.cookies}
    response = post_form(client, console, "/signout", {"csrf": csrf(page.text)})
    assert response.status_code == 303 and response.headers["location"] == "/console/signin"
    assert "Max-Age=0" in response.headers["set-cookie"]
    replay = requests.Session()
    replay.cookies.update(old)
    assert get_page(replay, console, "/endpoints").status_code == 303


def test_the_api_is_unchanged_beside_the_console(console: Console) -> None:
    headers = {"Authorization": f"Bearer {console.tokens['CAN_QUERY']}"}
    body = json.dumps({"dataframe_split": {"columns": ["question"], "data": [[QUESTION]]}})
    answer = requests.post(
        f"{console.url}/serving-endpoints/{ENDPOINT}/invocations",
        data=body,
        headers=headers,
        timeout=60,
    )
    assert answer.status_code == 200 and "predictions" in answer.json()
    unknown = requests.get(f"{console.url}/api/2.0/nowhere", headers=headers, timeout=30)
    assert unknown.json()["error_code"] == "ENDPOINT_NOT_FOUND"


def test_without_auth_a_session_is_made_and_csrf_still_holds(
    tmp_path: Path, fixture_workspace: Settings, champion: dict[str, Any], serve_app: Serve
) -> None:
    with running_console(
        tmp_path, fixture_workspace, champion["version"], serve_app, auth=False
    ) as open_console:
        client = requests.Session()
        page = get_page(client, open_console, f"/endpoints/{ENDPOINT}")
        assert page.status_code == 200 and "anonymous" in page.text and client.cookies
        change = {f"workload_size:{_entity(open_console)}": "Large"}
        assert (
            post_form(
                requests.Session(), open_console, f"/endpoints/{ENDPOINT}/config", change
            ).status_code
            == 403
        )
        done = post_form(
            client,
            open_console,
            f"/endpoints/{ENDPOINT}/config",
            {**change, "csrf": csrf(page.text)},
        )
        assert done.status_code == 303


def _version(console: Console) -> int:
    return int(console.manager.get(ENDPOINT)["config"]["config_version"])


def _entity(console: Console) -> str:
    return str(console.manager.get(ENDPOINT)["config"]["served_entities"][0]["name"])


def test_sessions_end_when_idle_and_the_oldest_goes_past_the_limit() -> None:
    from gcn_rag.console.sessions import Sessions
    from gcn_rag.serving.auth import Caller

    sessions = Sessions(limit=2)
    first, second = (sessions.start(Caller(n, "CAN_VIEW")) for n in ("a", "b"))
    assert sessions.find(first.id) is first  # seen again: now the newest
    sessions.start(Caller("c", "CAN_VIEW"))
    assert sessions.find(second.id) is None and sessions.find(first.id) is first
    idle = Sessions(idle_s=-1.0)  # every session is past its idle time at once
    assert idle.find(idle.start(Caller("d", "CAN_VIEW")).id) is None


# --- the endpoint page's live part: charts, requests in the last hour, the Query page's example


def _live(client: requests.Session, console: Console, window: str = "15m") -> str:
    response = get_page(client, console, f"/endpoints/{ENDPOINT}/live?window={window}")
    assert response.status_code == 200, response.text
    return response.text


def _summary(page: str, chart: str) -> str:
    found = re.search(rf'id="chart-{chart}-summary">([^<]*)<', page)
    assert found is not None, f"no summary of the {chart} chart"
    return html.unescape(found.group(1))


def _counted(page: str) -> int:
    """How many requests the request-rate chart says it drew."""
    found = re.match(r"([\d,]+) requests?", _summary(page, "rate"))
    return int(found.group(1).replace(",", "")) if found else 0


def test_the_charts_count_requests_made_after_the_page_loaded(console: Console) -> None:
    viewer = signed_in(console, "CAN_VIEW")
    page = get_page(viewer, console, f"/endpoints/{ENDPOINT}?window=15m")
    assert page.status_code == 200
    assert f'data-src="/console/endpoints/{ENDPOINT}/live?window=15m"' in page.text
    assert '<script src="/console/static/live.js" defer></script>' in page.text
    assert '<option value="15m" selected>15 minutes</option>' in page.text
    before, failed_before = _counted(page.text), _summary(page.text, "errors")
    url = f"{console.url}/serving-endpoints/{ENDPOINT}/invocations"
    headers = {"Authorization": f"Bearer {console.tokens['CAN_QUERY']}"}
    for _ in range(3):
        ok = requests.post(url, json={"inputs": [QUESTION]}, headers=headers, timeout=60)
        assert ok.status_code == 200
    assert requests.post(url, data="{not json", headers=headers, timeout=60).status_code == 400
    deadline = time.monotonic() + 30
    while _counted(live := _live(viewer, console)) < before + 4:
        assert time.monotonic() < deadline, "the requests never reached the charts"
        time.sleep(0.2)
    failed = re.match(r"([\d,]+) of ([\d,]+) requests failed", _summary(live, "errors"))
    assert failed is not None and int(failed.group(1)) >= 1, failed_before
    assert re.fullmatch(
        r"Over the last 15 minutes: p50 [\d.,]+ ms, p95 [\d.,]+ ms, p99 [\d.,]+ ms "
        r"\(inference table\)\.",
        _summary(live, "latency"),
    )
    assert "rows waiting to be committed to the inference table now" in _summary(live, "backlog")
    for chart, line in (("rate", "line-rate"), ("latency", "line-p99"), ("errors", "line-errors")):
        assert f'aria-labelledby="chart-{chart}-title chart-{chart}-summary"' in live
        assert re.search(rf'<(polyline|circle) class="{line}"', live), chart
    assert "<form" not in live and 'id="state">READY<' in live
    listing = get_page(viewer, console, "/endpoints").text
    last_hour = re.search(rf'data-requests-last-hour="{ENDPOINT}">([\d,]+)<', listing)
    assert last_hour is not None and int(last_hour.group(1).replace(",", "")) >= before + 4
    bad = get_page(viewer, console, f"/endpoints/{ENDPOINT}/live?window=2y")
    assert bad.status_code == 400 and "no chart window" in bad.text
    anonymous = get_page(requests.Session(), console, f"/endpoints/{ENDPOINT}/live")
    assert anonymous.status_code == 303


def test_live_counters_give_rates_errors_and_percentiles(console: Console) -> None:
    """An endpoint without an inference table is charted from the live counters' ticks."""
    from gcn_rag.console.series import WINDOWS, from_ticks
    from gcn_rag.console.timeline import Timeline
    from gcn_rag.serving.metrics import Metrics

    metrics = Metrics()
    timeline = Timeline(metrics, console.manager)
    for _ in range(98):
        metrics.record("uncaptured", "e-1", 200, 0.02)  # in the 10-25 ms bucket
    metrics.record("uncaptured", "e-1", 500, 0.3)
    metrics.record("uncaptured", "e-1", 429, 0.001)
    timeline.sample()
    timeline.sample()  # nothing new: counted once
    start = timeline.started_ms - 60_000
    series = from_ticks("uncaptured", timeline.since(start), start, WINDOWS[0])
    assert sum(series.requests) == 100 and sum(series.errors) == 2
    p50, p99 = series.total_latency_ms[0.5], series.total_latency_ms[0.99]
    assert p50 is not None and 10 < p50 <= 25
    assert p99 is not None and 25 <= p99 <= 500
    assert all(b is None or b >= 0 for b in series.backlog)
    assert (
        from_ticks("other", timeline.since(start), start, WINDOWS[0]).total_latency_ms[0.5] is None
    )


def test_the_query_page_starts_from_the_models_input_example(
    console: Console, fixture_workspace: Settings
) -> None:
    from gcn_rag.model.example import example_question
    from gcn_rag.tables import Catalog

    example = example_question(Catalog.from_settings(fixture_workspace))  # what was logged
    client = signed_in(console, "CAN_QUERY")
    page = get_page(client, console, f"/endpoints/{ENDPOINT}/query")
    assert f'id="question" name="question" type="text" value="{example}"' in page.text
    assert re.search(r'placeholder="\{\n  &#34;dataframe_split&#34;: \{', page.text)
    result = post_form(
        client,
        console,
        f"/endpoints/{ENDPOINT}/query",
        {"csrf": csrf(page.text), "question": example},
    )
    table = re.search(r'<table id="measurements">(.*?)</table>', result.text, re.S)
    assert table is not None, "no measurements table"
    row = re.search(r'<th scope="row">redshift</th><td>([^<]+)</td>', table.group(1))
    assert row is not None and re.match(r"\d", row.group(1))
    assert re.search(r'href="https://gcn\.nasa\.gov/circulars/\d+"', table.group(1))


def test_the_endpoint_page_shows_its_guardrails_and_their_decisions(console: Console) -> None:
    gateway: dict[str, Any] = {
        "guardrails": {"input": {"pii": {"behavior": "MASK"}, "safety": True}}
    }
    previous = console.manager.get(ENDPOINT).get("ai_gateway") or {}
    headers = {"Authorization": f"Bearer {console.tokens['CAN_MANAGE']}"}
    url = f"{console.url}/api/2.0/serving-endpoints/{ENDPOINT}"
    assert requests.put(f"{url}/ai-gateway", json=gateway, headers=headers, timeout=30).ok
    try:
        client = signed_in(console, "CAN_QUERY")
        page = get_page(client, console, f"/endpoints/{ENDPOINT}")
        assert re.search(r"<th scope=\"row\">input</th><td>MASK</td><td>BLOCK</td>", page.text)
        assert "No request has been masked or blocked" in page.text
        asked = get_page(client, console, f"/endpoints/{ENDPOINT}/query")
        question = "Mail the redshift of GRB 221009A to <b>a.person@example.org</b>"
        post_form(
            client,
            console,
            f"/endpoints/{ENDPOINT}/query",
            {"csrf": csrf(asked.text), "question": question},
        )
        page = get_page(client, console, f"/endpoints/{ENDPOINT}")
        hits = re.search(r'<table id="guardrail-hits">.*?</table>', page.text, re.S)
        assert hits is not None and "pii.email" in hits.group(0)
        assert re.search(r"<td>input</td><td>pii.email</td><td>MASK</td><td[^>]*>1</td>", page.text)
        assert "a.person@example.org" not in page.text  # the page never shows what was masked
    finally:
        requests.put(f"{url}/ai-gateway", json=previous, headers=headers, timeout=30)


def test_the_endpoint_page_shows_an_entity_scaled_to_zero_and_its_logs(console: Console) -> None:
    client = signed_in(console, "CAN_VIEW")
    entity = _entity(console)

    def shown() -> tuple[str, str]:
        """The entity's row in the state table and the page's Logs block."""
        page = get_page(client, console, f"/endpoints/{ENDPOINT}").text
        row = re.search(rf'<tr data-entity="{re.escape(entity)}">.*?</tr>', page, re.S)
        logs = re.search(r'<h2>Logs</h2>\s*<pre class="logs"[^>]*>(.*?)</pre>', page, re.S)
        assert row is not None and logs is not None, page
        return row.group(0), html.unescape(logs.group(1))

    row, logs = shown()
    assert "<td>Loaded</td>" in row and "· scale to zero" in row
    assert "ready (config version 1)" in logs and "scaled to zero" not in logs
    limits = console.manager.limits
    console.manager.limits = dataclasses.replace(limits, scale_to_zero_idle_s=0.0)
    try:  # the manager's own reaper unloads the idle entity (it looks every 5 s)
        deadline = time.monotonic() + 30
        while "Scaled to zero" not in json.dumps(console.manager.get(ENDPOINT)):
            assert time.monotonic() < deadline, "never scaled to zero"
            time.sleep(0.1)
    finally:
        console.manager.limits = limits
    row, logs = shown()
    assert "<td>Scaled to zero; the next request starts it.</td>" in row
    assert f"{entity}: scaled to zero after idling" in logs
    asked = requests.post(
        f"{console.url}/serving-endpoints/{ENDPOINT}/invocations",
        json={"inputs": [QUESTION]},
        headers={"Authorization": f"Bearer {console.tokens['CAN_QUERY']}"},
        timeout=120,
    )
    assert asked.status_code == 200  # started from zero
    assert "<td>Loaded</td>" in shown()[0]
