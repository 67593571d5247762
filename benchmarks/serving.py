"""The serving path: in-process `predict` vs `gcn-rag serve` vs `mlflow models serve`.

usage: python benchmarks/serving.py [--requests 200] [--concurrency 8] [--version N]
                                    [--skip-mlflow] [--questions FILE]

Needs a workspace with a registered assistant (GCN_RAG_HOME, default ~/.gcn-rag; run
`gcn-rag model log --register` first). Every target serves the same registered version
(default: the newest) and gets the same questions (shared/bench/dev.jsonl, cycled in file
order); both servers are queried by the same HTTP client, over 127.0.0.1 only.

1. Baseline: `mlflow.pyfunc.load_model("models:/<name>/<version>")` in this process, then
   `model.predict(DataFrame({"question": [q]}))`, one question per call.
2. `gcn-rag serve --no-auth` in a subprocess: create an endpoint for the version, wait until
   it is READY, then `POST /serving-endpoints/<name>/invocations`. The server's home is a
   scratch directory that shares the workspace's registry but not its endpoints.
3. `mlflow models serve --env-manager local` in a subprocess with its default worker count,
   then `POST /invocations`.

All three are started first (cold start: process start to first answer), then measured in
--rounds rounds, each giving every target the same share of the calls: latency at
concurrency 1 (--requests calls in all, after a warm-up), asked question by question of every
target in turn (A B C, B C A, ...), and throughput and latency at concurrency C (2 x
--requests calls from C threads, each with its own keep-alive connection), target after
target in alternating order (A B C, C B A, ...), so the machine's drift falls on all alike.
Every answer must be HTTP 200 with one prediction per question; failures are counted and
printed. Ratios: each server's p50 minus the in-process p50 (the serving overhead; also the
median of the per-question differences), and gcn-rag serve / mlflow models serve; our
overhead is also split per request with the `server-timing` header.
Every request and every wait has a timeout, and both servers are stopped on the way out.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import functools
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from gcn_rag.model import registry
from gcn_rag.settings import Settings

DEFAULT_QUESTIONS = Path(__file__).resolve().parents[2] / "shared" / "bench" / "dev.jsonl"
BIN = Path(sys.executable).parent  # gcn-rag, mlflow and uvicorn live beside this python
POLL_S = 0.1


class Ask(Protocol):
    """One client's way to ask a question: None when the answer checks out, else why not."""

    def __call__(self, question: str) -> str | None: ...

    def close(self) -> None: ...


@dataclasses.dataclass
class Phase:
    """One load run: latencies of the calls that succeeded, wall time, failures by reason."""

    latencies_ms: list[float]
    wall_s: float
    failures: collections.Counter[str]

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.wall_s if self.wall_s else 0.0


@dataclasses.dataclass
class Row:
    name: str
    cold_s: float
    sequential: Phase
    concurrent: Phase


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


# --- clients ---------------------------------------------------------------------------------


class Client:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1:<port>; JSON in, JSON (or text) out."""

    def __init__(self, port: int, timeout_s: float) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
        self.last_headers: http.client.HTTPMessage | None = None

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {} if data is None else {"Content-Type": "application/json"}
        try:
            self.connection.request(method, path, body=data, headers=headers)
            response = self.connection.getresponse()
            raw = response.read()
            self.last_headers = response.headers
        except (OSError, http.client.HTTPException):
            self.connection.close()  # the next call opens a fresh connection
            raise
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw.decode(errors="replace")

    def close(self) -> None:
        self.connection.close()


class InvocationAsk:
    """POST one question as `dataframe_split` and check for one prediction back."""

    def __init__(self, port: int, path: str, timeout_s: float) -> None:
        self.client = Client(port, timeout_s)
        self.path = path

    def __call__(self, question: str) -> str | None:
        body = {"dataframe_split": {"columns": ["question"], "data": [[question]]}}
        status, payload = self.client.call("POST", self.path, body)
        if status != 200:
            return f"HTTP {status}: {str(payload)[:200]}"
        predictions = payload.get("predictions") if isinstance(payload, dict) else None
        if not isinstance(predictions, list) or len(predictions) != 1:
            return f"HTTP 200 without exactly one prediction: {str(payload)[:200]}"
        return None

    def close(self) -> None:
        self.client.close()


class GetAsk:
    """GET a cheap route (the HTTP + framework floor, no model); ignores the question."""

    def __init__(self, port: int, path: str, timeout_s: float) -> None:
        self.client = Client(port, timeout_s)
        self.path = path

    def __call__(self, question: str) -> str | None:
        status, payload = self.client.call("GET", self.path)
        return None if status == 200 else f"HTTP {status}: {str(payload)[:200]}"

    def close(self) -> None:
        self.client.close()


class PredictAsk:
    """The baseline: the loaded PyFunc model, called in this process."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def __call__(self, question: str) -> str | None:
        out = self.model.predict(pd.DataFrame({"question": [question]}))
        return None if len(out) == 1 else f"predict returned {len(out)} rows for 1 question"

    def close(self) -> None:
        pass


# --- load ------------------------------------------------------------------------------------


def run_phase(
    make_ask: Callable[[], Ask], questions: list[str], concurrency: int, deadline_s: float
) -> Phase:
    """Ask every question once from `concurrency` threads, each with its own `Ask`."""
    asks = [make_ask() for _ in range(concurrency)]
    lock = threading.Lock()
    pending = iter(questions)
    latencies: list[float] = []
    failures: collections.Counter[str] = collections.Counter()
    stop_at = time.monotonic() + deadline_s

    def work(ask: Ask) -> None:
        while time.monotonic() < stop_at:
            with lock:
                question = next(pending, None)
            if question is None:
                return
            start = time.perf_counter()
            try:
                error = ask(question)
            except Exception as exc:  # a failed call is counted, not fatal
                error = f"{type(exc).__name__}: {exc}"
            elapsed_ms = (time.perf_counter() - start) * 1000
            with lock:
                if error is None:
                    latencies.append(elapsed_ms)
                else:
                    failures[error] += 1

    threads = [threading.Thread(target=work, args=(ask,), daemon=True) for ask in asks]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.0, stop_at - time.monotonic()) + 120)
    wall = time.perf_counter() - start
    with lock:
        unsent = sum(1 for _ in pending)
        stuck = sum(thread.is_alive() for thread in threads)
    if unsent:
        failures[f"not sent before the {deadline_s:.0f} s phase deadline"] += unsent
    if stuck:
        failures["call still running after the phase deadline"] += stuck
    for ask in asks:
        ask.close()
    return Phase(latencies, wall, failures)


@dataclasses.dataclass
class Target:
    """One way of answering: its cold start, how to ask it, and what to report after."""

    name: str
    cold_s: float
    make_ask: Callable[[], Ask]
    after: Callable[[], None] = lambda: None


def merge(phases: list[Phase]) -> Phase:
    failures: collections.Counter[str] = collections.Counter()
    for phase in phases:
        failures += phase.failures
    return Phase(
        [ms for phase in phases for ms in phase.latencies_ms],
        sum(phase.wall_s for phase in phases),
        failures,
    )


def run_interleaved(
    targets: list[Target], questions: list[str], deadline_s: float
) -> tuple[dict[str, Phase], list[dict[str, float]]]:
    """Concurrency 1, one question at a time to every target in turn (the order rotates).

    The machine's speed drifts by several ms within a minute here; asking the same question
    of every target back to back puts that drift on all of them alike, and gives per-question
    pairs (returned: target -> latency, one dict per question answered by all).
    """
    asks = [(target.name, target.make_ask()) for target in targets]
    latencies: dict[str, list[float]] = {name: [] for name, _ in asks}
    failures: dict[str, collections.Counter[str]] = {
        name: collections.Counter() for name, _ in asks
    }
    pairs: list[dict[str, float]] = []
    stop_at = time.monotonic() + deadline_s
    try:
        for i, question in enumerate(questions):
            if time.monotonic() > stop_at:
                for name, _ in asks:
                    failures[name]["not sent before the phase deadline"] += len(questions) - i
                break
            answered: dict[str, float] = {}
            shift = i % len(asks)
            for name, ask in asks[shift:] + asks[:shift]:
                start = time.perf_counter()
                try:
                    error = ask(question)
                except Exception as exc:  # a failed call is counted, not fatal
                    error = f"{type(exc).__name__}: {exc}"
                elapsed_ms = (time.perf_counter() - start) * 1000
                if error is None:
                    latencies[name].append(elapsed_ms)
                    answered[name] = elapsed_ms
                else:
                    failures[name][error] += 1
            if len(answered) == len(asks):
                pairs.append(answered)
    finally:
        for _, ask in asks:
            ask.close()
    phases = {
        name: Phase(latencies[name], sum(latencies[name]) / 1000, failures[name])
        for name, _ in asks
    }
    return phases, pairs


def measure_all(targets: list[Target], args: argparse.Namespace) -> list[Row]:
    """Warm-up, then rounds in alternating order (A B C, C B A, ...): each round gives every
    target the same share of the c=C calls, so drift in the machine's speed (several ms over
    a minute here) falls on all targets alike; c=1 calls are interleaved question by question
    (:func:`run_interleaved`)."""
    cycle = args.question_list
    for target in targets:
        run_phase(target.make_ask, cycle[: args.warmup], 1, args.phase_timeout)
    per_round = max(1, args.requests // args.rounds)
    seq: dict[str, list[Phase]] = {t.name: [] for t in targets}
    conc: dict[str, list[Phase]] = {t.name: [] for t in targets}
    pairs: list[dict[str, float]] = []
    for r in range(args.rounds):
        start = r * 3 * per_round
        asked = [cycle[(start + i) % len(cycle)] for i in range(2 * per_round)]
        phases, round_pairs = run_interleaved(targets, asked[:per_round], args.phase_timeout)
        pairs += round_pairs
        for target in targets:
            seq[target.name].append(phases[target.name])
        for target in targets if r % 2 == 0 else targets[::-1]:
            conc[target.name].append(
                run_phase(target.make_ask, asked, args.concurrency, args.phase_timeout)
            )
    rows = []
    for target in targets:
        sequential, concurrent = merge(seq[target.name]), merge(conc[target.name])
        print(
            f"{target.name}: c=1 p50 {sequential.p(0.5):.1f} ms, p95 {sequential.p(0.95):.1f} ms, "
            f"mean {statistics.fmean(sequential.latencies_ms or [float('nan')]):.1f} ms; "
            f"c={args.concurrency} {concurrent.throughput:.1f} req/s, p50 "
            f"{concurrent.p(0.5):.1f} ms, p95 {concurrent.p(0.95):.1f} ms"
        )
        report_failures(sequential.failures + concurrent.failures)
        rows.append(Row(target.name, target.cold_s, sequential, concurrent))
    base = targets[0].name
    for target in targets[1:]:
        paired = [pair[target.name] - pair[base] for pair in pairs]
        print(
            f"{target.name} minus {base}, same question back to back, c=1: median "
            f"{percentile(paired, 0.5):+.2f} ms over {len(paired)} questions"
        )
    return rows


def report_failures(failures: collections.Counter[str]) -> None:
    total = sum(failures.values())
    print(f"  failures: {total}")
    for reason, count in failures.most_common(10):
        print(f"    {count} x {reason}")


# --- servers ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def server_process(
    argv: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server in its own process group; on the way out stop the whole group."""
    with log.open("wb") as out:  # a file, not a pipe: a full pipe would stall the server
        process = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):  # any worker that outlived its parent
        os.killpg(process.pid, signal.SIGKILL)


def group_processes(pgid: int) -> list[tuple[int, float, str]]:
    """(pid, RSS MB, command line) of every live process in a process group, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            status = (entry / "status").read_text().splitlines()
            rss = next((int(s.split()[1]) for s in status if s.startswith("VmRSS")), 0)
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (OSError, ValueError, IndexError):
            continue  # exited while we looked
        found.append((int(entry.name), rss / 1024, cmd))
    return found


def wait_until(
    what: str, ready: Callable[[], bool], process: subprocess.Popen[bytes], timeout_s: float
) -> None:
    """Poll until `ready()`; raise if the server exits or `timeout_s` passes first."""
    stop_at = time.monotonic() + timeout_s
    while time.monotonic() < stop_at:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited (code {process.returncode}) before {what}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            if ready():
                return
        time.sleep(POLL_S)
    raise TimeoutError(f"no {what} within {timeout_s:.0f} s")


def answer_once(ask: Ask, question: str) -> None:
    error = ask(question)
    ask.close()
    if error is not None:
        raise RuntimeError(f"first invocation failed: {error}")


def describe_group(name: str, process: subprocess.Popen[bytes]) -> None:
    procs = group_processes(process.pid)
    print(f"  {name}: {len(procs)} processes, RSS {sum(r for _, r, _ in procs):,.0f} MB")
    for pid, rss, cmd in procs:
        print(f"    pid {pid} {rss:,.0f} MB: {cmd[:160]}")


def start_gcn_rag(
    stack: contextlib.ExitStack, settings: Settings, version: str, args: argparse.Namespace
) -> Target:
    port = free_port()
    env = {
        **os.environ,
        "GCN_RAG_HOME": str(server_home(settings, args.scratch)),
        "GCN_RAG_SCALE_TO_ZERO_IDLE_S": "3",  # for the scale-to-zero endpoint only
    }
    argv = [str(BIN / "gcn-rag"), "serve", "--no-auth", "--port", str(port)]
    name = f"bench-{os.getpid()}"
    path = f"/serving-endpoints/{name}/invocations"
    entity = {"entity_name": registry.MODEL_NAME, "entity_version": version}
    create = {"name": name, "config": {"served_entities": [{**entity, "workload_size": "Large"}]}}
    start = time.perf_counter()
    process = stack.enter_context(server_process(argv, env, args.scratch / "gcn-rag-serve.log"))
    client = Client(port, args.timeout)
    stack.callback(client.close)
    wait_until("GET /health", lambda: ok(client, "/health"), process, args.start_timeout)
    up = time.perf_counter() - start
    status, body = client.call("POST", "/api/2.0/serving-endpoints", create)
    if status != 200:
        raise RuntimeError(f"creating the endpoint failed: HTTP {status} {body}")
    stack.callback(delete_endpoint, port, name, args.timeout)
    ready_check = functools.partial(endpoint_ready, client, name)
    wait_until("endpoint READY", ready_check, process, args.start_timeout)
    ready = time.perf_counter() - start
    answer_once(InvocationAsk(port, path, args.timeout), args.question_list[0])
    cold = time.perf_counter() - start
    print(
        f"gcn-rag serve: cold start {cold:.1f} s (GET /health 200 at {up:.1f} s, "
        f"endpoint READY at {ready:.1f} s, first answer at {cold:.1f} s)"
    )

    def after() -> None:
        floor(port, "/health", args)
        describe_group("gcn-rag serve", process)
        split_overhead(port, path, args)
        scale_to_zero(port, process, entity, args)

    return Target("gcn-rag serve", cold, ask_factory(port, path, args), after)


def split_overhead(port: int, path: str, args: argparse.Namespace) -> None:
    """Per request: client latency minus the server's own ``model`` time (Server-Timing).

    Both come from the same request, so process-to-process drift of the model's speed
    (several ms on this machine) cancels out of the overhead.
    """
    ask = InvocationAsk(port, path, args.timeout)
    outside, handler = [], []
    try:
        for i in range(args.requests):
            start = time.perf_counter()
            if ask(args.question_list[i % len(args.question_list)]) is not None:
                continue
            elapsed = (time.perf_counter() - start) * 1000
            headers = ask.client.last_headers
            timing = dict(
                part.strip().split(";dur=")
                for part in (headers.get("server-timing", "") if headers else "").split(",")
                if ";dur=" in part
            )
            outside.append(elapsed - float(timing["model"]))
            handler.append(float(timing["total"]) - float(timing["model"]))
    finally:
        ask.close()
    print(
        f"gcn-rag serve: overhead per request outside model.predict, c=1: p50 "
        f"{percentile(outside, 0.5):.2f} ms, p95 {percentile(outside, 0.95):.2f} ms "
        f"(of which in the handler: p50 {percentile(handler, 0.5):.2f} ms; the rest is HTTP "
        "and the client)"
    )


def scale_to_zero(
    port: int, process: subprocess.Popen[bytes], entity: dict[str, str], args: argparse.Namespace
) -> None:
    """A second, scale-to-zero endpoint: memory released when idle, and the cold start."""
    name = f"bench-zero-{os.getpid()}"
    path = f"/serving-endpoints/{name}/invocations"
    body = {
        "name": name,
        "config": {"served_entities": [{**entity, "scale_to_zero_enabled": True}]},
    }
    client = Client(port, args.timeout)
    try:
        status, reply = client.call("POST", "/api/2.0/serving-endpoints", body)
        if status != 200:
            raise RuntimeError(f"creating {name} failed: HTTP {status} {reply}")
        wait_until(f"{name} READY", functools.partial(endpoint_ready, client, name), process, 300)
        answer_once(InvocationAsk(port, path, args.timeout), args.question_list[0])
        loaded_mb = metric(client, "process_resident_memory_bytes") / 2**20

        def unloaded() -> bool:
            return metric(client, "gcn_rag_model_loaded", f'endpoint="{name}"') == 0

        wait_until(f"{name} scaled to zero", unloaded, process, 120)
        released_mb = loaded_mb - metric(client, "process_resident_memory_bytes") / 2**20
        start = time.perf_counter()
        answer_once(InvocationAsk(port, path, args.timeout), args.question_list[1])
        answered = time.perf_counter() - start
        load_s = metric(client, "gcn_rag_last_cold_start_seconds", f'endpoint="{name}"')
        print(
            f"gcn-rag serve: scale-to-zero released {released_mb:,.0f} MB of {loaded_mb:,.0f} MB "
            f"RSS; cold start: request answered in {answered:.2f} s (model load {load_s:.2f} s)"
        )
    finally:
        client.close()
        delete_endpoint(port, name, args.timeout)


def metric(client: Client, name: str, labels: str = "") -> float:
    """One sample of the server's Prometheus text (the first whose labels contain ``labels``)."""
    status, text = client.call("GET", "/metrics")
    for line in str(text).splitlines():
        if line.startswith(name) and labels in line and not line.startswith("#"):
            return float(line.rsplit(" ", 1)[1])
    raise RuntimeError(f"no {name} {labels} in /metrics (HTTP {status})")


def server_home(settings: Settings, scratch: Path) -> Path:
    """A home that shares the workspace's registry (and config) but not its endpoints.

    The server restores every endpoint in ``<home>/serving.db`` at start; the workspace's own
    would load alongside the benchmark's and skew its cold start. This also leaves the
    workspace's serving.db alone.
    """
    home = scratch / "home"
    home.mkdir()
    (home / "mlflow.db").symlink_to((settings.home / "mlflow.db").resolve())
    if (settings.home / "config.toml").exists():
        shutil.copy(settings.home / "config.toml", home / "config.toml")
    return home


def delete_endpoint(port: int, name: str, timeout_s: float) -> None:
    """On a fresh connection: the polling one has idled past the server's keep-alive."""
    client = Client(port, timeout_s)
    try:
        status, body = client.call("DELETE", f"/api/2.0/serving-endpoints/{name}")
    except (OSError, http.client.HTTPException) as exc:
        status, body = 0, f"{type(exc).__name__}: {exc}"
    finally:
        client.close()
    if status != 200:
        print(f"  warning: could not delete endpoint {name} ({status} {body}); delete it by hand")


def ok(client: Client, path: str) -> bool:
    return client.call("GET", path)[0] == 200


def ask_factory(port: int, path: str, args: argparse.Namespace) -> Callable[[], Ask]:
    return lambda: InvocationAsk(port, path, args.timeout)


def endpoint_ready(client: Client, name: str) -> bool:
    status, body = client.call("GET", f"/api/2.0/serving-endpoints/{name}")
    if status != 200 or not isinstance(body, dict):
        return False
    if body["state"].get("config_update") == "UPDATE_FAILED":
        entity = body["config"]["served_entities"][0]["name"]
        path = f"/api/2.0/serving-endpoints/{name}/served-models/{entity}/logs"
        raise RuntimeError(f"endpoint {name} failed to load: {client.call('GET', path)[1]}")
    return bool(body["state"].get("ready") == "READY")


def start_mlflow(
    stack: contextlib.ExitStack, settings: Settings, version: str, args: argparse.Namespace
) -> Target:
    port = free_port()
    uri = registry.tracking_uri(settings)
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_REGISTRY_URI": uri,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("MLFLOW_MODELS_WORKERS", None)  # measure mlflow's own default worker count
    model_uri = f"models:/{registry.MODEL_NAME}/{version}"
    argv = [str(BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local"]
    argv += ["-h", "127.0.0.1", "-p", str(port)]
    start = time.perf_counter()
    log = args.scratch / "mlflow-models-serve.log"
    process = stack.enter_context(server_process(argv, env, log))
    client = Client(port, args.timeout)
    try:
        wait_until("GET /ping", lambda: ok(client, "/ping"), process, args.start_timeout)
    finally:
        client.close()
    up = time.perf_counter() - start
    answer_once(InvocationAsk(port, "/invocations", args.timeout), args.question_list[0])
    cold = time.perf_counter() - start
    print(
        f"mlflow models serve: cold start {cold:.1f} s (GET /ping 200 at {up:.1f} s, "
        f"first answer at {cold:.1f} s)"
    )

    def after() -> None:
        floor(port, "/ping", args)
        describe_group("mlflow models serve", process)

    return Target("mlflow models serve", cold, ask_factory(port, "/invocations", args), after)


def floor(port: int, path: str, args: argparse.Namespace) -> None:
    """Latency of a route that touches no model: what HTTP + the framework cost alone."""
    phase = run_phase(lambda: GetAsk(port, path, args.timeout), ["-"] * 100, 1, args.timeout)
    print(f"  GET {path} (no model) c=1 p50 {phase.p(0.5):.2f} ms, p95 {phase.p(0.95):.2f} ms")


def mlflow_workers_default() -> str:
    """What `mlflow models serve` does with no --workers, read from mlflow itself."""
    from mlflow.models.cli import serve

    option = next(p for p in serve.params if p.name == "workers")
    return (
        f"--workers default {option.default!r} (env {option.envvar}, help: "
        f"{option.help!r}); the pyfunc backend then uses `workers or 1`"
    )


# --- baseline and report ---------------------------------------------------------------------


def start_in_process(version: str, args: argparse.Namespace) -> Target:
    import mlflow

    start = time.perf_counter()
    model = mlflow.pyfunc.load_model(f"models:/{registry.MODEL_NAME}/{version}")
    loaded = time.perf_counter() - start
    answer_once(PredictAsk(model), args.question_list[0])
    cold = time.perf_counter() - start
    print(
        f"in-process predict: cold start {cold:.1f} s (load_model {loaded:.1f} s, mlflow "
        f"already imported; first answer {cold - loaded:.2f} s)"
    )
    return Target("in-process predict", cold, lambda: PredictAsk(model))


def print_table(rows: list[Row], concurrency: int) -> None:
    c = concurrency
    print()
    print(
        f"| target | cold start s | p50 ms c=1 | p95 ms c=1 | throughput req/s c={c} "
        f"| p50 ms c={c} | p95 ms c={c} |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        seq, conc = row.sequential, row.concurrent
        print(
            f"| {row.name} | {row.cold_s:.1f} | {seq.p(0.5):.1f} | {seq.p(0.95):.1f} "
            f"| {conc.throughput:.1f} | {conc.p(0.5):.1f} | {conc.p(0.95):.1f} |"
        )
    base = rows[0].sequential.p(0.5)
    print()
    for row in rows[1:]:
        print(
            f"overhead, {row.name}: p50 c=1 {row.sequential.p(0.5) - base:+.1f} ms over "
            f"in-process predict ({row.sequential.p(0.5) / base:.2f}x)"
        )
    named = {row.name: row for row in rows}
    ours, theirs = named.get("gcn-rag serve"), named.get("mlflow models serve")
    if ours and theirs:
        print(
            f"gcn-rag serve / mlflow models serve: p50 c=1 "
            f"{ours.sequential.p(0.5) / theirs.sequential.p(0.5):.2f}x, p95 c=1 "
            f"{ours.sequential.p(0.95) / theirs.sequential.p(0.95):.2f}x, throughput c={c} "
            f"{ours.concurrent.throughput / theirs.concurrent.throughput:.2f}x, p50 c={c} "
            f"{ours.concurrent.p(0.5) / theirs.concurrent.p(0.5):.2f}x"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--questions", type=Path, default=DEFAULT_QUESTIONS)
    parser.add_argument(
        "--requests", type=int, default=200, help="calls at c=1 (twice as many at c=C)"
    )
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--version", help="registered version (default: the newest)")
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds")
    parser.add_argument("--plot", type=Path, help="also write the figures as a PNG here")
    parser.add_argument("--timeout", type=float, default=60.0, help="per request, seconds")
    parser.add_argument("--start-timeout", type=float, default=300.0, help="server start, s")
    parser.add_argument("--phase-timeout", type=float, default=900.0, help="per load run, s")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    settings = Settings.load()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.platform()}"
    )
    args.question_list = [
        json.loads(line)["question"] for line in args.questions.open() if line.strip()
    ]
    version = args.version or registry.versions(settings)[0].version
    print(
        f"model {registry.MODEL_NAME} version {version}; {len(args.question_list)} questions "
        f"cycled; c=1: {args.warmup} warm-up + {args.requests} calls; "
        f"c={args.concurrency}: {2 * args.requests} calls"
    )
    with (
        tempfile.TemporaryDirectory(prefix="gcn-rag-bench-serving-") as scratch,
        contextlib.ExitStack() as stack,
    ):
        args.scratch = Path(scratch)
        try:
            targets = [start_in_process(version, args)]
            targets.append(start_gcn_rag(stack, settings, version, args))
            if not args.skip_mlflow:
                print(f"mlflow models serve: {mlflow_workers_default()}")
                targets.append(start_mlflow(stack, settings, version, args))
            rows = measure_all(targets, args)
            for target in targets:
                target.after()
        except Exception:
            for log in sorted(args.scratch.glob("*.log")):
                tail = log.read_text(errors="replace").splitlines()[-30:]
                print(f"--- last lines of {log.name}:", *tail, sep="\n", file=sys.stderr)
            raise
    print_table(rows, args.concurrency)
    if args.plot is not None:
        plot(rows, args.concurrency, args.plot)
        print(f"plot: {args.plot}")


def plot(rows: list[Row], concurrency: int, path: Path) -> None:
    """Four panels, one bar per target: latency at c=1 (p50, p95), each server's p50 overhead
    over in-process with the 2 ms target, throughput at c=C, cold start."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    names = [row.name for row in rows]
    colors = ["tab:gray", "tab:blue", "tab:orange"][: len(rows)]
    fig, (lat, over, tput, cold) = plt.subplots(1, 4, figsize=(17, 4.6), constrained_layout=True)
    x = list(range(len(rows)))
    width = 0.38
    p50 = [r.sequential.p(0.5) for r in rows]
    p95 = [r.sequential.p(0.95) for r in rows]
    bars = lat.bar([i - width / 2 for i in x], p50, width, color=colors)
    lat.bar_label(bars, fmt="%.1f", fontsize=8)
    bars = lat.bar([i + width / 2 for i in x], p95, width, color=colors, alpha=0.5)
    lat.bar_label(bars, fmt="%.1f", fontsize=8)
    lat.set_title("Latency at concurrency 1 (lower is better)")
    lat.set_ylabel("ms per request")
    lat.legend(
        handles=[Patch(color="0.35", label="p50"), Patch(color="0.35", alpha=0.5, label="p95")],
        loc="upper left",
    )
    lat.set_ylim(0, max(p95) * 1.25)
    servers = rows[1:]
    bars = over.bar(
        range(len(servers)), [r.sequential.p(0.5) - p50[0] for r in servers], color=colors[1:]
    )
    over.bar_label(bars, fmt="%+.1f ms", fontsize=9)
    over.axhline(2.0, color="tab:red", linestyle="--", linewidth=1)
    over.text(-0.4, 2.05, "target 2 ms", color="tab:red", ha="left", va="bottom")
    over.set_title("Serving overhead: p50 minus in-process p50")
    over.set_ylabel("ms")
    over.set_xticks(range(len(servers)), [r.name for r in servers], rotation=12)
    bars = tput.bar(x, [r.concurrent.throughput for r in rows], color=colors)
    tput.bar_label(bars, fmt="%.1f", fontsize=8)
    tput.set_title(f"Throughput at concurrency {concurrency} (higher is better)")
    tput.set_ylabel("requests/s")
    bars = cold.bar(x, [r.cold_s for r in rows], color=colors)
    cold.bar_label(bars, fmt="%.1f s", fontsize=8)
    cold.set_title("Cold start to first answer")
    cold.set_ylabel("seconds (in-process: MLflow already imported)")
    for axis in (lat, tput, cold):
        axis.set_xticks(x, names, rotation=12)
    for axis in (lat, over, tput, cold):
        axis.grid(True, axis="y", alpha=0.3)
    fig.suptitle(
        "Serving the same registered model: in-process vs gcn-rag serve vs mlflow models serve"
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
