"""Dossiers and open questions on whole stories of real events (tests/fixtures/events.txt.tar.gz),
then the ``gcn-rag event`` command."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from gcn_rag.answer.dossier import build
from gcn_rag.answer.facilities import DETECTED, LIMITS, RETRACTED, facility_of
from gcn_rag.answer.open_questions import classify
from gcn_rag.cli import app
from gcn_rag.settings import Settings


@pytest.fixture(scope="module")
def assistant(events_workspace: Settings) -> Any:
    from gcn_rag.answer.assistant import Assistant

    return Assistant.load(events_workspace)


@pytest.mark.parametrize(
    ("question", "intent"),
    [
        ("What is EP240408a?", "what_is"),
        ("Tell me about GRB 160625B", "what_is"),
        ("Which instruments detected GRB 160625B?", "instruments"),
        ("What telescopes observed it?", "instruments"),
        ("Who first detected GRB 170817A?", "first"),
        ("When was S190425z discovered?", "first"),
        ("Was a counterpart found for IceCube-221224A?", "counterpart"),
        ("Was an optical afterglow detected for GRB 240824A?", "counterpart"),
        ("Did Konus-Wind detect GRB 210928A?", "detected_by"),
        ("Was S190822c retracted?", "retracted"),
        ("Is S190822c a real astrophysical signal?", "retracted"),
        ("What is the status of GRB 210928A?", "status"),
        ("What was measured for GRB 160625B?", "measured"),
        ("What is the classification of S190822c?", "what_is"),
        ("What is the Galactic extinction toward GRB 160625B?", None),  # a property: quoted
        ("What was the host galaxy of GRB 240824A?", None),
        ("Is it raining?", None),  # a yes/no question on no known topic
        ("How do magnetars form?", None),
    ],
)
def test_open_questions_are_told_apart(question: str, intent: str | None) -> None:
    assert classify(question) == intent


def test_a_dossier_reads_facilities_measurements_and_the_timeline(assistant: Any) -> None:
    dossier = build(assistant.index, "GRB 160625B")
    assert dossier is not None
    assert dossier.kind.endswith("gamma-ray burst")
    assert [e.circular_id for e in dossier.timeline] == sorted(
        e.circular_id for e in dossier.timeline
    )
    outcomes = {f.name: f.outcome for f in dossier.facilities}
    assert outcomes["Fermi LAT"] == DETECTED and outcomes["Swift-XRT"] == DETECTED
    assert dossier.discoverer == "Fermi LAT"  # the first circular's facility
    redshift = next(v for v in dossier.measurements if v.quantity == "redshift")
    assert redshift.value == pytest.approx(1.406)
    as_json = json.loads(json.dumps(dossier.to_dict()))
    assert as_json["event_id"] == "GRB 160625B" and as_json["timeline"][0]["url"].startswith(
        "https://gcn.nasa.gov/circulars/"
    )
    assert build(assistant.index, "GRB 010101Z") is None


def test_what_is_an_event_is_a_cited_summary(assistant: Any) -> None:
    answer = assistant.ask("What is GRB 160625B?")
    assert answer.answer.startswith("GRB 160625B is a")
    assert "gamma-ray burst" in answer.answer and "z = " not in answer.answer
    assert "redshift = 1.406" in answer.answer
    assert {c.event_id for c in answer.citations} == {"GRB 160625B"}


def test_an_instrument_list_says_who_detected_and_who_set_limits(assistant: Any) -> None:
    answer = assistant.ask("Which telescopes observed IceCube-221224A?")
    assert "Only upper limits from: BOOTES-4/MET (GCN 33102)" in answer.answer
    assert 33102 in {c.circular_id for c in answer.citations}


def test_a_retracted_candidate_leads_with_its_retraction(assistant: Any) -> None:
    answer = assistant.ask("Was S190822c retracted?")
    assert answer.answer.startswith("Yes: S190822c was retracted on 2019-08-22 (GCN 25442")
    assert [c.circular_id for c in answer.citations] == [25442]
    summary = assistant.ask("What is S190822c?").answer
    assert summary.startswith("Latest status: S190822c was retracted")
    assert "First reported by LIGO/Virgo/KAGRA" in summary
    real = assistant.ask("Is S190822c a real astrophysical signal?").answer
    assert real.startswith("No: S190822c was retracted")


def test_a_significance_downgrade_is_said_first(assistant: Any) -> None:
    answer = assistant.ask("What is the status of S240422ed?")
    assert answer.answer.startswith("Latest status: S240422ed was downgraded on 2024-07-03")
    assert [c.circular_id for c in answer.citations] == [36812]
    assert assistant.ask("Is S240422ed a real astrophysical signal?").answer.startswith(
        "No: S240422ed was downgraded"
    )
    summary = assistant.ask("What is S240422ed?").answer
    assert "gravitational-wave candidate (most likely NSBH" in summary
    assert "redshift" not in summary  # the candidate counterpart's, not the merger's
    counterpart = assistant.ask("Was a counterpart found for S240422ed?").answer
    assert counterpart.startswith("No confirmed counterpart")


def test_a_reclassification_is_the_latest_status(assistant: Any) -> None:
    answer = assistant.ask("What is the status of GRB 210928A?")
    assert answer.answer.startswith("Latest status: GRB 210928A was reclassified")
    assert 30924 in {c.circular_id for c in answer.citations}


def test_yes_no_questions_begin_with_the_answer(assistant: Any) -> None:
    limits = assistant.ask("Was a counterpart found for IceCube-221224A?").answer
    assert limits.startswith("No")
    assert "BOOTES-4/MET" in limits
    detected = assistant.ask("Did Konus-Wind detect GRB 210928A?").answer
    assert detected.startswith("Yes: Konus-Wind detected GRB 210928A (GCN 30921")
    absent = assistant.ask("Did NuSTAR detect GRB 210928A?").answer
    assert absent.startswith("No: no circular about GRB 210928A reports an observation by NuSTAR")
    xray = assistant.ask("Was an X-ray counterpart found for GRB 240824A?").answer
    assert xray.startswith("Yes: an X-ray counterpart of GRB 240824A was detected by Swift-XRT")


def test_a_retracted_detection_does_not_count(assistant: Any) -> None:
    """GCN 37259 retracts the afterglow that GCN 37255 reported: not the burst itself."""
    dossier = build(assistant.index, "GRB 240824A")
    assert dossier is not None
    skynet = next(f for f in dossier.facilities if 37255 in f.circulars)
    assert skynet.outcome == RETRACTED
    optical = assistant.ask("Was an optical afterglow found for GRB 240824A?").answer
    assert optical.startswith("No: the circulars report only upper limits")
    assert "retracted: Skynet (GCN 37255)" in optical
    whole = assistant.ask("Was GRB 240824A retracted?").answer
    assert whole.startswith("No:") and "GCN 37259 retracts GCN 37255 only" in whole
    assert LIMITS in {f.outcome for f in dossier.facilities}


@pytest.mark.parametrize(
    ("subject", "facility"),
    [
        ("GRB 160625B: Swift-XRT afterglow detection", "Swift-XRT"),
        ("GRB 160625B: Fermi-LAT detection of a bright burst", "Fermi LAT"),
        ("LIGO/Virgo S190822c: Upper limits from IceCube neutrino searches", "IceCube"),
        ("LIGO/Virgo S190822c Global MASTER-Net observations report", "Global MASTER-Net"),
        (
            "LIGO/Virgo S190822c: Retraction of GW compact binary merger candidate",
            "LIGO/Virgo/KAGRA",
        ),
        ("Konus-Wind detection of GRB 210928A", "Konus-Wind"),
        ("SGR 1935+2154: AMI 15 GHz radio observations", "AMI"),
        ("GRB 210928A: Kinder SLT-40cm optical limits", "Kinder SLT-40cm"),
    ],
)
def test_facilities_are_read_from_subjects(subject: str, facility: str) -> None:
    assert facility_of(subject) == facility


def test_value_answers_name_their_values(assistant: Any) -> None:
    answer = assistant.ask("What is the Konus-Wind fluence of GRB 160625B?")
    assert answer.answer.startswith("The Konus-Wind fluence of GRB 160625B is 9.44E-04 erg/cm^2")
    assert answer.measurements[0]["quantity"] == "fluence"
    assert answer.measurements[0]["value"] == pytest.approx(9.44e-4)
    assert answer.measurements[0]["circular_id"] == 19604
    assert assistant.ask("What is GRB 160625B?").measurements == []  # not a value answer


def test_a_retracted_circulars_values_do_not_answer(assistant: Any) -> None:
    """GCN 37255 gave a position for an afterglow that GCN 37259 retracts."""
    assert 37255.0 in assistant.index.retracted_circulars()
    answer = assistant.ask("What is the right ascension of GRB 240824A?")
    assert 37255 not in {c.circular_id for c in answer.citations}
    assert all(37255 not in m["circulars"] for m in answer.measurements)
    assert answer.measurements and answer.answer.startswith("The right ascension of GRB 240824A")


def test_event_command_prints_the_dossier(events_workspace: Settings) -> None:
    runner = CliRunner()
    home = ["--home", str(events_workspace.home)]
    shown = runner.invoke(app, ["event", "grb160625b", *home], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "Measurements" in shown.output and "Timeline (7 circulars)" in shown.output
    as_json = runner.invoke(app, ["event", "S190822c", "--json", *home])
    assert as_json.exit_code == 0
    record = json.loads(as_json.output)
    assert record["status"][0]["kind"] == "retraction"
    assert [e["circular_id"] for e in record["timeline"]] == [25439, 25440, 25441, 25442]
    missing = runner.invoke(app, ["event", "GRB 010101Z", *home])
    assert missing.exit_code != 0
    assert "No circular is about or names GRB 010101Z" in missing.output
    assert "Traceback" not in missing.output
