"""The index build's embedding, local vs Ray Data: time, bytes and Ray's memory.

usage: python benchmarks/index_ray.py [WORKSPACE] [--leads N] [--threads T] [--build N]

The workspace's warehouse (default /work/ws, the full corpus) is copied with ``cp -a`` into a
scratch workspace, never touched. The first N lead passages of the build (default 4096, one
embedding-cache shard: what the build hands the embedder at once) are embedded by the local
Embedder and by RayEmbedder on a private local Ray (started here, stopped at the end); the
vectors must be byte-identical. Ray's time is split into the first call (cluster start,
actors loading the model, embedding) and a second call (actors again, cluster warm). Ray's
memory is the peak summed RSS of the processes of its session (found by its RAY_TMPDIR).

With ``--build N`` it times instead the whole index build (read the chunks, BM25, embedding
with an empty embedding cache, write) of the first N circulars' chunks, local and then with
``--engine ray``'s embedder (a private Ray started and stopped inside the timing), each into
its own index directory; the two ``dense.npy`` files must be byte-identical.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psutil

from gcn_rag.corpus.ingest import CHUNKS
from gcn_rag.corpus.measurement_table import update_measurements
from gcn_rag.search.build import CHUNK_COLUMNS, _columns, build_index
from gcn_rag.search.distributed import RayEmbedder
from gcn_rag.search.embedding import Embedder
from gcn_rag.search.index import DENSE, DENSE_MAX_TOKENS
from gcn_rag.settings import Settings
from gcn_rag.tables import Catalog


class RssSampler(threading.Thread):
    """Peak summed RSS (MB) of the processes of the Ray session under ``marker``."""

    def __init__(self, marker: str) -> None:
        super().__init__(daemon=True)
        self.marker, self.peak_mb, self.peak_count = marker, 0.0, 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.5):
            total, count = 0, 0
            for process in psutil.process_iter(["cmdline", "memory_info"]):
                if self._ours(process) and process.info["memory_info"] is not None:
                    total += process.info["memory_info"].rss
                    count += 1
            if total / 2**20 > self.peak_mb:
                self.peak_mb, self.peak_count = total / 2**20, count

    def _ours(self, process: psutil.Process) -> bool:
        """Named in its command line, or started with RAY_TMPDIR=marker (a Ray worker renames
        its command line: by that alone the embedding actors were not counted)."""
        if self.marker in " ".join(process.info["cmdline"] or []):
            return True
        try:
            return bool(process.environ().get("RAY_TMPDIR") == self.marker)
        except psutil.Error:
            return False

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def scratch_workspace(source: Path, root: Path) -> Settings:
    home = root / "workspace"
    home.mkdir()
    subprocess.run(["cp", "-a", str(source / "warehouse"), str(home / "warehouse")], check=True)
    (home / "cache").mkdir()
    (home / "cache" / "packaged").symlink_to(source / "cache" / "packaged")
    return Settings.load(environ={}, home=home)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workspace", nargs="?", type=Path, default=Path("/work/ws"))
    parser.add_argument("--leads", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads per actor")
    parser.add_argument("--build", type=int, default=0, help="time whole builds of N circulars")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="index-ray-") as scratch:
        settings = scratch_workspace(args.workspace, Path(scratch))
        if args.build:
            builds(settings, args.build, args.threads)
            return
        chunks = Catalog(settings.warehouse).read(CHUNKS, CHUNK_COLUMNS)
        leads = _columns(chunks)["lead"][: args.leads]
        print(f"{len(leads):,} lead passages of {args.workspace}, {os.cpu_count()} CPUs")
        run(settings, leads, args.threads)


def run(settings: Settings, leads: list[str], threads: int) -> None:
    clock = time.perf_counter()
    embedder = Embedder.from_settings(settings, max_tokens=DENSE_MAX_TOKENS)
    loaded = time.perf_counter() - clock
    clock = time.perf_counter()
    local = embedder.embed(leads)
    local_s = time.perf_counter() - clock
    driver_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"local: model {loaded:.1f} s, embed {local_s:.1f} s ({len(leads) / local_s:.0f}/s)")

    ray_tmp = tempfile.mkdtemp(prefix="gr", dir="/tmp")
    os.environ["RAY_TMPDIR"] = ray_tmp  # names this session's processes for the RSS sampler
    sampler = RssSampler(ray_tmp)
    sampler.start()
    try:
        with RayEmbedder(settings, max_tokens=DENSE_MAX_TOKENS, threads=threads) as ray_embedder:
            clock = time.perf_counter()
            first = ray_embedder.embed(leads)
            first_s = time.perf_counter() - clock
            clock = time.perf_counter()
            second = ray_embedder.embed(leads)
            second_s = time.perf_counter() - clock
    finally:
        sampler.stop()
        leftover = [
            p.pid
            for p in psutil.process_iter(["cmdline"])
            if ray_tmp in " ".join(p.info["cmdline"] or [])
        ]
        shutil.rmtree(ray_tmp, ignore_errors=True)
    same = first.tobytes() == local.tobytes() and second.tobytes() == local.tobytes()
    print(f"ray (threads/actor {threads}): first call {first_s:.1f} s (cluster start + actors)")
    print(f"ray: second call {second_s:.1f} s ({len(leads) / second_s:.0f}/s), warm cluster")
    print(f"ratio ray/local: first x{first_s / local_s:.2f}, second x{second_s / local_s:.2f}")
    print(f"vectors byte-identical to local: {same}")
    print(
        f"ray RSS: peak {sampler.peak_mb:,.0f} MB over {sampler.peak_count} processes "
        f"(+ driver {driver_mb:,.0f} MB peak)"
    )
    print(f"ray processes left after shutdown: {len(leftover)}")


def builds(settings: Settings, circulars: int, threads: int) -> None:
    """The whole build of the first ``circulars`` circulars, local vs Ray Data embedding."""
    import pyarrow.compute as pc

    catalog = Catalog(settings.warehouse)
    chunks = catalog.read(CHUNKS)
    ids = pc.unique(chunks["circular_id"]).sort()[:circulars]
    subset = chunks.filter(pc.is_in(chunks["circular_id"], value_set=ids))
    catalog.overwrite(CHUNKS, subset)
    print(f"{len(ids):,} circulars, {subset.num_rows:,} chunks, {os.cpu_count()} CPUs")
    update_measurements(catalog, None)  # before the clocks: the same for both engines
    seconds: dict[str, float] = {}
    for engine in ("local", "ray"):
        shutil.rmtree(settings.embedding_cache, ignore_errors=True)  # embed every passage
        clock = time.perf_counter()
        if engine == "local":
            embedder = Embedder.from_settings(settings, max_tokens=DENSE_MAX_TOKENS)
            report = build_index(settings, catalog, embedder, path=settings.home / engine)
        else:
            with RayEmbedder(settings, max_tokens=DENSE_MAX_TOKENS, threads=threads) as ray:
                report = build_index(settings, catalog, ray, path=settings.home / engine)
        seconds[engine] = time.perf_counter() - clock
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in report.seconds.items())
        print(f"{engine}: {seconds[engine]:.1f} s ({report.embedded:,} embedded; {steps})")
    same = (settings.home / "local" / DENSE).read_bytes() == (
        settings.home / "ray" / DENSE
    ).read_bytes()
    print(f"ratio ray/local: x{seconds['ray'] / seconds['local']:.2f}")
    print(f"dense.npy byte-identical: {same}")


if __name__ == "__main__":
    main()
