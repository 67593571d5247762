"""Chunks fit the real tokenizer's window, keep author lists out of the embedded text."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from conftest import TXT_ARCHIVE
from gcn_rag.corpus.chunking import (
    Chunk,
    Chunker,
    ChunkerConfig,
    is_header,
    is_table,
    split_sentences,
    split_units,
)
from gcn_rag.corpus.circulars import Circular, ReadReport, read_circulars


@pytest.fixture(scope="module")
def fixture_circulars() -> dict[float, Circular]:
    return {c.circular_id: c for c in read_circulars(TXT_ARCHIVE, ReadReport())}


def chunks_of(tokenizer: Any, *circulars: Circular, **config: Any) -> list[Chunk]:
    return list(Chunker(tokenizer, ChunkerConfig(**config)).chunk(circulars))


def test_every_chunk_fits_and_counts_exactly(
    tokenizer: Any, fixture_circulars: dict[float, Circular]
) -> None:
    chunks = chunks_of(tokenizer, *fixture_circulars.values())
    texts = [c for c in chunks if c.kind == "text"]
    assert len({c.circular_id for c in texts}) == len(fixture_circulars)
    for chunk in texts:
        real = len(tokenizer.encode(chunk.embed_text).ids)
        assert real == chunk.n_tokens <= 256, chunk.chunk_id
        assert chunk.embed_text.startswith(f"EVENT: {chunk.event_id or 'none'} SUBJECT: ")
        assert chunk.embed_text.endswith(chunk.chunk_text)
    ids = [c.chunk_id for c in chunks]
    assert len(ids) == len(set(ids))


def test_smaller_window_is_respected(
    tokenizer: Any, fixture_circulars: dict[float, Circular]
) -> None:
    chunks = chunks_of(tokenizer, fixture_circulars[32659], max_tokens=96)
    assert all(c.n_tokens <= 96 for c in chunks if c.kind == "text")
    assert len(chunks) > 5


def test_author_list_is_a_header_chunk_not_embedded(
    tokenizer: Any, fixture_circulars: dict[float, Circular]
) -> None:
    chunks = chunks_of(tokenizer, fixture_circulars[32648])
    header, first = chunks[0], chunks[1]
    assert header.kind == "header" and header.embed_text == "" and header.n_tokens == 0
    assert header.chunk_text.startswith("A. de Ugarte Postigo (OCA)")
    assert header.chunk_text.endswith("report on behalf of the Stargate collaboration:")
    assert "Ugarte" not in " ".join(c.embed_text for c in chunks)
    assert [c.chunk_id for c in chunks] == [f"32648_{i}" for i in range(len(chunks))]
    assert first.chunk_text.startswith("We observed the afterglow")
    redshift = [c for c in chunks if "z = 0.151" in c.chunk_text]
    assert redshift and all(c.event_id == "GRB 221009A" for c in redshift)


def test_consecutive_chunks_overlap_by_one_sentence(
    tokenizer: Any, fixture_circulars: dict[float, Circular]
) -> None:
    texts = [c for c in chunks_of(tokenizer, fixture_circulars[32648]) if c.kind == "text"]
    assert len(texts) >= 2
    last_sentence = split_sentences(" ".join(texts[0].chunk_text.split()))[-1]
    assert texts[1].chunk_text.startswith(last_sentence)
    no_overlap = [
        c
        for c in chunks_of(tokenizer, fixture_circulars[32648], overlap_sentences=0)
        if c.kind == "text"
    ]
    assert not no_overlap[1].chunk_text.startswith(last_sentence)


def test_a_unit_longer_than_the_window_is_cut_at_words(tokenizer: Any) -> None:
    body = " ".join(f"word{i}" for i in range(900))  # one "sentence", ~2,700 tokens
    circular = Circular(1.0, "GRB 990123: long", "x", datetime(1999, 1, 23, tzinfo=UTC), body)
    chunks = chunks_of(tokenizer, circular)
    assert len(chunks) > 5
    assert all(c.n_tokens <= 256 for c in chunks)
    words = " ".join(c.chunk_text for c in chunks).split()
    assert set(words) == {f"word{i}" for i in range(900)}  # no word lost or split


def test_sentences_do_not_split_at_abbreviations() -> None:
    text = (
        "We observed GRB 221009A (Dichiara et al., GCN Circ. 32632) with the VLT. "
        "The redshift is z = 0.151. A. J. Levan et al. confirm it, e.g. in Fig. 2. "
        "Further follow-up is encouraged."
    )
    assert split_sentences(text) == [
        "We observed GRB 221009A (Dichiara et al., GCN Circ. 32632) with the VLT.",
        "The redshift is z = 0.151.",
        "A. J. Levan et al. confirm it, e.g. in Fig. 2.",
        "Further follow-up is encouraged.",
    ]


def test_headers_and_tables_are_recognised() -> None:
    assert is_header(
        "P.A. Evans and M.R. Goad (U. Leicester) report on behalf of the\nSwift-XRT team:"
    )
    assert is_header("The IceCube Collaboration (http://icecube.wisc.edu/) reports:")
    assert not is_header("The Fermi GBM team reports the detection of a likely LONG GRB")
    assert not is_header("We detect a very red continuum at a redshift of z = 0.151.")
    assert is_table(
        "Filter  T_start  T_stop  Mag\nV       100      200     18.2\nB       100      200     19.1"
    )
    assert not is_table("This is prose that is\nwrapped over two lines.")
    # double spaces after a full stop are typewriter habit, not columns
    assert not is_table("A single FRED peak.  T90 (15-350 keV) is\n0.30 +- 0.03 sec.  Next.")


def test_table_lines_stay_lines() -> None:
    units = split_units("Intro sentence here.\n\nFilter  Mag\nV       18.2\nB       19.1\n")
    assert [u.kind for u in units] == ["sentence", "line", "line", "line"]
    assert units[2].text == "V       18.2"
