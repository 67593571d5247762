"""One contract suite, run over every retriever (lexical, dense, hybrid), on real circulars."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from gcn_rag.answer.assistant import Assistant
from gcn_rag.errors import BadInputError, NotFoundError
from gcn_rag.search.index import SearchIndex
from gcn_rag.search.retrieval import Filters, Mode, Retriever

MODES: list[Mode] = ["lexical", "dense", "hybrid"]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> Mode:
    return request.param  # type: ignore[no-any-return]


def ids(retriever: Retriever, question: str, mode: Mode, **kwargs: object) -> list[float]:
    result = retriever.search(question, mode=mode, **kwargs)  # type: ignore[arg-type]
    return [hit.circular_id for hit in result.hits]


def test_results_are_ranked_unique_and_bounded(fixture_assistant: Assistant, mode: Mode) -> None:
    result = fixture_assistant.retriever.search("optical afterglow observations", k=7, mode=mode)
    found = [h.circular_id for h in result.hits]
    assert 0 < len(found) <= 7 and len(found) == len(set(found))
    scores = [h.score for h in result.hits]
    assert scores == sorted(scores, reverse=True)


def test_named_event_scopes_results(fixture_assistant: Assistant, mode: Mode) -> None:
    found = ids(fixture_assistant.retriever, "What is the redshift of GRB 221009A?", mode, k=5)
    assert found and set(found) <= {32635, 32642, 32648, 32659, 32686}


def test_alias_finds_the_other_spelling(fixture_assistant: Assistant, mode: Mode) -> None:
    found = ids(fixture_assistant.retriever, "What did Swift see of GRB 090516A?", mode, k=10)
    assert {9374, 9376, 9422} <= set(found)  # 9374/9376 say "GRB 090516"


def test_unknown_event_is_reported(fixture_assistant: Assistant, mode: Mode) -> None:
    """The search still ranks the corpus (unscoped) but says the event was not found."""
    result = fixture_assistant.retriever.search("Redshift of GRB 190231Z?", mode=mode)
    assert result.events == ["GRB 190231Z"] and not result.event_found
    assert all(h.event_id != "GRB 190231Z" for h in result.hits)


def test_filters(fixture_assistant: Assistant, mode: Mode) -> None:
    r = fixture_assistant.retriever
    grbs = ids(r, "observations", mode, k=50, filters=Filters(event="GRB%"))
    assert grbs and all(
        (h.event_id or "").startswith("GRB")
        for h in r.search("observations", mode=mode, k=50, filters=Filters(event="GRB%")).hits
    )
    exact = ids(r, "observations", mode, k=50, filters=Filters(event="GRB 090516A"))
    assert set(exact) == {9374, 9376, 9422}
    old = ids(
        r, "observations", mode, k=50, filters=Filters(until=datetime(1998, 1, 1, tzinfo=UTC))
    )
    assert old and all(cid <= 1 for cid in old)
    window = ids(
        r, "redshift", mode, k=50, filters=Filters(min_circular_id=32000, max_circular_id=33000)
    )
    assert window and all(32000 <= cid <= 33000 for cid in window)
    assert ids(r, "redshift", mode, filters=Filters(event="GRB 991231A")) == []


def test_index_refuses_another_model(fixture_assistant: Assistant) -> None:
    with pytest.raises(BadInputError, match="rebuild it with `gcn-rag index --force`"):
        SearchIndex.load(fixture_assistant.index.path, model_id="some-other-model")


def test_missing_index_says_how_to_build(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="gcn-rag index"):
        SearchIndex.load(tmp_path / "nothing")
