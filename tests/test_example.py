"""The input example comes from the workspace's own measurements, not from a fixed event."""

from __future__ import annotations

from pathlib import Path

from gcn_rag.model.example import FALLBACK, example_question
from gcn_rag.settings import Settings
from gcn_rag.tables import Catalog


def test_without_measurements_the_example_names_no_event(tmp_path: Path) -> None:
    assert example_question(Catalog(tmp_path / "warehouse")) == FALLBACK


def test_the_example_is_an_event_whose_circulars_agree_on_its_redshift(
    fixture_workspace: Settings,
) -> None:
    catalog = Catalog.from_settings(fixture_workspace)
    question = example_question(catalog)
    event = question.removeprefix("What is the redshift of ").removesuffix("?")
    assert event != question
    rows = catalog.sql(
        "SELECT DISTINCT round(value, 2) AS z FROM gcn_measurements WHERE quantity = 'redshift' "
        f"AND limit_type IS NULL AND status NOT IN ('retracted', 'superseded') "
        f"AND event_id = '{event}'"
    ).to_pylist()
    assert len(rows) == 1  # one value: the first answer a person sees is not a disagreement
