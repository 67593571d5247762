"""The extractive answerer on real circulars: values, disagreements, abstention, broad answers."""

from __future__ import annotations

import re

import pytest

from gcn_rag.answer.assistant import ABSTAIN, Answer, Assistant
from gcn_rag.errors import BadInputError
from gcn_rag.search.retrieval import Filters


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
