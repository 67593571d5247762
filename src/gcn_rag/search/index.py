"""The index directory: its format, written by :func:`save` and read by :meth:`SearchIndex.load`.

Layout (format version 1)::

    index/
      manifest.json        what this index was built from and with (see :class:`Manifest`)
      circulars.arrow      one row per circular: circular_id, event_id, subject, created_on
      chunks.arrow         one row per chunk: circular_row, chunk_index, kind, chunk_text
      arrays.npz           circ_ids, circ_created_us, chunk_circ (chunk -> circular row),
                           event_keys / event_offsets / event_rows (event key -> circulars)
      dense.npy            float32 [circulars, 384]: one unit vector per circular
      lexical/             a bm25s index over chunks (subject + chunk text + event keys)
      measurements.arrow   a copy of ``gcn_measurements`` (optional: older indexes lack it)

Arrow files and arrays are memory-mapped on load, so loading is fast and cheap. The writer
fills a staging directory and swaps it in, so a reader never sees half an index.

Event awareness: every circular is listed under the keys of its own event id (and aliases)
and of every event its subject or text names, so "circulars about GRB 090516A" also finds
the ones that wrote "GRB 090516". What is indexed, and how, is :mod:`gcn_rag.search.build`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gcn_rag.corpus.events import event_aliases, event_key
from gcn_rag.errors import BadInputError, NotFoundError

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

FORMAT_VERSION = 1
DENSE_MAX_TOKENS = 64  # tokens of a circular's lead passage that are embedded
BM25_K1, BM25_B = 1.2, 0.75
STOPWORDS = "en"

MANIFEST = "manifest.json"
TABLES = ("circulars", "chunks")  # <name>.arrow
ARRAYS = "arrays.npz"
DENSE = "dense.npy"
LEXICAL = "lexical"
MEASUREMENTS = "measurements.arrow"


@dataclasses.dataclass(frozen=True)
class Manifest:
    """What an index was built from; loading compares it with the running code."""

    format_version: int
    built_at: str
    corpus: dict[str, Any]  # circulars, chunks, max_circular_id, chunks_version, fingerprint
    chunker: str
    embedding: dict[str, Any]  # model_id, model_sha256, dim, max_tokens, unit
    lexical: dict[str, Any]  # library, version, k1, b, stopwords

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> Manifest:
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise BadInputError(
                f"{path} is missing or unreadable ({exc}); rebuild with `gcn-rag index`."
            ) from exc


#: manifest fields that say when and where an index was built from, not what it holds
BUILD_RECORD = (
    "built_at",
    "corpus.chunks_path",
    "corpus.chunks_version",
    "corpus.measurements_version",
)


def content_hash(index: Path) -> str:
    """A short digest of what an index answers from: every file's content, and the manifest
    without its :data:`BUILD_RECORD`. ``index --force`` over the same chunks, or the same
    workspace copied elsewhere, hashes the same; a new ``measurements.arrow`` does not."""
    import zipfile

    digest = hashlib.sha256()
    manifest = json.loads((index / MANIFEST).read_text())
    for field in BUILD_RECORD:
        *parents, key = field.split(".")
        part = manifest
        for name in parents:
            part = part.get(name, {})
        part.pop(key, None)
    digest.update(json.dumps(manifest, sort_keys=True).encode())
    for path in sorted(p for p in index.rglob("*") if p.is_file() and p.name != MANIFEST):
        digest.update(b"\0" + path.relative_to(index).as_posix().encode() + b"\0")
        if path.suffix == ".npz":  # a zip: member timestamps are build times
            with zipfile.ZipFile(path) as archive:
                for member in sorted(archive.namelist()):
                    digest.update(member.encode() + b"\0" + archive.read(member))
        else:
            with path.open("rb") as f:
                digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()[:16]


def exists(index: Path) -> bool:
    return (index / MANIFEST).exists()


def lexical_text(subject: str, text: str, event_ids: list[str]) -> str:
    """What BM25 sees for a chunk: subject, text, and one key token per named event.

    The key tokens (``grb130427a``) make "GRB 130427A", "GRB130427A" and the alias
    "GRB 130427" match each other, which plain word tokenization would not.
    """
    return f"{subject}\n{text}\n{' '.join(query_event_tokens(event_ids))}"


def query_event_tokens(event_ids: list[str]) -> list[str]:
    """The key tokens of ``event_ids`` and their aliases, as :func:`lexical_text` writes them."""
    return sorted({event_key(alias).lower() for e in event_ids for alias in event_aliases(e)})


# --- write ----------------------------------------------------------------------------------


def save(
    target: Path,
    parts: dict[str, Any],
    event_rows: dict[str, set[int]],
    vectors: np.ndarray,
    bm25: Any,
    manifest: Manifest,
    measurements: pa.Table | None = None,
) -> None:
    """Write an index to ``target`` through a staging directory, replacing what was there."""
    staging = target.with_name(target.name + ".building")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    _write_tables(staging, parts)
    if measurements is not None:
        _write_arrow(staging / MEASUREMENTS, measurements)
    _write_arrays(staging, parts, event_rows, vectors)
    bm25.save(str(staging / LEXICAL))
    manifest.write(staging / MANIFEST)
    _swap(staging, target)


def replace_measurements(target: Path, measurements: pa.Table, version: int | None) -> None:
    """Swap a new copy of ``gcn_measurements`` into a built index (the rest unchanged): a
    process that has the old file mapped keeps reading it."""
    staging = target / (MEASUREMENTS + ".new")
    _write_arrow(staging, measurements)
    os.replace(staging, target / MEASUREMENTS)
    manifest = Manifest.read(target / MANIFEST)
    corpus = {**manifest.corpus, "measurements_version": version}
    fresh = target / (MANIFEST + ".new")
    dataclasses.replace(manifest, corpus=corpus).write(fresh)
    os.replace(fresh, target / MANIFEST)


def _write_tables(out: Path, parts: dict[str, Any]) -> None:
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    circulars = pa.table(
        {
            "circular_id": pa.array(parts["circ_ids"], pa.float64()),
            "event_id": pa.array(parts["circ_event"], pa.string()),
            "subject": pa.array(parts["circ_subject"], pa.string()),
            "created_on": pa.array(parts["circ_created"], ts),
        }
    )
    chunks = pa.table(
        {
            "circular_row": pa.array(parts["chunk_circ"], pa.int32()),
            "chunk_index": pa.array(parts["chunk_index"], pa.int32()),
            "kind": pa.array(parts["kind"], pa.string()),
            "chunk_text": pa.array(parts["chunk_text"], pa.string()),
        }
    )
    for name, table in zip(TABLES, (circulars, chunks), strict=True):
        _write_arrow(out / f"{name}.arrow", table)


def _write_arrow(path: Path, table: pa.Table) -> None:
    import pyarrow as pa

    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=1 << 16)


def _write_arrays(
    out: Path, parts: dict[str, Any], event_rows: dict[str, set[int]], vectors: np.ndarray
) -> None:
    import numpy as np

    keys = sorted(event_rows)
    offsets = np.zeros(len(keys) + 1, dtype=np.int64)
    rows: list[int] = []
    for i, key in enumerate(keys):
        rows.extend(sorted(event_rows[key]))
        offsets[i + 1] = len(rows)
    created = np.array(
        [int(d.timestamp() * 1_000_000) for d in parts["circ_created"]], dtype=np.int64
    )
    np.savez(
        out / ARRAYS,
        circ_ids=np.array(parts["circ_ids"], dtype=np.float64),
        circ_created_us=created,
        chunk_circ=np.array(parts["chunk_circ"], dtype=np.int32),
        event_keys=np.array(keys, dtype=np.str_),
        event_offsets=offsets,
        event_rows=np.array(rows, dtype=np.int32),
    )
    np.save(out / DENSE, vectors.astype(np.float32))


def _swap(staging: Path, target: Path) -> None:
    """Replace ``target`` with ``staging`` so a reader never sees half an index."""
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


# --- read -----------------------------------------------------------------------------------


class SearchIndex:
    """A loaded index directory (memory-mapped; cheap to share between threads)."""

    def __init__(self, path: Path, manifest: Manifest, **parts: Any) -> None:
        import numpy as np

        self.path = path
        self.manifest = manifest
        self.circulars: pa.Table = parts["circulars"]
        self.chunks: pa.Table = parts["chunks"]
        self.circ_ids: np.ndarray = parts["circ_ids"]
        self.circ_created_us: np.ndarray = parts["circ_created_us"]
        self.chunk_circ: np.ndarray = parts["chunk_circ"]
        # chunks are stored grouped by circular: circular i owns rows starts[i]:starts[i + 1]
        self.chunk_starts: np.ndarray = np.searchsorted(
            self.chunk_circ, np.arange(len(self.circ_ids) + 1)
        )
        self.dense: np.ndarray = parts["dense"]
        self.bm25: Any = parts["bm25"]
        keys = parts["event_keys"]
        offsets, rows = parts["event_offsets"], parts["event_rows"]
        self._event_rows = {str(k): rows[offsets[i] : offsets[i + 1]] for i, k in enumerate(keys)}
        self.event_ids: list[str | None] = self.circulars["event_id"].to_pylist()
        self.measurements: pa.Table | None = parts.get("measurements")
        self._measurement_rows: dict[str, list[int]] | None = None  # event key -> rows
        self._retracted: frozenset[float] | None = None

    @classmethod
    def load(cls, path: Path, *, model_id: str | None = None) -> SearchIndex:
        """Load an index; refuse one built with another format or embedding model."""
        import bm25s
        import numpy as np
        import pyarrow as pa

        if not exists(path):
            raise NotFoundError(f"No index at {path}; build one with `gcn-rag index`.")
        manifest = Manifest.read(path / MANIFEST)
        if manifest.format_version != FORMAT_VERSION:
            raise BadInputError(
                f"The index at {path} has format {manifest.format_version}, this gcn-rag "
                f"reads {FORMAT_VERSION}; rebuild it with `gcn-rag index --force`."
            )
        built_with = manifest.embedding.get("model_id")
        if model_id is not None and built_with != model_id:
            raise BadInputError(
                f"The index at {path} was embedded with {built_with}, but the embedder is "
                f"{model_id}; rebuild it with `gcn-rag index --force`."
            )
        arrays = np.load(path / ARRAYS)
        tables = {
            name: pa.ipc.open_file(pa.memory_map(str(path / f"{name}.arrow"))).read_all()
            for name in TABLES
        }
        if (path / MEASUREMENTS).is_file():
            tables["measurements"] = pa.ipc.open_file(
                pa.memory_map(str(path / MEASUREMENTS))
            ).read_all()
        return cls(
            path,
            manifest,
            **tables,
            **{name: arrays[name] for name in arrays.files},
            dense=np.load(path / DENSE, mmap_mode="r"),
            bm25=bm25s.BM25.load(str(path / LEXICAL), mmap=True, show_progress=False),
        )

    def chunk_text(self, row: int) -> str:
        return str(self.chunks["chunk_text"][row].as_py())

    def chunk_kind(self, row: int) -> str:
        return str(self.chunks["kind"][row].as_py())

    def chunk_rows_of(self, circ_row: int) -> range:
        """Chunk rows of one circular."""
        return range(int(self.chunk_starts[circ_row]), int(self.chunk_starts[circ_row + 1]))

    def subject(self, circ_row: int) -> str:
        return str(self.circulars["subject"][circ_row].as_py())

    def created_on(self, circ_row: int) -> datetime:
        value: datetime = self.circulars["created_on"][circ_row].as_py()
        return value

    def measurements_of(self, keys: set[str]) -> pa.Table:
        """The rows of ``gcn_measurements`` whose event has one of ``keys`` (:func:`event_key`)."""
        import numpy as np

        if self.measurements is None:
            raise NotFoundError("This index has no measurements; rebuild it with `gcn-rag index`.")
        if self._measurement_rows is None:
            by_key: dict[str, list[int]] = {}
            for i, event in enumerate(self.measurements["event_id"].to_pylist()):
                if event:
                    by_key.setdefault(event_key(event), []).append(i)
            self._measurement_rows = by_key
        picked = sorted(i for key in keys for i in self._measurement_rows.get(key, ()))
        return self.measurements.take(np.asarray(picked, dtype=np.int64))

    def retracted_circulars(self) -> frozenset[float]:
        """Circulars that a later circular retracts (from the measurements' statuses)."""
        if self._retracted is None:
            found: set[float] = set()
            if self.measurements is not None:
                import pyarrow.compute as pc

                table = self.measurements
                later = pc.and_(
                    pc.equal(table["status"], "retracted"),
                    pc.not_equal(table["stated"], "retracted"),
                )
                found = set(table.filter(later)["circular_id"].to_pylist())
            self._retracted = frozenset(found)
        return self._retracted

    def rows_about(self, events: list[str]) -> np.ndarray:
        """Circular rows about or naming any of ``events`` (any alias)."""
        import numpy as np

        found = [
            self._event_rows.get(event_key(alias), np.empty(0, np.int32))
            for event in events
            for alias in event_aliases(event)
        ]
        return np.unique(np.concatenate(found)) if found else np.empty(0, np.int32)
