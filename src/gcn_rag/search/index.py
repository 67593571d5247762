"""The search index: a self-describing directory built from the chunks table.

Layout (format version 1)::

    index/
      manifest.json        what this index was built from and with (see :class:`Manifest`)
      circulars.arrow      one row per circular: circular_id, event_id, subject, created_on
      chunks.arrow         one row per chunk: circular_row, chunk_index, kind, chunk_text
      arrays.npz           circ_ids, circ_created_us, chunk_circ (chunk -> circular row),
                           event_keys / event_offsets / event_rows (event key -> circulars)
      dense.npy            float32 [circulars, 384]: one unit vector per circular
      lexical/             a bm25s index over chunks (subject + chunk text + event keys)

Arrow files and arrays are memory-mapped on load, so loading is fast and cheap.

What is embedded: one *lead passage* per circular (event, subject and the opening of the body
after the author list, cut at ``dense_max_tokens``), not every chunk. Embedding all ~22 M
tokens would take hours on two cores; the lead passage says what a circular is about, while
BM25 over every chunk still sees all the text. Vectors are cached by text hash, so a rebuild
embeds only new or changed lead passages.

Event awareness: every circular is listed under the keys of its own event id (and aliases)
and of every event its subject or text names, so "circulars about GRB 090516A" also finds
the ones that wrote "GRB 090516".
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gcn_rag.corpus.events import event_aliases, event_key, find_event_ids
from gcn_rag.errors import BadInputError, NotFoundError
from gcn_rag.progress import SILENT, Reporter

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from gcn_rag.search.embedding import Embedder
    from gcn_rag.settings import Settings
    from gcn_rag.tables import Catalog

FORMAT_VERSION = 1
DENSE_MAX_TOKENS = 64
LEAD_CHARS = 400  # comfortably more than DENSE_MAX_TOKENS tokens of English text
BM25_K1, BM25_B = 1.2, 0.75
STOPWORDS = "en"


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


def lexical_text(subject: str, text: str, event_ids: list[str]) -> str:
    """What BM25 sees for a chunk: subject, text, and one key token per named event.

    The key tokens (``grb221009a``) make "GRB 221009A", "GRB221009A" and the alias
    "GRB 221009" match each other, which plain word tokenization would not.
    """
    keys = {event_key(alias).lower() for e in event_ids for alias in event_aliases(e)}
    return f"{subject}\n{text}\n{' '.join(sorted(keys))}"


def query_event_tokens(event_ids: list[str]) -> list[str]:
    return sorted({event_key(alias).lower() for e in event_ids for alias in event_aliases(e)})


def default_path(settings: Settings) -> Path:
    return settings.home / "index"


# --- build ----------------------------------------------------------------------------------


@dataclasses.dataclass
class BuildReport:
    path: Path
    up_to_date: bool = False
    circulars: int = 0
    chunks: int = 0
    embedded: int = 0  # lead passages embedded now (cache misses)
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)


def corpus_fingerprint(catalog: Catalog) -> dict[str, Any]:
    """Identifies the chunks table version the index is built from."""
    from gcn_rag.corpus.ingest import CHUNKS

    path = catalog.path(CHUNKS)
    version = catalog.version(CHUNKS)
    return {
        "chunks_table": str(catalog.name(CHUNKS)),
        "chunks_version": version,
        "chunks_path": str(path),
    }


def build_index(
    settings: Settings,
    catalog: Catalog,
    embedder: Embedder,
    *,
    path: Path | None = None,
    force: bool = False,
    reporter: Reporter = SILENT,
) -> BuildReport:
    """Build (or bring up to date) the index directory from ``gcn_circulars_chunks``."""
    import bm25s

    from gcn_rag.corpus.ingest import CHUNKS
    from gcn_rag.search.embedding import EmbeddingCache, embed_with_cache

    target = path or default_path(settings)
    report = BuildReport(target)
    fingerprint = corpus_fingerprint(catalog)
    if not force and (target / "manifest.json").exists():
        old = Manifest.read(target / "manifest.json")
        same_corpus = old.corpus.get("chunks_version") == fingerprint["chunks_version"]
        if same_corpus and old.embedding.get("model_id") == embedder.model_id:
            report.up_to_date = True
            report.circulars, report.chunks = old.corpus["circulars"], old.corpus["chunks"]
            return report
    clock = time.perf_counter()
    chunks = catalog.read(
        CHUNKS,
        [
            "circular_id",
            "event_id",
            "subject",
            "created_on",
            "chunk_index",
            "kind",
            "chunk_text",
            "embed_text",
            "chunker",
        ],
    )
    if chunks.num_rows == 0:
        raise NotFoundError("The chunks table is empty; run `gcn-rag ingest` first.")
    parts = _columns(chunks)
    report.seconds["read"] = time.perf_counter() - clock

    clock = time.perf_counter()
    task = reporter.task("Indexing text (BM25)", None)
    try:
        docs, event_rows = _lexical_docs(parts)
        tokens = bm25s.tokenize(docs, stopwords=STOPWORDS, show_progress=False)
        bm25 = bm25s.BM25(k1=BM25_K1, b=BM25_B)
        bm25.index(tokens, show_progress=False)
    finally:
        task.close()
    report.seconds["lexical"] = time.perf_counter() - clock

    clock = time.perf_counter()
    leads = parts["lead"]
    task = reporter.task("Embedding lead passages", len(leads))
    try:
        cache = EmbeddingCache(settings.cache / "embeddings", embedder.model_id)
        _, missing = cache.lookup(leads)
        report.embedded = len(missing)
        vectors = embed_with_cache(
            embedder, cache, leads, on_progress=lambda done: task.update(done)
        )
    finally:
        task.close()
    report.seconds["dense"] = time.perf_counter() - clock

    clock = time.perf_counter()
    staging = target.with_name(target.name + ".building")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    _write_tables(staging, parts)
    _write_arrays(staging, parts, event_rows, vectors)
    bm25.save(str(staging / "lexical"))
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        built_at=datetime.now(UTC).isoformat(timespec="seconds"),
        corpus={
            **fingerprint,
            "circulars": len(parts["circ_ids"]),
            "chunks": chunks.num_rows,
            "max_circular_id": max(parts["circ_ids"]),
        },
        chunker=str(parts["chunker"]),
        embedding={
            "model_id": embedder.model_id,
            "model_sha256": embedder.model_sha256,
            "dim": int(vectors.shape[1]),
            "max_tokens": DENSE_MAX_TOKENS,
            "unit": "lead passage per circular",
        },
        lexical={
            "library": "bm25s",
            "version": bm25s.__version__,
            "k1": BM25_K1,
            "b": BM25_B,
            "stopwords": STOPWORDS,
        },
    )
    manifest.write(staging / "manifest.json")
    _swap(staging, target)
    report.seconds["write"] = time.perf_counter() - clock
    report.circulars, report.chunks = len(parts["circ_ids"]), chunks.num_rows
    return report


def _columns(chunks: pa.Table) -> dict[str, Any]:
    """Chunk columns as Python lists, plus per-circular lists (rows sorted by circular)."""
    table = chunks.sort_by([("circular_id", "ascending"), ("chunk_index", "ascending")])
    cols = {name: table[name].to_pylist() for name in table.column_names}
    circ_ids: list[float] = []
    circ_event: list[str | None] = []
    circ_subject: list[str] = []
    circ_created: list[datetime] = []
    lead: list[str] = []
    chunk_circ: list[int] = []
    for i, cid in enumerate(cols["circular_id"]):
        if not circ_ids or circ_ids[-1] != cid:
            circ_ids.append(cid)
            circ_event.append(cols["event_id"][i])
            circ_subject.append(cols["subject"][i])
            circ_created.append(cols["created_on"][i])
            lead.append("")
        row = len(circ_ids) - 1
        chunk_circ.append(row)
        if not lead[row] and cols["kind"][i] == "text":
            lead[row] = _lead(cols["embed_text"][i])
    for row, text in enumerate(lead):
        if not text:  # a circular with no prose: embed what it is about
            lead[row] = f"EVENT: {circ_event[row] or 'none'} SUBJECT: {circ_subject[row]}"
    chunkers = set(cols["chunker"])
    return {
        **cols,
        "circ_ids": circ_ids,
        "circ_event": circ_event,
        "circ_subject": circ_subject,
        "circ_created": circ_created,
        "lead": lead,
        "chunk_circ": chunk_circ,
        "chunker": ",".join(sorted(chunkers)),
    }


def _lead(embed_text: str, chars: int = LEAD_CHARS) -> str:
    """The opening of a chunk's embedded text, cut at a word boundary.

    Cutting here (not only at the model's token limit) keeps the embedding cache key stable
    when text far past the dense window changes.
    """
    if len(embed_text) <= chars:
        return embed_text
    return embed_text[:chars].rsplit(" ", 1)[0]


def _lexical_docs(parts: dict[str, Any]) -> tuple[list[str], dict[str, set[int]]]:
    docs: list[str] = []
    event_rows: dict[str, set[int]] = defaultdict(set)
    for row, event in enumerate(parts["circ_event"]):
        if event:
            for alias in event_aliases(event):
                event_rows[event_key(alias)].add(row)
    for i, text in enumerate(parts["chunk_text"]):
        row = parts["chunk_circ"][i]
        subject = parts["subject"][i]
        named = find_event_ids(subject) if parts["chunk_index"][i] == 0 else []
        named += find_event_ids(text)
        if parts["event_id"][i]:
            named.append(parts["event_id"][i])
        for event in named:
            event_rows[event_key(event)].add(row)
        docs.append(lexical_text(subject, text, named))
    return docs, event_rows


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
    for name, table in (("circulars", circulars), ("chunks", chunks)):
        with (
            pa.OSFile(str(out / f"{name}.arrow"), "wb") as sink,
            pa.ipc.new_file(sink, table.schema) as writer,
        ):
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
        out / "arrays.npz",
        circ_ids=np.array(parts["circ_ids"], dtype=np.float64),
        circ_created_us=created,
        chunk_circ=np.array(parts["chunk_circ"], dtype=np.int32),
        event_keys=np.array(keys, dtype=np.str_),
        event_offsets=offsets,
        event_rows=np.array(rows, dtype=np.int32),
    )
    np.save(out / "dense.npy", vectors.astype(np.float32))


def _swap(staging: Path, target: Path) -> None:
    """Replace ``target`` with ``staging`` so a reader never sees half an index."""
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
