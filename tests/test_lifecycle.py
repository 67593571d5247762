"""Model lifecycle (issue 17, model side): a challenger, an offline comparison with paired
tests, gated promotion, the override, rollback - on a real MLflow registry.

Two real versions of the fixture assistant differ on purpose: version 1 answers from one
circular (``k=1``), version 2 from five. On the bench below both give the same values, but
version 1 cites only its first circular, so it loses recall@5 on the two redshift items whose
relevant circular is not ranked first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
import requests
from typer.testing import CliRunner

from conftest import capture_row
from gcn_rag.cli import app
from gcn_rag.model import champion, comparisons, gate, registry
from gcn_rag.model.compare import (
    CategoryResult,
    Comparison,
    Latency,
    Paired,
    exact_mcnemar,
)
from gcn_rag.model.registry import mlflow_loader, mlflow_resolver
from gcn_rag.serving.app import create_app
from gcn_rag.serving.capture import CaptureTarget, InferenceCapture
from gcn_rag.serving.manager import EndpointManager
from gcn_rag.serving.replicas import Limits
from gcn_rag.serving.store import EndpointStore, workspace_id
from gcn_rag.settings import Settings
from gcn_rag.tables import Catalog

runner = CliRunner()
Serve = Callable[[Any], AbstractContextManager[str]]
ENDPOINT = "nasa-gcn-rag-assistant"
BENCH = [
    ("redshift", "What is the redshift of GRB 221009A?", ["0.151"], [32648]),
    ("redshift", "What is the redshift of GRB 091109A?", ["3.5", "3.076"], [10350]),
    ("redshift", "What is the redshift of GRB 100728B?", ["2.106"], [11317]),
    ("redshift", "What is the redshift of GRB 130427A?", ["0.34"], [14455]),
    ("t90", "What is the Swift-BAT T90 duration of GRB 050401?", ["33"], [3173]),
    ("unanswerable", "What is the redshift of GRB 190231Z?", [], []),
]
#: latency on a shared test machine is noise: gate on it only where a test says so
NO_LATENCY_GATE = ("--max-latency-growth", "100000")


def _cli(settings: Settings, *args: str, code: int = 0) -> str:
    result = runner.invoke(app, [*args, "--home", str(settings.home)])
    assert result.exit_code == code, result.output
    return result.output


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, fixture_workspace: Settings) -> dict[str, Any]:
    """A copy of the indexed fixture workspace with version 1 (k=1, logged as the challenger
    in one step) and version 2 (k=5), and a bench file."""
    base = tmp_path_factory.mktemp("lifecycle")
    home = base / "workspace"
    home.mkdir()
    for part in ("warehouse", "index"):
        shutil.copytree(fixture_workspace.home / part, home / part)
    (home / "cache").symlink_to(fixture_workspace.cache.resolve(), target_is_directory=True)
    settings = Settings.load(environ={}, home=home)
    said = _cli(settings, "model", "log", "--no-eval", "--k", "1", "--alias", "challenger")
    assert "Registered" in said and "Alias challenger -> version 1" in said
    _cli(settings, "model", "log", "--no-eval", "--register", "--k", "5")
    bench = base / "bench.jsonl"
    bench.write_text(
        "".join(
            json.dumps(
                {"id": f"q{i}", "category": c, "question": q, "answers": a, "relevant_circulars": r}
            )
            + "\n"
            for i, (c, q, a, r) in enumerate(BENCH)
        )
    )
    return {"settings": settings, "bench": str(bench)}


def _champion_is(settings: Settings, version: str) -> None:
    registry.set_alias(settings, champion.CHAMPION, version)


def _model_info(settings: Settings) -> dict[str, str]:
    rows = Catalog.from_settings(settings).sql("SELECT key, value FROM rag_model_info")
    return {row["key"]: row["value"] for row in rows.to_pylist()}


def _decision(settings: Settings, version: str) -> dict[str, str]:
    info = registry.resolve(settings, version)
    return dict(json.loads(info.tags[gate.DECISION_TAG]))


def test_compare_finds_the_loss_records_it_and_the_gate_refuses(lab: dict[str, Any]) -> None:
    settings, bench = lab["settings"], lab["bench"]
    _champion_is(settings, "2")
    out = _cli(settings, "model", "compare", "champion", "challenger", "--bench", bench, "--json")
    found = json.loads(out[out.index("{") :])
    rows = {c["category"]: c for c in found["categories"]}
    assert (found["version_a"], found["version_b"]) == ("2", "1")
    redshift = rows["redshift"]
    assert redshift["accuracy"]["a"] == redshift["accuracy"]["b"] == 1.0  # same values
    assert (redshift["recall"]["a"], redshift["recall"]["b"]) == (1.0, 0.5)
    assert (redshift["recall"]["a_only"], redshift["recall"]["b_only"]) == (2, 0)
    assert redshift["recall"]["p_value"] == 0.5
    assert rows["unanswerable"]["recall"] is None and rows["all"]["n"] == len(BENCH)
    assert found["latency_a"]["n"] == found["latency_b"]["n"] == len(BENCH)

    # recorded: a run tagged with both versions, tags on both versions, a row in the table
    run_id = found["comparison_id"]
    run = registry.configure(settings).get_run(run_id)
    assert run.data.tags["gcn_rag.compare.version_a"] == "2"
    assert run.data.metrics["bench.redshift.recall_at_5_b"] == 0.5
    for mine, other in (("1", "2"), ("2", "1")):
        tags = registry.resolve(settings, mine).tags
        assert tags[comparisons.TAG_PREFIX + other] == run_id
    sql = "SELECT version_a, version_b, items, comparison_id FROM rag_model_comparisons"
    assert run_id in _cli(settings, "sql", sql)  # queryable like the other rag_* tables

    refused = _cli(
        settings, "model", "promote", "challenger", "--bench", bench, *NO_LATENCY_GATE, code=1
    )
    assert "Reusing comparison " + run_id in refused  # the same versions, the same questions
    assert "bench.jsonl redshift: recall@5 1.0 -> 0.5 (-50.0 points" in refused
    assert "Not promoted" in refused
    assert registry.resolve(settings, "champion").version == "2"
    assert _decision(settings, "1")["decision"] == _decision(settings, "2")["decision"] == "refused"


def test_the_better_version_passes_force_overrides_and_rollback_walks_back(
    lab: dict[str, Any],
) -> None:
    settings, bench = lab["settings"], lab["bench"]
    _champion_is(settings, "1")
    said = _cli(settings, "model", "promote", "2", "--bench", bench, *NO_LATENCY_GATE)
    assert "@champion -> version 2" in said
    assert registry.pinned(settings, "champion") == "2"  # a promotion is a decision: `up` keeps it
    info = _model_info(settings)
    assert info["model_version"] == "2" and info["champion.decision"] == "promoted"
    assert info["champion.previous_champion"] == "1" and info["champion.comparison_id"]

    said = _cli(settings, "model", "promote", "challenger", "--bench", bench, "--force",
                *NO_LATENCY_GATE)  # fmt: skip
    assert "by --force over the gate's refusal" in said and "recall@5 1.0 -> 0.5" in said
    forced = _decision(settings, "1")
    assert forced["decision"] == "forced" and "recall@5" in forced["reasons"]
    assert _model_info(settings)["champion.decision"] == "forced"

    assert "-> version 2 (pinned" in _cli(settings, "model", "rollback")
    assert registry.pinned(settings, "champion") == "2"  # `up` leaves it
    assert _model_info(settings)["champion.decision"] == "rolled back"
    assert "-> version 1 (pinned" in _cli(settings, "model", "rollback")  # one more step back
    assert "no recorded previous champion" in _cli(settings, "model", "rollback", code=1)

    # promoting the champion itself is today's `promote`: it only hands champion back to `up`
    assert "-> version 1 (not pinned" in _cli(settings, "model", "promote", "1")
    assert registry.pinned(settings, "champion") is None


# --- the loop's end: an endpoint serving champion follows promote and rollback -------------

FOLLOWER = "follows-champion"
QUESTION = "What neutrino events did IceCube detect?"  # k=1 cites fewer circulars than k=5


@contextlib.contextmanager
def _workspace_server(settings: Settings, serve_app: Serve) -> Iterator[str]:
    """The workspace's own server, recorded as `gcn-rag up` records it (so `model promote` and
    `model rollback` wait for the endpoints following champion), checking aliases every 0.2 s."""
    uri = registry.tracking_uri(settings)
    store = EndpointStore(settings.serving_state)
    limits = Limits(alias_check_s=0.2)
    manager = EndpointManager(store, mlflow_loader(uri), limits, mlflow_resolver(uri))
    try:
        with serve_app(create_app(manager, None, workspace_id(settings.home))) as url:
            store.record_server(url)
            yield url
    finally:
        manager.close()


def _ask(session: requests.Session, url: str) -> tuple[int, str]:
    response = session.post(
        f"{url}/serving-endpoints/{FOLLOWER}/invocations",
        json={"dataframe_records": [{"question": QUESTION}]},
        timeout=60,
    )
    return response.status_code, response.json()["predictions"][0]["answer"] if response.ok else ""


@contextlib.contextmanager
def _in_flight(url: str, answers: list[tuple[int, str]]) -> Iterator[None]:
    """Three clients asking QUESTION for the block; each (status, answer) goes on ``answers``."""
    stop = threading.Event()

    def ask() -> None:
        with requests.Session() as session:
            while not stop.wait(0.1):  # paced: the machine's cores go to loading versions
                answers.append(_ask(session, url))

    clients = [threading.Thread(target=ask) for _ in range(3)]
    for client in clients:
        client.start()
    try:
        yield
    finally:
        stop.set()
        for client in clients:
            client.join(60)


def _until(answers: list[tuple[int, str]], answer: str) -> None:
    """Wait until the newest answers in flight are ``answer``."""
    deadline = time.monotonic() + 60
    while [text for _, text in answers[-3:]] != [answer] * 3:
        assert time.monotonic() < deadline, answers[-3:]
        time.sleep(0.05)


def test_promote_and_rollback_switch_an_endpoint_serving_champion_with_requests_in_flight(
    lab: dict[str, Any], serve_app: Serve
) -> None:
    """The loop's end through the CLI, on the workspace's server: `model promote` compares
    (or reuses the comparison of the same versions on the same bench), passes version 2 and
    waits for the endpoint serving ``champion`` to switch under load; `model rollback` switches
    it back. Not one request fails, and the answers are version 1's again."""
    settings, bench = lab["settings"], lab["bench"]
    _champion_is(settings, "1")
    answers: list[tuple[int, str]] = []
    with _workspace_server(settings, serve_app) as url, requests.Session() as session:
        entity = {"entity_name": registry.MODEL_NAME, "entity_version": "champion"}
        body: Any = {"name": FOLLOWER, "config": {"served_entities": [entity]}}
        assert requests.post(f"{url}/api/2.0/serving-endpoints", json=body, timeout=30).ok
        deadline = time.monotonic() + 120
        while (first := _ask(session, url))[0] != 200:  # loading version 1: 503
            assert time.monotonic() < deadline, first
            time.sleep(0.1)
        with _in_flight(url, answers):
            said = _cli(settings, "model", "promote", "2", "--bench", bench, *NO_LATENCY_GATE)
            assert "Recorded as MLflow run" in said  # compared (or the same comparison reused)
            assert "@champion -> version 2 (pinned" in said
            assert f"Endpoint {FOLLOWER} serves version 2 (it follows champion)." in said
            info = _model_info(settings)
            assert info["champion.decision"] == "promoted" and info["champion.comparison_id"]
            second = _ask(session, url)
            assert second[1] != first[1]  # version 2 answers from five circulars
            _until(answers, second[1])

            said = _cli(settings, "model", "rollback")
            assert f"Endpoint {FOLLOWER} serves version 1 (it follows champion)." in said
            assert _ask(session, url) == first  # the previous answer is back
            _until(answers, first[1])
    assert {status for status, _ in answers} == {200}  # not one failed request
    assert {text for _, text in answers} == {first[1], second[1]}
    assert answers[0][1] == first[1] and answers[-1][1] == first[1]


def test_replay_compares_the_answers_of_successful_requests(lab: dict[str, Any]) -> None:
    settings = lab["settings"]
    capture = InferenceCapture(settings.home / "spool", Catalog.from_settings(settings))
    now = int(time.time() * 1000)
    asked = [
        ("What neutrino events did IceCube detect?", 200),  # k=1 lists fewer circulars
        ("What is the redshift of GRB 100728B?", 200),  # the same answer
        ("What is the redshift of GRB 221009A?", 500),  # failed: not replayed
    ]
    for i, (question, status) in enumerate(asked):
        row = dataclasses.replace(
            capture_row(i, now + i),
            request=json.dumps({"dataframe_records": [{"question": question}]}),
            status_code=status,
            endpoint_name=ENDPOINT,
        )
        capture.record(CaptureTarget("sandbox.nasa_gcn_dev.rag_inference_payload"), row)
    capture.close()
    out = _cli(settings, "model", "compare", "2", "1", "--replay", "10", "--endpoint", ENDPOINT,
               "--no-bench", "--json")  # fmt: skip
    found = json.loads(out[out.index("{") :])
    assert found["replayed"] == 2 and found["categories"] == []
    assert [c["question"] for c in found["changed"]] == [asked[0][0]]
    assert found["changed"][0]["answer_a"] != found["changed"][0]["answer_b"]
    table = Catalog.from_settings(settings).sql(
        "SELECT replayed, replay_changed FROM rag_model_comparisons WHERE replayed > 0"
    )
    assert table.to_pylist() == [{"replayed": 2, "replay_changed": 1}]
    text = _cli(settings, "model", "compare", "2", "1", "--replay", "10", "--endpoint", ENDPOINT)
    assert "Replayed 2 request(s): 1 answer(s) changed." in text and "IceCube" in text


def test_nothing_to_compare_on_is_an_error_that_says_what_to_pass(
    lab: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ../shared/bench here
    said = _cli(lab["settings"], "model", "compare", "1", "2", code=1)
    assert "--bench FILE.jsonl or --replay N" in said
    assert "both version 2" in _cli(lab["settings"], "model", "compare", "2", "2", code=1)


def test_the_console_reads_every_champion_decision_and_the_comparison_used(
    lab: dict[str, Any],
) -> None:
    """What the console's Models page lists: every move from ``rag_model_info``'s commits
    (the version tags keep only each version's last decision), refusals from the tags."""
    from gcn_rag.console import comparisons as listed
    from gcn_rag.console import decisions

    settings = lab["settings"]
    catalog = Catalog.from_settings(settings)

    def recorded(accuracy: Paired, a: str, b: str) -> Comparison:
        category = CategoryResult("b.jsonl", "all", 10, accuracy, None)
        latency = Latency(50.0, 60.0, 10)
        found = Comparison(registry.MODEL_NAME, a, b, a, b, ("b.jsonl",), "d", (category,),
                           latency, latency)  # fmt: skip
        return comparisons.record(settings, found)

    _champion_is(settings, "1")
    better = recorded(_acc(0, 3, n=10), "1", "2")
    assert gate.promote(settings, "2", lambda a, b: better).decision == "promoted"
    worse = recorded(_acc(7, 1, n=10), "2", "1")
    assert gate.promote(settings, "1", lambda a, b: worse, force=True).decision == "forced"
    gate.rollback(settings)
    refused = gate.promote(settings, "1", lambda a, b: worse)
    assert refused.decision == "refused"

    history = decisions.ModelInfoHistory(catalog)
    for _ in range(2):  # the second read comes from the commits already read
        moves = [(d.decision, d.previous, d.champion, d.forced) for d in history.decisions()]
        assert moves[:3] == [
            ("rolled back", "1", "2", False),
            ("forced", "2", "1", True),
            ("promoted", "1", "2", False),
        ]
    forced = history.decisions()[1]
    assert forced.comparison_id == worse.comparison_id
    assert forced.reasons and forced.reasons[0].startswith("b.jsonl all: accuracy 0.9 -> 0.3")
    tags = decisions.from_tags(registry.versions(settings))
    every = decisions.merged(history.decisions(), tags)
    assert ("refused", "2", "1") in [(d.decision, d.champion, d.candidate) for d in every]
    assert len(every) == len({(d.decided_at, d.decision, d.candidate) for d in every})
    verdicts = decisions.verdicts(every)
    assert verdicts[better.comparison_id] == "promoted"
    assert verdicts[worse.comparison_id] == "refused"  # the newest decision taken on it
    rows = listed.recent(catalog, verdicts, limit=2)
    assert [r.comparison_id for r in rows] == [worse.comparison_id, better.comparison_id]
    assert rows[0].worst == "-60.0 points in b.jsonl/all" and rows[1].worst == "none"
    assert (rows[0].accuracy_a, rows[0].accuracy_b, rows[0].verdict) == (
        "0.900",
        "0.300",
        "refused",
    )


# --- the gate's rule, on comparisons as the runs above record them ------------------------


def _comparison(accuracy: Paired, p95_b: float = 100.0) -> Comparison:
    category = CategoryResult("dev.jsonl", "redshift", 94, accuracy, None)
    return Comparison(
        "m", "1", "2", "champion", "challenger", ("dev.jsonl",), "d", (category,),
        Latency(50.0, 100.0, 94), Latency(50.0, p95_b, 94),
    )  # fmt: skip


def _acc(a_only: int, b_only: int, n: int = 94) -> Paired:
    a = 0.9
    return Paired(a, round(a - (a_only - b_only) / n, 3), a_only, b_only,
                  exact_mcnemar(a_only, b_only))  # fmt: skip


def test_exact_mcnemar_is_the_two_sided_binomial_test() -> None:
    from scipy.stats import binomtest  # type: ignore[import-untyped]

    for a_only, b_only in [(0, 0), (4, 0), (6, 0), (7, 1), (3, 0), (5, 5), (12, 30)]:
        n = a_only + b_only
        expected = binomtest(a_only, n, 0.5).pvalue if n else 1.0
        assert exact_mcnemar(a_only, b_only) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("accuracy", "refused"),
    [
        (_acc(3, 0), False),  # 3.2 points, p = 0.25: within tolerance, not significant
        (_acc(7, 1), True),  # 6.4 points > 5 (p = 0.07)
        (_acc(14, 4, n=400), True),  # 2.5 points only, but p = 0.03 < 0.05
        (_acc(1, 5), False),  # B gains
        (_acc(4, 0, n=4), True),  # a small category: p = 0.125 can never be < 0.05
    ],
)
def test_the_gate_refuses_a_significant_loss_or_one_past_the_tolerance(
    accuracy: Paired, refused: bool
) -> None:
    assert bool(gate.reasons(_comparison(accuracy), gate.Policy())) is refused


def test_the_gate_refuses_latency_growth_past_the_share() -> None:
    same = _acc(0, 0)
    assert gate.reasons(_comparison(same, p95_b=119.0), gate.Policy()) == []
    (why,) = gate.reasons(_comparison(same, p95_b=125.0), gate.Policy())
    assert why == "latency p95 100.0 ms -> 125.0 ms (+25%, more than 20%)"
    assert gate.reasons(_comparison(same, p95_b=125.0), gate.Policy(max_latency_growth=0.3)) == []
    few = dataclasses.replace(_comparison(same, p95_b=200.0), latency_b=Latency(50.0, 200.0, 19))
    assert gate.reasons(few, gate.Policy()) == []  # 19 calls: a p95 too noisy to judge
