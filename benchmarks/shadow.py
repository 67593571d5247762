"""Shadow traffic: what mirroring a share of requests costs the callers.

usage: python benchmarks/shadow.py [--requests 200] [--rounds 4] [--share 50]
                                   [--primary V] [--shadow V] [--questions FILE]

One `gcn-rag serve --no-auth` subprocess (a scratch home sharing the active workspace's
registry, so the workspace's own endpoints are left alone) serves one endpoint with two
served entities of the registered assistant: the primary (`--primary`, default the newest
version) takes all live traffic and the other (`--shadow`, default the one before) is its
shadow. Both capture into the inference table. Each round measures the same load with the
shadow route at 0 % (the baseline) and at `--share` % (alternating which goes first), switched
by a zero-downtime config update in between: `--requests` calls at concurrency 1 (the callers'
p50), twice as many at concurrency 8 (throughput), and `--requests` calls from one client that
pauses `--think-ms` after each answer (traffic with gaps, in which shadow copies do run).
Before each phase the shadow queue is left to drain, so one phase's mirrored copies never
run during the next. Prints p50/p95 and throughput per setting, the ratios shadow/baseline,
and how many copies were answered and dropped.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gcn_rag.model import registry
from gcn_rag.settings import Settings
from serving import (
    BIN,
    DEFAULT_QUESTIONS,
    Ask,
    Client,
    InvocationAsk,
    Phase,
    endpoint_ready,
    free_port,
    metric,
    ok,
    run_phase,
    server_home,
    server_process,
    wait_until,
)

NAME = "shadowbench"
CAPTURE = {"catalog_name": "sandbox", "schema_name": "nasa_gcn_dev", "table_name_prefix": "bench"}


def config(primary: str, shadow: str, share: int) -> dict[str, Any]:
    entity = {"entity_name": registry.MODEL_NAME, "workload_size": "Large"}
    return {
        "served_entities": [
            {**entity, "name": "primary", "entity_version": primary},
            {**entity, "name": "shadow", "entity_version": shadow},
        ],
        "traffic_config": {
            "routes": [{"served_model_name": "primary", "traffic_percentage": 100}],
            "shadow_routes": [{"served_model_name": "shadow", "shadow_percentage": share}],
        },
        "auto_capture_config": CAPTURE,
    }


def switch(client: Client, args: argparse.Namespace, share: int, process: Any) -> None:
    """Set the shadow share (zero-downtime update), then wait for READY and an empty queue."""
    body = config(args.primary, args.shadow, share)
    status, answer = client.call("PUT", f"/api/2.0/serving-endpoints/{NAME}/config", body)
    if status != 200:
        raise RuntimeError(f"config update failed: HTTP {status} {answer}")
    wait_until("READY", lambda: endpoint_ready(client, NAME), process, args.start_timeout)
    drained = lambda: metric(client, "gcn_rag_shadow_queued") == 0  # noqa: E731
    wait_until("an empty shadow queue", drained, process, args.start_timeout)
    time.sleep(0.5)  # the copy being asked (not counted as queued) ends


def shadow_counts(port: int, timeout_s: float) -> tuple[float, float]:
    """(answered, dropped) mirrored copies so far (on a fresh connection: the last one may
    have idled past the server's keep-alive during a phase)."""
    client = Client(port, timeout_s)
    _, text = client.call("GET", "/metrics")
    client.close()
    answered = dropped = 0.0
    for line in str(text).splitlines():
        if line.startswith("gcn_rag_shadow_requests_total{"):
            answered += float(line.rsplit(" ", 1)[1])
        elif line.startswith("gcn_rag_shadow_dropped_total{"):
            dropped += float(line.rsplit(" ", 1)[1])
    return answered, dropped


Results = dict[tuple[int, str], list[Phase]]  # (share, phase) -> one Phase per round
Copies = dict[tuple[int, str], list[float]]  # (share, phase) -> copies answered per round


def measure(port: int, process: Any, args: argparse.Namespace) -> tuple[Results, Copies]:
    """Per shadow share and round: closed-loop c=1, c=8, and paced c=1 (think time)."""
    path = f"/serving-endpoints/{NAME}/invocations"
    results: Results = collections.defaultdict(list)
    copies: Copies = collections.defaultdict(list)
    questions = args.question_list

    def make() -> Ask:
        return InvocationAsk(port, path, args.timeout)

    loads: dict[str, Callable[[], Phase]] = {
        "c=1": lambda: run_phase(make, cycle(questions, args.requests), 1, args.phase_timeout),
        f"c={args.concurrency}": lambda: run_phase(
            make, cycle(questions, 2 * args.requests), args.concurrency, args.phase_timeout
        ),
        "paced c=1": lambda: paced(make, cycle(questions, args.requests), args.think_ms / 1000),
    }
    for round_ in range(args.rounds):
        order = [0, args.share] if round_ % 2 == 0 else [args.share, 0]
        for share in order:
            client = Client(port, args.timeout)
            switch(client, args, share, process)
            client.close()
            run_phase(make, questions[: args.warmup], 1, args.phase_timeout)
            said = []
            for name, load in loads.items():
                before = shadow_counts(port, args.timeout)
                phase = load()
                after = shadow_counts(port, args.timeout)
                if phase.failures:
                    raise RuntimeError(f"failed calls at shadow {share}%: {phase.failures}")
                results[(share, name)].append(phase)
                copies[(share, name)].append(after[0] - before[0])
                said.append(
                    f"{name} p50 {phase.p(0.5):.2f} ms, {phase.throughput:.1f} req/s, "
                    f"{after[0] - before[0]:.0f} copies answered / {after[1] - before[1]:.0f} "
                    "dropped"
                )
            print(f"round {round_ + 1}, shadow {share:>3}%: " + "; ".join(said), flush=True)
    return results, copies


def paced(make: Callable[[], Ask], questions: list[str], think_s: float) -> Phase:
    """One client that waits ``think_s`` after each answer (traffic with gaps)."""
    ask, latencies = make(), []
    failures: collections.Counter[str] = collections.Counter()
    start = time.perf_counter()
    for question in questions:
        began = time.perf_counter()
        error = ask(question)
        latencies.append((time.perf_counter() - began) * 1000)
        if error is not None:
            failures[error] += 1
        time.sleep(think_s)
    ask.close()
    return Phase(latencies, time.perf_counter() - start, failures)


def cycle(questions: list[str], n: int) -> list[str]:
    return [questions[i % len(questions)] for i in range(n)]


def report(results: Results, copies: Copies, args: argparse.Namespace) -> None:
    names = sorted({name for _, name in results}, key=lambda n: ("paced" in n, n))
    print()
    print("| load | shadow | p50 ms | p95 ms | req/s | copies answered per phase |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in names:
        for share in (0, args.share):
            rows = results[(share, name)]
            p50 = statistics.median(ph.p(0.5) for ph in rows)
            p95 = statistics.median(ph.p(0.95) for ph in rows)
            rate = statistics.median(ph.throughput for ph in rows)
            answered = statistics.median(copies[(share, name)])
            print(f"| {name} | {share}% | {p50:.2f} | {p95:.2f} | {rate:.1f} | {answered:.0f} |")
    print(f"\nratios shadow {args.share}% / none (medians of {args.rounds} rounds):")
    for name in names:
        base = results[(0, name)]
        mirrored = results[(args.share, name)]
        p50 = statistics.median(ph.p(0.5) for ph in mirrored) / statistics.median(
            ph.p(0.5) for ph in base
        )
        rate = statistics.median(ph.throughput for ph in mirrored) / statistics.median(
            ph.throughput for ph in base
        )
        print(f"  {name}: p50 x{p50:.3f}, throughput x{rate:.3f}")
    print("targets: c=1 p50 within 5 % (x1.05), c=8 throughput within 10 % (x0.90)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--questions", type=Path, default=DEFAULT_QUESTIONS)
    parser.add_argument("--requests", type=int, default=200, help="calls at c=1 per phase")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--share", type=int, default=50, help="shadow percentage")
    parser.add_argument("--think-ms", type=float, default=40.0, help="paced phase: pause")
    parser.add_argument("--primary", help="primary version (default: the newest)")
    parser.add_argument("--shadow", help="shadow version (default: the one before)")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--start-timeout", type=float, default=600.0)
    parser.add_argument("--phase-timeout", type=float, default=900.0)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    settings = Settings.load()
    versions = [v.version for v in registry.versions(settings)]
    args.primary = args.primary or versions[0]
    args.shadow = args.shadow or (versions[1] if len(versions) > 1 else versions[0])
    args.question_list = [
        json.loads(line)["question"] for line in args.questions.open() if line.strip()
    ]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load average {os.getloadavg()[0]:.2f}; primary version "
        f"{args.primary}, shadow version {args.shadow}, {len(args.question_list)} questions"
    )
    with (
        tempfile.TemporaryDirectory(prefix="gcn-rag-bench-shadow-") as scratch,
        contextlib.ExitStack() as stack,
    ):
        home = server_home(settings, Path(scratch))
        port = free_port()
        env = {**os.environ, "GCN_RAG_HOME": str(home)}
        argv = [str(BIN / "gcn-rag"), "serve", "--no-auth", "--port", str(port)]
        log = Path(scratch) / "serve.log"
        process = stack.enter_context(server_process(argv, env, log))
        client = Client(port, args.timeout)
        try:
            wait_until("GET /health", lambda: ok(client, "/health"), process, args.start_timeout)
            body = {"name": NAME, "config": config(args.primary, args.shadow, 0)}
            status, answer = client.call("POST", "/api/2.0/serving-endpoints", body)
            if status != 200:
                raise RuntimeError(f"creating the endpoint failed: HTTP {status} {answer}")
            ready = lambda: endpoint_ready(client, NAME)  # noqa: E731
            wait_until("READY", ready, process, args.start_timeout)
            results, copies = measure(port, process, args)
        except Exception:
            print(*log.read_text(errors="replace").splitlines()[-30:], sep="\n", file=sys.stderr)
            raise
        finally:
            client.close()
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    report(results, copies, args)


if __name__ == "__main__":
    main()
