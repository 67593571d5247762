"""Building the index from ``gcn_circulars_chunks``: BM25 over every chunk, one vector per circular.

What is embedded: one *lead passage* per circular (event, subject and the opening of the body
after the author list, cut at ``DENSE_MAX_TOKENS``), not every chunk. Embedding all ~22 M
tokens would take hours on two cores; the lead passage says what a circular is about, while
BM25 over every chunk still sees all the text. Vectors are cached by text hash, so a rebuild
embeds only new or changed lead passages. The directory it writes is
:mod:`gcn_rag.search.index`.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gcn_rag.corpus.events import event_aliases, event_key, find_event_ids
from gcn_rag.corpus.ingest import CHUNKS
from gcn_rag.corpus.measurement_table import MEASUREMENTS, update_measurements
from gcn_rag.errors import NotFoundError
from gcn_rag.progress import SILENT, Reporter
from gcn_rag.search import index as fmt

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from gcn_rag.search.embedding import TextEmbedder
    from gcn_rag.settings import Settings
    from gcn_rag.tables import Catalog

LEAD_CHARS = 400  # comfortably more than DENSE_MAX_TOKENS tokens of English text
CHUNK_COLUMNS = [
    "circular_id",
    "event_id",
    "subject",
    "created_on",
    "chunk_index",
    "kind",
    "chunk_text",
    "embed_text",
    "chunker",
]


@dataclasses.dataclass
class BuildReport:
    path: Path
    up_to_date: bool = False
    circulars: int = 0
    chunks: int = 0
    embedded: int = 0  # lead passages embedded now (cache misses)
    measurements: int = 0  # rows of gcn_measurements
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)

    def summary(self) -> str:
        """What the build did, in a sentence."""
        if self.up_to_date:
            return (
                f"Index at {self.path} is up to date ({self.circulars:,} circulars, "
                f"{self.chunks:,} chunks, {self.measurements:,} measurements)."
            )
        steps = ", ".join(f"{name} {sec:.1f} s" for name, sec in self.seconds.items())
        return (
            f"Index at {self.path}: {self.circulars:,} circulars, {self.chunks:,} chunks, "
            f"{self.measurements:,} measurements; embedded {self.embedded:,} new lead passages "
            f"({steps})."
        )


def corpus_fingerprint(catalog: Catalog) -> dict[str, Any]:
    """Identifies the chunks (and measurements) table versions the index is built from."""
    measured = catalog.exists(MEASUREMENTS)
    return {
        "chunks_table": str(catalog.name(CHUNKS)),
        "chunks_version": catalog.version(CHUNKS),
        "chunks_path": str(catalog.path(CHUNKS)),
        "measurements_version": catalog.version(MEASUREMENTS) if measured else None,
    }


def build_index(
    settings: Settings,
    catalog: Catalog,
    embedder: TextEmbedder,
    *,
    path: Path | None = None,
    force: bool = False,
    reporter: Reporter = SILENT,
) -> BuildReport:
    """Build (or bring up to date) the index directory from ``gcn_circulars_chunks``, after
    bringing ``gcn_measurements`` up to date (the index carries a copy for dossiers)."""
    target = path or settings.index
    report = BuildReport(target)
    clock = time.perf_counter()
    measured = update_measurements(catalog, None, force=force, reporter=reporter)
    report.measurements = measured.rows
    if not measured.up_to_date:
        report.seconds["measurements"] = time.perf_counter() - clock
    fingerprint = corpus_fingerprint(catalog)
    if not force and _up_to_date(target, fingerprint, embedder, report):
        return report
    if not force and _up_to_date(target, fingerprint, embedder, report, but="measurements"):
        clock = time.perf_counter()  # only the values changed: swap in their copy
        version = fingerprint["measurements_version"]
        fmt.replace_measurements(target, catalog.read(MEASUREMENTS), version)
        report.up_to_date, report.seconds["write"] = False, time.perf_counter() - clock
        return report
    clock = time.perf_counter()
    chunks = catalog.read(CHUNKS, CHUNK_COLUMNS)
    if chunks.num_rows == 0:
        raise NotFoundError("The chunks table is empty; run `gcn-rag ingest` first.")
    parts = _columns(chunks)
    report.seconds["read"] = time.perf_counter() - clock

    clock = time.perf_counter()
    bm25, event_rows = _lexical(parts, reporter)
    report.seconds["lexical"] = time.perf_counter() - clock

    clock = time.perf_counter()
    vectors = _dense(settings, embedder, parts["lead"], report, reporter)
    report.seconds["dense"] = time.perf_counter() - clock

    clock = time.perf_counter()
    corpus = {
        **fingerprint,
        "circulars": len(parts["circ_ids"]),
        "chunks": chunks.num_rows,
        "max_circular_id": max(parts["circ_ids"]),
    }
    manifest = _manifest(corpus, str(parts["chunker"]), embedder, int(vectors.shape[1]))
    measurements = catalog.read(MEASUREMENTS) if catalog.exists(MEASUREMENTS) else None
    fmt.save(target, parts, event_rows, vectors, bm25, manifest, measurements)
    report.seconds["write"] = time.perf_counter() - clock
    report.circulars, report.chunks = len(parts["circ_ids"]), chunks.num_rows
    return report


def _up_to_date(
    target: Path,
    fingerprint: dict[str, Any],
    embedder: TextEmbedder,
    report: BuildReport,
    *,
    but: str = "",
) -> bool:
    """Whether the index at ``target`` was built from this chunks table (and measurements,
    unless ``but="measurements"``) with this model."""
    if not fmt.exists(target):
        return False
    old = fmt.Manifest.read(target / fmt.MANIFEST)
    versions = (
        ("chunks_version",) if but == "measurements" else ("chunks_version", "measurements_version")
    )
    same_corpus = all(old.corpus.get(key) == fingerprint[key] for key in versions)
    if not (same_corpus and old.embedding.get("model_id") == embedder.model_id):
        return False
    report.up_to_date = True
    report.circulars, report.chunks = old.corpus["circulars"], old.corpus["chunks"]
    return True


def _lexical(parts: dict[str, Any], reporter: Reporter) -> tuple[Any, dict[str, set[int]]]:
    """The BM25 index over every chunk, and the circular rows under each event key.

    Three steps, each on its own bar: finding the events a chunk names and tokenizing count
    chunks; bm25s's scoring cannot report (its own bars are tqdm's), so it gets a bar without
    a total that shows the time spent.
    """
    import bm25s

    task = reporter.task("Finding event names in chunks", len(parts["chunk_text"]))
    try:
        docs, event_rows = _lexical_docs(parts, on_row=task.update)
    finally:
        task.close()
    task = reporter.task("Tokenizing chunks (BM25)", len(docs))
    try:  # bm25s.tokenize reads any iterable once, in order: the tokens are the same
        tokens = bm25s.tokenize(
            _counted(docs, task.update), stopwords=fmt.STOPWORDS, show_progress=False
        )
    finally:
        task.close()
    task = reporter.task("Scoring terms (BM25)", None)
    try:
        bm25 = bm25s.BM25(k1=fmt.BM25_K1, b=fmt.BM25_B)
        bm25.index(tokens, show_progress=False)
    finally:
        task.close()
    return bm25, event_rows


def _counted(items: list[str], on_count: Callable[[int], None], every: int = 500) -> Iterator[str]:
    """``items`` in order, calling ``on_count(done)`` every ``every`` items and at the end."""
    for done, item in enumerate(items, start=1):
        yield item
        if done % every == 0:
            on_count(done)
    on_count(len(items))


def _dense(
    settings: Settings,
    embedder: TextEmbedder,
    leads: list[str],
    report: BuildReport,
    reporter: Reporter,
) -> np.ndarray:
    """One vector per lead passage, from the embedding cache where it has them."""
    from gcn_rag.search.embedding import EmbeddingCache, embed_with_cache

    task = reporter.task("Embedding lead passages", len(leads))
    try:
        cache = EmbeddingCache(settings.embedding_cache, embedder.model_id)
        _, missing = cache.lookup(leads)
        report.embedded = len(missing)
        return embed_with_cache(embedder, cache, leads, on_progress=lambda done: task.update(done))
    finally:
        task.close()


def _manifest(
    corpus: dict[str, Any], chunker: str, embedder: TextEmbedder, dim: int
) -> fmt.Manifest:
    import bm25s

    return fmt.Manifest(
        format_version=fmt.FORMAT_VERSION,
        built_at=datetime.now(UTC).isoformat(timespec="seconds"),
        corpus=corpus,
        chunker=chunker,
        embedding={
            "model_id": embedder.model_id,
            "model_sha256": embedder.model_sha256,
            "dim": dim,
            "max_tokens": fmt.DENSE_MAX_TOKENS,
            "unit": "lead passage per circular",
        },
        lexical={
            "library": "bm25s",
            "version": bm25s.__version__,
            "k1": fmt.BM25_K1,
            "b": fmt.BM25_B,
            "stopwords": fmt.STOPWORDS,
        },
    )


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


def _lexical_docs(
    parts: dict[str, Any], on_row: Callable[[int], None], every: int = 500
) -> tuple[list[str], dict[str, set[int]]]:
    """Each chunk's BM25 text (subject, text and the events it names), and the circular rows
    under each event key; ``on_row(done)`` every ``every`` chunks and at the end."""
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
        docs.append(fmt.lexical_text(subject, text, named))
        if (i + 1) % every == 0:
            on_row(i + 1)
    on_row(len(docs))
    return docs, event_rows
