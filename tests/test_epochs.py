"""``time_after_s``: when after the trigger a magnitude (or limit) was measured, read from its own
sentence or its table's column, never guessed; shown by ``gcn-rag event`` and in dossiers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from conftest import EVENTS_ARCHIVE, TXT_ARCHIVE
from gcn_rag.cli import app
from gcn_rag.corpus.circulars import Circular, ReadReport, read_circulars
from gcn_rag.corpus.epochs import written
from gcn_rag.corpus.measurement_table import (
    MEASUREMENTS,
    extract,
    measurement_schema,
    update_measurements,
)
from gcn_rag.settings import Settings
from gcn_rag.tables import Catalog
from test_measurement_table import _edited_archive

HOUR, DAY = 3600.0, 86400.0


def _magnitudes(body: str) -> list[tuple[str, float | None]]:
    """(value as written, seconds after the trigger) of every magnitude row of ``body``."""
    circular = Circular(
        circular_id=99999.0,
        subject="GRB 990101A: optical afterglow",
        submitter="",
        created_on=datetime(2020, 1, 1, tzinfo=UTC),
        body=body,
        event_id="GRB 990101A",
    )
    return [(r.value_text, r.time_after_s) for r in extract(circular) if r.quantity == "magnitude"]


@pytest.mark.parametrize(
    ("sentence", "seconds"),
    [
        ("The afterglow is detected at T0+3.2 h with r = 19.8 +/- 0.1 mag.", 3.2 * HOUR),
        ("In the white filter we find CR = 16.9 +/- 0.2 at T+450 s.", 450.0),
        ("We measure R = 20.6 +/- 0.2 at 2.1 hours after the trigger.", 2.1 * HOUR),
        ("The afterglow had r' = 18.3 +/- 0.1 ~15 min after the BAT trigger.", 15 * 60.0),
        (
            "In a 60 s exposure starting 93 s after the trigger we find no source to a "
            "limiting magnitude of R > 17.5.",
            93.0,
        ),
        ("The stack (mid-time 1.2 days after the burst) shows i = 22.4 +/- 0.2.", 1.2 * DAY),
        ("H = 14.7 +/- 0.2 mag, at a mid time of t-t0 ~ 103 s after the GRB T0.", 103.0),
        ("r > 16.3 at T-T0 = 78s", 78.0),
        ("At a mid-exposure time of 02:02 UT (5.4 hrs post-burst) we find R = 18.6.", 5.4 * HOUR),
        ("We put an upper limit of Rc > 21.5 at 0.4331 day after the GRB.", 0.4331 * DAY),
        ("The OT was still detected at t0+40min (R~17.7).", 40 * 60.0),
        ("A pre-trigger image at T0-2 d gives R > 20.1.", -2 * DAY),
    ],
)
def test_each_way_of_writing_a_time_after_the_trigger(sentence: str, seconds: float) -> None:
    [(_, found)] = _magnitudes(sentence)
    assert found == pytest.approx(seconds)


def test_times_between_values_go_with_the_value_they_follow_or_precede() -> None:
    after = _magnitudes(
        "J > 16.7 (7.8 hours after the burst) H > 15.9 (7.7 hours after the burst) "
        "K > 13.9 (10.1 hours after the burst)"
    )
    assert [s for _, s in after] == pytest.approx([7.8 * HOUR, 7.7 * HOUR, 10.1 * HOUR])
    before = _magnitudes("At T0+15 h R~23.9 (our first epoch) and at T0+17 h R~23.8.")
    assert [s for _, s in before] == pytest.approx([15 * HOUR, 17 * HOUR])
    shared = _magnitudes("At 33 hours after the burst we obtain B = 19.3 and R = 18.6.")
    assert [s for _, s in shared] == pytest.approx([33 * HOUR, 33 * HOUR])
    # a time that says nothing of the trigger pairs, but gives no time
    unsaid = _magnitudes(
        "We find R ~ 18.7 at t ~ 20.45 minutes and i' ~ 18.0 at 26.3 minutes after the burst."
    )
    assert [s for _, s in unsaid] == [None, pytest.approx(26.3 * 60)]
    clauses = _magnitudes(
        "r > 23.0 on Feb 18.124 UT (1.00 hr after the GRB); z > 21.5 on Feb 18.127 UT (1.07 hr "
        "after the GRB)."
    )
    assert [s for _, s in clauses] == pytest.approx([1.0 * HOUR, 1.07 * HOUR])


@pytest.mark.parametrize(
    "body",
    [  # several times and no way to tell which is whose: none
        "We find R > 20 mag and I > 19 mag at mean times of 1.17 and 1.52 hr after the GRB, "
        "respectively.",
        "We measure R = 17.4 +/- 0.3 and I = 19.7 +/- 0.3 at 8 min and 50 min after the trigger.",
        "Co-added frames: t0+208s to t0+325s : R = 19.9 +/- 0.3",  # an interval
        "Stacking all data taken up to 17.2 minutes after the burst yields B = 19.19.",  # a bound
        "The magnitude is about R = 19.0 in images between 3 - 8 minutes after GRB time.",
        "At the start of the trail (t0+28s) R = 18.4 and it decays to R = 18.7 at t0+46s.",
        "In the first image starting 5:42 minutes after the BAT trigger R = 20.12 +/- 0.15.",
        "The source was found at r = 19.6 mag, 0.74 days after the last non-detection.",
        "We estimate R = 19.7 at 21h20m UT.",  # a clock time, no time after the trigger
        # one time between two values: is it the one's before or the one's after?
        "No new source in single images (r' > 18.7) nor in a combined frame (mean time 290 s "
        "post trigger, with a limit r' > 20.1).",
        "The afterglow is at R = 20.2 at 4 h.",  # after what?
        "We find R = 22.9, and our earlier image, for which the mid time was 4.60 hr after the "
        "GRB, shows nothing.",  # another observation's time
    ],
)
def test_an_ambiguous_or_unanchored_time_is_no_time(body: str) -> None:
    found = _magnitudes(body)
    assert found and all(seconds is None for _, seconds in found)


def test_a_times_column_of_a_table_gives_each_row_its_time() -> None:
    found = _magnitudes(
        "We report the following photometry:\n\n"
        "UT (mean)    t-t0    filter   mag\n"
        "Apr 21.02    2.60    R        R=23.64 +/- 0.07\n\n"  # no unit: no time
        "MJD                 Time since burst     Filter           Mag. (AB)\n"
        "60344.94386         7.52 hours               g            > 22.72\n"
        "60345.00012         8.87 hours               r            > 22.08\n\n"
        "and upper limits:\n\n"
        "Tmid-T0 (hr)    Filter   Upper limit (3-sigma)\n"
        "------------    ------   ---------------------\n"
        "0.953           r         >20.7\n"
        "26.97           r          >21.3\n\n"
        "1.95            i          >21.9\n"  # after a paragraph break: no header
        "2.10            z          >20.5\n"
    )
    assert found == [
        ("23.64", None),
        ("22.72", pytest.approx(7.52 * HOUR)),
        ("22.08", pytest.approx(8.87 * HOUR)),
        ("20.7", pytest.approx(0.953 * HOUR)),
        ("21.3", pytest.approx(26.97 * HOUR)),
        ("21.9", None),
        ("20.5", None),
    ]


def test_a_time_said_in_another_paragraph_is_not_the_values() -> None:
    """Real circulars: GROND starts "19.1 h after the burst" two paragraphs before its
    magnitudes (GCN 10158), RATIR observed "8.53 to 9.02 hours after the LAT trigger" (19588),
    Kinder "3.3 days after the GBM trigger time" (30918); ZTF photometry is listed by MJD
    (33229); another gives a date, not a time after the trigger (36267)."""
    circulars = {
        c.circular_id: c
        for archive in (TXT_ARCHIVE, EVENTS_ARCHIVE)
        for c in read_circulars(archive, ReadReport())
    }
    for cid in (10158.0, 19588.0, 30918.0, 33229.0, 36267.0):
        rows = [r for r in extract(circulars[cid]) if r.quantity == "magnitude"]
        assert rows and all(r.time_after_s is None for r in rows), cid


def test_times_are_written_in_the_unit_a_reader_expects() -> None:
    assert [written(s) for s in (93, 900, 2.67 * HOUR, 3.3 * DAY, -2 * DAY)] == [
        "+93 s",
        "+15 min",
        "+2.67 h",
        "+3.3 d",
        "-2 d",
    ]


def test_a_magnitudes_time_reaches_the_table_the_dossier_and_gcn_rag_event(
    settings: Settings, tokenizer_path: Any, tmp_path: Path
) -> None:
    """A table written before the column is read again (its reader changed); the time then
    shows in ``gcn-rag event``'s measurements and its JSON."""
    from gcn_rag.corpus.ingest import ingest
    from gcn_rag.search.build import build_index
    from gcn_rag.search.embedding import Embedder
    from gcn_rag.search.index import DENSE_MAX_TOKENS

    line = "We find a limiting magnitude of R > 18.6 at 2.67 hours after the burst."
    ingest(settings, str(_edited_archive(tmp_path, 37256, line)))
    catalog = Catalog(settings.warehouse)
    table = catalog.read(MEASUREMENTS)
    old = table.drop_columns(["time_after_s"])  # as the reader before this column wrote it
    circulars = catalog.state(MEASUREMENTS).split("|", 1)[1]  # the same circulars
    catalog.overwrite(MEASUREMENTS, old, state=f"0123456789abcdef|{circulars}")
    report = update_measurements(catalog)
    assert not report.up_to_date and report.rows == table.num_rows
    rows = catalog.read(MEASUREMENTS)
    assert rows.schema.names == measurement_schema().names
    timed = [r for r in rows.to_pylist() if r["time_after_s"] is not None]
    assert [(r["circular_id"], r["time_after_s"]) for r in timed] == [(37256, 2.67 * HOUR)]

    build_index(settings, catalog, Embedder.from_settings(settings, max_tokens=DENSE_MAX_TOKENS))
    runner, home = CliRunner(), ["--home", str(settings.home)]
    shown = runner.invoke(app, ["event", "GRB 240824A", *home], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "t\u2212T0" in shown.output and "+2.67 h" in shown.output
    record = json.loads(runner.invoke(app, ["event", "GRB 240824A", "--json", *home]).output)
    [magnitude] = [m for m in record["measurements"] if m["quantity"] == "magnitude"]
    assert magnitude["time_after_s"] == 2.67 * HOUR and magnitude["circular_id"] == 37256
    other = json.loads(runner.invoke(app, ["event", "GRB 160625B", "--json", *home]).output)
    assert all(m["time_after_s"] is None for m in other["measurements"])
    assert "t\u2212T0" not in runner.invoke(app, ["event", "GRB 160625B", *home]).output
