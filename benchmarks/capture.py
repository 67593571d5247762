"""Inference capture: invocation latency and throughput with capture on vs off; the flusher.

usage: python benchmarks/capture.py [--requests 400] [--rounds 4] [--concurrency 8]
                                    [--version N] [--flush-rows 20000]

Needs a workspace with a registered assistant (GCN_RAG_HOME). One `gcn-rag serve` (a scratch
home sharing the workspace's registry) serves the same version twice: endpoint `plain`
without capture (the baseline) and `captured` with `auto_capture_config`. Rounds alternate
the two (plain, captured, captured, plain, ...) so drift in the machine's speed cancels out.
Per round and endpoint: --requests/--rounds calls at concurrency 1, then twice as many at
concurrency C. After the load: the capture backlog drains and the table holds exactly one row
per captured request. Then the flusher alone: --flush-rows rows of a real captured row's size
through `InferenceCapture` (spool write per row, then one flush into a fresh Delta table).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from gcn_rag.model import registry
from gcn_rag.serving.capture import CaptureRow, CaptureTarget, InferenceCapture
from gcn_rag.settings import Settings
from gcn_rag.tables import Catalog
from serving import (
    BIN,
    DEFAULT_QUESTIONS,
    Client,
    InvocationAsk,
    Phase,
    endpoint_ready,
    free_port,
    percentile,
    run_phase,
    server_home,
    server_process,
    wait_until,
)

CAPTURE = {"catalog_name": "sandbox", "schema_name": "nasa_gcn_dev", "table_name_prefix": "bench"}
TABLE = "sandbox.nasa_gcn_dev.bench_payload"


def create(client: Client, name: str, version: str, capture: bool) -> None:
    entity = {"entity_name": registry.MODEL_NAME, "entity_version": version}
    config: dict[str, object] = {"served_entities": [{**entity, "workload_size": "Large"}]}
    if capture:
        config["auto_capture_config"] = CAPTURE
    status, body = client.call(
        "POST", "/api/2.0/serving-endpoints", {"name": name, "config": config}
    )
    if status != 200:
        raise RuntimeError(f"creating {name} failed: HTTP {status} {body}")


def metric(client: Client, name: str) -> float:
    _, text = client.call("GET", "/metrics")
    for line in str(text).splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise RuntimeError(f"no {name} in /metrics")


def load(args: argparse.Namespace, version: str) -> tuple[dict[str, list[Phase]], int]:
    """Alternating rounds on both endpoints; returns their phases and the captured count."""
    scratch = Path(tempfile.mkdtemp(prefix="gcn-rag-bench-capture-"))
    home = server_home(Settings.load(), scratch)
    port = free_port()
    env = {**os.environ, "GCN_RAG_HOME": str(home)}
    argv = [str(BIN / "gcn-rag"), "serve", "--no-auth", "--port", str(port)]
    phases: dict[str, list[Phase]] = {"plain": [], "captured": []}
    questions = args.question_list
    per_round = args.requests // args.rounds
    with server_process(argv, env, scratch / "serve.log") as process:
        client = Client(port, args.timeout)
        wait_until("GET /health", lambda: client.call("GET", "/health")[0] == 200, process, 300)
        for name in phases:
            create(client, name, version, capture=name == "captured")
            ready = functools.partial(endpoint_ready, client, name)
            wait_until(f"{name} READY", ready, process, 300)
        order = [("plain", "captured"), ("captured", "plain")]
        sent = 0
        for r in range(args.rounds + 1):  # round 0 warms both up and is not counted
            for name in order[r % 2]:
                path = f"/serving-endpoints/{name}/invocations"

                def ask(path: str = path) -> InvocationAsk:
                    return InvocationAsk(port, path, args.timeout)

                start = (r * 3 * per_round) % len(questions)
                asked = [questions[(start + i) % len(questions)] for i in range(2 * per_round)]
                seq = run_phase(ask, asked[:per_round], 1, 900)
                conc = run_phase(ask, asked, args.concurrency, 900)
                if name == "captured":
                    sent += per_round + 2 * per_round
                if r:
                    phases[name] += [seq, conc]
        drained = time.perf_counter()
        wait_until(
            "capture backlog 0",
            lambda: metric(client, "gcn_rag_capture_backlog_rows") == 0,
            process,
            120,
        )
        print(f"capture backlog drained {time.perf_counter() - drained:.1f} s after the load")
        client.close()
    rows = Catalog(home / "warehouse").count(TABLE)
    if rows != sent:
        print(f"  MISMATCH: {sent} captured requests sent, {rows} rows in {TABLE}")
    else:
        print(f"{TABLE}: {rows} rows for {sent} captured requests (exactly one each)")
    return phases, rows


def summarize(phases: list[Phase]) -> tuple[float, float, float, float, int]:
    seq = [ms for p in phases[0::2] for ms in p.latencies_ms]
    conc = phases[1::2]
    done = sum(len(p.latencies_ms) for p in conc)
    failures = sum(sum(p.failures.values()) for p in phases)
    throughput = done / sum(p.wall_s for p in conc)
    conc_ms = [ms for p in conc for ms in p.latencies_ms]
    return (
        percentile(seq, 0.5),
        percentile(seq, 0.95),
        throughput,
        percentile(conc_ms, 0.5),
        failures,
    )


def flusher(rows: int, response: str) -> None:
    """The spool write per row (the request path's cost) and the flush into Delta."""
    with tempfile.TemporaryDirectory() as tmp:
        capture = InferenceCapture(Path(tmp) / "spool", Catalog(Path(tmp) / "warehouse"))
        target = CaptureTarget(TABLE)
        request = json.dumps({"dataframe_split": {"columns": ["question"], "data": [["x" * 60]]}})
        start = time.perf_counter()
        for i in range(rows):
            capture.record(
                target,
                CaptureRow(
                    databricks_request_id=f"{i:032x}",
                    client_request_id=None,
                    timestamp_ms=1_790_000_000_000 + i,
                    status_code=200,
                    execution_duration_ms=20,
                    request=request,
                    response=response,
                    served_entity_id="gcn_rag_assistant-1",
                    endpoint_name="bench",
                    requester="bench",
                ),
            )
        spooled = time.perf_counter() - start
        start = time.perf_counter()
        flushed = capture.flush()
        elapsed = time.perf_counter() - start
        capture.close()
        print(
            f"flusher: {rows:,} rows ({len(response):,}-byte responses): spool write "
            f"{spooled / rows * 1e6:.1f} µs/row on the request path; flush {elapsed:.2f} s = "
            f"{flushed / elapsed:,.0f} rows/s into Delta"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="c=1 calls per endpoint")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--version", help="registered version (default: the newest)")
    parser.add_argument("--flush-rows", type=int, default=20_000)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    settings = Settings.load()
    version = args.version or registry.versions(settings)[0].version
    args.question_list = [json.loads(line)["question"] for line in DEFAULT_QUESTIONS.open()]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.platform()}; model version {version}; "
        f"{args.rounds} alternating rounds, {args.requests} c=1 calls and "
        f"{2 * args.requests} c={args.concurrency} calls per endpoint"
    )
    phases, _ = load(args, version)
    (p50, p95, tput, cp50, fail), (q50, q95, qput, cq50, qfail) = (
        summarize(phases["plain"]),
        summarize(phases["captured"]),
    )
    print()
    c = args.concurrency
    print(f"| capture | p50 ms c=1 | p95 ms c=1 | req/s c={c} | p50 ms c={c} | failures |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| off (baseline) | {p50:.1f} | {p95:.1f} | {tput:.1f} | {cp50:.1f} | {fail} |")
    print(f"| on | {q50:.1f} | {q95:.1f} | {qput:.1f} | {cq50:.1f} | {qfail} |")
    print(
        f"\ncapture on / off: p50 c=1 {q50 / p50:.3f}x ({(q50 / p50 - 1) * 100:+.1f}%), "
        f"p95 c=1 {q95 / p95:.3f}x, throughput c={args.concurrency} {qput / tput:.3f}x "
        f"({(qput / tput - 1) * 100:+.1f}%)"
    )
    seq_means = [statistics.fmean(p.latencies_ms) for p in phases["captured"][0::2]]
    print(f"captured c=1 mean per round: {', '.join(f'{m:.1f}' for m in seq_means)} ms")
    sample = '{"predictions": [' + json.dumps({"answer": "z" * 200, "citations": "c" * 2500}) + "]}"
    flusher(args.flush_rows, sample)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
