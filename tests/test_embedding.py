"""The ONNX embedder against the real sentence-transformers model, and the embedding cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import FIXTURES
from gcn_rag.errors import BadInputError, NotFoundError, SourceUnavailableError
from gcn_rag.search.embedding import (
    DIM,
    Embedder,
    EmbeddingCache,
    embed_with_cache,
    packaged_model_path,
)
from gcn_rag.settings import Settings

REDSHIFT = "GRB 221009A: we detect absorption features at a redshift of z = 0.151."
REDSHIFT_QUERY = "What is the redshift of GRB 221009A?"
NEUTRINO = "IceCube detected a track-like neutrino event with a high signalness."


@pytest.fixture(scope="module")
def embedder(tokenizer_path: Path) -> Embedder:
    return Embedder(packaged_model_path(), tokenizer_path)


@pytest.fixture(scope="module")
def reference() -> list[dict[str, Any]]:
    """Texts and sentence-transformers vectors, from fixtures/make_minilm_reference.py."""
    data = json.loads((FIXTURES / "minilm_reference.json").read_text(encoding="utf-8"))
    items: list[dict[str, Any]] = data["items"]
    return items


# --- the embedder ---------------------------------------------------------------------------


def test_vectors_match_sentence_transformers(
    embedder: Embedder, reference: list[dict[str, Any]]
) -> None:
    assert max(item["n_tokens"] for item in reference) > 256  # truncation is covered
    ours = embedder.embed([item["text"] for item in reference])
    theirs = np.array([item["vector"] for item in reference], dtype=np.float32)
    cosines = (ours * theirs).sum(axis=1) / np.linalg.norm(theirs, axis=1)
    # int8 weights cost a little: observed minimum 0.9963 (the empty text), the others >= 0.999.
    assert cosines.min() >= 0.99, dict(zip([i["name"] for i in reference], cosines, strict=True))


def test_unit_norm_float32_in_input_order(
    embedder: Embedder, reference: list[dict[str, Any]]
) -> None:
    texts = [item["text"] for item in reference]  # lengths 0 to ~2,500 characters, unsorted
    together = embedder.embed(texts, batch_size=3)
    alone = np.stack([embedder.embed_query(text) for text in texts])
    assert together.shape == (len(texts), DIM) and together.dtype == np.float32
    assert alone.shape == (len(texts), DIM) and alone.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    # Only the weights are int8; activations are float32, so padding a text to its batch's
    # length changes nothing but the order of float additions (observed: bit-identical). 1e-5
    # allows that rounding and still fails on any mix-up of rows, which moves values by ~0.1.
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_progress_counts_texts_done(embedder: Embedder) -> None:
    seen: list[int] = []
    embedder.embed(["a", "bb", "ccc", "dddd", "e"], batch_size=2, on_progress=seen.append)
    assert seen == [2, 4, 5]


def test_empty_input(embedder: Embedder) -> None:
    vectors = embedder.embed([])
    assert vectors.shape == (0, DIM) and vectors.dtype == np.float32


def test_odd_texts_do_not_crash(embedder: Embedder) -> None:
    texts = ["", "   \n\t ", "\x00\x07", "z = 0.151 ± 0.002 — Ωm, 赤方偏移, 🔭", "word " * 5000]
    vectors = embedder.embed(texts)
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_texts_are_truncated_at_max_tokens(embedder: Embedder) -> None:
    head = "the afterglow faded " * 100  # 300 tokens, past the 256-token window
    same = embedder.embed([head, head + "but the neutrino did not " * 50])
    np.testing.assert_array_equal(same[0], same[1])


def test_similar_texts_are_closer(embedder: Embedder) -> None:
    redshift, query, neutrino = embedder.embed([REDSHIFT, REDSHIFT_QUERY, NEUTRINO])
    assert redshift @ query > redshift @ neutrino + 0.2
    assert redshift @ query > query @ neutrino + 0.2


def test_from_settings_and_max_tokens_change_model_id(
    settings: Settings, embedder: Embedder
) -> None:
    short = Embedder.from_settings(settings, max_tokens=128)
    assert embedder.model_id.endswith("/max256") and short.model_id.endswith("/max128")
    assert short.model_sha256 == embedder.model_sha256
    assert embedder.model_sha256[:12] in embedder.model_id
    long_text = "the afterglow faded " * 100
    assert embedder.embed_query(long_text) @ short.embed_query(long_text) < 0.9999


def test_bad_arguments_are_refused(embedder: Embedder, tokenizer_path: Path) -> None:
    with pytest.raises(BadInputError, match="not a string"):
        embedder.embed(["fine", None])  # type: ignore[list-item]
    with pytest.raises(BadInputError, match="batch_size"):
        embedder.embed(["fine"], batch_size=0)
    with pytest.raises(BadInputError, match="max_tokens"):
        Embedder(packaged_model_path(), tokenizer_path, max_tokens=1024)


def test_tampered_model_is_refused(tmp_path: Path, tokenizer_path: Path) -> None:
    copy = tmp_path / "model.onnx"
    shutil.copyfile(packaged_model_path(), copy)
    with copy.open("r+b") as handle:
        handle.seek(1_000_000)
        byte = handle.read(1)
        handle.seek(1_000_000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(SourceUnavailableError, match=r"sha256 .*pip install --force-reinstall"):
        Embedder(copy, tokenizer_path)
    with pytest.raises(NotFoundError, match="No embedding model"):
        Embedder(tmp_path / "missing.onnx", tokenizer_path)
    with pytest.raises(NotFoundError, match="No tokenizer"):
        Embedder(packaged_model_path(), tmp_path / "missing.json")


# --- the cache ------------------------------------------------------------------------------

TEXTS = [REDSHIFT, REDSHIFT_QUERY, NEUTRINO, "afterglow", ""]


def shards(cache: EmbeddingCache) -> list[str]:
    return sorted(p.name for p in cache.path.glob("shard-*"))


def test_cache_embeds_only_misses(embedder: Embedder, tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, embedder.model_id)
    assert cache.lookup(TEXTS)[1] == [0, 1, 2, 3, 4] and len(cache) == 0
    seen: list[int] = []
    first = embed_with_cache(embedder, cache, TEXTS, on_progress=seen.append)
    np.testing.assert_array_equal(first, embedder.embed(TEXTS))
    assert seen[-1] == len(TEXTS) and len(cache) == len(TEXTS)
    written = shards(cache)
    assert written == ["shard-000000.keys.npy", "shard-000000.npy"]

    cached, missing = cache.lookup(TEXTS)
    assert missing == []
    np.testing.assert_array_equal(cached, first)
    again = embed_with_cache(embedder, cache, TEXTS)
    np.testing.assert_array_equal(again, first)
    assert shards(cache) == written  # nothing new was embedded or written

    changed = [*TEXTS[:2], NEUTRINO + " Updated."]
    assert cache.lookup(changed)[1] == [2]
    embed_with_cache(embedder, cache, changed)
    assert len(cache) == len(TEXTS) + 1 and len(shards(cache)) == 4  # one new shard, old kept


def test_cache_survives_a_new_instance(embedder: Embedder, tmp_path: Path) -> None:
    vectors = embed_with_cache(embedder, EmbeddingCache(tmp_path, embedder.model_id), TEXTS)
    reopened = EmbeddingCache(tmp_path, embedder.model_id)
    cached, missing = reopened.lookup(list(reversed(TEXTS)))
    assert missing == [] and len(reopened) == len(TEXTS)
    np.testing.assert_array_equal(cached, vectors[::-1])


def test_model_id_change_gives_a_separate_cache(embedder: Embedder, tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, embedder.model_id)
    embed_with_cache(embedder, cache, TEXTS)
    other = EmbeddingCache(tmp_path, embedder.model_id.replace("max256", "max128"))
    assert other.path != cache.path and other.path.parent == tmp_path
    assert len(other) == 0 and other.lookup(TEXTS)[1] == list(range(len(TEXTS)))
    with pytest.raises(BadInputError, match="open the cache with embedder"):
        embed_with_cache(embedder, other, TEXTS)


def test_repeated_texts_are_embedded_once(embedder: Embedder, tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, embedder.model_id)
    texts = [REDSHIFT, NEUTRINO, REDSHIFT, REDSHIFT]
    seen: list[int] = []
    vectors = embed_with_cache(embedder, cache, texts, on_progress=seen.append)
    assert len(cache) == 2 and seen[-1] == len(texts)
    np.testing.assert_array_equal(vectors[0], vectors[3])
    assert np.abs(vectors).sum(axis=1).min() > 0  # no row left as a zero "miss"


def test_interrupted_write_is_ignored(embedder: Embedder, tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, embedder.model_id)
    embed_with_cache(embedder, cache, TEXTS[:2])
    (cache.path / "shard-000001.npy").write_bytes(b"half a file")  # no keys file: not committed
    reopened = EmbeddingCache(tmp_path, embedder.model_id)
    assert len(reopened) == 2
    embed_with_cache(embedder, reopened, TEXTS)
    assert (cache.path / "shard-000002.keys.npy").exists()  # the orphan's number is skipped
    assert len(EmbeddingCache(tmp_path, embedder.model_id)) == len(TEXTS)


def test_cache_add_checks_shapes(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, "some-model")
    with pytest.raises(BadInputError, match="one 384-d vector per text"):
        cache.add(["a", "b"], np.zeros((1, DIM), dtype=np.float32))


def test_cache_of_another_model_or_format_is_refused(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, "some-model")
    cache.add(["a"], np.ones((1, DIM), dtype=np.float32))
    manifest = cache.path / "cache.json"
    manifest.write_text(manifest.read_text().replace('"format": 1', '"format": 0'))
    with pytest.raises(BadInputError, match="delete that folder"):
        len(EmbeddingCache(tmp_path, "some-model"))
