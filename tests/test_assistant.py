"""The extractive answerer on real circulars: values, disagreements, abstention, broad answers."""

from __future__ import annotations

import re
from typing import Any

import pytest

from gcn_rag.answer.assistant import ABSTAIN, Answer, Assistant
from gcn_rag.answer.extraction import parse_question
from gcn_rag.corpus.events import find_event_ids
from gcn_rag.corpus.quantities import BY_KEY
from gcn_rag.corpus.quantity import event_kind
from gcn_rag.errors import BadInputError
from gcn_rag.search.retrieval import Filters
from gcn_rag.settings import Settings
from gcn_rag.tables import Catalog

NOT_STATED = re.compile(r"\bdo not state\b|\bnot stated\b|\bstate no\b", re.I)


def numbers(text: str) -> set[str]:
    return set(re.findall(r"\d+(?:\.\d+)?", text))


def assert_grounded(answer: Answer) -> None:
    """Every number in the answer is in a cited quote, a cited id or a cited event name."""
    allowed: set[str] = set()
    for c in answer.citations:
        allowed |= numbers(c.quote) | numbers(c.subject) | numbers(str(c.circular_id))
        allowed |= numbers(f"{c.circular_id:g}") | numbers(c.event_id or "")
    assert numbers(answer.answer) <= allowed, answer.answer


def test_redshift_leads_with_the_value(fixture_assistant: Assistant) -> None:
    answer = fixture_assistant.ask("What is the redshift of GRB 221009A?")
    assert answer.answer.startswith("The redshift of GRB 221009A is z = 0.15")
    assert answer.citations[0].circular_id in {32648, 32686}
    assert "0.15" in answer.citations[0].quote
    assert answer.sources == ["GRB 221009A"]
    assert (
        answer.citations[0].url
        == f"https://gcn.nasa.gov/circulars/{answer.citations[0].circular_id:g}"
    )
    assert_grounded(answer)


def test_paraphrased_value_question(fixture_assistant: Assistant) -> None:
    answer = fixture_assistant.ask("How far away is GRB 100728B? Give the z observers found.")
    assert answer.answer.startswith("The redshift of GRB 100728B is z = 2.106")
    assert answer.citations[0].circular_id == 11317  # spectroscopic beats photometric
    assert_grounded(answer)


def test_t90_prefers_the_bat_refined_analysis(fixture_assistant: Assistant) -> None:
    answer = fixture_assistant.ask("What is the Swift-BAT T90 duration of GRB 050401?")
    assert answer.answer.startswith("The Swift-BAT T90 of GRB 050401 is 33 s")
    assert answer.citations[0].circular_id == 3173
    assert_grounded(answer)


def test_disagreeing_circulars_are_both_cited(fixture_assistant: Assistant) -> None:
    answer = fixture_assistant.ask("What is the redshift of GRB 091109A?")
    assert "differ" in answer.answer
    assert "3.5" in answer.answer and "3.076" in answer.answer
    assert {10246, 10350} <= {c.circular_id for c in answer.citations}
    assert_grounded(answer)


def _measured(workspace: Settings) -> list[dict[str, Any]]:
    """Each (event, quantity) and (event, quantity, instrument) of the workspace's
    ``gcn_measurements`` (values and limits; a retracted row states nothing), with the
    circulars that state it."""
    query = (
        "SELECT event_id, quantity, {by} AS instrument, list(DISTINCT circular_id) AS circulars "
        "FROM gcn_measurements WHERE event_id IS NOT NULL AND status <> 'retracted' {where} "
        "GROUP BY ALL ORDER BY ALL"
    )
    catalog = Catalog(workspace.warehouse)
    rows: list[dict[str, Any]] = catalog.sql(query.format(by="NULL", where="")).to_pylist()
    named = catalog.sql(query.format(by="instrument", where="AND instrument IS NOT NULL"))
    return rows + [r for r in named.to_pylist() if BY_KEY[r["quantity"]].by_instrument]


def test_never_not_stated_while_citing_a_circular_that_states_it(
    fixture_workspace: Settings, fixture_assistant: Assistant
) -> None:
    """Every question the measurements table can answer, asked as the catalog names the
    quantity (and the instrument, when the table names one): the answer may say the value is
    not stated only when none of the circulars it cites has a row for it."""
    measured = _measured(fixture_workspace)
    assert len({r["quantity"] for r in measured}) >= 20  # most of the catalog, limits too
    wrong = []
    for row in measured:
        quantity, event = BY_KEY[row["quantity"]], row["event_id"]
        if event_kind(event) not in quantity.kinds:
            continue  # not asked of such an event (a fluence limit of a GW candidate)
        named = f"{row['instrument']} " if row["instrument"] else ""
        question = f"What is the {named}{quantity.label} of {event}?"
        asked = parse_question(question, [event])
        assert asked is not None and asked.quantity is quantity, question  # a value question
        answer = fixture_assistant.ask(question)
        stating = {c.circular_id for c in answer.citations} & set(row["circulars"])
        if NOT_STATED.search(answer.answer) and stating:
            wrong.append(f"{question} -> {answer.answer[:200]} (GCN {sorted(stating)})")
    assert wrong == []


@pytest.mark.parametrize(
    ("question", "instrument"),
    [
        ("How long did GRB 190114C last according to the Gamma-ray Burst Monitor?", "Fermi GBM"),
        ("What T90 did the Burst Alert Telescope measure for GRB 190114C?", "Swift-BAT"),
        ("The SVOM Gamma-Ray burst Monitor (GRM) T90 of GRB 240315A?", "SVOM"),
    ],
)
def test_an_instrument_spelled_out_is_the_asked_one(question: str, instrument: str) -> None:
    asked = parse_question(question, find_event_ids(question))
    assert asked is not None and asked.instrument == instrument


def test_a_position_question_gets_ra_and_dec(fixture_assistant: Assistant) -> None:
    """ "Where on the sky was <alert>?" asks for both coordinates: the answer states RA, then
    Dec, each cited; naming RA alone gets RA alone. Regression: no value, quoted subjects."""
    answer = fixture_assistant.ask("Where on the sky was IceCube-241224A?")
    assert [m["quantity"] for m in answer.measurements] == ["ra", "dec"], answer.answer
    assert answer.answer.startswith("The right ascension of IceCube-241224A is ")
    assert " The declination of IceCube-241224A is " in answer.answer
    assert_grounded(answer)
    ra = fixture_assistant.ask("What is the right ascension of IceCube-241224A?")
    assert [m["quantity"] for m in ra.measurements] == ["ra"]
    assert ra.measurements[0]["value"] == answer.measurements[0]["value"]


def test_a_superevent_in_lower_case_is_the_event(fixture_assistant: Assistant) -> None:
    answer = fixture_assistant.ask("what is the luminosity distance of s190425z")
    upper = fixture_assistant.ask("What is the luminosity distance of S190425z?")
    assert upper.measurements and answer.measurements == upper.measurements
    assert answer.sources == ["S190425z"]


def test_only_a_limit_stated_is_said_as_a_limit(fixture_assistant: Assistant) -> None:
    """ "BNS (>99%)" is a limit, no value: the answer says it with its sign, cites it, and
    puts no value in ``measurements`` (it used to say the circulars do not state it)."""
    answer = fixture_assistant.ask("What is the probability that S190425z is a BNS merger?")
    assert answer.answer.startswith(
        "The probability of a binary neutron star (BNS) of S190425z is > 99 % (GCN 24168)."
    ), answer.answer
    assert answer.measurements == [] and answer.citations[0].circular_id == 24168
    assert ">99%" in answer.citations[0].quote


def test_a_value_written_with_its_unit_gets_no_second_one(fixture_assistant: Assistant) -> None:
    answer = fixture_assistant.ask("What is the error radius of EP240315a?")
    assert answer.answer.startswith("The error radius of EP240315a is 3 arcmin (GCN 35931)."), (
        answer.answer  # was "3 arcmin deg"
    )
    assert answer.measurements[0]["value"] == pytest.approx(0.05)  # in the catalog's unit


@pytest.mark.parametrize(
    ("question", "states"),
    [
        ("What is the Galactic extinction E(B-V) toward GRB 091109A?", 10158),
        ("What reddening E(B-V) did Swift give for GRB 090516?", 9374),
    ],
)
def test_a_quantity_outside_the_catalog_gets_the_quoting_answer(
    fixture_assistant: Assistant, question: str, states: int
) -> None:
    """Reddening is stated in circulars but not in the catalog: the answer quotes the top
    circulars (the one stating it among them), as for any question that asks no catalog
    quantity; it reads no value and does not say one is missing. Regression: "What is the
    <property> of X?" got X's summary, which never mentions the property."""
    assert parse_question(question, find_event_ids(question)) is None  # not in the catalog
    answer = fixture_assistant.ask(question)
    assert answer.answer.startswith("From the GCN Circulars:\n- "), answer.answer
    assert not NOT_STATED.search(answer.answer) and answer.measurements == []
    assert answer.citations and all(c.quote in answer.answer for c in answer.citations)
    assert states in {c.circular_id for c in answer.citations}
    assert_grounded(answer)


@pytest.mark.parametrize(
    "question",
    [
        "What is the redshift of GRB 190231Z?",
        "What is the Swift-BAT T90 duration of GRB 130229Z?",
        "Tell me about IceCube-991231A",
    ],
)
def test_unknown_event_abstains(fixture_assistant: Assistant, question: str) -> None:
    answer = fixture_assistant.ask(question)
    assert answer.answer.startswith(ABSTAIN)
    assert answer.sources == [] and answer.citations == []


def test_broad_question_quotes_several_circulars(fixture_assistant: Assistant) -> None:
    answer = fixture_assistant.ask("What high-energy neutrino events were detected by IceCube?")
    assert answer.answer.startswith("From the GCN Circulars:")
    assert len(answer.citations) == answer.num_docs == 5
    assert any("IceCube" in (c.event_id or "") for c in answer.citations)
    for c in answer.citations:
        assert c.quote and c.quote in answer.answer
    assert answer.sources == sorted({c.event_id for c in answer.citations if c.event_id})
    assert_grounded(answer)


def test_filters_apply_to_answers(fixture_assistant: Assistant) -> None:
    answer = fixture_assistant.ask("What was observed?", k=3, filters=Filters(event="IceCube%"))
    assert answer.citations and all(
        (c.event_id or "").startswith("IceCube") for c in answer.citations
    )


def test_timings_are_reported(fixture_assistant: Assistant) -> None:
    answer = fixture_assistant.ask("What is the redshift of GRB 221009A?")
    assert {"lexical", "embed", "dense", "fuse", "answer", "total"} <= set(answer.timings_ms)


@pytest.mark.parametrize("question", ["", "   \n\t ", "x" * 20_000])
def test_bad_questions_get_a_clear_error(fixture_assistant: Assistant, question: str) -> None:
    with pytest.raises(BadInputError, match=r"empty|limit is"):
        fixture_assistant.ask(question)


@pytest.mark.parametrize(
    "question",
    [
        "What is the redshift\x00 of GRB\x07 221009A?",
        "¿Cuál es el corrimiento al rojo de GRB 221009A?",
        "伽马射线暴 GRB 221009A 的红移是多少？",  # noqa: RUF001 - a real Chinese question
        "🔭🔭🔭",
    ],
)
def test_odd_questions_get_a_safe_answer(fixture_assistant: Assistant, question: str) -> None:
    answer = fixture_assistant.ask(question)
    assert isinstance(answer.answer, str) and answer.answer
    assert_grounded(answer)


def test_predict_row_never_raises(fixture_assistant: Assistant) -> None:
    ok = fixture_assistant.predict_row(
        {"id": "a", "question": "What is the redshift of GRB 221009A?"}
    )
    assert ok["id"] == "a" and ok["num_docs"] > 0 and "error" not in ok
    assert isinstance(ok["citations"][0]["circular_id"], int)
    for bad in ({"id": "b"}, {"id": "c", "question": ""}, "not a row", {"id": "d", "question": 5}):
        record = fixture_assistant.predict_row(bad)
        assert record["answer"].startswith("Error:") and record["num_docs"] == 0
