"""The question-set scorer: same numbers as the benchmark's score.py, history in Delta."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gcn_rag.answer.evaluation import (
    BenchItem,
    CategoryScore,
    is_abstention,
    load_items,
    score,
    scores_table,
    value_ok,
    write_history,
)
from gcn_rag.answer.extraction import first_value
from gcn_rag.errors import BadInputError
from gcn_rag.tables import Catalog

BENCH = Path(__file__).parents[2] / "shared" / "bench"
ABSTAIN = "I don't have sufficient information in the available GCN Circulars to answer this."


def item(
    category: str = "redshift",
    answers: tuple[str, ...] = ("0.151",),
    relevant: tuple[float, ...] = (32648, 18453.5),
    id: str = "q",
) -> BenchItem:
    return BenchItem(id, category, "What is the redshift?", answers, relevant, "GRB 221009A")


# --- cross-check against the benchmark's own scorer ------------------------------------------


@pytest.fixture(scope="module")
def bench() -> Path:
    if not (BENCH / "score.py").is_file() or not (BENCH / "dev.jsonl").is_file():
        pytest.skip(f"the benchmark (score.py, dev.jsonl) is not at {BENCH}")
    return BENCH


def _tolerance(it: BenchItem, accepted: float) -> float:
    return 0.10 * accepted if it.category == "t90" else max(0.01, 0.01 * accepted)


def _answer(it: BenchItem, i: int) -> str | None:
    """A deterministic mix: right, wrong, abstaining, noise-only, edge-of-tolerance, none."""
    name = it.event_id or "GRB 221009A"
    accepted = float(it.answers[0])
    unit = " s" if it.category == "t90" else ""
    match i % 8:
        case 0:
            return f"The value for {name} is z = {it.answers[0]}{unit} (GCN 12345)."
        case 1:
            return f"The value for {name} is {accepted * 1.5 + 0.3:.3f}{unit}."
        case 2:
            return ABSTAIN
        case 3:
            return f"{name} was seen 2022-10-09 13:17 UT in 15-350 keV (GCN 32648, 32686)."
        case 4:
            return f"{name} (15-350 keV, 2022-10-09 13:17 UT, Circular 32648) [1]: {accepted}{unit}"
        case 5:
            return f"z~{accepted + 0.9 * _tolerance(it, accepted):.4f} for {name}"
        case 6:
            return f"{name}: {accepted + 1.1 * _tolerance(it, accepted):.4f}{unit}"
    return None  # a prediction without an answer


def _citations(it: BenchItem, i: int) -> list[Any]:
    """The first relevant circular at rank 1, 3, 7, 12 or nowhere, among non-relevant fillers."""
    rank = (1, 3, 7, 12, None)[i % 5]
    cited: list[Any] = [{"circular_id": 900000 + j, "score": 1.0 / (j + 1)} for j in range(12)]
    if i % 3 == 1:
        cited[1] = {"score": 0.5}  # no circular_id: still takes its rank
    if rank is not None and it.relevant_circulars:
        relevant = it.relevant_circulars[0]
        cited[rank - 1] = {"circular_id": float(relevant) if i % 2 else int(relevant)}
    if i % 3 == 2:
        cited.insert(0, None)  # not an object: skipped before ranking
    return cited


def _unanswerable(i: int) -> dict[str, Any]:
    variants: list[dict[str, Any]] = [
        {"answer": ABSTAIN, "sources": []},
        {"answer": ABSTAIN, "sources": ["https://gcn.nasa.gov/circulars/32648"]},
        {"answer": ABSTAIN, "sources": "[]"},
        {"answer": "The redshift is z = 1.2 (GCN 1234).", "sources": []},
        {"answer": "There is no information about it.", "sources": "not json"},
        {"answer": "There is no information on this burst.", "sources": None},
    ]
    return variants[i % 6]


def _predictions(items: list[BenchItem], skip_every: int | None) -> dict[str, dict[str, Any]]:
    predictions: dict[str, dict[str, Any]] = {}
    for i, it in enumerate(items):
        if skip_every and i % skip_every == 3:
            continue
        if it.category == "unanswerable":
            prediction = {"id": it.id, **_unanswerable(i), "citations": _citations(it, i)}
        else:
            prediction = {"id": it.id, "sources": [], "citations": _citations(it, i)}
            answer = _answer(it, i)
            if answer is not None:
                prediction["answer"] = answer
        predictions[it.id] = prediction
    return predictions


def _as_score_py(scores: dict[str, CategoryScore]) -> dict[str, dict[str, Any]]:
    rows = scores_table(scores)
    for row in rows:
        row.pop("abstained")  # score.py prints it, but leaves it out of --json
    return {r.pop("category"): {k: v for k, v in r.items() if v is not None} for r in rows}


def _broad_answer(it: BenchItem, i: int) -> str | None:
    """Values as circulars and answerers write them: powers of ten, bands, units, off by some."""
    name = it.event_id or "GRB 221009A"
    accepted = float(it.answers[0]) if it.answers else 1.0
    mantissa, exponent = f"{accepted:.3e}".split("e")
    off = accepted * (1.05 if i % 4 else 1.2) if it.tol and it.tol[0] == "rel" else accepted + 0.4
    match i % 9:
        case 0:
            return f"The value for {name} is {it.answers[0] if it.answers else 1} (GCN 12345)."
        case 1:
            return f"{name}: ({mantissa} +/- 0.2)E{int(exponent)} in 10-1000 keV (GCN 4; 5)"
        case 2:
            return (
                f"{name} in the 10 keV - 1 MeV band: {mantissa} \u00d7 10\u207b{abs(int(exponent))}"
            )
        case 3:
            return ABSTAIN
        case 4:
            return f"{name} at 13:17 UT on 2022-10-09: {off:.6g} [1]"
        case 5:
            return f"{mantissa} (+/-0.4) x 10^{int(exponent)} for {name}"
        case 6:
            return f"{name} peaks at {accepted:.6g} keV from 8 keV to 40 MeV"
        case 7:
            return f"{off:.4e} erg/cm^2"
    return None


def test_broad_format_scores_match_the_benchmark_script(bench: Path, tmp_path: Path) -> None:
    """The broad set: tolerances from `tol`, fluences read with their power of ten."""
    if not (bench / "dev_broad.jsonl").is_file():
        pytest.skip("no dev_broad.jsonl beside score.py")
    items = load_items(bench / "dev_broad.jsonl")
    predictions: dict[str, dict[str, Any]] = {}
    for i, it in enumerate(items):
        if it.category == "unanswerable":
            predictions[it.id] = {"id": it.id, **_unanswerable(i), "citations": _citations(it, i)}
            continue
        prediction: dict[str, Any] = {"id": it.id, "sources": [], "citations": _citations(it, i)}
        answer = _broad_answer(it, i)
        if answer is not None:
            prediction["answer"] = answer
        predictions[it.id] = prediction
    predictions_file = tmp_path / "predictions.jsonl"
    predictions_file.write_text("".join(json.dumps(p) + "\n" for p in predictions.values()))
    scorer = [sys.executable, str(bench / "score.py"), str(bench / "dev_broad.jsonl")]
    done = subprocess.run(
        [*scorer, str(predictions_file), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    ours = score(items, predictions)
    assert _as_score_py(ours) == json.loads(done.stdout)
    for category in ("fluence", "epeak", "nu_ra", "all"):
        assert 0 < ours[category].accuracy < 1, category
    assert 0 < (ours["all"].abstained or 0) < 1


@pytest.mark.parametrize("skip_every", [None, 7], ids=["all-answered", "some-missing"])
def test_scores_match_the_benchmark_script(
    bench: Path, tmp_path: Path, skip_every: int | None
) -> None:
    items = load_items(bench / "dev.jsonl")
    assert len(items) == 141
    predictions = _predictions(items, skip_every)
    predictions_file = tmp_path / "predictions.jsonl"
    predictions_file.write_text("".join(json.dumps(p) + "\n" for p in predictions.values()))
    command = [sys.executable, str(bench / "score.py"), str(bench / "dev.jsonl")]
    done = subprocess.run(
        [*command, str(predictions_file), "--json"], capture_output=True, text=True, check=True
    )
    expected = json.loads(done.stdout)

    ours = score(items, predictions)

    assert list(ours) == ["paraphrase", "redshift", "t90", "unanswerable", "all"]
    assert _as_score_py(ours) == expected
    # The mix must exercise every metric, or the comparison proves little.
    for category in ("redshift", "t90", "paraphrase", "unanswerable", "all"):
        assert 0 < ours[category].accuracy < 1, category
    assert 0 < (ours["all"].mrr_at_10 or 0) < (ours["all"].recall_at_5 or 0) < 1
    assert (ours["all"].answered < 1) == (skip_every is not None)


# --- first_value -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "value"),
    [
        ("The redshift of GRB 221009A is z = 0.151 (GCN 32648, GCN 32686).", 0.151),
        ("GCN 32648, 32686 and 32694 agree: z = 0.151", 0.151),
        ("GRB221009A, GRB 090516 and S230518h: z=1.2", 1.2),
        ("EP240315a, IceCube-230518A, FRB 20200120E, SN 2022xyz, AT2022cmc: 4.859", 4.859),
        ("Circular 123 and circulars 456 & 789: 2.5", 2.5),
        ("GCN Circular no. 32648 gives z=1.2", 1.2),
        ("GCN 18453.5 gives z = 0.3", 0.3),  # the ".5" left behind is not a number
        ("On 2022-10-09 13:17:05 UT the burst had z = 0.151", 0.151),
        ("Triggered 13:17:05.3 UTC; T90 = 33.3 s", 33.3),
        ("[1] [12] z = 0.3", 0.3),
        ("In the 15-350 keV band and 0.3 - 10 keV, T90 = 12.3 s", 12.3),
        ("The T90 is 33.3 s", 33.3),  # "T90" is a word, not a number
        ("T90 = -3.5 s", -3.5),
        ("z~0.151", 0.151),
        ("z=+2.1", 2.1),
        ("Swift-BAT T90 of GRB 050401: 33.3 +/- 2.0 s", 33.3),
        ("no numbers here", None),
        ("GRB 221009A (GCN 32648)", None),
        # Quirks of the benchmark's rules, kept on purpose (answers must avoid them):
        ("T90 measured at 12.3 s", 12.3),  # event prefixes are case-sensitive: "at" is no AT
        ("Detected at 13:17 UT, z = 2.3", 2.3),  # ... so the time goes whole
        ("According to GCN 32648, 0.151 is z", None),  # the reference list swallows "0"
        ("GCN Circ. 32648 gives z = 0.15", 0.15),  # "Circ." is a reference too
        ("observed 2022 Oct 9, z = 1.2", 2022.0),  # only ISO dates are dates
        ("In the 15\u2013350 keV band z = 1.2", 1.2),  # an en dash makes a band too
        ("z = .5", None),  # a leading decimal point hides the number
        ("Swift J1644+57 is at z = 0.35", 57.0),
    ],
)
def test_first_value(answer: str, value: float | None) -> None:
    assert first_value(answer) == value


# --- tolerances ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("category", "accepted", "value", "ok"),
    [
        ("redshift", "0.5", 0.509, True),  # absolute floor 0.01 below z = 1
        ("redshift", "0.5", 0.491, True),
        ("redshift", "0.5", 0.511, False),
        ("redshift", "0.151", 0.161, False),  # a decimal edge is a hair outside in floats
        ("redshift", "3.0", 3.029, True),  # 1% above z = 1
        ("redshift", "3.0", 3.031, False),
        ("paraphrase", "3.0", 3.029, True),  # every category but t90 uses the redshift rule
        ("luminosity", "3.0", 3.031, False),
        ("t90", "100", 110.0, True),  # 10%, edges included
        ("t90", "100", 90.0, True),
        ("t90", "100", 110.01, False),
        ("t90", "0.3", 0.32, True),
        ("t90", "0.3", 0.34, False),  # no absolute floor for durations
        ("redshift", "0.3", 0.3095, True),
    ],
)
def test_tolerances_at_their_edges(category: str, accepted: str, value: float, ok: bool) -> None:
    assert value_ok(item(category, answers=(accepted,)), value) is ok


def test_any_accepted_value_counts() -> None:
    both = item(answers=("4.7", "4.6497"))
    assert value_ok(both, 4.62) and value_ok(both, 4.74)  # one within each
    assert not value_ok(both, 4.55)
    assert not value_ok(both, None)
    assert not value_ok(item(answers=()), 0.151)


# --- abstention --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "abstains"),
    [
        (ABSTAIN, True),
        ("I do not have enough information to answer.", True),
        ("I dont have sufficient information.", True),
        ("There is NO INFORMATION ABOUT GRB 130229Z in the archive.", True),
        ("This burst is not mentioned in the circulars.", True),
        ("The redshift is not found in the available GCN Circulars.", True),
        ("I have insufficient information.", False),
        ("The redshift is unknown.", False),
        ("I don't know.", False),
        ("", False),
    ],
)
def test_is_abstention(answer: str, abstains: bool) -> None:
    assert is_abstention(answer) is abstains


# --- score -------------------------------------------------------------------------------------


def test_circular_ids_match_as_numbers() -> None:
    items = [item(id=f"q{i}") for i in range(5)]
    cited = ["18453.5", 18453.5, 32648, "32648", 32648.0]
    predictions = {
        f"q{i}": {"answer": "z = 0.151", "citations": [{"circular_id": c}]}
        for i, c in enumerate(cited)
    }
    assert score(items, predictions)["all"] == CategoryScore(5, 1.0, 1.0, 1.0, 1.0, 0.0)
    not_relevant = {"q0": {"citations": [{"circular_id": "18453"}, {"circular_id": 18448.5}]}}
    assert score(items[:1], not_relevant)["all"].mrr_at_10 == 0.0


def test_ranks_beyond_five_and_ten() -> None:
    def at(rank: int) -> dict[str, Any]:
        fillers = [{"circular_id": 1} for _ in range(rank - 1)]
        return {"answer": "", "citations": [*fillers, {"circular_id": 32648}]}

    items = [item(id="six"), item(id="eleven")]
    result = score(items, {"six": at(6), "eleven": at(11)})["all"]
    assert (result.recall_at_5, result.mrr_at_10) == (0.0, round((1 / 6) / 2, 3))


def test_categories_are_sorted_with_all_last() -> None:
    items = [
        item("unanswerable", answers=(), relevant=(), id="u"),
        item("luminosity", answers=("3.0",), id="l"),
        item("redshift", id="r"),
    ]
    predictions: dict[str, dict[str, Any]] = {
        "u": {"answer": ABSTAIN, "sources": "[]"},
        "l": {"answer": "3.02", "citations": [{"circular_id": 32648}]},
    }
    scores = score(items, predictions)
    assert list(scores) == ["luminosity", "redshift", "unanswerable", "all"]
    assert scores["unanswerable"] == CategoryScore(1, 1.0, 1.0, None, None)
    assert scores["redshift"] == CategoryScore(1, 0.0, 0.0, 0.0, 0.0, 0.0)
    assert scores["all"] == CategoryScore(
        3, 0.667, 0.667, 0.5, 0.5, 0.0
    )  # unanswerable: not ranked
    assert scores_table(scores)[2] == {
        "category": "unanswerable",
        "n": 1,
        "accuracy": 1.0,
        "answered": 1.0,
        "recall@5": None,
        "mrr@10": None,
        "abstained": None,
    }
    assert score([], predictions) == {}


@pytest.mark.parametrize(
    ("sources", "correct"),
    [
        ([], True),
        (None, True),
        ("", True),
        ("[]", True),
        (["x"], False),
        ('["x"]', False),
        ("not json", False),
    ],
)
def test_unanswerable_needs_empty_sources(sources: Any, correct: bool) -> None:
    it = item("unanswerable", answers=(), relevant=())
    assert score([it], {"q": {"answer": ABSTAIN, "sources": sources}})["all"].accuracy == correct


# --- load_items ------------------------------------------------------------------------------


def write_lines(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "questions.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_load_items_reads_what_it_needs(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path,
        json.dumps(
            {
                "id": "a",
                "category": "luminosity",
                "question": "Q?",
                "answers": ["1.5", 2],
                "relevant_circulars": [18453.5, "32648"],
                "name_aliases": ["GRB 1"],
                "extra": {"ignored": True},
            }
        ),
        "",
        json.dumps({"id": "b", "category": "unanswerable", "question": "Q?"}),
    )
    assert load_items(path) == [
        BenchItem("a", "luminosity", "Q?", ("1.5", "2"), (18453.5, 32648.0), None, ("GRB 1",)),
        BenchItem("b", "unanswerable", "Q?", (), ()),
    ]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"id": "a", "category": "t90", "question": "Q"}', "{not json"], r"line 2: not valid"),
        (['{"id": "a", "category": "t90"}'], r"line 1: missing or empty question"),
        (['{"question": "Q", "category": ""}'], r"line 1: missing or empty id, category"),
        (["[1, 2]"], r"line 1: expected a JSON object"),
        (['{"id": "a", "category": "all", "question": "Q"}'], r"reserved"),
        (['{"id": "a", "category": "t90", "question": "Q", "answers": ["long"]}'], "not a number"),
        (['{"id": "a", "category": "t90", "question": "Q", "answers": "1"}'], "must be a JSON"),
        (['{"id": "a", "category": "t90", "question": "Q", "relevant_circulars": ["x"]}'], "32648"),
        (
            [
                '{"id": "a", "category": "t90", "question": "Q"}',
                "",
                '{"id": "a", "category": "t90", "question": "R"}',
            ],
            r"line 3: id 'a' is already used on line 1",
        ),
        (["", "  "], "holds no questions"),
    ],
)
def test_load_items_errors_name_the_line(tmp_path: Path, lines: list[str], message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        load_items(write_lines(tmp_path, *lines))


def test_load_items_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match=r"does not exist; pass a JSONL file"):
        load_items(tmp_path / "nope.jsonl")


# --- history ---------------------------------------------------------------------------------


def test_write_history_appends_one_row_per_category(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "warehouse")
    items = [item(id="r"), item("unanswerable", answers=(), relevant=(), id="u")]
    good = score(items, {"r": {"answer": "z = 0.151", "citations": [{"circular_id": 32648}]}})
    bad = score(items, {})
    before = datetime.now(UTC)
    write_history(catalog, good, run_id="run-1", questions_file="dev.jsonl", config={"k": "5"})
    write_history(catalog, bad, run_id="run-2", questions_file="dev.jsonl", config={})

    assert catalog.version("rag_evaluation_history") == 1
    rows = catalog.sql(
        "SELECT run_id, category, n, accuracy, answered, recall_at_5, mrr_at_10, config "
        "FROM sandbox.nasa_gcn_dev.rag_evaluation_history ORDER BY run_id, category"
    ).to_pylist()
    assert rows == [
        {"run_id": "run-1", "category": "all", "n": 2, "accuracy": 0.5, "answered": 0.5}
        | {"recall_at_5": 1.0, "mrr_at_10": 1.0, "config": '{"k": "5"}'},
        {"run_id": "run-1", "category": "redshift", "n": 1, "accuracy": 1.0, "answered": 1.0}
        | {"recall_at_5": 1.0, "mrr_at_10": 1.0, "config": '{"k": "5"}'},
        {"run_id": "run-1", "category": "unanswerable", "n": 1, "accuracy": 0.0}
        | {"answered": 0.0, "recall_at_5": None, "mrr_at_10": None, "config": '{"k": "5"}'},
        {"run_id": "run-2", "category": "all", "n": 2, "accuracy": 0.0, "answered": 0.0}
        | {"recall_at_5": 0.0, "mrr_at_10": 0.0, "config": "{}"},
        {"run_id": "run-2", "category": "redshift", "n": 1, "accuracy": 0.0, "answered": 0.0}
        | {"recall_at_5": 0.0, "mrr_at_10": 0.0, "config": "{}"},
        {"run_id": "run-2", "category": "unanswerable", "n": 1, "accuracy": 0.0}
        | {"answered": 0.0, "recall_at_5": None, "mrr_at_10": None, "config": "{}"},
    ]
    stamps = catalog.sql(
        "SELECT DISTINCT evaluated_at, questions_file FROM rag_evaluation_history"
    ).to_pylist()
    assert len(stamps) == 2
    assert all(before <= s["evaluated_at"] <= datetime.now(UTC) for s in stamps)
    assert {s["questions_file"] for s in stamps} == {"dev.jsonl"}
