"""Serving in one process vs on Ray Serve (1 and 2 replicas): latency, throughput, cold start, RSS.

usage: python benchmarks/serve_ray.py [WORKSPACE] [--requests 200] [--concurrency 8]
                                      [--rounds 4] [--questions FILE]

WORKSPACE (default /work/ws) needs a registered assistant; its MLflow store, artifacts and
cache are copied with ``cp -a`` into a scratch directory, never touched. Three
``gcn-rag serve --no-auth`` subprocesses serve its newest version, all up at once, each with
its own home over the copied registry: the local engine, ``--engine ray`` (a private local
Ray on 127.0.0.1, one Ray replica per served entity) and ``--engine ray --ray-replicas 2``.
Each gets one Large endpoint (64 concurrent requests: none refused) and the same questions
(shared/bench/dev.jsonl, cycled), measured as benchmarks/serving.py does (warm-up, then
rounds in alternating order, c=1 interleaved question by question): p50 at c=1, throughput
at c=C. Then, one server at a time, a scale-to-zero endpoint: loaded, left idle until
unloaded, and the next request timed (the cold start from zero). Memory: the summed RSS of
each server's processes: the server, and every process of its Ray session (found by the
session's private RAY_TMPDIR). CPU per call: the server's, and Ray's less what its processes
burn idle (measured for 15 s before the load). At the end, the servers are stopped and any
Ray process left is counted.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from gcn_rag.model import registry
from gcn_rag.settings import Settings
from serving import (
    BIN,
    DEFAULT_QUESTIONS,
    Client,
    InvocationAsk,
    Row,
    Target,
    answer_once,
    endpoint_ready,
    free_port,
    measure_all,
    metric,
    server_home,
    server_process,
    wait_until,
)

IDLE_S = 15.0  # how long Ray's idle CPU is measured
ENGINES = {  # name -> extra `gcn-rag serve` options
    "single process": [],
    "ray, 1 replica": ["--engine", "ray"],
    "ray, 2 replicas": ["--engine", "ray", "--ray-replicas", "2"],
}


def scratch_workspace(source: Path, scratch: Path) -> Settings:
    """The parts of ``source`` a server reads, copied (``cp -a``) under ``scratch``."""
    home = scratch / "workspace"
    home.mkdir()
    for part in ("mlflow.db", "mlartifacts", "cache"):
        subprocess.run(["cp", "-a", str(source / part), str(home / part)], check=True)
    return Settings.load(environ={}, home=home)


def session_cpu_s(ray_tmp: str) -> dict[int, float]:
    """CPU seconds (user + system) so far of each process started with RAY_TMPDIR=ray_tmp."""
    found = {}
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if process.environ().get("RAY_TMPDIR") == ray_tmp:
                times = process.cpu_times()
                found[process.pid] = times.user + times.system
    return found


def session_rss_mb(ray_tmp: str) -> tuple[float, int]:
    """Summed RSS (MB) and count of the live processes started with RAY_TMPDIR=ray_tmp."""
    total, count = 0, 0
    for process in psutil.process_iter(["memory_info"]):
        with contextlib.suppress(psutil.Error):
            if process.environ().get("RAY_TMPDIR") == ray_tmp:
                total += process.info["memory_info"].rss
                count += 1
    return total / 2**20, count


class Server:
    """One ``gcn-rag serve`` subprocess with one Large endpoint of ``version``."""

    def __init__(
        self,
        stack: contextlib.ExitStack,
        name: str,
        settings: Settings,
        version: str,
        args: argparse.Namespace,
    ) -> None:
        self.name, self.version, self.args = name, version, args
        scratch = args.scratch / f"server-{len(list(args.scratch.glob('server-*')))}"
        scratch.mkdir()
        self.ray_tmp = tempfile.mkdtemp(prefix="gr", dir="/tmp")  # short: unix socket paths
        stack.callback(shutil.rmtree, self.ray_tmp, ignore_errors=True)
        self.port = free_port()
        env = {
            **os.environ,
            "GCN_RAG_HOME": str(server_home(settings, scratch)),
            "GCN_RAG_SCALE_TO_ZERO_IDLE_S": "3",  # for the scale-to-zero endpoint only
            "RAY_TMPDIR": self.ray_tmp,
        }
        argv = [str(BIN / "gcn-rag"), "serve", "--no-auth", "--port", str(self.port)]
        start = time.perf_counter()
        log = scratch / "serve.log"
        self.process = stack.enter_context(server_process(argv + ENGINES[name], env, log))
        wait_until("GET /health", lambda: self.ok("/health"), self.process, args.start_timeout)
        up = time.perf_counter() - start
        self.path = self.create("bench", "Large")
        ready = time.perf_counter() - start
        answer_once(self.ask(), args.question_list[0])
        self.cold_s = time.perf_counter() - start
        print(
            f"{name}: GET /health at {up:.1f} s, endpoint READY at {ready:.1f} s, first answer "
            f"at {self.cold_s:.1f} s (a Ray engine starts its private Ray before listening)"
        )

    def client(self) -> Client:
        """A fresh connection: a kept one idles past the server's 5 s keep-alive."""
        return Client(self.port, self.args.timeout)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        client = self.client()
        try:
            return client.call(method, path, body)
        finally:
            client.close()

    def ok(self, path: str) -> bool:
        return self.call("GET", path)[0] == 200

    def metric(self, name: str, labels: str) -> float:
        client = self.client()
        try:
            return metric(client, name, labels)
        finally:
            client.close()

    def ask(self) -> InvocationAsk:
        return InvocationAsk(self.port, self.path, self.args.timeout)

    def create(self, endpoint: str, size: str, **extra: Any) -> str:
        entity = {"entity_name": registry.MODEL_NAME, "entity_version": self.version}
        served = {**entity, "workload_size": size, **extra}
        body = {"name": endpoint, "config": {"served_entities": [served]}}
        status, reply = self.call("POST", "/api/2.0/serving-endpoints", body)
        if status != 200:
            raise RuntimeError(f"{self.name}: creating {endpoint} failed: {status} {reply}")
        client = self.client()
        try:
            ready = functools.partial(endpoint_ready, client, endpoint)
            wait_until(f"{endpoint} READY", ready, self.process, self.args.start_timeout)
        finally:
            client.close()
        return f"/serving-endpoints/{endpoint}/invocations"

    def target(self) -> Target:
        return Target(self.name, self.cold_s, self.ask)

    def ray_cpu_s(self, before: dict[int, float]) -> tuple[float, float]:
        """CPU seconds since ``before`` (:func:`session_cpu_s`): the server's, Ray's."""
        after = session_cpu_s(self.ray_tmp)
        spent = {pid: s - before.get(pid, 0.0) for pid, s in after.items()}
        return spent.pop(self.process.pid, 0.0), sum(spent.values())

    def cpu_split(self, before: dict[int, float], calls: int, idle: float) -> str:
        """CPU ms per call since ``before``: the server, and Ray less its ``idle`` CPU s
        (what its processes burn with no requests, over the same time)."""
        server, ray = self.ray_cpu_s(before)
        if not ray:
            return f"CPU per call: server {1000 * server / calls:.1f} ms"
        return (
            f"CPU per call: server {1000 * server / calls:.1f} ms, Ray processes "
            f"{1000 * (ray - idle) / calls:.1f} ms (+ {idle:.1f} s idle CPU over the run)"
        )

    def memory(self) -> str:
        server_mb = psutil.Process(self.process.pid).memory_info().rss / 2**20
        ray_mb, count = session_rss_mb(self.ray_tmp)
        ray_mb -= server_mb if count else 0  # the server itself was started with RAY_TMPDIR
        if count <= 1:
            return f"server {server_mb:,.0f} MB"
        return (
            f"server {server_mb:,.0f} MB + Ray {ray_mb:,.0f} MB over {count - 1} processes "
            f"= {server_mb + ray_mb:,.0f} MB"
        )

    def cold_start_from_zero(self) -> str:
        """Load a scale-to-zero endpoint, wait until it is unloaded, time the next answer."""
        path = self.create("zero", "Small", scale_to_zero_enabled=True)
        ask = InvocationAsk(self.port, path, self.args.timeout)
        answer_once(ask, self.args.question_list[0])
        labels = 'endpoint="zero"'

        def unloaded() -> bool:
            return self.metric("gcn_rag_model_loaded", labels) == 0

        wait_until("zero scaled to zero", unloaded, self.process, 120)
        start = time.perf_counter()
        answer_once(InvocationAsk(self.port, path, self.args.timeout), self.args.question_list[1])
        answered = time.perf_counter() - start
        load_s = self.metric("gcn_rag_last_cold_start_seconds", labels)
        self.call("DELETE", "/api/2.0/serving-endpoints/zero")
        return f"answered in {answered:.2f} s (load {load_s:.2f} s)"


def print_rows(rows: list[Row], concurrency: int) -> None:
    base = rows[0]
    print()
    print(f"| engine | p50 ms c=1 | p95 ms c=1 | req/s c={concurrency} | p50 ms c={concurrency} |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        seq, conc = row.sequential, row.concurrent
        print(
            f"| {row.name} | {seq.p(0.5):.1f} | {seq.p(0.95):.1f} | {conc.throughput:.1f} "
            f"| {conc.p(0.5):.1f} |"
        )
    for row in rows[1:]:
        extra_ms = row.sequential.p(0.5) - base.sequential.p(0.5)
        ratio = row.concurrent.throughput / base.concurrent.throughput
        print(
            f"{row.name} vs {base.name}: p50 c=1 {extra_ms:+.1f} ms, "
            f"throughput c={concurrency} x{ratio:.2f}"
        )


def leftover(servers: list[Server]) -> int:
    return sum(session_rss_mb(server.ray_tmp)[1] for server in servers)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("workspace", nargs="?", type=Path, default=Path("/work/ws"))
    parser.add_argument("--questions", type=Path, default=DEFAULT_QUESTIONS)
    parser.add_argument("--requests", type=int, default=200, help="calls at c=1 (2x at c=C)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds")
    parser.add_argument("--timeout", type=float, default=60.0, help="per request, seconds")
    parser.add_argument("--start-timeout", type=float, default=300.0, help="server start, s")
    parser.add_argument("--phase-timeout", type=float, default=900.0, help="per load run, s")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    args.question_list = [
        json.loads(line)["question"] for line in args.questions.open() if line.strip()
    ]
    with (
        tempfile.TemporaryDirectory(prefix="gcn-rag-bench-ray-") as scratch,
        contextlib.ExitStack() as stack,
    ):
        args.scratch = Path(scratch)
        settings = scratch_workspace(args.workspace, args.scratch)
        version = registry.versions(settings)[0].version
        print(f"{args.workspace} (copied), model version {version}")
        servers = [Server(stack, name, settings, version, args) for name in ENGINES]
        cpu = [session_cpu_s(server.ray_tmp) for server in servers]
        time.sleep(IDLE_S)  # Ray's own CPU with no requests, subtracted below
        idle = [s.ray_cpu_s(before)[1] / IDLE_S for s, before in zip(servers, cpu, strict=True)]
        cpu = [session_cpu_s(server.ray_tmp) for server in servers]
        start = time.perf_counter()
        rows = measure_all([server.target() for server in servers], args)
        wall = time.perf_counter() - start
        for server, before, row, rate in zip(servers, cpu, rows, idle, strict=True):
            answered = len(row.sequential.latencies_ms) + len(row.concurrent.latencies_ms)
            calls = args.warmup + answered
            split = server.cpu_split(before, calls, rate * wall)
            print(f"{server.name}: {split} (over {calls} calls, {wall:.0f} s)")
        for server in servers:
            print(f"{server.name}: memory after the load: {server.memory()}")
        for server in servers:
            print(f"{server.name}: cold start from zero: {server.cold_start_from_zero()}")
        print_rows(rows, args.concurrency)
        for server in servers:  # SIGTERM to the server alone: it stops its own Ray
            server.process.send_signal(signal.SIGTERM)
            server.process.wait(timeout=120)
        deadline = time.monotonic() + 30
        while leftover(servers) and time.monotonic() < deadline:
            time.sleep(0.5)
        print(f"Ray processes left after the servers stopped: {leftover(servers)}")


if __name__ == "__main__":
    main()
