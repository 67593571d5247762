"""``gcn_measurements``: built by ingest and index from real circulars, incremental, queryable with
SQL, statuses across circulars (a retraction), and shipped in the index."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import pytest

from conftest import EVENTS_ARCHIVE
from gcn_rag.corpus.circulars import CIRCULARS, Circular
from gcn_rag.corpus.measurement_table import (
    MEASUREMENTS,
    MeasurementsReport,
    circulars_of,
    extract,
    extract_all,
    update_measurements,
)
from gcn_rag.settings import Settings
from gcn_rag.tables import Catalog


def _circular(body: str, subject: str = "GRB 990101A: Konus-Wind observation") -> Circular:
    from datetime import UTC, datetime

    return Circular(
        circular_id=99999.0,
        subject=subject,
        submitter="",
        created_on=datetime(2020, 1, 1, tzinfo=UTC),
        body=body,
        event_id="GRB 990101A",
    )


def test_one_circular_gives_one_row_per_value_with_its_qualifiers() -> None:
    rows = extract(
        _circular(
            "The burst had a duration of ~25 s. The Band model gives: the low-energy photon index "
            "alpha = -0.53 (-0.14, +0.17), the peak energy Ep = 246(-34, +37) keV. The fluence "
            "is (2.1 +/- 0.5) x 10^-5 erg/cm^2 in the 20 keV - 2 MeV range. "
            "The afterglow is at RA, Dec = 17.340, +35.809 (J2000). "
            "We estimate an upper limit r > 21.5 mag."
        )
    )
    by_quantity = {row.quantity: row for row in rows}
    assert by_quantity["alpha"].value == -0.53
    assert by_quantity["epeak"].value == 246 and by_quantity["epeak"].method == "Band"
    fluence = by_quantity["fluence"]
    assert fluence.value == pytest.approx(2.1e-5) and fluence.error_minus == pytest.approx(5e-6)
    assert fluence.band == "20-2000 keV" and fluence.instrument == "Konus-Wind"
    assert by_quantity["ra"].value == 17.34 and by_quantity["dec"].value == 35.809
    magnitude = by_quantity["magnitude"]
    assert magnitude.limit_type == "upper" and magnitude.band == "r"
    assert magnitude.instrument is None  # Konus-Wind measures no magnitude
    assert all(row.event_id == "GRB 990101A" and row.offset >= 0 for row in rows)


def test_the_instrument_is_the_one_named_last_before_the_value() -> None:
    rows = extract(
        _circular(
            "This location is 7 degrees from the GBM trigger (Ra = 304.29, Dec = 42.1) and 9 "
            "degrees from the LAT location (Ra = 305.30, Dec = 40.75). A faint source at "
            "RA = 85.1804, Dec = -19.2739 lies at the edge of the Swift/XRT error region.",
            subject="GRB 990101A: Fermi GBM observation",
        )
    )
    found = {(row.quantity, round(row.value, 2)): row.instrument for row in rows}
    assert found[("ra", 304.29)] == "Fermi GBM" and found[("ra", 305.3)] == "Fermi LAT"
    assert found[("ra", 85.18)] is None  # the XRT region is named after, not before


def test_assumed_values_and_comparison_stars_are_no_rows() -> None:
    rows = extract(
        _circular(
            "For a typical long GRB spectrum (Band function with alpha=-1, beta=-2.5, and "
            "Ep=300 keV), the derived peak flux upper limit is ~3.4e-07 erg/cm^2/s. "
            "Using the USNO star at RA = 12.345, Dec = -10.0 with R = 16.1 for calibration, "
            "the light curve decays with an index alpha = 1.2."
        )
    )
    assert {row.quantity for row in rows} <= {"peak_flux"}
    assert all(row.limit_type == "upper" for row in rows)


def _alert(body: str, event: str = "S190425z") -> Circular:
    from datetime import UTC, datetime

    return Circular(
        circular_id=99998.0,
        subject=f"LIGO/Virgo {event}: optical follow-up",
        submitter="",
        created_on=datetime(2020, 1, 1, tzinfo=UTC),
        body=body,
        event_id=event,
    )


def test_values_of_candidates_in_an_alerts_region_are_the_candidates() -> None:
    rows = extract(
        _alert(
            "We observed the localization of S190425z to a limiting magnitude of r > 21.5.\n\n"
            "ZTF19aarykkb was observed on 2019-04-26. Our spectrum shows a blue continuum and "
            "H-alpha at z = 0.024. The transient has r = 19.2 mag.\n\n"
            "PS19qp is at RA, Dec = 12.345, -23.456 with r = 20.1 mag.\n\n"
            "ZTF19aasmftm is in the outskirts of its host galaxy; its spectrum is that of a type "
            "Ia SN at z = 0.156.\n\n"
            "The most probable source direction is RA 78.93, Dec -37.54 degrees.\n\n"
            "Source 3:\n RA: 187.6968 ( = 12h 30m 47.23s) J2000\n Dec: +12.3389 J2000\n\n"
            "The host galaxy of another transient has a redshift of 0.051."
        )
    )
    whose = {(row.quantity, round(row.value, 3)): row.event_id for row in rows}
    assert whose[("magnitude", 21.5)] == "S190425z"  # a limit of the search: the alert's
    assert whose[("redshift", 0.024)] == "ZTF19aarykkb"  # named in an earlier sentence
    assert whose[("magnitude", 19.2)] == "ZTF19aarykkb"
    assert whose[("ra", 12.345)] == "PS19qp" and whose[("magnitude", 20.1)] == "PS19qp"
    assert whose[("redshift", 0.156)] == "ZTF19aasmftm"  # its host's, and "a SN" is itself
    assert whose[("ra", 78.93)] == "S190425z"  # the GW source's direction
    assert whose[("ra", 187.697)] is None and whose[("dec", 12.339)] is None  # a field source
    assert whose[("redshift", 0.051)] is None  # an alert has no redshift of its own


def test_an_alerts_own_position_stays_its_own() -> None:
    rows = extract(
        _alert(
            "A candidate was found by ZTF. The IceCube neutrino best-fit position is "
            "RA = 267.80 deg, Dec = 11.42 deg with an error radius of 1.2 deg.",
            event="IceCube-220303A",
        )
    )
    assert {row.event_id for row in rows} == {"IceCube-220303A"}
    assert {row.quantity for row in rows} == {"ra", "dec", "error_radius"}


def test_numbered_sources_of_a_burst_are_its_only_when_named_its_afterglow() -> None:
    body = (
        "Two uncatalogued X-ray sources are detected in the BAT error circle.\n\n"
        "Source 1:\n RA (J2000.0): 45.3361 = 03:01:20.66\n Dec (J2000.0): -71.7072\n\n"
        "Source 2:\n RA (J2000.0): 45.0955 = 03:00:22.93\n Dec (J2000.0): -71.6531\n\n"
        "We cannot tell which, if any, is the afterglow."
    )
    whose = {round(row.value, 3): row.event_id for row in extract(_circular(body))}
    assert whose[45.336] is None and whose[-71.653] is None
    fading = body.replace("We cannot tell", "Source 2 is fading and is likely the afterglow. We")
    whose = {round(row.value, 3): row.event_id for row in extract(_circular(fading))}
    assert whose[45.336] is None and whose[45.096] == "GRB 990101A"


def test_the_column_label_nearest_the_value_wins() -> None:
    rows = extract(
        _circular(
            "A summary of the PC-mode spectrum is thus: Galactic foreground: 1.6 x 10^20 cm^-2 "
            "Intrinsic column: 2.9 (+1.7, -1.6) x 10^22 cm^-2 at z=4.707 Photon index: 1.94"
        )
    )
    methods = {f"{row.value:.2g}": row.method for row in rows if row.quantity == "nh"}
    assert methods == {"2.9e+22": "intrinsic"}  # not "Galactic", named before it


def test_an_instrument_named_for_its_error_region_did_not_measure_the_position() -> None:
    rows = extract(
        _circular(
            "A faint optical source is detected in the Swift/XRT error circle at "
            'RA = 10:35:24.30 Dec = -35:44:47.9 with an uncertainty of 0.2". '
            "The XRT position is RA = 158.90, Dec = -35.70.",
            subject="GRB 990101A: optical observations",
        )
    )
    found = {(row.quantity, round(row.value, 2)): row.instrument for row in rows}
    assert found[("ra", 158.85)] is None and found[("dec", -35.75)] is None  # the optical one
    assert found[("ra", 158.9)] == found[("dec", -35.7)] == "Swift-XRT"


def test_a_catalog_galaxys_redshift_is_the_galaxys_unless_the_host() -> None:
    rows = extract(
        _circular(
            "Galaxies in the error circle:\n\n"
            "SDSS J101010.10+101010.1   10:10:10.1 +10:10:10 z=0.0712\n\n"
            "The host galaxy SDSS J101010.10+101010.1 of GRB 990101A has z=0.0712 from its "
            "emission lines."
        )
    )
    whose = [(row.offset < 40, row.event_id) for row in rows if row.quantity == "redshift"]
    assert whose == [(True, None), (False, "GRB 990101A")]


def test_a_galaxys_distance_in_an_alerts_circular_is_not_the_alerts() -> None:
    rows = extract(
        _alert(
            "The candidate is 3 arcsec from the galaxy 2MASX J01234567-0123456 at a luminosity "
            "distance of 120 Mpc.\n\nThe luminosity distance of S190425z is 156 +/- 41 Mpc."
        )
    )
    whose = {row.value: row.event_id for row in rows if row.quantity == "gw_distance"}
    assert whose == {120.0: None, 156.0: "S190425z"}


def test_a_follow_ups_own_hotspot_is_not_the_neutrinos_position() -> None:
    rows = extract(
        _alert(
            "We searched a 2 degree circle around the IceCube position. The highest "
            "significance, 3.1 sigma, was at RA = 101.2 deg, Dec = 5.3 deg (J2000).\n\n"
            "The IceCube best-fit position is RA = 100.5 deg, Dec = 5.1 deg.",
            event="IceCube-220303A",
        )
    )
    whose = {row.value: row.event_id for row in rows if row.quantity == "ra"}
    assert whose == {101.2: None, 100.5: "IceCube-220303A"}


def test_ingest_builds_the_table_and_sql_reads_it(events_workspace: Settings) -> None:
    catalog = Catalog(events_workspace.warehouse)
    table = catalog.read(MEASUREMENTS)
    assert table.num_rows > 20
    circulars = set(catalog.read(CIRCULARS, ["circular_id"])["circular_id"].to_pylist())
    assert set(table["circular_id"].to_pylist()) <= circulars
    redshifts = catalog.sql(
        "SELECT circular_id, value FROM sandbox.nasa_gcn_dev.gcn_measurements "
        "WHERE event_id = 'GRB 160625B' AND quantity = 'redshift' AND limit_type IS NULL"
    ).to_pylist()
    assert 1.406 in {round(r["value"], 3) for r in redshifts}


def test_a_retracted_circular_retracts_its_values(events_workspace: Settings) -> None:
    """GCN 37259 ("Retraction of GCN 37255") retracts what GCN 37255 reported."""
    rows = Catalog(events_workspace.warehouse).read(MEASUREMENTS).to_pylist()
    retracted = [r for r in rows if r["circular_id"] == 37255]
    assert retracted and {r["status"] for r in retracted} == {"retracted"}
    assert {r["stated"] for r in retracted} != {"retracted"}  # the circular itself did not say
    assert all(r["status"] != "retracted" for r in rows if r["circular_id"] == 37254)


class _Totals:
    """A progress reporter that remembers how much work each task announced."""

    def __init__(self) -> None:
        self.totals: dict[str, float | None] = {}

    def task(self, description: str, total: float | None = None) -> Any:
        from gcn_rag.progress import SILENT

        self.totals[description] = total
        return SILENT.task(description, total)

    def note(self, message: str) -> None:
        pass


def _edited_archive(tmp_path: Path, circular_id: int, line: str) -> Path:
    """The events archive with ``line`` added to one circular (an edit, as the archive gets)."""
    out = tmp_path / "edited.tar.gz"
    with tarfile.open(EVENTS_ARCHIVE) as source, tarfile.open(out, "w:gz") as target:
        for member in source:
            data = source.extractfile(member).read()  # type: ignore[union-attr]
            if member.name.endswith(f"/{circular_id}.txt"):
                data += f"\n{line}\n".encode()
                member.size = len(data)
            target.addfile(member, io.BytesIO(data))
    return out


def test_updates_are_incremental_and_a_rerun_is_a_no_op(
    settings: Settings, tokenizer_path: Any, tmp_path: Path
) -> None:
    from gcn_rag.corpus.ingest import ingest

    ingest(settings, str(EVENTS_ARCHIVE))
    catalog = Catalog(settings.warehouse)
    version = catalog.version(MEASUREMENTS)
    again = update_measurements(catalog)
    assert again.up_to_date and catalog.version(MEASUREMENTS) == version
    totals = _Totals()
    ingest(
        settings,
        str(_edited_archive(tmp_path, 19581, "The redshift is z = 2.345.")),
        reporter=totals,
    )
    assert totals.totals["Reading measurements"] == 1  # only the edited circular is read again
    rows = catalog.read(MEASUREMENTS).to_pylist()
    assert any(r["value"] == 2.345 and r["circular_id"] == 19581 for r in rows)
    assert update_measurements(catalog).up_to_date
    forced = update_measurements(catalog, force=True)
    assert forced.circulars_read == catalog.count(CIRCULARS)


def test_reading_on_two_processes_gives_the_same_rows(events_workspace: Settings) -> None:
    table = Catalog(events_workspace.warehouse).read(
        CIRCULARS, ["circular_id", "event_id", "subject", "created_on", "body"]
    )
    one = extract_all(circulars_of(table), table.num_rows, MeasurementsReport(), workers=1)
    import gcn_rag.corpus.measurement_table as module

    saved = module.PARALLEL_FROM, module.BATCH
    module.PARALLEL_FROM, module.BATCH = 1, 5
    try:
        two = extract_all(circulars_of(table), table.num_rows, MeasurementsReport(), workers=2)
    finally:
        module.PARALLEL_FROM, module.BATCH = saved
    assert one == two


def test_the_index_ships_the_table_and_finds_an_events_rows(events_workspace: Settings) -> None:
    from gcn_rag.corpus.events import event_key
    from gcn_rag.search.index import SearchIndex

    index = SearchIndex.load(events_workspace.index)
    assert index.measurements is not None
    rows = index.measurements_of({event_key("GRB 160625B")})
    assert rows.num_rows > 0 and set(rows["event_id"].to_pylist()) == {"GRB 160625B"}


def test_new_values_alone_swap_the_index_copy_only(settings: Settings, tokenizer_path: Any) -> None:
    from gcn_rag.corpus.ingest import ingest
    from gcn_rag.search.build import build_index
    from gcn_rag.search.embedding import Embedder
    from gcn_rag.search.index import DENSE_MAX_TOKENS, MANIFEST, Manifest

    ingest(settings, str(EVENTS_ARCHIVE))
    catalog = Catalog(settings.warehouse)
    embedder = Embedder.from_settings(settings, max_tokens=DENSE_MAX_TOKENS)
    build_index(settings, catalog, embedder)
    lexical = {p.name: p.stat().st_mtime_ns for p in (settings.index / "lexical").iterdir()}
    assert build_index(settings, catalog, embedder).up_to_date
    version = update_measurements(catalog, force=True).version  # say the reader changed
    report = build_index(settings, catalog, embedder)
    assert not report.up_to_date and set(report.seconds) == {"write"}
    manifest = Manifest.read(settings.index / MANIFEST)
    assert manifest.corpus["measurements_version"] == version
    assert lexical == {p.name: p.stat().st_mtime_ns for p in (settings.index / "lexical").iterdir()}
    assert build_index(settings, catalog, embedder).up_to_date


def test_a_source_said_to_be_unrelated_and_another_bursts_row_are_not_the_events() -> None:
    rows = extract(
        _circular(
            "A second object with R = 22.8 lies at RA = 12:01:02.30 Dec = +20:11:12.0, south "
            "of and outside the XRT error circle, so it is unlikely associated with the GRB.\n\n"
            "Our limit for the afterglow is R > 23.5.\n\n"
            "Earlier bursts observed with the same telescope:\n"
            "981226   R>22.9, J>19.0   12\n"
            "990105   R>21.2           14\n"
        )
    )
    whose = {(row.quantity, round(row.value, 1)): row.event_id for row in rows}
    assert whose[("magnitude", 22.8)] is None and whose[("ra", 180.3)] is None
    assert whose[("magnitude", 23.5)] == "GRB 990101A"
    assert whose[("magnitude", 22.9)] is None and whose[("magnitude", 19.0)] is None
    assert whose[("magnitude", 21.2)] == "GRB 990101A"  # a later date: an observation's row


def test_an_instrument_named_for_its_trigger_time_did_not_measure_the_position() -> None:
    rows = extract(
        _circular(
            "Imaging began 20.1 min after the Swift/BAT trigger, and the afterglow is detected "
            "at R.A. = 06:10:20.00, Dec. = +40:30:10.0 in our images.\n\n"
            "The on-ground location, using the Fermi GBM trigger data, is RA = 92.5, Dec = 40.2.",
            subject="GRB 990101A: optical afterglow",
        )
    )
    found = {(row.quantity, round(row.value, 2)): row.instrument for row in rows}
    assert found[("ra", 92.58)] is None
    assert found[("ra", 92.5)] == "Fermi GBM"


def test_the_transient_followed_in_an_alerts_region_is_not_the_alert() -> None:
    rows = extract(
        _alert(
            "We followed up the possible transient we reported earlier, found at RA = 14:29:15.99, "
            "Dec = +09:41:12.3 with r = 17.3.\n\nThe skymap of S190425z peaks at RA = 250.1 deg."
        )
    )
    whose = {round(row.value, 2): row.event_id for row in rows if row.quantity == "ra"}
    assert whose == {217.32: None, 250.1: "S190425z"}


def test_a_gamma_ray_catalog_source_in_a_neutrinos_circular_is_not_the_neutrino() -> None:
    rows = extract(
        _alert(
            "3HWC J2022+431 RA 305.522 Dec: 43.158 (0.10 deg 68% containment) J2000\n\n"
            "The IceCube best-fit position is RA = 300.1 deg, Dec = 41.2 deg.",
            event="IceCube-220303A",
        )
    )
    whose = {round(row.value, 2): row.event_id for row in rows if row.quantity == "ra"}
    assert whose == {305.52: None, 300.1: "IceCube-220303A"}
