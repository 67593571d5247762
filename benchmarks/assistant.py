"""Index build, index load, and question latency on the full corpus.

usage: python benchmarks/assistant.py [--questions FILE] [--n 200] [--skip-build]

Needs a workspace where `gcn-rag ingest` has run (GCN_RAG_HOME, default ~/.gcn-rag).

1. Build: the first build of the whole index into a scratch directory with an empty
   embedding cache (so every lead passage is embedded), then a rebuild when nothing changed,
   then a forced rebuild with a warm embedding cache. Peak RSS of the build.
2. Load: in a fresh process, time to load the serving-side index and its RSS.
3. Latency: a warm process answers N questions (the question file, cycled) in each retrieval
   mode; prints p50 / p95 per mode and where the time goes. The baseline for the ratio is
   lexical-only retrieval in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gcn_rag.answer.assistant import Assistant
from gcn_rag.corpus.lab_tables import TEST_QUESTIONS
from gcn_rag.search.build import build_index
from gcn_rag.search.embedding import Embedder
from gcn_rag.search.index import DENSE_MAX_TOKENS
from gcn_rag.search.retrieval import Mode
from gcn_rag.settings import Settings
from gcn_rag.tables import Catalog

DEFAULT_QUESTIONS = Path(__file__).resolve().parents[2] / "shared" / "bench" / "dev.jsonl"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def bench_build(settings: Settings) -> None:
    catalog = Catalog(settings.warehouse, settings.catalog, settings.schema)
    with tempfile.TemporaryDirectory() as scratch:
        scratch_settings = Settings.load(home=Path(scratch))
        # share the packaged assets, but start with an empty embedding cache
        (Path(scratch) / "cache").mkdir()
        for item in settings.cache.iterdir():
            if item.name != "embeddings":
                (Path(scratch) / "cache" / item.name).symlink_to(item)
        embedder = Embedder.from_settings(scratch_settings, max_tokens=DENSE_MAX_TOKENS)
        target = Path(scratch) / "index"
        start = time.perf_counter()
        first = build_index(scratch_settings, catalog, embedder, path=target)
        first_s = time.perf_counter() - start
        start = time.perf_counter()
        again = build_index(scratch_settings, catalog, embedder, path=target)
        again_s = time.perf_counter() - start
        start = time.perf_counter()
        forced = build_index(scratch_settings, catalog, embedder, path=target, force=True)
        forced_s = time.perf_counter() - start
        size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    steps = _steps(first.seconds)
    print(
        f"first build: {first_s:.1f} s for {first.circulars:,} circulars / {first.chunks:,} "
        f"chunks ({first.chunks / first_s:,.0f} chunks/s; {first.embedded:,} lead passages "
        f"embedded, {first.embedded / first.seconds['dense']:.1f}/s) [{steps}]"
    )
    print(f"rebuild, nothing changed: {again_s:.2f} s (up to date: {again.up_to_date})")
    print(
        f"forced rebuild, warm embedding cache: {forced_s:.1f} s "
        f"({forced.embedded} embedded) [{_steps(forced.seconds)}]"
    )
    print(
        f"index size on disk: {size / 1e6:,.0f} MB; build peak RSS: "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB"
    )


def _steps(seconds: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items())


LOAD_PROBE = """
import sys, time
from pathlib import Path
t = time.perf_counter()
from gcn_rag.answer.assistant import Assistant
from gcn_rag.settings import Settings
a = Assistant.load(Settings.load())
a.ask("What is the redshift of GRB 221009A?")
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
print(time.perf_counter() - t, int(hwm.split()[1]) / 1024)  # peak RSS of this process, MB
"""


def bench_load() -> None:
    out = subprocess.run(
        [sys.executable, "-c", LOAD_PROBE], capture_output=True, text=True, check=True
    ).stdout.split()
    print(
        f"serving-side load (fresh process: imports + index + model + first answer): "
        f"{float(out[0]):.2f} s, RSS {float(out[1]):,.0f} MB"
    )


def bench_latency(settings: Settings, questions: list[str], n: int) -> None:
    assistant = Assistant.load(settings)
    asked = [questions[i % len(questions)] for i in range(n)]
    for question in asked[:10]:
        assistant.ask(question)  # warm up
    baseline_p50 = None
    modes: list[Mode] = ["lexical", "dense", "hybrid"]
    for mode in modes:
        totals: list[float] = []
        steps: dict[str, list[float]] = {}
        start = time.perf_counter()
        for question in asked:
            answer = assistant.ask(question, mode=mode)
            totals.append(answer.timings_ms["total"])
            for name, ms in answer.timings_ms.items():
                steps.setdefault(name, []).append(ms)
        wall = time.perf_counter() - start
        p50, p95 = percentile(totals, 0.5), percentile(totals, 0.95)
        baseline_p50 = baseline_p50 or p50
        where = ", ".join(
            f"{name} {statistics.fmean(v):.1f}" for name, v in steps.items() if name != "total"
        )
        print(
            f"ask [{mode:7}] p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  "
            f"({p50 / baseline_p50:.2f}x lexical p50)  {n / wall:5.1f} questions/s  "
            f"mean ms: {where}"
        )
    lab = [q for q, _, _ in TEST_QUESTIONS]
    broad = [assistant.ask(lab[i % len(lab)]).timings_ms["total"] for i in range(n)]
    print(
        f"ask [hybrid ] the lab's 10 broad questions (no event named, whole corpus ranked): "
        f"p50 {percentile(broad, 0.5):.1f} ms  p95 {percentile(broad, 0.95):.1f} ms"
    )
    start = time.perf_counter()
    for i, question in enumerate(asked):
        assistant.predict_row({"id": str(i), "question": question}, mode="hybrid")
    wall = time.perf_counter() - start
    print(f"predict (hybrid, rows incl. serialization): {n / wall:.1f} questions/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=Path, default=DEFAULT_QUESTIONS)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--skip-build", action="store_true")
    args = parser.parse_args()
    settings = Settings.load()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.platform()}"
    )
    if not args.skip_build:
        bench_build(settings)
    if not (settings.index / "manifest.json").exists():
        sys.exit("No index in the workspace; run `gcn-rag index` first.")
    bench_load()
    questions = [json.loads(line)["question"] for line in args.questions.open() if line.strip()]
    bench_latency(settings, questions, args.n)
    shutil.rmtree(Path(tempfile.gettempdir()) / "gcn-rag-bench", ignore_errors=True)


if __name__ == "__main__":
    main()
