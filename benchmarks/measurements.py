"""The measurements table on the full corpus: speed, coverage of the bench evidence, a sample.

usage: python benchmarks/measurements.py [--broad FILE] [--sample 200] [--sample-out FILE]

Needs a workspace where `gcn-rag ingest` has run (GCN_RAG_HOME, default ~/.gcn-rag).

1. Speed: reading every circular in this process (the baseline) and on every core, then the
   whole forced table build (read + settle statuses + Delta write), then a build with nothing
   changed. Ratios are against the one-process read in the same run.
2. Evidence: every ``evidence`` snippet of the broad bench file must give a row of its circular
   with the right quantity and one of the question's values (within the question's tolerance).
3. Rows per quantity and per status.
4. A seeded random sample of rows, written as a Markdown table with an empty verdict column,
   to be checked by reading each sentence (docs/measurements_sample.md).
5. Open questions (``--open N``): dossier answers to three kinds of question on N random
   events of the index with at least three circulars; p50 / p95, against a value question on
   the same events in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from collections import Counter
from pathlib import Path

from gcn_rag.corpus.circulars import CIRCULARS
from gcn_rag.corpus.measurement_table import (
    CIRCULAR_COLUMNS,
    MEASUREMENTS,
    MeasurementsReport,
    circulars_of,
    extract_all,
    update_measurements,
)
from gcn_rag.settings import Settings
from gcn_rag.tables import Catalog

BENCH = Path(__file__).resolve().parents[2] / "shared" / "bench"
# the bench's categories, named as the catalog names them (bench knowledge stays here)
CATEGORY_QUANTITY = {
    "epeak": "epeak",
    "fluence": "fluence",
    "gbm_t90": "t90",
    "gw_distance": "gw_distance",
    "nu_far": "false_alarm_rate",
    "nu_ra": "ra",
    "nu_dec": "dec",
}


def bench_speed(catalog: Catalog) -> None:
    table = catalog.read(CIRCULARS, CIRCULAR_COLUMNS)
    n = table.num_rows
    timings = {}
    for workers in (1, os.cpu_count() or 1):
        start = time.perf_counter()
        rows = extract_all(circulars_of(table), n, MeasurementsReport(), workers=workers)
        timings[workers] = time.perf_counter() - start
        print(
            f"read {n:,} circulars, {workers} process(es): {timings[workers]:.1f} s "
            f"({len(rows):,} rows; x{timings[1] / timings[workers]:.2f} vs one process)"
        )
    start = time.perf_counter()
    report = update_measurements(catalog, force=True)
    full = time.perf_counter() - start
    print(f"forced table build (read, settle, write): {full:.1f} s, {report.rows:,} rows")
    start = time.perf_counter()
    again = update_measurements(catalog)
    print(
        f"build with nothing changed: {time.perf_counter() - start:.2f} s "
        f"(up to date: {again.up_to_date})"
    )


def bench_evidence(catalog: Catalog, broad: Path) -> None:
    rows = catalog.read(MEASUREMENTS, ["circular_id", "quantity", "value"]).to_pylist()
    by_circular: dict[float, list[dict[str, float | str]]] = {}
    for row in rows:
        by_circular.setdefault(row["circular_id"], []).append(row)
    found = total = 0
    missed = []
    for line in broad.read_text().splitlines():
        item = json.loads(line)
        quantity = CATEGORY_QUANTITY.get(item["category"].removeprefix("paraphrase_"))
        if quantity is None:
            continue
        values = [float(v) for v in item["answers"]]
        tol = item["tol"]
        for evidence in item.get("evidence") or []:
            total += 1
            candidates = by_circular.get(float(evidence["circularId"]), [])
            if any(
                r["quantity"] == quantity and any(_close(float(r["value"]), v, tol) for v in values)
                for r in candidates
            ):
                found += 1
            else:
                missed.append((item["id"], evidence["circularId"], evidence["text"][:100]))
    print(
        f"evidence snippets with a row of the right quantity and value: {found}/{total} "
        f"= {found / total:.3f}"
    )
    for miss in missed:
        print("  missed:", *miss)


def _close(got: float, want: float, tol: dict[str, object]) -> bool:
    size = float(tol["value"])  # type: ignore[arg-type]
    limit = size * abs(want) if tol["type"] == "rel" else size
    return abs(got - want) <= limit + 1e-12


def bench_counts(catalog: Catalog) -> None:
    table = catalog.read(MEASUREMENTS, ["quantity", "status", "limit_type"])
    print(f"{table.num_rows:,} rows")
    limits = Counter(
        zip(table["quantity"].to_pylist(), table["limit_type"].to_pylist(), strict=True)
    )
    for quantity, n in Counter(table["quantity"].to_pylist()).most_common():
        limited = sum(c for (q, lim), c in limits.items() if q == quantity and lim)
        print(f"  {quantity:18s} {n:7,d} ({limited:,} limits)")
    print("by status:", dict(Counter(table["status"].to_pylist()).most_common()))


def write_sample(catalog: Catalog, n: int, out: Path, seed: int = 15) -> None:
    rows = catalog.read(MEASUREMENTS).to_pylist()
    picked = sorted(random.Random(seed).sample(range(len(rows)), n))
    lines = [
        "| # | circular | event | quantity | value | limit | band | instrument | method | sentence "
        "| ok |",
        "|---:|---:|---|---|---|---|---|---|---|---|---|",
    ]
    for i, index in enumerate(picked, 1):
        r = rows[index]
        sentence = r["sentence"].replace("|", "\\|")
        value = f"{r['value_text']} {r['unit']}".strip()
        if r["unit"] and r["value_text"].endswith(tuple("abcdefghijklmnopqrstuvwxyz'\"")):
            value = f"{r['value_text']} (= {r['value']:.4g} {r['unit']})"  # kept as written
        lines.append(
            f"| {i} | {r['circular_id']:g} | {r['event_id'] or ''} | {r['quantity']} | {value} "
            f"| {r['limit_type'] or ''} | {r['band'] or ''} | {r['instrument'] or ''} "
            f"| {r['method'] or ''} | {sentence} | |"
        )
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {n} sampled rows to {out}")


def bench_open(settings: Settings, n: int, seed: int) -> None:
    from gcn_rag.answer.assistant import Assistant

    assistant = Assistant.load(settings)
    counts = Counter(e for e in assistant.index.event_ids if e)
    events = sorted(e for e, c in counts.items() if c >= 3)
    picked = random.Random(seed).sample(events, min(n, len(events)))
    kinds = {
        "what is": "What is {}?",
        "instruments": "Which instruments detected {}?",
        "counterpart": "Was a counterpart found for {}?",
        "value (baseline)": "What is the redshift of {}?",
    }
    assistant.ask(kinds["what is"].format(picked[0]))  # warm up (the measurements lookup)
    baseline = None
    for kind, template in reversed(list(kinds.items())):
        times = [assistant.ask(template.format(e)).timings_ms["total"] for e in picked]
        times.sort()
        p50, p95 = times[len(times) // 2], times[int(0.95 * (len(times) - 1))]
        baseline = baseline or p50
        print(f"  {kind:17s} p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  ({p50 / baseline:.2f}x value)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broad", type=Path, default=BENCH / "dev_broad.jsonl")
    parser.add_argument("--sample", type=int, default=200)
    parser.add_argument("--sample-out", type=Path, default=None)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--seed", type=int, default=16, help="of the sample (15: the first one)")
    parser.add_argument("--open", type=int, default=0, help="time open questions on N events")
    args = parser.parse_args()
    settings = Settings.load()
    catalog = Catalog.from_settings(settings)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    if not args.skip_speed:
        bench_speed(catalog)
    else:
        update_measurements(catalog)
    bench_evidence(catalog, args.broad)
    bench_counts(catalog)
    if args.sample_out:
        write_sample(catalog, args.sample, args.sample_out, seed=args.seed)
    if args.open:
        print(f"open questions on {args.open} random events (hybrid, warm process):")
        bench_open(settings, args.open, args.seed)


if __name__ == "__main__":
    main()
