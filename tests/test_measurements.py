"""The quantity catalog and the value reader, then value answers on the fixture circulars."""

from __future__ import annotations

from typing import Any

import pytest

from gcn_rag.corpus.instruments import (
    first_named_instrument,
    instrument_mentions,
    measuring_instrument,
)
from gcn_rag.corpus.measurements import line_before, read
from gcn_rag.corpus.quantities import BY_KEY, GRB, GW, NEUTRINO, asked_quantity, event_kind


def _read(key: str, sentence: str) -> list[tuple[float, str, str]]:
    return [(round(r.value, 12), r.text, r.limit) for r in read(BY_KEY[key], sentence)]


@pytest.mark.parametrize(
    ("key", "sentence", "expected"),
    [
        # symmetric and asymmetric errors, both orders
        ("epeak", "parameterized as Epeak, is 375 +/- 87 keV.", [(375.0, "375", "")]),
        ("epeak", "Epeak = 330 (+402/-150) keV", [(330.0, "330", "")]),
        ("epeak", "alpha = -1.5 (-0.3/+0.2) and Epeak = 190 (-65/+230) keV", [(190.0, "190", "")]),
        ("epeak", "an Epeak of 1.2 MeV", [(1200.0, "1200", "")]),
        ("epeak", "Epeak > 2 MeV", [(2000.0, "2000", "lower")]),  # a limit, kept as one
        ("epeak", "we fit a Band function with Epeak in 50-300 keV", []),  # a band, no value
        # powers of ten in every spelling, a unit required
        (
            "fluence",
            "The event fluence (10-1000 keV) in this interval is (2.12 +/- 0.05)E-05 erg/cm^2.",
            [(2.12e-05, "2.12E-05", "")],
        ),
        (
            "fluence",
            "The fluence derived from the event data is 1.4 X 10^-5 erg/cm^2 in 15-350 keV.",
            [(1.4e-05, "1.4E-05", "")],
        ),
        (
            "fluence",
            "The energy fluence in the 15-1200 keV band calculated by a power-law model for this "
            "107.9 sec interval is (1.5 +/- 0.3)x10^-5 erg/cm2.",
            [(1.5e-05, "1.5E-05", "")],
        ),
        (
            "fluence",
            "a fluence of 2 \u00d7 10\u207b\u2077 erg cm\u207b\u00b2",
            [(2e-07, "2E-07", "")],
        ),
        ("fluence", "the fluence is 3.2", []),  # no unit: not a fluence
        # durations, distances, rates with unit conversion
        ("t90", "with a duration (T90) of about 327 s (10-1000 keV).", [(327.0, "327", "")]),
        (
            "t90",
            "The total burst duration T90 is estimated at 33 seconds +/- 2 s",
            [(33.0, "33", "")],
        ),
        (
            "gw_distance",
            "the a posteriori luminosity distance estimate is 155 +/- 45 Mpc (a posteriori mean",
            [(155.0, "155", "")],
        ),
        ("gw_distance", "a luminosity distance of 1.2 Gpc", [(1200.0, "1200", "")]),
        (
            "false_alarm_rate",
            "its false alarm rate, as estimated by the online analysis, is 4.5e-13 Hz",
            [(1.420092e-05, "1.42E-05", "")],
        ),
        (
            "false_alarm_rate",
            "This alert has an estimated false alarm rate of 3.816 events per year.",
            [(3.816, "3.816", "")],
        ),
        # a neutrino's signalness as a fraction, written either way
        ("signalness", "Signalness: 0.5263", [(0.5263, "0.5263", "")]),
        ("signalness", "this particular event had a signalness of just 20%.", [(0.2, "0.2", "")]),
        (
            "signalness",
            "the high astrophysical signalness (approximately 67%)",
            [(0.67, "0.67", "")],
        ),
        (
            "signalness",
            "The signalness of this event is thus 33%, as reported",
            [(0.33, "0.33", "")],
        ),
        ("signalness", "an estimated signalness of >90%", [(0.9, "0.9", "lower")]),
        ("signalness", "we do not report a signalness. The energy is 120 TeV", []),
        # positions: degrees with asymmetric errors, sexagesimal
        ("ra", "RA: 184.97 (+0.59, -0.52 deg 90% PSF containment) J2000", [(184.97, "184.97", "")]),
        ("dec", "Dec: -2.76 (+0.67, -0.67 deg 90% PSF containment) J2000", [(-2.76, "-2.76", "")]),
        ("ra", "RA (J2000) = 05h 06m 07.8s", [(76.5325, "76.5325", "")]),
        ("dec", "Dec (J2000) = -06d 21' 00\"", [(-6.35, "-6.3500", "")]),
        ("dec", "Dec: 123.4 deg", []),  # out of range: not a declination
        # redshifts keep their old reading
        ("redshift", "we measure a redshift of z = 0.151 from Ca II", [(0.151, "0.151", "")]),
        ("redshift", "the redshift range is 1.2-1.5", []),
    ],
)
def test_values_are_read_as_circulars_write_them(
    key: str, sentence: str, expected: list[tuple[float, str, str]]
) -> None:
    assert _read(key, sentence) == expected


def test_a_limit_is_kept_as_a_limit() -> None:
    (reading,) = read(BY_KEY["fluence"], "the fluence is less than 1.2e-7 erg/cm^2")
    assert reading.limit == "upper" and reading.value == pytest.approx(1.2e-7)


@pytest.mark.parametrize(
    ("key", "sentence", "expected"),
    [
        # pairs: "RA, Dec = a, b" gives the RA the first value and the Dec the second
        ("dec", "The best-fit position is RA, Dec = 17.340, +35.809.", [(35.809, "")]),
        ("ra", "The best-fit position is RA, Dec = 17.340, +35.809.", [(17.34, "")]),
        ("dec", "at RA,Dec (J2000) = (11:15:19.00, -21:58:04.9) we", [(-21.968, "")]),
        ("ra", "R.A. (J2000): 14:12:43.899", [(213.1829, "")]),
        ("dec", "Decl.(2000)=-66.103 deg.", [(-66.103, "")]),
        ("dec", "Dec. =  -7o 08' 41\"", [(-7.1447, "")]),
        # what is not a value of the event
        ("dec", "The Swift observation started on 2008 Dec 04 at 19:29 UT", []),  # a date
        ("dec", "Rc   Dec 18.840    20.81 +- 0.08   2x600s", []),  # a date in a table
        ("dec", "an annulus centered at RA(2000)=129.532, Decl.(2000)=-33.150, with", []),
        ("beta", "For a typical long GRB spectrum (Band function with alpha=-1, beta=-2.5)", []),
        ("alpha", "a power-law decay with a decay index of alpha=0.88 (+0.07, -0.06)", []),
        ("photon_index", "the high energy photon index beta = -2.65 (-0.62, +0.28)", []),
        ("magnitude", "the USNO star at 19:06:56.17, +06:44:25.9 with I=16.56", []),
        ("magnitude", "(trigger 594528816, 18h 42m 50.400s , +25d 13m 48.00s, R=9.42)", []),
        ("t90", "The T90 is 91.0 s and the significance during T90 reaches 11 sigma", [(91, "")]),
        ("error_radius", "radius 67.978 +/- 0.205 deg.", []),  # an error, no second value
        ("error_radius", "an error box approximately 0.3 degrees wide in RA", []),
        ("redshift", "Assuming z = 1 and a standard cosmology", []),
        ("redshift", "Assuming z = 2.90 (GCN 3176) and a standard cosmology", [(2.9, "")]),
        # limits named before the quantity, or before a list of magnitudes
        (
            "fluence",
            "a 3-sigma upper limit on the 75-2000 keV fluence of 3.8e-07 erg/cm^2",
            [(3.8e-07, "upper")],
        ),
        (
            "magnitude",
            "down to the limiting magnitudes of J=16.4, K=13.9 (3-sigma)",
            [(16.4, "upper"), (13.9, "upper")],
        ),
        ("magnitude", "A limiting (unfiltered) magnitude of 9.2 is derived", [(9.2, "upper")]),
        ("magnitude", "the afterglow has R = 19.2 mag", [(19.2, "")]),
        (
            "magnitude",
            "limiting magnitudes of R > 21.0, J < 18.3",
            [(21, "upper"), (18.3, "upper")],
        ),
        ("peak_flux", "the limiting peak flux of 3.0e-7 erg/cm2/s (1 s scale)", [(3e-7, "upper")]),
        ("error_radius", "and an additional systematic error of 1 deg", []),
        ("ra", "The error box corners are at RA = 123.45, Dec = 12.3", []),
        ("redshift", "absorption from an intervening system at a redshift of z = 1.06", []),
        ("redshift", "We expect that a supernova at z=1.5 similar to SN 1998bw would", []),
        ("epeak", "Band model 3 (alpha=0.0, beta=-1.5, Ep=1000 keV): 3.5e-6 erg cm^-2", []),
        ("magnitude", "the field extends a little fainter than V=20", [(20, "upper")]),
        ("dec", "an annulus 5' wide, centered at R.A. = 20h 34m 7.56s and Decl. = 20o 32' 19s", []),
        ("ra", "The HXM and SGM fields of view were centered at RA = 243.2 deg", []),
        ("redshift", "GRB 090423: a pseudo burst at z=1", []),
        ("magnitude", "We do not detected optical afterglow up to R=20.8.", [(20.8, "upper")]),
        ("magnitude", "The afterglow is not detected, down to R = 21.1", [(21.1, "upper")]),
        ("epeak", "the rest-frame peak energy of the spectrum Ep,z ~ 880 keV", []),
        ("epeak", "which gives Ep,i = 1250 +/- 60 keV", []),
        ("epeak", "the peak energy Ep = 246(-34, +37) keV", [(246, "")]),
        (
            "dec",
            "The XRT position is R.A. = 20h 34m 7.56s, Decl. = 20o 32' 19.62s.",
            [(20.5388, "")],
        ),
    ],
)
def test_what_a_number_is_not(key: str, sentence: str, expected: list[tuple[float, str]]) -> None:
    got = [(round(r.value, 4), r.limit) for r in read(BY_KEY[key], sentence)]
    assert [limit for _, limit in got] == [limit for _, limit in expected]
    assert [v for v, _ in got] == pytest.approx([v for v, _ in expected], abs=1e-4)


@pytest.mark.parametrize(
    ("key", "sentence", "expected"),
    [
        # a day of December, not a declination
        ("dec", "I-band images were taken on Dec 12.81 (600-s) and Dec 13.80 (900-s).", []),
        ("dec", "a fading object with I = 19.1 (Dec 12.81) and I = 20.0 (Dec 13.80).", []),
        ("dec", "Imaging started at UT Dec 14.62 (1200-s) with the 2-m telescope.", []),
        ("dec", "The source is at RA = 12.3 and Dec 13.80 (J2000).", [(13.8, "")]),
        # a depth still to be reached is no limit on the object
        ("magnitude", "Later epochs will go down to about R=23 next month.", []),
        ("magnitude", "The afterglow had R = 19.1 mag.", [(19.1, "")]),
        # "faded below ... detection limit": a limit
        (
            "magnitude",
            "It had J~19 at first, but has faded below our 3-sigma detection limit of J~21.5",
            [(19.0, ""), (21.5, "upper")],
        ),
        ("magnitude", "It is close to the detection limit, at I = 21.7", [(21.7, "")]),
        # an offset is no error radius; 0.4'' is arcsec
        (
            "error_radius",
            "A known blazar lies inside the 90% error region, at a distance of about 0.9 deg.",
            [],
        ),
        ("error_radius", "with an uncertainty of 0.4''.", [(0.4 / 3600, "")]),
        ("error_radius", "with an uncertainty of 1.5'.", [(1.5 / 60, "")]),
    ],
)
def test_dates_plans_offsets_and_arcsec_are_read_for_what_they_are(
    key: str, sentence: str, expected: list[tuple[float, str]]
) -> None:
    got = [(r.value, r.limit) for r in read(BY_KEY[key], sentence)]
    assert [limit for _, limit in got] == [limit for _, limit in expected]
    assert [v for v, _ in got] == pytest.approx([v for v, _ in expected], abs=1e-6)


def test_a_value_on_a_line_that_goes_on_from_a_comparison_star_is_none() -> None:
    star = "The calibration used USNO-B1.0 star 1234-0567890 (J2000) RA="
    line = "12:34:56.70 Dec= +12:34:56.7 (assuming R=17.2) as reference:"
    assert read(BY_KEY["dec"], line)  # alone, the line looks like a position
    assert read(BY_KEY["dec"], line, before=line_before(star, line)) == []
    afterglow = "The afterglow position is"
    assert read(BY_KEY["dec"], line, before=line_before(afterglow, line))


@pytest.mark.parametrize(
    ("question", "kind", "key"),
    [
        ("What was the Epeak of GRB 190114C?", GRB, "epeak"),
        ("At which energy does the nuFnu spectrum of GRB 190114C peak?", GRB, "epeak"),
        ("What time-integrated flux in erg per square cm did GRB 190114C deliver?", GRB, "fluence"),
        ("For how many seconds did the burst GRB 190114C last?", GRB, "t90"),
        ("How far away is GRB 190114C?", GRB, "redshift"),
        ("How far away is the merger S200105ae?", GW, "gw_distance"),
        (
            "How often would noise alone produce an alert like IceCube-191001A?",
            NEUTRINO,
            "false_alarm_rate",
        ),
        ("What is the right ascension of IceCube-191001A?", NEUTRINO, "ra"),
        # a position asked for: RA, with Dec (see parse_question); not one mentioned on the way
        ("Where on the sky was IceCube-191001A?", NEUTRINO, "ra"),
        ("What is the best-fit localization of IceCube-191001A?", NEUTRINO, "ra"),
        ("IceCube-191001A coordinates?", NEUTRINO, "ra"),
        ("Was a counterpart found in the localization of IceCube-191001A?", NEUTRINO, None),
        (
            "How frequently would noise produce an alert like IceCube-191001A?",
            NEUTRINO,
            "false_alarm_rate",
        ),
        ("How energetic was GRB 190114C?", GRB, "eiso"),
        ("What intrinsic absorption did XRT find for GRB 190114C?", GRB, "nh"),
        # absorption lines give a redshift, no column density
        ("From its absorption lines, how far away is GRB 190114C?", GRB, "redshift"),
        ("What instruments detected GRB 190114C?", GRB, None),
    ],
)
def test_questions_name_quantities_in_many_words(question: str, kind: str, key: str | None) -> None:
    quantity = asked_quantity(question, kind)
    assert (quantity.key if quantity else None) == key


def test_event_kinds() -> None:
    assert [event_kind(e) for e in ("GRB 221009A", "S190425z", "GW170817", "IceCube-241224A")] == [
        GRB,
        GW,
        GW,
        NEUTRINO,
    ]


# --- value answers on the fixture circulars ----------------------------------------------------


@pytest.mark.parametrize(
    ("question", "lead"),
    [
        (
            "What is the peak energy Epeak of GRB 221009A measured by Fermi GBM?",
            "The Fermi GBM peak energy Epeak of GRB 221009A is 375 keV (GCN 32642)",
        ),
        (
            "How long did GRB 221009A last according to Fermi GBM?",
            "The Fermi GBM T90 of GRB 221009A is 327 s (GCN 32642)",
        ),
        (
            "What is the luminosity distance of S190425z?",
            "The luminosity distance of S190425z is 155 Mpc (GCN 24168)",
        ),
        (
            "How many megaparsecs away is S230518h?",
            "The luminosity distance of S230518h is 276 Mpc (GCN 33813)",
        ),
        (
            "What false alarm rate did IceCube give for IceCube-241224A?",
            "The false alarm rate of IceCube-241224A is 3.816 per year (GCN 38664)",
        ),
        (
            "What is the best-fit declination of IceCube-241224A?",
            "The declination of IceCube-241224A is 2.76 deg (GCN 38664)",
        ),
        (
            "What Epeak did Konus-Wind measure for GRB 090516A?",
            "The Konus-Wind peak energy Epeak of GRB 090516A is 190 keV (GCN 9422)",
        ),
        (
            "What is the Swift-BAT T90 duration of GRB 050401?",
            "The Swift-BAT T90 of GRB 050401 is 33 s (GCN 3173)",
        ),
    ],
)
def test_value_answers_lead_with_the_value_and_cite_it(
    fixture_assistant: Any, question: str, lead: str
) -> None:
    answer = fixture_assistant.ask(question)
    assert answer.answer.startswith(lead), answer.answer
    assert answer.citations and answer.citations[0].quote


def test_two_episodes_two_fluences_both_said_and_cited(fixture_assistant: Any) -> None:
    question = "What fluence did Fermi GBM measure for GRB 221009A in the 10 keV - 1 MeV band?"
    answer = fixture_assistant.ask(question)
    assert answer.answer.startswith(
        "Reported Fermi GBM fluence (10-1000 keV) values for GRB 221009A differ: "
    ), answer.answer
    assert "2.12E-05 erg/cm^2" in answer.answer and "2.912E-02 erg/cm^2" in answer.answer
    assert {c.circular_id for c in answer.citations} == {32642}


def test_a_named_instrument_without_a_value_is_said(fixture_assistant: Any) -> None:
    answer = fixture_assistant.ask("What is the Konus-Wind T90 of GRB 050401?")
    assert answer.answer.startswith(
        "The retrieved circulars about GRB 050401 do not state a Konus-Wind T90. "
        "The Swift-BAT T90 of GRB 050401 is 33 s"
    ), answer.answer


def test_a_catalog_source_near_a_neutrino_is_not_its_position(fixture_assistant: Any) -> None:
    answer = fixture_assistant.ask("What is the right ascension of IceCube-241224A?")
    assert answer.answer.startswith("The right ascension of IceCube-241224A is 184.97 deg")


@pytest.mark.parametrize(
    ("key", "sentence", "expected"),
    [
        # a calibration star's values in the relative clause after it
        (
            "magnitude",
            "We calibrated against the reference star USNO-A2.0 0975-12345678, which has "
            "magnitudes B = 17.9 and R = 16.8.",
            [],
        ),
        ("magnitude", "The new source, which has R = 20.4, is fading.", [(20.4, "")]),
        # a row's number in a list of positions is no coordinate
        ("dec", "RA  Dec ========= 1: 201.113 -12.345 2: 201.402 -12.107", []),
        # a criterion's threshold, written after the value, is no limit on the burst
        (
            "peak_photon_flux",
            "It meets the criteria: 1-s peak photon flux = 0.7 (1-s peak photon flux < "
            "1.5 ph/cm2/s).",
            [],
        ),
        ("peak_photon_flux", "the 1-s peak photon flux is < 0.3 ph/cm2/s", [(0.3, "upper")]),
        # the error of an offset is no error radius
        (
            "error_radius",
            'The galaxy lies 2.1" from the afterglow, with a distance error of 0.3" (1 sigma).',
            [],
        ),
        ("error_radius", 'The afterglow position has an error of 0.3".', [(0.3 / 3600, "")]),
        # "the limit on the <quantity> ... of" is a limit
        (
            "eiso",
            "at 400 Mpc this gives the limit on the total isotropic equivalent energy in 2 s "
            "of 3.1e+49 erg",
            [(3.1e49, "upper")],
        ),
        # the centre of the part of a GW region the Earth hides is no position of the event
        (
            "ra",
            "Part of the skymap is behind the Earth for the satellite, centred at RA=120.4, "
            "Dec=-10.2 with a radius of 66.0 degrees.",
            [],
        ),
        (
            "error_radius",
            "Part of the skymap is behind the Earth for the satellite, centred at RA=120.4, "
            "Dec=-10.2 with a radius of 66.0 degrees.",
            [],
        ),
        # a date after "UT Dec"
        ("dec", "Imaging was obtained on UT Dec 21.08 (BVR) and UT Dec 22.9 (R).", []),
    ],
)
def test_the_seventh_rounds_classes_are_not_the_events_values(
    key: str, sentence: str, expected: list[tuple[float, str]]
) -> None:
    got = [(r.value, r.limit) for r in read(BY_KEY[key], sentence)]
    assert [limit for _, limit in got] == [limit for _, limit in expected]
    assert [v for v, _ in got] == pytest.approx([v for v, _ in expected], rel=1e-6)


def test_a_line_after_et_al_goes_on_from_it() -> None:
    line = "GCN 6950) RA=119.66618,  Dec=32.84706; RA=119.68899,  Dec=32.84803;"
    assert read(BY_KEY["ra"], line)  # alone, the line gives positions
    stars = "Based on SDSS stars (Cool et al."
    assert read(BY_KEY["ra"], line, before=line_before(stars, line)) == []


def test_positions_listed_after_a_line_that_names_corners_are_corners() -> None:
    corners = "The 90% error box is a thin strip, and its vertices are at"
    line = "RA = +08h 12m 33.1s, Dec = -11d 02' 10\", RA = +08h 13m 04.7s, Dec = -11d 40' 51\""
    assert read(BY_KEY["ra"], line)  # alone, the line gives positions
    assert read(BY_KEY["ra"], line, before=line_before(corners, line)) == []
    assert read(BY_KEY["dec"], line, before=line_before(corners, line)) == []
    centre = "The centre of the strip lies at"
    assert read(BY_KEY["ra"], line, before=line_before(centre, line))


def test_a_stars_declination_after_a_semicolon_and_a_compound_word_are_not_values() -> None:
    star = (
        "Magnitudes are relative to the reference star USNO-B1.0 1234-0567890 at "
        "RA = 12 10 30.51; Dec = +20 05 11.2."
    )
    assert read(BY_KEY["ra"], star) == [] and read(BY_KEY["dec"], star) == []
    clause = (
        "We calibrated with the comparison star A, which has R = 17.1 and coordinates "
        "RA = 12 10 30.51; Dec = +20 05 11.2."
    )
    assert read(BY_KEY["dec"], clause) == [] and read(BY_KEY["magnitude"], clause) == []
    assert read(BY_KEY["dec"], "The afterglow is at RA = 12 10 31.00; Dec = +20 05 14.0.")
    criteria = "photon index = 1.6 (photon index < 2) 2) 1-s peak photon flux = 0.5"
    assert [r.value for r in read(BY_KEY["photon_index"], criteria)] == [1.6]
    assert [r.value for r in read(BY_KEY["t90"], "a T90 of 12-s")] == [12.0]


@pytest.mark.parametrize(
    ("key", "sentence", "expected"),
    [
        # a hypothetical value and a rest-frame duration are not what was observed
        ("redshift", "A redshift of z = 2.4 would make it the farthest such burst.", []),
        ("redshift", "The afterglow spectrum gives z = 2.4 from Mg II absorption.", [(2.4, "")]),
        ("t90", "At that distance, the T90 of 1.2 s is 0.4 s in the rest frame.", [(1.2, "")]),
        ("t90", "Its T90 ~ 2 s and Ep ~ 700 keV in the GRB rest frame suggest a short burst.", []),
        ("epeak", "Epeak = 310 keV, rest-frame Epeak = 800 keV.", [(310.0, "")]),
        # a star's magnitude, a time after an index, an offset and a shift are no values
        (
            "magnitude",
            "The image reaches R=20.1 but the source is near a R=16.4 star.",
            [(20.1, "")],
        ),
        ("photon_index", "The spectral index at 6 hrs after the burst is beta ~ 0.9.", []),
        ("error_radius", "The source is 4.2 arcsec from the optical position.", []),
        (
            "error_radius",
            "with an uncertainty of 4.2 arcsec (90% containment).",
            [(4.2 / 3600, "")],
        ),
        ("error_radius", "The centre of the error circle moved by 1.8 arcmin to the east.", []),
        # "Dec. 25" in a table of dates; a declination still reads after RA
        ("dec", "Date Host R(mag) ------ Dec. 25 21.67 +/- 0.05 ------", []),
        ("dec", "Position: RA. 10 20 30.1, Dec. 25 11 12.3", [(25.186750, "")]),
        # the centres of a radio telescope's beams are pointings
        ("ra", "The two beams were centered at RA 15.211h, Dec 20.3deg; RA 15.6h, Dec 22deg.", []),
        # an IPN annulus's radius or half-width is no error radius; a rest-frame column is one
        (
            "error_radius",
            "We have triangulated it to an annulus centered at RA = 110.2 deg, Dec = -3.4 deg, "
            "whose radius is 51.33 +/- 0.12 deg.",
            [],
        ),
        ("nh", "a column density of 2.1e22 cm^-2 in the rest frame of the burst", [(2.1e22, "")]),
        # "Ra, Dec =" in any case; an angle's mark before its decimals; a limit "(90%) ... to"
        ("dec", "Ra, Dec  =  10h 11m 12.13s   +21d 04m 00.5s", [(21.066806, "")]),
        (
            "error_radius",
            'at RA=10:11:12.1, DEC=+21:04:00.5 (uncertainty 0".4).',
            [(0.4 / 3600, "")],
        ),
        ("error_radius", "and the error radius is 2'.5.", [(2.5 / 60, "")]),
        (
            "fluence",
            "We set an upper limit (90% conf.) on the 20 - 1500 keV fluence to 5.1x10^-7 erg/cm^2.",
            [(5.1e-7, "upper")],
        ),
        # a redshift "z = 5.2" is no z-band magnitude; a search's template spectrum is assumed
        ("magnitude", "The spectrum gives a refined redshift z = 5.2 for the afterglow.", []),
        ("magnitude", "The afterglow has z' = 20.3 +- 0.1 mag.", [(20.3, "")]),
        (
            "epeak",
            "For a cut-off power law parametrized with (Epeak, index) = (480 keV, -0.4), the "
            "upper limits are ...",
            [],
        ),
        ("epeak", "The cutoff energy, parameterized as Epeak, is 410 +/- 30 keV.", [(410.0, "")]),
        # minutes and seconds written ' and "; a limit in a list of limits, however written
        ("ra", "RA(J2000) =   16h 07' 21.10\"", [(241.837917, "")]),
        ("magnitude", "Ks < 18.7", [(18.7, "upper")]),
        ("magnitude", "We do not see any new sources brighter than R~20.5.", [(20.5, "upper")]),
        # "z < 6" is a redshift; a comparison star's value stays the star's when cited
        ("magnitude", "The i' detection and the colour imply z < 6.", []),
        (
            "magnitude",
            "The calibration is based on the star at RA = 11 06 08.8, Dec = -21 46 37, which "
            "has been fixed at V = 18.97 and I = 17.71 (GCN 1948).",
            [],
        ),
        # a magnitude "(3-sigma)" is a limit; "-62deg 28' 21''"; a star's value after "for"
        ("magnitude", "U ~ 21.6 (3-sigma) for a combined 280 second exposure", [(21.6, "upper")]),
        ("dec", "Decl. = -62deg 28' 21'' with a count rate of 0.03", [(-62.4725, "")]),
        ("magnitude", "We use Rc=16.484+/-0.01 mag for USNO B-1 star as reference.", []),
        # a cited rest-frame value stays rest-frame; a cited assumption is the cited value
        (
            "epeak",
            "and the rest-frame peak energy Ep_rest is 220 +/- 20 keV (Smith et al., GCN 1).",
            [],
        ),
        (
            "redshift",
            "Assuming z = 2.35 (Jones et al., GCN 2) and a standard cosmology",
            [(2.35, "")],
        ),
        # a telescope's error-box radius after its coordinates; a corrected value
        ("magnitude", "170327A (ra=18 26 16 dec=-33 27 00 r=5.3167) 2823 sec after", []),
        ("alpha", '[NOTE: "alpha = 0.67" was changed to "alpha = 0.77".]', [(0.77, "")]),
        ("magnitude", "t0+64s to t0+70s  R=17.0 +/-0.5", [(17.0, "")]),
        ("magnitude", "(B): RA = 02:36:30.25, Dec = +18:08:50.1, R = 22.29 +- 0.16", [(22.29, "")]),
        (
            "redshift",
            "The UV non-detection is expected at the reported z=2.94 (Fynbo et al., GCN 5).",
            [(2.94, "")],
        ),
        # a pair of catalog galaxies' redshift is not the burst's
        ("redshift", "These galaxies are at z = 0.021, 9 arcmin from the position.", []),
    ],
)
def test_the_eighth_rounds_classes_are_read_for_what_they_are(
    key: str, sentence: str, expected: list[tuple[float, str]]
) -> None:
    got = [(r.value, r.limit) for r in read(BY_KEY[key], sentence)]
    assert [limit for _, limit in got] == [limit for _, limit in expected]
    assert [v for v, _ in got] == pytest.approx([v for v, _ in expected], rel=1e-6)


def test_an_older_missions_value_is_tagged_with_it() -> None:
    sentence = (
        "Ulysses and Konus observed this burst. As observed by Ulysses, it had a peak flux "
        "over 0.5 s of 2.1x10^-7 erg/cm^2 s^-1."
    )
    (reading,) = read(BY_KEY["peak_flux"], sentence)
    mentions = instrument_mentions(sentence)
    assert measuring_instrument(BY_KEY["peak_flux"], mentions, None, reading.start) == "Ulysses"
    band = "Fitting by GRBM (Band) model yields the peak energy Ep = 120(-20, +31) keV."
    (epeak,) = read(BY_KEY["epeak"], band)
    found = measuring_instrument(BY_KEY["epeak"], instrument_mentions(band), "Konus-Wind", 0)
    assert epeak.value == 120.0 and found == "Konus-Wind"  # "GRBM" names the model here
    timed = (
        "As observed by Konus-Wind, the burst had a 2.9-s peak flux, measured from T0(BAT)-1.5 s, "
        "of 1.1x10^-6 erg/cm2/s."
    )
    (flux,) = read(BY_KEY["peak_flux"], timed)
    assert measuring_instrument(
        BY_KEY["peak_flux"], instrument_mentions(timed), None, flux.start
    ) == ("Konus-Wind")
    redshift = "The lack of UVOT detection would be consistent with the redshift of z=4.6."
    (z,) = read(BY_KEY["redshift"], redshift)
    assert (
        measuring_instrument(BY_KEY["redshift"], instrument_mentions(redshift), None, z.start)
        is None
    )
    data = "Analysis of data from the BAT trigger 339852 reveals a source at RA, Dec = 32.05, 33.42"
    (ra_,) = read(BY_KEY["ra"], data)
    assert measuring_instrument(BY_KEY["ra"], instrument_mentions(data), None, ra_.start) is None
    assert first_named_instrument("Swift XRT observations of the INTEGRAL burst") == "Swift-XRT"
    assert first_named_instrument("LIGO/Virgo S190425z: INTEGRAL upper limits") == "INTEGRAL"
    region = (
        "Within the \ufffd2.5 arcmin BAT error radius we find a radio source at RA = 17 41 3.19"
    )
    (ra,) = read(BY_KEY["ra"], region)
    assert measuring_instrument(BY_KEY["ra"], instrument_mentions(region), None, ra.start) is None
