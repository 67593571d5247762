"""``gcn_measurements``: every value the catalog can read, from every circular, as a Delta table.

One row per value (or limit) a sentence states: the event, the circular, the quantity, the
value in the quantity's unit, its errors, whether it is a limit, the band or filter, the
instrument, the method (spectral model, spectroscopic or photometric, Galactic or intrinsic
absorption), its status, the sentence and the sentence's offset in the body (-1: the subject).

Status says how far to trust a row:

``reported``     stated, nothing said about it since (most rows)
``preliminary``  stated as preliminary / initial / tentative
``refined``      stated as refined / revised / updated / final / corrected
``superseded``   a later refined value of the same quantity by the same instrument exists,
                 or a later correction names its circular
``retracted``    its circular retracts it, or a later retraction names its circular

The table is rebuilt with the index and incrementally after each ingest; a rebuild with
nothing changed only compares fingerprints. Reading values is
:mod:`gcn_rag.corpus.measurements`; the table is read back by the index
(:mod:`gcn_rag.search.build`) for dossiers and answers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import multiprocessing
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gcn_rag.corpus.chunking import sentence_spans
from gcn_rag.corpus.circulars import CIRCULAR_REFERENCE, CIRCULARS, Circular
from gcn_rag.corpus.epochs import Clock
from gcn_rag.corpus.events import event_key, find_event_ids
from gcn_rag.corpus.instruments import (
    first_named_instrument,
    instrument_mentions,
    measuring_instrument,
)
from gcn_rag.corpus.measurements import SPECTROSCOPIC, Reading, band, line_before, read
from gcn_rag.corpus.objects import Owners
from gcn_rag.corpus.quantities import CATALOG
from gcn_rag.corpus.quantity import Quantity
from gcn_rag.progress import SILENT, Reporter

if TYPE_CHECKING:
    import pyarrow as pa

    from gcn_rag.tables import Catalog

MEASUREMENTS = "gcn_measurements"
EXTRACTOR_VERSION = 1  # with the reading modules' source: a change re-reads every circular
STATUSES = ("reported", "preliminary", "refined", "superseded", "retracted")
BATCH = 500  # circulars a worker reads at a time
PARALLEL_FROM = 4000  # fewer circulars are read in this process
MAX_WORKERS = 4
CIRCULAR_COLUMNS = ["circular_id", "event_id", "subject", "created_on", "body"]
# the modules whose source decides what is read (with this one)
_READERS = "chunking epochs events instruments measurements objects quantities quantity".split()

_RETRACTED = re.compile(
    r"\bretract|\berroneous\b|\bnot (?:a )?(?:real|astrophysical)\b|\b(?:is|was) (?:not correct|"
    r"incorrect|wrong)\b|\bdisregard\b|\bspurious\b",
    re.I,
)
_REFINED = re.compile(
    r"\brefined\b|\brevised\b|\bupdated?\b|\bcorrect(?:ed|ion)\b|\berratum\b|\bfinal\b|"
    r"\bimproved\b|\bground analysis\b|\bre-?analys",
    re.I,
)
_PRELIMINARY = re.compile(
    r"\bpreliminary\b|\binitial\b|\btentative\b|\bquick[- ]look\b|\bon-?board\b|\bflight\b", re.I
)
_DIGIT = re.compile(r"\d")
_NH_LABELS = re.compile(r"(Galactic)|(?i:excess|intrinsic|host)")
_CORRECTION = re.compile(r"\berratum\b|\bcorrection\b|\bcorrigendum\b", re.I)
_MODELS = (
    ("Band", re.compile(r"\bBand\b(?! ?[-(]?\d)|\bGRBM\b")),
    ("cutoff power law", re.compile(r"cut-?off(?:ed)? power[- ]?law|\bCPL\b|Comptoni[sz]ed", re.I)),
    ("blackbody", re.compile(r"black-?body|\bBB\b", re.I)),
    ("power law", re.compile(r"power[- ]?law|\bPL\b", re.I)),
)


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One row of ``gcn_measurements``."""

    event_id: str | None
    circular_id: float
    created_on: datetime
    quantity: str
    value: float
    unit: str
    value_text: str
    error_minus: float | None
    error_plus: float | None
    limit_type: str | None  # "upper" / "lower" when the value is a limit, not a measurement
    band: str | None  # energy band or filter
    instrument: str | None
    method: str | None
    status: str  # after reading the other circulars (see the module docstring)
    stated: str  # what the circular itself says: reported / preliminary / refined / retracted
    sentence: str
    offset: int  # of the sentence in the body; -1 for the subject
    time_after_s: float | None = None  # seconds after the trigger, when the circular says


def fingerprint() -> str:
    """Changes whenever the catalog or the reader does: then every circular is read again."""
    digest = hashlib.sha256(f"{EXTRACTOR_VERSION}".encode())
    for name in _READERS:
        module = importlib.import_module(f"gcn_rag.corpus.{name}")
        digest.update(Path(str(module.__file__)).read_bytes())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()[:16]


# --- reading one circular ---------------------------------------------------------------------


def extract(circular: Circular) -> list[Measurement]:
    """Every value the catalog reads in ``circular``'s subject and body, in reading order."""
    found: list[Measurement] = []
    own = circular.event_id
    own_keys = {event_key(own)} if own else set()
    subject_status = _status(circular.subject)
    subject_instrument = first_named_instrument(circular.subject)
    units = [(-1, circular.subject), *sentence_spans(circular.body)]
    owners, clock = Owners(own, circular.body), Clock(circular.body)
    previous = ""
    for offset, sentence in units:
        owners.read(offset, sentence)  # every sentence: one without digits may name an object
        clock.read(offset, sentence)  # ... or be a table's header
        tail, previous = line_before(previous, sentence), sentence
        if not _DIGIT.search(sentence):
            continue  # no number, no value
        readings = [
            (q, r)
            for q in CATALOG
            if q.mention.search(sentence)
            for r in read(q, sentence, before=tail)
        ]
        if not readings:
            continue
        named = find_event_ids(sentence)
        event = own
        if named and not any(event_key(e) in own_keys for e in named):
            event = named[0]  # "GRB <another> had a T90 of 12.8 s", said in this circular
        status = _status(sentence) if offset >= 0 else subject_status
        if status == "reported":
            status = subject_status
        mentions = instrument_mentions(sentence)  # once per sentence, for every reading
        timed = [(r.start, r.end) for q, r in readings if q.timed]
        times = dict(zip(timed, clock.times(offset, sentence, timed), strict=True))
        for quantity, reading in readings:
            instrument = measuring_instrument(quantity, mentions, subject_instrument, reading.start)
            whose = owners.event(quantity.key, reading.start, bool(reading.limit), event)
            row = _row(circular, whose, quantity, reading, sentence, offset, instrument, status)
            found.append(
                dataclasses.replace(row, time_after_s=times.get((reading.start, reading.end)))
            )
    return found


def _row(
    circular: Circular,
    event: str | None,
    quantity: Quantity,
    reading: Reading,
    sentence: str,
    offset: int,
    instrument: str | None,
    status: str,
) -> Measurement:
    minus, plus = reading.error if reading.error else (None, None)
    return Measurement(
        event_id=event,
        circular_id=circular.circular_id,
        created_on=circular.created_on,
        quantity=quantity.key,
        value=reading.value,
        unit=quantity.unit,
        value_text=reading.text,
        error_minus=minus,
        error_plus=plus,
        limit_type=reading.limit or None,
        band=reading.qualifier or _energy_band(quantity, sentence, reading),
        instrument=instrument,
        method=_method(quantity, sentence, reading),
        status=status,
        stated=status,
        sentence=sentence,
        offset=offset,
    )


def _status(text: str) -> str:
    if _RETRACTED.search(text):
        return "retracted"
    if _REFINED.search(text):
        return "refined"
    if _PRELIMINARY.search(text):
        return "preliminary"
    return "reported"


def _energy_band(quantity: Quantity, sentence: str, reading: Reading) -> str | None:
    """The energy band of an instrument's value: the one right after it, else the sentence's
    first (none for a quantity that has no band, such as a distance)."""
    if not quantity.by_instrument:
        return None
    return _band(sentence[reading.end : reading.end + 40]) or _band(sentence)


def _band(sentence: str) -> str | None:
    keV = band(sentence)
    return f"{keV[0]:g}-{keV[1]:g} keV" if keV else None


def _method(quantity: Quantity, sentence: str, reading: Reading) -> str | None:
    """How the value was obtained, where the sentence says so."""
    before = sentence[max(0, reading.start - 60) : reading.start]
    if quantity.key == "redshift":
        if re.search(r"photometric|phot-z", sentence, re.I):
            return "photometric"
        return "spectroscopic" if SPECTROSCOPIC.search(sentence) else None
    if quantity.key == "nh":  # the label nearest the value: "Galactic: 1e20 Intrinsic: 2e22"
        labels = _NH_LABELS.findall(before)
        return None if not labels else "Galactic" if labels[-1] else "intrinsic"
    if quantity.key in ("epeak", "alpha", "beta", "photon_index", "fluence", "peak_flux"):
        for name, pattern in _MODELS:
            if pattern.search(sentence):
                return name
    return None


# --- status across circulars ------------------------------------------------------------------


def settle(rows: list[Measurement], bodies: dict[float, tuple[str, str]]) -> list[Measurement]:
    """Statuses that depend on other circulars: retractions and corrections that name a
    circular, and later refined values of the same quantity from the same instrument.

    ``bodies`` maps circular id -> (subject, body) for the circulars that may retract or
    correct others (only their references are read).
    """
    retracted, corrected = _referenced(bodies)
    by_group: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    out = [r if r.status == r.stated else dataclasses.replace(r, status=r.stated) for r in rows]
    for i, row in enumerate(out):
        if row.circular_id in retracted and row.status != "retracted":
            out[i] = dataclasses.replace(row, status="retracted")
        elif row.circular_id in corrected and row.status in ("reported", "preliminary"):
            out[i] = dataclasses.replace(row, status="superseded")
        if row.limit_type is None and row.event_id:
            by_group[(row.event_id, row.quantity, row.instrument, row.band)].append(i)
    for members in by_group.values():
        refined = [out[i].created_on for i in members if out[i].status == "refined"]
        later = max(out[i].created_on for i in members)
        for i in members:
            row = out[i]
            newer_refined = any(when > row.created_on for when in refined)
            stale = row.status == "preliminary" and later > row.created_on
            if row.status in ("reported", "preliminary") and (newer_refined or stale):
                out[i] = dataclasses.replace(row, status="superseded")
    return out


def _referenced(bodies: dict[float, tuple[str, str]]) -> tuple[set[float], set[float]]:
    """Circular ids that a retraction names, and those that a correction names."""
    retracted: set[float] = set()
    corrected: set[float] = set()
    for cid, (subject, body) in bodies.items():
        retraction = bool(re.search(r"\bretract", subject, re.I))
        correction = bool(_CORRECTION.search(subject))
        if not (retraction or correction):
            continue
        named = {float(m["id"]) for m in CIRCULAR_REFERENCE.finditer(body)} - {cid}
        (retracted if retraction else corrected).update(n for n in named if n < cid)
    return retracted, corrected


# --- the table -----------------------------------------------------------------------------


@dataclasses.dataclass
class MeasurementsReport:
    up_to_date: bool = False
    circulars_read: int = 0
    rows: int = 0
    per_quantity: dict[str, int] = dataclasses.field(default_factory=dict)
    version: int | None = None

    def summary(self) -> str:
        if self.up_to_date:
            return f"Measurements are up to date ({self.rows:,} rows)."
        return f"Measurements: read {self.circulars_read:,} circulars; {self.rows:,} rows."


def update_measurements(
    catalog: Catalog,
    changed: Iterable[Circular] | None = None,
    *,
    force: bool = False,
    reporter: Reporter = SILENT,
) -> MeasurementsReport:
    """Bring ``gcn_measurements`` up to date with ``gcn_circulars``.

    ``changed`` (what an ingest just wrote) re-reads only those circulars; ``None`` re-reads
    everything unless the table's fingerprint (extractor and circulars version) still holds.
    """
    report = MeasurementsReport()
    state = _state(catalog)
    wanted = _wanted_state(catalog)
    if not force and state == wanted:
        report.up_to_date = True
        report.rows = catalog.count(MEASUREMENTS)
        report.version = catalog.version(MEASUREMENTS)
        return report
    incremental = changed is not None and not force and state is not None
    if incremental and state is not None and state.split("|")[0] == wanted.split("|")[0]:
        rows = _incremental(catalog, list(changed or []), report, reporter)
    else:
        rows = _everything(catalog, report, reporter)
    _write(catalog, rows, wanted, report)
    return report


def _state(catalog: Catalog) -> str | None:
    if not catalog.exists(MEASUREMENTS):
        return None
    return catalog.state(MEASUREMENTS) or None


def _wanted_state(catalog: Catalog) -> str:
    return f"{fingerprint()}|circulars v{catalog.version(CIRCULARS)}"


def circulars_of(table: pa.Table) -> Iterator[Circular]:
    for batch in table.to_batches(max_chunksize=2000):
        for row in batch.to_pylist():
            yield Circular(
                circular_id=row["circular_id"],
                subject=row["subject"],
                submitter="",
                created_on=row["created_on"],
                body=row["body"],
                event_id=row["event_id"],
            )


def _everything(
    catalog: Catalog, report: MeasurementsReport, reporter: Reporter
) -> list[Measurement]:
    table = catalog.read(CIRCULARS, CIRCULAR_COLUMNS)
    rows = extract_all(circulars_of(table), table.num_rows, report, reporter)
    return settle(rows, _retractions(table))


def _incremental(
    catalog: Catalog, changed: list[Circular], report: MeasurementsReport, reporter: Reporter
) -> list[Measurement]:
    ids = {c.circular_id for c in changed}
    kept = [
        Measurement(**row)
        for row in catalog.read(MEASUREMENTS).to_pylist()
        if row["circular_id"] not in ids
    ]
    rows = kept + extract_all(iter(changed), len(changed), report, reporter)
    return settle(rows, _retractions(catalog.read(CIRCULARS, CIRCULAR_COLUMNS)))


def extract_all(
    circulars: Iterator[Circular],
    total: int,
    report: MeasurementsReport,
    reporter: Reporter = SILENT,
    *,
    workers: int | None = None,
) -> list[Measurement]:
    """:func:`extract` over many circulars, on every core (up to ``workers``) when there are
    many."""
    task = reporter.task("Reading measurements", total)
    rows: list[Measurement] = []
    batches = _batches(circulars, BATCH)
    workers = workers or min(os.cpu_count() or 1, MAX_WORKERS)
    try:
        if total < PARALLEL_FROM or workers < 2:
            results: Iterator[tuple[int, list[Measurement]]] = map(_extract_batch, batches)
            for n, found in results:
                rows.extend(found)
                report.circulars_read += n
                task.update(report.circulars_read)
        else:
            context = multiprocessing.get_context("spawn")  # safe beside threads
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                for n, found in pool.map(_extract_batch, batches):
                    rows.extend(found)
                    report.circulars_read += n
                    task.update(report.circulars_read)
    finally:
        task.close()
    return rows


def _batches(items: Iterator[Circular], size: int) -> Iterator[list[Circular]]:
    batch: list[Circular] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _extract_batch(circulars: list[Circular]) -> tuple[int, list[Measurement]]:
    return len(circulars), [row for c in circulars for row in extract(c)]


def _retractions(table: pa.Table) -> dict[float, tuple[str, str]]:
    """(subject, body) of the circulars whose subject retracts or corrects."""
    import pyarrow.compute as pc

    mask = pc.match_substring_regex(table["subject"], r"(?i)retract|erratum|correction|corrigendum")
    picked = table.filter(mask)
    return {
        cid: (subject, body)
        for cid, subject, body in zip(
            picked["circular_id"].to_pylist(),
            picked["subject"].to_pylist(),
            picked["body"].to_pylist(),
            strict=True,
        )
    }


def measurement_schema() -> pa.Schema:
    """Columns of ``gcn_measurements``, in :class:`Measurement` order."""
    import pyarrow as pa

    text, number = pa.string(), pa.float64()
    return pa.schema(
        [
            ("event_id", text),
            ("circular_id", number),
            ("created_on", pa.timestamp("us", tz="UTC")),
            ("quantity", text),
            ("value", number),
            ("unit", text),
            ("value_text", text),
            ("error_minus", number),
            ("error_plus", number),
            ("limit_type", text),
            ("band", text),
            ("instrument", text),
            ("method", text),
            ("status", text),
            ("stated", text),
            ("sentence", text),
            ("offset", pa.int64()),
            ("time_after_s", number),
        ]
    )


def to_arrow(rows: list[Measurement]) -> pa.Table:
    import pyarrow as pa

    schema = measurement_schema()
    columns = {name: [getattr(r, name) for r in rows] for name in schema.names}
    table = pa.Table.from_pydict(columns, schema=schema)
    return table.sort_by([("circular_id", "ascending"), ("offset", "ascending")])


def _write(
    catalog: Catalog, rows: list[Measurement], state: str, report: MeasurementsReport
) -> None:
    table = to_arrow(rows)
    description = "values read from gcn_circulars by the quantity catalog"
    report.version = catalog.overwrite(MEASUREMENTS, table, description=description, state=state)
    report.rows = table.num_rows
    counts: dict[str, int] = defaultdict(int)
    for key in table["quantity"].to_pylist():
        counts[key] += 1
    report.per_quantity = dict(sorted(counts.items(), key=lambda kv: -kv[1]))
