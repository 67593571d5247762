"""Event names: real subject lines from the archive -> canonical event ids and aliases."""

from __future__ import annotations

import pytest

from gcn_rag.corpus.events import (
    event_aliases,
    event_key,
    find_event_ids,
    normalize_event_id,
    parse_event_id,
    question_event_ids,
)

SUBJECTS = [
    ("GRB 221009A: Redshift from X-shooter/VLT", "GRB 221009A"),
    ("GRB160624A:possible GRB host redshift", "GRB 160624A"),
    ("GRB 090516: Swift detection of a burst", "GRB 090516"),
    ("GRB 090516A: Konus-Wind and Swift/BAT joint spectral analysis", "GRB 090516A"),
    ("GRB970228: Keck/LRIS Optical Observations", "GRB 970228"),
    ("GRB 221009a: lower-case letter", "GRB 221009A"),
    ("Swift GRB211001.03: Global MASTER-Net OT detection", "GRB 211001"),
    ("XRF 020903, optical observations", "XRF 020903"),
    ("XRF011030: Chandra Observations", "XRF 011030"),
    ("LIGO/Virgo S190425z: Identification of a GW compact binary merger candidate", "S190425z"),
    ("LIGO/Virgo/KAGRA S240422ed: MOSFIRE spectroscopy", "S240422ed"),
    ("LIGO/Virgo G194575: RATIR Observations of Nearby Galaxies", "G194575"),
    ("LIGO/VIRGO G275697: Fermi GBM Observations", "G275697"),
    ("GW170817/GRB170817A: LBT optical detection", "GW170817"),
    ("VLA observations of GW170817 at ~3.3 years post-merger", "GW170817"),
    ("Einstein Probe detected of a fast X-ray transient EP240315a", "EP240315a"),
    ("EP240315A: upper-case letter", "EP240315a"),
    (
        "IceCube-231016A - IceCube observation of a high-energy neutrino candidate",
        "IceCube-231016A",
    ),
    ("IceCube Alert 190629.81 Global MASTER-Net observations report", "IceCube-190629"),
    ("IceCube-Cascade 211128A: Upper limits from a search", "IceCube-Cascade-211128A"),
    ("Alert from the HAWC Burst Monitor HAWC-220702A", "HAWC-220702A"),
    ("FRB 20200120E: radio bursts", "FRB 20200120E"),
    ("FRB 181228: Global MASTER Net  optical inspection", "FRB 181228"),
    ("SGR 1935+2154 the Insight-HXMT observation plan", "SGR 1935+2154"),
    ("GECAM observations of a series of bursts from SGR J1935+2154", "SGR 1935+2154"),
    ("INTEGRAL ToO Observation of SGR1806-20", "SGR 1806-20"),
    ("ZTF23aabmzlp/AT2023azs: Zwicky Transient Facility discovery", "ZTF23aabmzlp"),
    ("ZTF and SEDM Observations of the Candidate Optical Afterglow AT 2023sva", "AT 2023sva"),
    ("SN 2023ixf: optical spectroscopy", "SN 2023ixf"),
    ("MAXI J1820+070: Swift/UVOT counterpart correction", "MAXI J1820+070"),
    ("\u200bGRB 221009A: Multi-color detection of the optical", "GRB 221009A"),
]

UNPARSED = [
    "Fermi  trigger No 581068049 Global MASTER-Net observations report",
    "Swift Trigger 766161 is not a GRB",
    "RXTE Observations of a possible new SGR",
    "Duplicate of GCN 33640",
]


@pytest.mark.parametrize(("subject", "expected"), SUBJECTS)
def test_subjects_give_their_event(subject: str, expected: str) -> None:
    assert parse_event_id(subject) == expected


@pytest.mark.parametrize("subject", UNPARSED)
def test_subjects_without_an_event_name(subject: str) -> None:
    assert parse_event_id(subject) is None


def test_first_named_event_wins_and_all_are_found() -> None:
    subject = "GRB 140705A / SGR 1935+2154: Optical observations from 10.4m GTC"
    assert parse_event_id(subject) == "GRB 140705A"
    assert find_event_ids(subject) == ["GRB 140705A", "SGR 1935+2154"]


def test_numbers_inside_other_words_are_not_events() -> None:
    assert find_event_ids("the Swift-XRT light curve of XGRB 221009 and MS190425z") == []
    assert find_event_ids("GRB 2210091 is a typo") == []


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("grb221009a", "GRB 221009A"),
        ("GRB  221009A ", "GRB 221009A"),
        ("s230518h", "S230518h"),
        ("ep240315A", "EP240315a"),
        ("icecube-231016a", "IceCube-231016A"),
        ("IC-220425A", "IceCube-220425A"),  # the short form alerts go by
        ("IC220425A", "IceCube-220425A"),
        ("IC 1613", None),  # an Index Catalogue galaxy
        ("IC 2118A", None),
        ("at2017gfo", "AT 2017gfo"),
        ("not an event", None),
    ],
)
def test_normalize(name: str, canonical: str | None) -> None:
    assert normalize_event_id(name) == canonical


@pytest.mark.parametrize(
    ("question", "events"),
    [
        ("How far away was s230518h?", ["S230518h"]),  # a superevent in lower case
        ("what is ep240315a and grb221009a", ["EP240315a", "GRB 221009A"]),
        ("Where was ic-220425a?", ["IceCube-220425A"]),
        ("is at2017gfo the kilonova", ["AT 2017gfo"]),
        ("GRB 090423 was observed in 2009", ["GRB 090423"]),  # a year is no event
        ("the galaxy ic 1613 and ngc 4993", []),
        ("S230518h and s230518h", ["S230518h"]),
    ],
)
def test_a_question_may_write_case_sensitive_names_in_any_case(
    question: str, events: list[str]
) -> None:
    """Circular text keeps the strict forms (a lower-case "s230518h" is not written there);
    a question is typed by hand, so its names are tried in their proper case as well."""
    assert question_event_ids(question) == events


def test_grb_letter_aliases_both_ways() -> None:
    assert set(event_aliases("GRB 090516A")) >= {"GRB 090516A", "GRB 090516"}
    assert set(event_aliases("GRB 090516")) >= {"GRB 090516", "GRB 090516A"}
    assert event_aliases("GRB 090516A")[0] == "GRB 090516A"
    # only "A" is the first burst of a day; B is never the same event as the bare date
    assert "GRB 090516" not in event_aliases("GRB 090516B")


def test_xrf_iau_and_alert_aliases() -> None:
    assert "GRB 020903" in event_aliases("XRF 020903")
    assert "AT 2023ixf" in event_aliases("SN 2023ixf")
    assert "IceCube-190629A" in event_aliases("IceCube-190629")
    assert event_aliases("S190425z") == ("S190425z",)


def test_event_key_ignores_spelling() -> None:
    assert event_key("GRB 221009A") == event_key("grb221009a") == "GRB221009A"
    assert event_key("IceCube-231016A") == event_key("IceCube 231016A")
