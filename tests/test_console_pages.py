"""The console's Models and Ask pages over HTTP: levels, CSRF, moving an alias (pinned, as
``gcn-rag model alias set``), recorded comparisons and champion decisions, escaping, and an
event's dossier with its measurements table.

A real server on loopback with the console mounted (tests/consoles.py); requests acts as the
browser. The real-browser visit of both pages is in tests/test_console_browser.py.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest

from consoles import (
    ENDPOINT,
    QUESTION,
    Console,
    Serve,
    another_version,
    csrf,
    entity_name,
    get_page,
    post_form,
    running_console,
    signed_in,
    wait_ready,
)
from gcn_rag.model import comparisons, gate, registry
from gcn_rag.model.compare import CategoryResult, Changed, Comparison, Latency, Paired
from gcn_rag.settings import Settings
from gcn_rag.tables import Catalog
from models import Sleeper

OTHER = "sandbox.tests.console_other"


@pytest.fixture
def second_version(fixture_workspace: Settings, champion: dict[str, Any]) -> Iterator[str]:
    """Another version of the champion's model, gone afterwards (tests/consoles.py)."""
    with another_version(fixture_workspace, champion) as version:
        yield version


def test_the_models_page_shows_versions_aliases_metrics_and_lineage(
    console: Console, champion: dict[str, Any]
) -> None:
    viewer = signed_in(console, "CAN_VIEW")
    page = get_page(viewer, console, "/models")
    assert page.status_code == 200, page.text
    assert 'href="/console/models"' in page.text and 'href="/console/ask"' in page.text
    version = champion["version"]
    row = re.search(rf'<th scope="row">{version}</th>(.*?)</tr>', page.text, re.S)
    assert row is not None, page.text
    cells = row.group(1)
    assert "@champion" in cells and "READY" in cells and "UTC" in cells
    assert "all_accuracy" in cells and "1.000" in cells
    for label in ("corpus circulars", "corpus hash", "index content hash", "code hash"):
        assert f"<dt>{label}</dt>" in cells
    assert '<label for="version-champion">@champion' in page.text
    assert "Moving an alias needs CAN_MANAGE." in page.text  # the form is shown disabled


def test_moving_an_alias_needs_can_manage_and_csrf_and_pins_it(
    console: Console,
    fixture_workspace: Settings,
    champion: dict[str, Any],
    second_version: str,
) -> None:
    viewer = signed_in(console, "CAN_VIEW")
    form = {"version": second_version, "csrf": csrf(get_page(viewer, console, "/models").text)}
    refused = post_form(viewer, console, "/models/aliases/champion", form)
    assert refused.status_code == 403 and "needs CAN_MANAGE" in refused.text
    manager = signed_in(console, "CAN_MANAGE")
    no_csrf = post_form(manager, console, "/models/aliases/champion", {"version": second_version})
    assert no_csrf.status_code == 403 and "out of date" in no_csrf.text
    assert registry.resolve(fixture_workspace, "champion").version == champion["version"]
    form["csrf"] = csrf(get_page(manager, console, "/models").text)
    moved = post_form(manager, console, "/models/aliases/champion", form)
    assert (
        moved.status_code == 303 and moved.headers["location"] == "/console/models?moved=champion"
    )
    assert registry.resolve(fixture_workspace, "champion").version == second_version
    assert registry.pinned(fixture_workspace, "champion") == second_version  # as by hand
    page = get_page(manager, console, "/models?moved=champion").text
    assert "Alias champion moved" in page and "(pinned by hand)" in page
    bad = post_form(manager, console, "/models/aliases/champion", {**form, "version": "999999"})
    assert bad.status_code in (400, 404) and "Traceback" not in bad.text


@pytest.fixture(scope="module")
def other_model(fixture_workspace: Settings) -> Iterator[tuple[str, str]]:
    """A second registered model beside the assistant: versions 1 and 2 of a tiny pyfunc
    logged in a run with one metric, ``@staging`` on version 1; deleted afterwards."""
    client = registry.configure(fixture_workspace)  # the fixture workspace's MLflow store
    with mlflow.start_run():
        mlflow.log_metric("toy_accuracy", 0.25)
        info = mlflow.pyfunc.log_model(
            name="toy", python_model=Sleeper(), registered_model_name=OTHER, pip_requirements=[]
        )
    first = str(info.registered_model_version)
    second = str(mlflow.register_model(info.model_uri, OTHER).version)
    client.set_registered_model_alias(OTHER, "staging", first)
    try:
        yield first, second
    finally:
        client.delete_registered_model(OTHER)


def test_every_registered_model_is_listed_and_another_one_is_read(
    console: Console, champion: dict[str, Any], other_model: tuple[str, str]
) -> None:
    first, second = other_model
    viewer = signed_in(console, "CAN_VIEW")
    page = get_page(viewer, console, "/models").text
    listing = re.search(r'<table id="registered".*?</table>', page, re.S)
    assert listing is not None, page
    links = re.findall(r'<th scope="row"><a href="([^"]+)"', listing.group(0))
    assert {f"/console/models?name={n}" for n in (registry.MODEL_NAME, OTHER)} <= set(links)
    assistant = re.search(
        rf"<tr[^>]*>\s*<th[^>]*><a[^>]*>{registry.MODEL_NAME}</a>.*?</tr>", page, re.S
    )
    other = re.search(rf"<tr[^>]*>\s*<th[^>]*><a[^>]*>{OTHER}</a>.*?</tr>", page, re.S)
    assert assistant is not None and other is not None
    assert 'aria-current="page"' in assistant.group(0) and "aria-current" not in other.group(0)
    assert "@champion" in assistant.group(0) and "UTC" in other.group(0)
    assert f'<td class="number">{second}</td>' in other.group(0) and "@staging" in other.group(0)
    assert 'id="comparisons-heading"' in page  # the assistant's comparisons and decisions

    shown = get_page(viewer, console, f"/models?name={OTHER}")
    assert shown.status_code == 200, shown.text
    assert f'<input type="hidden" name="model" value="{OTHER}">' in shown.text
    versions = re.search(r'<table id="versions".*?</table>', shown.text, re.S)
    assert versions is not None
    assert re.findall(r'<th scope="row">(\d+)</th>', versions.group(0)) == [second, first]
    row = re.search(rf'<th scope="row">{first}</th>(.*?)</tr>', versions.group(0), re.S)
    assert row is not None and "@staging" in row.group(1)
    assert "<dt>toy_accuracy</dt><dd>0.250</dd>" in row.group(1)
    assert '<label for="version-staging">@staging' in shown.text
    assert "@champion" not in versions.group(0)  # the assistant's versions are not shown
    assert 'id="comparisons-heading"' not in shown.text and 'id="assistant-only"' in shown.text

    for name in ("sandbox.tests.nowhere", "<script>x</script>"):
        absent = get_page(viewer, console, f"/models?name={name}")
        assert absent.status_code == 404 and 'id="error-message"' in absent.text
        assert "has no registered model" in absent.text and "<script>x" not in absent.text
        assert "Traceback" not in absent.text


def test_moving_another_models_alias_needs_can_manage(
    console: Console,
    fixture_workspace: Settings,
    champion: dict[str, Any],
    other_model: tuple[str, str],
) -> None:
    first, second = other_model
    client = registry.configure(fixture_workspace)
    viewer = signed_in(console, "CAN_VIEW")
    token = csrf(get_page(viewer, console, f"/models?name={OTHER}").text)
    form = {"model": OTHER, "version": second, "csrf": token}
    refused = post_form(viewer, console, "/models/aliases/staging", form)
    assert refused.status_code == 403 and "needs CAN_MANAGE" in refused.text
    assert str(client.get_model_version_by_alias(OTHER, "staging").version) == first

    manager = signed_in(console, "CAN_MANAGE")
    form["csrf"] = csrf(get_page(manager, console, f"/models?name={OTHER}").text)
    nowhere = post_form(
        manager, console, "/models/aliases/staging", {**form, "model": "sandbox.tests.nowhere"}
    )
    assert nowhere.status_code == 404 and "has no registered model" in nowhere.text
    moved = post_form(manager, console, "/models/aliases/staging", form)
    assert moved.status_code == 303
    assert moved.headers["location"] == f"/console/models?name={OTHER}&moved=staging"
    assert str(client.get_model_version_by_alias(OTHER, "staging").version) == second
    assert registry.pinned(fixture_workspace, "staging", name=OTHER) == second  # as by hand
    assert registry.resolve(fixture_workspace, "champion").version == champion["version"]
    page = get_page(manager, console, f"/models?name={OTHER}&moved=staging").text
    assert "Alias staging moved" in page
    row = re.search(rf'<th scope="row">{second}</th>(.*?)</tr>', page, re.S)
    assert row is not None and "@staging" in row.group(1)


def test_ask_answers_with_citation_links_and_needs_can_query(console: Console) -> None:
    viewer = signed_in(console, "CAN_VIEW")
    box = get_page(viewer, console, "/ask")
    assert box.status_code == 200 and '<label for="question">Question</label>' in box.text
    assert "Asking needs CAN_QUERY." in box.text
    refused = post_form(viewer, console, "/ask", {"question": QUESTION, "csrf": csrf(box.text)})
    assert refused.status_code == 403
    asker = signed_in(console, "CAN_QUERY")
    no_csrf = post_form(asker, console, "/ask", {"question": QUESTION})
    assert no_csrf.status_code == 403
    token = csrf(get_page(asker, console, "/ask").text)
    answer = post_form(asker, console, "/ask", {"question": QUESTION, "csrf": token})
    assert answer.status_code == 200, answer.text
    assert 'id="answer"' in answer.text
    links = re.findall(r'href="https://gcn\.nasa\.gov/circulars/(\d+(?:\.5)?)"', answer.text)
    assert links, "no citation link"
    assert "<blockquote>" in answer.text


def test_a_question_with_markup_shows_as_text_on_ask(console: Console) -> None:
    asker = signed_in(console, "CAN_QUERY")
    token = csrf(get_page(asker, console, "/ask").text)
    question = 'What is <script>alert("x")</script> GRB 221009A?'
    answer = post_form(asker, console, "/ask", {"question": question, "csrf": token})
    assert answer.status_code == 200
    assert "<script>" not in answer.text
    assert (
        'value="What is &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; GRB 221009A?"'
        in answer.text
    )
    empty = post_form(asker, console, "/ask", {"question": "  ", "csrf": token})
    assert empty.status_code == 400 and "Type a question first" in empty.text


def test_an_event_question_shows_its_dossier_and_measurements(
    tmp_path: Path,
    fixture_workspace: Settings,
    events_workspace: Settings,
    champion: dict[str, Any],
    serve_app: Serve,
) -> None:
    with running_console(
        tmp_path, fixture_workspace, champion["version"], serve_app, pages_over=events_workspace
    ) as events:
        asker = signed_in(events, "CAN_QUERY")
        token = csrf(get_page(asker, events, "/ask").text)
        page = post_form(asker, events, "/ask", {"question": "What is GRB 160625B?", "csrf": token})
        assert page.status_code == 200, page.text
        assert 'id="dossier"' in page.text and "GRB 160625B" in page.text
        assert "gamma-ray burst" in page.text
        table = re.search(r'<table id="measurements">(.*?)</table>', page.text, re.S)
        assert table is not None, "no measurements table"
        assert re.search(r'href="https://gcn\.nasa\.gov/circulars/\d+"', table.group(1))
        plain = post_form(asker, events, "/ask", {"question": "What is a GRB?", "csrf": token})
        assert plain.status_code == 200 and 'id="dossier"' not in plain.text


def test_a_manager_changes_the_served_version_and_watches_the_update(
    console: Console, champion: dict[str, Any], second_version: str
) -> None:
    from databricks.sdk import WorkspaceClient

    old, new = champion["version"], second_version
    path = f"/endpoints/{ENDPOINT}"
    viewer = signed_in(console, "CAN_VIEW")
    seen = get_page(viewer, console, path).text
    assert re.search(
        rf'<select id="version-1" name="entity_version:{entity_name(old)}" disabled>', seen
    )
    change = {"csrf": csrf(seen), f"entity_version:{entity_name(old)}": new}
    refused = post_form(viewer, console, f"{path}/config", change)
    assert refused.status_code == 403 and "This needs CAN_MANAGE" in refused.text
    manager = signed_in(console, "CAN_MANAGE")
    page = get_page(manager, console, path).text
    assert f'<option value="{new}">v{new}</option>' in page
    assert f'<option value="{old}" selected>v{old} @champion</option>' in page
    bad = post_form(
        manager,
        console,
        f"{path}/config",
        {**change, "csrf": csrf(page), f"entity_version:{entity_name(old)}": "x"},
    )
    assert bad.status_code == 400 and "Choose a version number" in bad.text
    moved = post_form(manager, console, f"{path}/config", {**change, "csrf": csrf(page)})
    assert moved.status_code == 303
    live = get_page(manager, console, f"{path}/live").text  # while loading, or once swapped
    if 'id="update-progress"' in live:
        assert "Updating to config version" in live and f"v{new}" in live
        assert 'id="config-update">IN_PROGRESS<' in live
    wait_ready(console.manager)
    live = get_page(manager, console, f"{path}/live").text
    assert (
        f'data-entity="{entity_name(new)}"' in live and 'id="config-update">NOT_UPDATING<' in live
    )
    api = WorkspaceClient(host=console.url, token=console.tokens["CAN_VIEW"])
    served = api.serving_endpoints.get(ENDPOINT).config
    assert served is not None and served.served_entities is not None
    assert [(e.name, e.entity_version) for e in served.served_entities] == [(entity_name(new), new)]
    back = {"csrf": csrf(page), f"entity_version:{entity_name(new)}": old}
    assert post_form(manager, console, f"{path}/config", back).status_code == 303
    wait_ready(console.manager)


def _comparison(champion_version: str, other: str) -> Comparison:
    """B loses half its redshift items (a loss the gate refuses) and changes a replayed answer
    into markup."""
    lost = Paired(a=1.0, b=0.5, a_only=2, b_only=0, p_value=0.5)
    pooled = Paired(a=1.0, b=0.6667, a_only=2, b_only=0, p_value=0.5)
    return Comparison(
        model_name=registry.MODEL_NAME,
        version_a=champion_version,
        version_b=other,
        ref_a="champion",
        ref_b=other,
        bench=("bench.jsonl",),
        bench_digest="0123456789abcdef",
        categories=(
            CategoryResult("bench.jsonl", "redshift", 4, lost, lost),
            CategoryResult("bench.jsonl", "unanswerable", 2, Paired(1.0, 1.0, 0, 0, 1.0), None),
            CategoryResult("bench.jsonl", "all", 6, pooled, pooled),
        ),
        latency_a=Latency(p50_ms=41.0, p95_ms=52.5, n=6),
        latency_b=Latency(p50_ms=43.0, p95_ms=61.25, n=6),
        replay_source=f"{ENDPOINT} (rag_inference_payload)",
        replayed=3,
        changed=(Changed(QUESTION, "The redshift is 0.151.", '<script>alert("b")</script>'),),
    )


@pytest.fixture
def comparisons_table(fixture_workspace: Settings) -> Iterator[Path]:
    """The fixture workspace's ``rag_model_comparisons``, gone afterwards: other tests copy
    that workspace's tables and count the comparisons they record."""
    path = Catalog.from_settings(fixture_workspace).path(comparisons.TABLE)
    assert not path.exists(), "another test left comparisons in the fixture workspace"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_recorded_comparisons_and_decisions_on_the_models_page(
    console: Console,
    fixture_workspace: Settings,
    champion: dict[str, Any],
    second_version: str,
    comparisons_table: Path,
) -> None:
    # recorded by the model side's own writer, decided by the real gate (refused: nothing moves)
    kept = comparisons.record(fixture_workspace, _comparison(champion["version"], second_version))
    decided = gate.promote(fixture_workspace, second_version, lambda a, b: kept)
    assert decided.decision == "refused"
    viewer = signed_in(console, "CAN_VIEW")
    page = get_page(viewer, console, "/models")
    assert page.status_code == 200, page.text
    assert (
        page.text.count('id="comparisons"') == 1 and "<title>Models · gcn-rag</title>" in page.text
    )
    link = f'href="/console/models/comparisons/{kept.comparison_id}"'
    row = re.search(rf"<tr>\s*<th scope=\"row\"><a {link}>(.*?)</tr>", page.text, re.S)
    assert row is not None, page.text
    cells = re.sub(r"\s+", " ", row.group(1))
    assert f'version {champion["version"]} <span class="hint">(champion)</span>' in cells
    assert f"vs version {second_version}" in cells
    assert ">6<" in cells and "1.000 / 0.667" in cells
    assert "-50.0 points in bench.jsonl/redshift" in cells and ">0.5<" in cells
    assert "52.5 ms / 61.2 ms" in cells and "<td>refused</td>" in cells
    decision = re.search(r'<table id="decisions".*?</table>', page.text, re.S)
    assert decision is not None, page.text
    assert "<td>refused</td>" in decision.group(0) and "<td>no</td>" in decision.group(0)
    assert "bench.jsonl redshift: recall@5 1.0 -&gt; 0.5 (-50.0 points" in decision.group(0)
    assert link in decision.group(0)

    shown = get_page(viewer, console, f"/models/comparisons/{kept.comparison_id}")
    assert shown.status_code == 200, shown.text
    categories = re.search(r'<table id="categories".*?</table>', shown.text, re.S)
    assert categories is not None, shown.text
    redshift = re.search(r'<tr class="loses">(.*?)</tr>', categories.group(0), re.S)
    assert redshift is not None and '<th scope="row">redshift</th>' in redshift.group(1)
    numbers = re.findall(r'<td class="number">([^<]*)</td>', redshift.group(1))
    assert numbers == ["4", *["1.000", "0.500", "-50.0", "0.5", "2 / 0"] * 2]
    assert '<th scope="row">unanswerable</th>' in categories.group(0)
    assert "61.2 ms" in shown.text and "41.0 ms" in shown.text
    changed = re.search(r'<table id="changed".*?</table>', shown.text, re.S)
    assert changed is not None and QUESTION in changed.group(0)
    assert "The redshift is 0.151." in changed.group(0)
    assert "<script>" not in shown.text  # the answer is untrusted text
    assert "&lt;script&gt;alert(&#34;b&#34;)&lt;/script&gt;" in changed.group(0)
    assert 'data-verdict="refused"' in shown.text

    for missing in ("0" * 32, "no%20such%20id"):
        absent = get_page(viewer, console, f"/models/comparisons/{missing}")
        assert absent.status_code == 404 and 'id="error-message"' in absent.text
        assert "No comparison" in absent.text
