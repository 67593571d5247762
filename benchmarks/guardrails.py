"""Guardrails: precision, recall and F1 per detector on the labeled set; false positives on
ordinary questions and circular passages; latency of all input guardrails per request.

usage: python benchmarks/guardrails.py [--eval benchmarks/data/guardrails_eval.jsonl]
                                       [--bench ../shared/bench] [--rounds 30]
                                       [--baseline-rev 9881dcb] [--split all|dev|test]

Inputs, labeled (``labels``: ``pii:<kind>``, ``injection``, ``offtopic``, ``ordinary``,
``passage``):
- ``benchmarks/data/guardrails_eval.jsonl``: written for this benchmark — ordinary and hard
  astronomy questions and passages, each PII kind with valid and invalid numbers, injection
  and jailbreak attempts by style, circular passages with injected instructions, off-topic
  questions; ``split`` is dev (looked at while writing rules) or test (held out);
- read at run time, never copied: every question of ``../shared/bench/*.jsonl`` and the
  lab's smoke questions (ordinary questions), and every paragraph of the fixture circulars
  (``tests/fixtures/*.txt.tar.gz``; ordinary passages, scored for injection only: their
  author lines carry real e-mail addresses and phone numbers).

Latency: ``Guardrails.check("input", q)`` with every input rule on (PII MASK, safety,
invalid_keywords, valid_topics) per bench question, median of ``--rounds`` rounds, against the
baseline: the first-cut detectors of ``--baseline-rev`` (git) run the same way in the same
process. Passage screening (``find_injection`` per fixture paragraph) is reported apart.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tarfile
import time
import types
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from gcn_rag.corpus.lab_tables import TEST_QUESTIONS
from gcn_rag.guardrails.injection import find_injection
from gcn_rag.guardrails.pii import KINDS, find_pii
from gcn_rag.guardrails.policy import Guardrails, normalize_guardrails
from gcn_rag.guardrails.topics import on_topic
from gcn_rag.stats import percentile

ROOT = Path(__file__).resolve().parents[1]
TOPICS = ["astronomy transients", "the GCN circulars"]
CONFIG = {
    "input": {
        "pii": {"behavior": "MASK"},
        "safety": True,
        "invalid_keywords": ["bomb", "credit card dump", "exploit kit"],
        "valid_topics": TOPICS,
    }
}


def load(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in args.eval.read_text().splitlines() if line.strip()]
    if args.split != "all":
        rows = [r for r in rows if r["split"] == args.split]
    for path in sorted(args.bench.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                text = json.loads(line)["question"]
                rows.append({"text": text, "labels": ["ordinary"], "style": "bench"})
    for question, _, _ in TEST_QUESTIONS:
        rows.append({"text": question, "labels": ["ordinary"], "style": "lab"})
    for text in fixture_paragraphs():
        rows.append({"text": text, "labels": ["ordinary", "passage"], "style": "fixture"})
    return rows


def fixture_paragraphs() -> Iterable[str]:
    for archive in sorted((ROOT / "tests" / "fixtures").glob("*.txt.tar.gz")):
        with tarfile.open(archive) as tar:
            for member in tar:
                handle = tar.extractfile(member) if member.isfile() else None
                if handle is None:
                    continue
                body = handle.read().decode("utf-8", "replace").split("\n\n", 1)[-1]
                yield from (p.strip() for p in body.split("\n\n") if len(p.strip()) >= 80)


def prf(tp: int, fp: int, fn: int) -> str:
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return f"| {tp + fn} | {tp} | {fp} | {fn} | {p:.3f} | {r:.3f} | {f1:.3f} |"


def pii_report(rows: list[dict[str, Any]]) -> None:
    print("\n| PII kind | positives | TP | FP | FN | precision | recall | F1 |")
    print("|---|---|---|---|---|---|---|---|")
    scored = [r for r in rows if r["style"] != "fixture"]
    found = [{s.kind for s in find_pii(r["text"])} for r in scored]
    for kind in KINDS:
        truth = [f"pii:{kind}" in r["labels"] for r in scored]
        tp = sum(t and kind in f for t, f in zip(truth, found, strict=True))
        fp = sum(not t and kind in f for t, f in zip(truth, found, strict=True))
        print(f"| {kind} {prf(tp, fp, sum(truth) - tp)}")
        for r, f, t in zip(scored, found, truth, strict=True):
            if (kind in f) != t:
                print(f"|   miss/extra: {r['text'][:90]!r} |")
    invalid = [r for r in scored if r.get("style", "").startswith("invalid_")]
    flagged = sum(bool(find_pii(r["text"])) for r in invalid)
    print(
        f"\ninvalid numbers (Luhn/mod-97/SSN rules fail, versions, times): {flagged} of "
        f"{len(invalid)} flagged"
    )


def injection_report(rows: list[dict[str, Any]]) -> None:
    flagged = [bool(find_injection(r["text"])) for r in rows]
    truth = ["injection" in r["labels"] for r in rows]
    tp = sum(t and f for t, f in zip(truth, flagged, strict=True))
    fp = sum(f and not t for t, f in zip(truth, flagged, strict=True))
    print("\n| injection | positives | TP | FP | FN | precision | recall | F1 |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| all {prf(tp, fp, sum(truth) - tp)}")
    styles = sorted({r.get("style", "") for r, t in zip(rows, truth, strict=True) if t})
    print("\n| style | attempts | caught | recall |\n|---|---|---|---|")
    for style in styles:
        hits = [
            f for r, f, t in zip(rows, flagged, truth, strict=True) if t and r["style"] == style
        ]
        print(f"| {style} | {len(hits)} | {sum(hits)} | {sum(hits) / len(hits):.3f} |")
    print("\n| ordinary inputs | count | flagged | false-positive rate |\n|---|---|---|---|")
    keeps: tuple[tuple[str, Callable[[dict[str, Any]], bool]], ...] = (
        ("bench questions", lambda r: r["style"] == "bench"),
        ("lab questions", lambda r: r["style"] == "lab"),
        ("written questions", lambda r: r["style"] == "question"),
        (
            "written hard negatives (digits, 'ignore', 'system')",
            lambda r: r["style"] == "hard_negative",
        ),
        (
            "PII questions (valid and invalid)",
            lambda r: r["style"].startswith(("valid", "invalid")),
        ),
        ("written circular passages", lambda r: r["style"] == "passage"),
        ("fixture circular paragraphs", lambda r: r["style"] == "fixture"),
    )
    for name, keep in keeps:
        picked = [f for r, f, t in zip(rows, flagged, truth, strict=True) if not t and keep(r)]
        print(
            f"| {name} | {len(picked)} | {sum(picked)} | {sum(picked) / max(len(picked), 1):.3%} |"
        )
    for r, f, t in zip(rows, flagged, truth, strict=True):
        if f != t:
            print(f"|   {'missed' if t else 'false alarm'}: {r['text'][:100]!r} |")


def topics_report(rows: list[dict[str, Any]]) -> None:
    questions = [r for r in rows if r["style"] in ("question", "bench", "lab", "offtopic")]
    off = [not on_topic(r["text"], TOPICS) for r in questions]
    truth = ["offtopic" in r["labels"] for r in questions]
    tp = sum(t and o for t, o in zip(truth, off, strict=True))
    fp = sum(o and not t for t, o in zip(truth, off, strict=True))
    print(f"\nvalid_topics {TOPICS}: off-topic questions refused")
    print(
        "| detector | positives | TP | FP | FN | precision | recall | F1 |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    print(f"| off topic {prf(tp, fp, sum(truth) - tp)}")
    for r, o, t in zip(questions, off, truth, strict=True):
        if o != t:
            print(f"|   {'missed' if t else 'refused'}: {r['text'][:100]!r} |")


def timed(check: Callable[[str], Any], texts: list[str], rounds: int) -> list[float]:
    """Per text, the median over ``rounds`` of one call, in ms."""
    per: list[list[float]] = [[] for _ in texts]
    for _ in range(rounds):
        for i, text in enumerate(texts):
            start = time.perf_counter()
            check(text)
            per[i].append((time.perf_counter() - start) * 1000)
    return [percentile(p, 0.5) for p in per]


def baseline(rev: str) -> Callable[[str], Any]:
    """The first-cut detectors of ``rev``, as one call per input like the policy makes."""
    mods = {}
    for name in ("pii", "injection", "topics"):
        source = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{rev}:src/gcn_rag/guardrails/{name}.py"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        mods[name] = sys.modules[f"baseline_{name}"] = types.ModuleType(f"baseline_{name}")
        exec(compile(source, f"{rev}:{name}.py", "exec"), mods[name].__dict__)
    keywords = CONFIG["input"]["invalid_keywords"]

    def check(text: str) -> Any:
        return (
            mods["pii"].find_pii(text),
            mods["injection"].find_injection(text),
            mods["topics"].find_keywords(text, keywords),
            mods["topics"].on_topic(text, TOPICS),
        )

    return check


def latency_report(rows: list[dict[str, Any]], rounds: int, rev: str) -> None:
    guardrails = Guardrails.from_config(normalize_guardrails(CONFIG))
    assert guardrails is not None
    bench = [r["text"] for r in rows if r["style"] == "bench"]
    verdicts = [guardrails.check("input", q) for q in bench]
    blocked = [v for v in verdicts if v.blocked]
    print(
        f"\nbench questions through every input rule: {len(blocked)} of {len(bench)} blocked, "
        f"{sum(bool(v.hits) for v in verdicts)} with a hit"
    )
    for v in blocked:
        print(f"|   blocked: {v.text[:100]!r} ({v.hits[-1].rule}) |")
    new = timed(lambda q: guardrails.check("input", q), bench, rounds)
    old = timed(baseline(rev), bench, rounds)
    paragraphs = [r["text"] for r in rows if r["style"] == "fixture"]
    passages = timed(find_injection, paragraphs, max(rounds // 3, 1))
    print("\n| per request (ms) | p50 | p95 |\n|---|---|---|")
    for name, values in (
        ("all input guardrails (this branch)", new),
        (f"first-cut detectors ({rev}, baseline)", old),
        (f"injection screen, one fixture paragraph ({len(paragraphs)})", passages),
    ):
        print(f"| {name} | {percentile(values, 0.5):.3f} | {percentile(values, 0.95):.3f} |")
    print(f"ratio this/baseline at p50: {percentile(new, 0.5) / percentile(old, 0.5):.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--eval", type=Path, default=ROOT / "benchmarks/data/guardrails_eval.jsonl")
    parser.add_argument("--bench", type=Path, default=ROOT.parent / "shared" / "bench")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--baseline-rev", default="9881dcb")
    parser.add_argument("--split", choices=("all", "dev", "test"), default="all")
    args = parser.parse_args()
    rows = load(args)
    for row in rows:
        row.setdefault("style", "")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.platform()}; "
        f"{datetime.date.today()}; {len(rows)} inputs (split {args.split})"
    )
    pii_report(rows)
    injection_report(rows)
    topics_report(rows)
    latency_report(rows, args.rounds, args.baseline_rev)


if __name__ == "__main__":
    main()
