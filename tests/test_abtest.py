"""A/B on live traffic: the intervals on cases whose answer is known, the arms read from a real
Delta payload table (shadow rows apart, feedback joined), `monitor --ab` and `monitor --json`,
and a real traffic split on a real server, shown by the CLI and on the console's endpoint page.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import requests
from typer.testing import CliRunner

from consoles import ENDPOINT, Console, get_page, signed_in
from gcn_rag.cli import app
from gcn_rag.errors import BadInputError
from gcn_rag.model import registry
from gcn_rag.ops.abtest import BETTER, NO_DATA, NO_FEEDBACK, SAME, WORSE, ABTest, ab_test
from gcn_rag.serving.capture import CaptureRow, CaptureTarget, InferenceCapture
from gcn_rag.stats import bootstrap_difference, newcombe, wilson
from gcn_rag.tables import Catalog

PAYLOAD = "sandbox.nasa_gcn_dev.rag_inference_payload"
ABSTAINS = "I don't have sufficient information about that in the GCN circulars."
CITED = json.dumps([{"circular_id": 1, "quote": "z = 1.2"}])

# --- the statistics, by hand and against published values -------------------------------------


def test_wilson_interval_by_hand() -> None:
    # 10 of 100, z = 1.96: centre (0.1 + z²/200) / (1 + z²/100), half-width
    # z / (1 + z²/100) * sqrt(0.1 * 0.9 / 100 + z² / 40000)
    z = 1.959963984540054
    centre = (0.1 + z * z / 200) / (1 + z * z / 100)
    half = z / (1 + z * z / 100) * math.sqrt(0.0009 + z * z / 40_000)
    assert wilson(10, 100) == pytest.approx((centre - half, centre + half))
    assert wilson(10, 100) == pytest.approx((0.0552, 0.1744), abs=1e-4)
    assert wilson(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)  # Newcombe 1998
    low, high = wilson(0, 10)
    assert low == 0 and high == pytest.approx(0.2775, abs=1e-4)  # never below 0
    assert all(math.isnan(v) for v in wilson(0, 0))
    with pytest.raises(BadInputError):
        wilson(11, 10)


def test_newcombe_difference_matches_the_published_examples() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, table II, method 10
    assert newcombe(56, 70, 48, 80) == pytest.approx((0.2, 0.0524, 0.3339), abs=1e-4)
    assert newcombe(9, 10, 3, 10) == pytest.approx((0.6, 0.1705, 0.8090), abs=1e-4)
    assert newcombe(5, 56, 0, 29) == pytest.approx((0.0893, -0.0381, 0.1926), abs=1e-4)


def test_bootstrap_is_seeded_and_finds_a_shift_only_when_there_is_one() -> None:
    base = [100.0 + (i * 37) % 50 for i in range(400)]
    slower = [v + 20 for v in base]
    (p50, p95) = bootstrap_difference(slower, base, [0.5, 0.95], seed=3)
    assert p50[0] == pytest.approx(20.0) and p50[1] > 0 and p95[1] > 0
    assert bootstrap_difference(slower, base, [0.5], seed=3) == [p50]  # same seed, same answer
    ((d, low, high),) = bootstrap_difference(base, list(reversed(base)), [0.5])
    assert d == 0 and low <= 0 <= high
    assert all(math.isnan(v) for v in bootstrap_difference([1.0], base, [0.5])[0])


# --- arms from a real payload table -----------------------------------------------------------


def _response(k: int, *, uncited_every: int = 0) -> str:
    """The k-th answer of an arm: every 10th abstains; every ``uncited_every``-th cites
    nothing."""
    abstains = k % 10 == 0
    cited = not (uncited_every and k % uncited_every == 1)
    answer = ABSTAINS if abstains else "The redshift is z = 1.2 (GCN 1)."
    prediction = {
        "answer": answer,
        "sources": "[]",
        "num_docs": 1,
        "citations": CITED if cited and not abstains else "[]",
        "generator_fallback": "",
        "measurements": "[]",
    }
    return json.dumps({"predictions": [prediction]})


def _row(
    rid: str,
    entity: str,
    at_ms: int,
    *,
    status: int,
    ms: int,
    response: str,
    codes: tuple[str, ...] = (),
) -> CaptureRow:
    return CaptureRow(
        databricks_request_id=rid,
        client_request_id=None,
        timestamp_ms=at_ms,
        status_code=status,
        execution_duration_ms=ms,
        request='{"inputs": ["q"]}',
        response=response if status == 200 else '{"error_code": "X", "message": "m"}',
        served_entity_id=entity,
        endpoint_name="e",
        requester="t",
        logging_error_codes=codes,
    )


def _write_feedback(
    catalog: Catalog, rows: list[tuple[str, str | None, int]], endpoint: str = "e"
) -> None:
    """The ``rag_feedback`` table, with exactly the columns its contract names."""
    utc = pa.timestamp("ms", tz="UTC")
    schema = pa.schema(
        [
            ("feedback_id", pa.string()),
            ("databricks_request_id", pa.string()),
            ("endpoint_name", pa.string()),
            ("rating", pa.string()),
            ("comment", pa.string()),
            ("requester", pa.string()),
            ("timestamp", utc),
            ("timestamp_ms", pa.int64()),
        ]
    )
    columns: dict[str, list[Any]] = {name: [] for name in schema.names}
    for n, (rid, rating, at) in enumerate(rows):
        values = [f"{endpoint}-f{n}", rid, endpoint, rating, "", "t", at, at]
        for name, value in zip(schema.names, values, strict=True):
            columns[name].append(value)
    catalog.append("rag_feedback", pa.table(columns, schema=schema))


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace whose payload table holds a known A/B: a 500 requests with 2% errors,
    b 500 with 20% errors, slower and less cited, and 100 shadow requests answered by b
    (very slow: they would move b's latency if they were mixed in)."""
    home = tmp_path_factory.mktemp("abtest")
    capture = InferenceCapture(home / "spool", Catalog(home / "warehouse"))
    target = CaptureTarget(PAYLOAD)
    now = int(time.time() * 1000)
    for i in range(500):
        at = now - 60_000 + i
        a = _row(f"a{i}", "a", at, status=500 if i % 50 == 0 else 200, ms=100 + i % 20,
                 response=_response(i - i // 50))  # fmt: skip
        b = _row(f"b{i}", "b", at, status=500 if i % 5 == 0 else 200, ms=130 + i % 20,
                 response=_response(i - i // 5 - 1, uncited_every=4))  # fmt: skip
        capture.record(target, a)
        capture.record(target, b)
    for i in range(100):
        codes = ("SHADOW", f"SHADOW_OF:a{i}")
        shadow = _row(f"s{i}", "b", now - 1000 + i, status=200, ms=5000, response=_response(i + 1),
                      codes=codes)  # fmt: skip
        capture.record(target, shadow)
    guarded = ("GUARDRAIL_INPUT_MASK:pii.email",)
    capture.record(
        target, _row("g", "a", now, status=200, ms=100, response=_response(1), codes=guarded)
    )
    capture.close()  # flushed into Delta
    return home


@pytest.fixture(scope="module")
def catalog(home: Path) -> Catalog:
    return Catalog(home / "warehouse")


def _by(test: ABTest) -> dict[tuple[str, str], str]:
    return {(d.arm, d.metric): d.verdict for d in test.differences}


def test_arms_and_verdicts_from_the_table(catalog: Catalog) -> None:
    test = ab_test(catalog, PAYLOAD, "e")
    arms = {arm.label: arm for arm in test.arms}
    assert set(arms) == {"a", "b", "b (shadow)"} and test.reference == "a"  # a: 501 requests
    a, b, shadow = arms["a"], arms["b"], arms["b (shadow)"]
    assert (a.requests, a.errors.hits, b.requests, b.errors.hits) == (501, 10, 500, 100)
    assert max(b.latency_ms) < 200 and shadow.latency_ms == (5000.0,) * 100  # never mixed
    assert (b.abstentions.hits, b.abstentions.total) == (40, 400)  # every 10th answer abstains
    assert (b.uncited.hits, b.uncited.total, a.uncited.hits) == (100, 360, 0)  # of answers
    assert not test.feedback and a.feedback.total == 0
    verdicts = _by(test)
    assert verdicts["b", "error rate"] == WORSE
    assert verdicts["b", "latency p50 ms"] == WORSE and verdicts["b", "latency p95 ms"] == WORSE
    assert verdicts["b", "abstention rate"] == SAME  # 10% against 10%
    assert verdicts["b", "generator fallback rate"] == SAME
    assert verdicts["b", "no-citation rate"] == WORSE
    assert verdicts["b", "positive feedback"] == NO_DATA
    # 0 errors of 100 against 10 of 501: too few requests to call it better
    assert verdicts["b (shadow)", "error rate"] == SAME
    assert verdicts["b (shadow)", "latency p50 ms"] == WORSE
    rows = {row["metric"]: row for row in test.rows()}
    assert rows["positive feedback"]["b vs a"] == NO_FEEDBACK
    assert rows["error rate"]["b vs a"].startswith("+18.0 pp [+")
    assert rows["error rate"]["b vs a"].endswith("] worse")
    assert rows["error rate"]["a (reference)"].startswith("2.0% [")


def test_feedback_joins_on_the_request_and_the_newest_rating_counts(
    tmp_path: Path, home: Path, catalog: Catalog
) -> None:
    import shutil

    copy = tmp_path / "warehouse"
    shutil.copytree(home / "warehouse", copy)
    rated = Catalog(copy)
    now = int(time.time() * 1000)
    rows: list[tuple[str, str | None, int]] = [(f"a{i}", "positive", now) for i in range(1, 41)]
    rows += [(f"b{i}", "positive" if i % 5 == 0 else "negative", now) for i in range(1, 41)]
    rows += [("a1", "negative", now - 5000), ("a2", None, now + 5), ("s1", "negative", now)]
    _write_feedback(rated, rows)
    test = ab_test(rated, PAYLOAD, "e")
    arms = {arm.label: arm for arm in test.arms}
    assert test.feedback and (arms["a"].feedback.hits, arms["a"].feedback.total) == (40, 40)
    assert (arms["b"].feedback.hits, arms["b"].feedback.total) == (8, 40)
    assert arms["b (shadow)"].feedback.total == 0  # a shadow answer is never seen, never rated
    assert _by(test)["b", "positive feedback"] == WORSE
    rows_by = {row["metric"]: row for row in test.rows()}
    assert rows_by["positive feedback"]["b (shadow)"] == "no ratings"
    assert _by(ab_test(rated, PAYLOAD, "e", reference="b"))["a", "positive feedback"] == BETTER


def test_equal_rates_are_no_measurable_difference_and_the_reference_can_be_named(
    catalog: Catalog,
) -> None:
    test = ab_test(catalog, PAYLOAD, "e", reference="b")
    assert test.reference == "b"
    verdicts = _by(test)
    assert verdicts["a", "error rate"] == BETTER and verdicts["a", "abstention rate"] == SAME
    shadow = ab_test(catalog, PAYLOAD, "e", reference="b (shadow)")
    assert shadow.reference == "b (shadow)" and _by(shadow)["b", "latency p50 ms"] == BETTER
    with pytest.raises(BadInputError, match="the arms are: a, b, b \\(shadow\\)"):
        ab_test(catalog, PAYLOAD, "e", reference="c")
    assert ab_test(catalog, PAYLOAD, "nobody").arms == ()


def _cli(home: Path, *args: str) -> Any:
    result = CliRunner().invoke(app, [*args, "--home", str(home)])
    assert result.exit_code == 0, result.output
    return result


def test_monitor_ab_prints_the_table_and_json_lines(home: Path) -> None:
    table = _cli(home, "monitor", "e", "--ab").stdout
    head, *rows = [line.split("\t") for line in table.splitlines()]  # piped: TSV
    assert head == ["metric", "a (reference)", "b", "b (shadow)", "b vs a", "b (shadow) vs a"]
    errors = next(row for row in rows if row[0] == "error rate")
    assert errors[2].startswith("20.0% [") and errors[4].endswith("worse")
    lines = [
        json.loads(line)
        for line in _cli(home, "monitor", "e", "--ab", "--json").stdout.splitlines()
    ]
    arms = {line["label"]: line for line in lines if line["kind"] == "arm"}
    assert arms["a"]["is_reference"] and arms["b"]["errors"]["hits"] == 100
    assert arms["b (shadow)"]["shadow"] and arms["b (shadow)"]["latency_ms"]["p50"] == 5000
    worse = {
        (d["arm"], d["metric"])
        for d in lines
        if d["kind"] == "difference" and d["verdict"] == WORSE
    }
    assert ("b", "error rate") in worse and ("b", "no-citation rate") in worse
    named = _cli(home, "monitor", "e", "--ab", "--reference", "b", "--json").stdout.splitlines()
    assert [a["label"] for a in map(json.loads, named) if a.get("is_reference")] == ["b"]
    unnamed = CliRunner().invoke(app, ["monitor", "--ab", "--home", str(home)])
    assert unnamed.exit_code == 1 and "gcn-rag monitor ENDPOINT --ab" in unnamed.output


def test_monitor_json_has_the_guardrail_decisions_beside_the_buckets(home: Path) -> None:
    lines = [json.loads(line) for line in _cli(home, "monitor", "e", "--json").stdout.splitlines()]
    buckets = [line for line in lines if line["kind"] == "bucket"]
    assert sum(b["requests"] for b in buckets) == 1101 and "latency_p95" in buckets[0]
    decisions = [line for line in lines if line["kind"] == "guardrail_decision"]
    assert decisions == [
        {"kind": "guardrail_decision", "stage": "input", "rule": "pii.email", "behavior": "MASK",
         "requests": 1}
    ]  # fmt: skip


# --- a real traffic split on a real server, through the CLI and the console -------------------


@pytest.fixture(scope="module")
def split(console: Console, champion: dict[str, Any]) -> Iterator[str]:
    """Endpoint ``ab``: two served entities of the champion, 50/50, captured."""
    entity = {"entity_name": registry.MODEL_NAME, "entity_version": champion["version"]}
    config = {
        "served_entities": [{**entity, "name": "blue"}, {**entity, "name": "green"}],
        "traffic_config": {
            "routes": [
                {"served_model_name": "blue", "traffic_percentage": 50},
                {"served_model_name": "green", "traffic_percentage": 50},
            ]
        },
        "auto_capture_config": {
            "catalog_name": "sandbox",
            "schema_name": "nasa_gcn_dev",
            "table_name_prefix": "ab_test",
        },
    }
    console.manager.create({"name": "ab", "config": config})
    deadline = time.monotonic() + 120
    while console.manager.get("ab")["state"]["ready"] != "READY":
        assert time.monotonic() < deadline, console.manager.logs("ab")
        time.sleep(0.05)
    yield "ab"
    console.manager.delete("ab")


def test_a_real_split_side_by_side_in_the_cli_and_on_the_endpoint_page(
    console: Console, split: str
) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {console.tokens['CAN_QUERY']}"
    served: dict[str, list[str]] = {"blue": [], "green": []}
    for n in range(30):
        body = {"inputs": [f"What is the redshift of GRB 221009A? ({n})"]}
        answer = session.post(f"{console.url}/serving-endpoints/{split}/invocations", json=body)
        assert answer.status_code == 200, answer.text
        served[answer.headers["served-model-name"]].append(answer.headers["x-request-id"])
    capture = console.manager.capture
    assert capture is not None
    capture.flush()  # every answered request was spooled before its response
    found = _cli(console.home, "monitor", split, "--ab", "--table", "ab_test_payload", "--json")
    lines = found.stdout.splitlines()
    arms = {a["label"]: a for a in map(json.loads, lines) if a["kind"] == "arm"}
    assert {label: arm["requests"] for label, arm in arms.items()} == {
        label: len(ids) for label, ids in served.items() if ids
    }
    assert all(arm["errors"]["hits"] == 0 for arm in arms.values())
    table = Catalog(console.home / "warehouse")
    rows = table.read("ab_test_payload").to_pylist()
    blue = [float(r["execution_duration_ms"]) for r in rows if r["served_entity_id"] == "blue"]
    assert arms["blue"]["latency_ms"]["n"] == len(blue) == len(served["blue"])

    # a shadow copy of three of blue's requests, answered by green, and feedback on blue's
    target = console.manager.capture_target(split)
    assert target is not None
    for n, rid in enumerate(served["blue"][:3]):
        shadow = _row(f"shadow-{n}", "green", int(time.time() * 1000), status=200, ms=9000,
                      response=_response(1), codes=("SHADOW", f"SHADOW_OF:{rid}"))  # fmt: skip
        capture.record(target, dataclasses.replace(shadow, endpoint_name=split))
    capture.flush()
    now = int(time.time() * 1000)
    _write_feedback(table, [(rid, "positive", now) for rid in served["blue"][:2]], split)
    viewer = signed_in(console, "CAN_VIEW")
    page = get_page(viewer, console, f"/endpoints/{split}?window=15m")
    assert page.status_code == 200, page.text
    assert 'id="ab"' in page.text and "green (shadow)" in page.text
    head = page.text[page.text.index('id="ab"') :]
    assert "blue (reference)" in head or "green (reference)" in head
    assert "100.0% [" in head and "(2/2)" in head  # blue's two ratings, both positive
    assert "no measurable difference" in head or "worse" in head
    single = get_page(viewer, console, f"/endpoints/{ENDPOINT}")
    assert single.status_code == 200 and 'id="ab"' not in single.text  # one entity: no A/B
    mirrored = console.manager.capture_target(ENDPOINT)
    assert mirrored is not None
    shadow = _row("shadow-x", "other", int(time.time() * 1000), status=200, ms=10,
                  response=_response(1), codes=("SHADOW", "SHADOW_OF:x"))  # fmt: skip
    capture.record(mirrored, dataclasses.replace(shadow, endpoint_name=ENDPOINT))
    capture.flush()
    single = get_page(viewer, console, f"/endpoints/{ENDPOINT}")
    assert 'id="ab"' in single.text and "other (shadow)" in single.text  # shadow rows: A/B
