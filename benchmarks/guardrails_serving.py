"""Guardrails on the serving path: invocation latency with guardrails on vs off.

usage: python benchmarks/guardrails_serving.py [--requests 2000] [--rounds 9]
                                               [--questions FILE]

Self-contained (a scratch workspace, nothing downloaded): a PyFunc that answers at once with
a realistic prediction (the question, a ~0.5 KB answer and five ~300-character quotes, picked
by the question from 40 passages of real circulars in tests/fixtures, ~2.6 KB of JSON in all)
is registered, and one
`gcn-rag serve --no-auth` subprocess serves it twice, both endpoints capturing into the same
inference table: `plain` (no guardrails, the baseline), `up` (what `gcn-rag up` turns on:
input PII MASK + safety) and `guarded` (every rule that runs on every request: input and
output PII MASK + safety). With a model that costs nothing, the difference to `plain` is the
guardrails' own serving overhead. Rounds rotate the order of the endpoints at concurrency 1
so the machine's drift falls on all alike; every answer must be HTTP 200 with one
prediction.

Also timed in this process, per request (the same calls the server makes): the input
screen of the question, the output screen of the prediction and the redaction of the stored
request.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import io
import json
import os
import platform
import statistics
import sys
import tarfile
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from gcn_rag.model import registry
from gcn_rag.serving.deploy import UP_GUARDRAILS
from gcn_rag.settings import Settings
from serving import (
    DEFAULT_QUESTIONS,
    Client,
    InvocationAsk,
    endpoint_ready,
    free_port,
    percentile,
    run_phase,
    server_process,
    wait_until,
)

MODEL = "sandbox.bench.guard_echo"
FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "archive.json.tar.gz"
GUARDED = {
    "input": {"pii": {"behavior": "MASK"}, "safety": True},
    "output": {"pii": {"behavior": "MASK"}, "safety": True},
}
CAPTURE = {"catalog_name": "sandbox", "schema_name": "nasa_gcn_dev", "table_name_prefix": "bench"}


def fixture_quotes(n: int = 40, size: int = 300) -> list[str]:
    """The first ``size`` characters of ``n`` real circulars' bodies (tests/fixtures)."""
    quotes = []
    with tarfile.open(FIXTURES) as archive:
        for member in archive.getmembers():
            handle = archive.extractfile(member) if member.isfile() else None
            if handle is None:
                continue
            body = " ".join(str(json.load(io.TextIOWrapper(handle)).get("body", "")).split())
            if len(body) >= size:
                quotes.append(body[:size])
            if len(quotes) == n:
                break
    return quotes


class Answerer(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
    """Answers every question at once with a prediction of a real answer's size."""

    def __init__(self, quotes: list[str]) -> None:
        self.quotes = quotes

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        rows = []
        for question in model_input.iloc[:, 0]:
            first = zlib.crc32(str(question).encode()) % len(self.quotes)
            picked = [(first + 7 * i) % len(self.quotes) for i in range(5)]
            cited = [{"circular_id": i, "quote": self.quotes[i]} for i in picked]
            answer = f"{question} {' '.join(self.quotes[i][:100] for i in picked)}"
            rows.append(
                {
                    "answer": answer,
                    "sources": "[]",
                    "num_docs": len(cited),
                    "citations": json.dumps(cited, ensure_ascii=False),
                    "generator_fallback": "",
                    "measurements": "[]",
                    "withheld": "[]",
                }
            )
        return pd.DataFrame(rows)


def register(settings: Settings) -> str:
    uri = registry.tracking_uri(settings)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    info = mlflow.pyfunc.log_model(
        name="answerer", python_model=Answerer(fixture_quotes()), registered_model_name=MODEL
    )
    return str(info.registered_model_version)


def create(client: Client, name: str, version: str, guardrails: dict[str, Any] | None) -> None:
    entity = {"entity_name": MODEL, "entity_version": version, "workload_size": "Large"}
    body: dict[str, Any] = {
        "name": name,
        "config": {"served_entities": [entity], "auto_capture_config": CAPTURE},
    }
    if guardrails:
        body["ai_gateway"] = {"guardrails": guardrails}
    status, answer = client.call("POST", "/api/2.0/serving-endpoints", body)
    if status != 200:
        raise SystemExit(f"create {name}: HTTP {status}: {answer}")


def in_process_costs(questions: list[str], quotes: list[str]) -> dict[str, float]:
    """Median µs per request of each guardrail step, as the server runs them; the output
    screen cold (its quotes never seen) and warm (their verdicts kept, see guarding.py)."""
    from gcn_rag.serving.guarding import EndpointGuards
    from gcn_rag.serving.protocol import parse_invocation, records

    guards = EndpointGuards.build(GUARDED)
    assert guards is not None
    model = Answerer(quotes)
    steps: dict[str, list[float]] = collections.defaultdict(list)
    for question in questions:
        body = {"dataframe_split": {"columns": ["question"], "data": [[question]]}}
        inputs, _ = parse_invocation(body)
        rows = records(model.predict(None, pd.DataFrame({"question": [question]})))
        cold = EndpointGuards.build(GUARDED)
        assert cold is not None
        for step, call in (
            ("input screen", functools.partial(guards.screen_inputs, inputs)),
            ("output screen, cold", functools.partial(cold.screen_predictions, rows)),
            ("output screen, warm", functools.partial(guards.screen_predictions, rows)),
            ("redaction", functools.partial(_stored, guards, body)),
        ):
            start = time.perf_counter()
            call()
            steps[step].append((time.perf_counter() - start) * 1e6)
    return {step: statistics.median(values) for step, values in steps.items()}


def _stored(guards: Any, body: dict[str, Any]) -> str:
    """The request as the inference table keeps it (what the server does per request)."""
    from gcn_rag.serving.protocol import encode

    return str(guards.redact(encode(body).decode()))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="calls per endpoint")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--questions", type=Path, default=DEFAULT_QUESTIONS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    lines = args.questions.read_text().splitlines()
    questions = [json.loads(line)["question"] for line in lines if line.strip()]
    print(f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    costs = in_process_costs(questions * 5, fixture_quotes())
    print("in process, median µs per request:", {k: round(v, 1) for k, v in costs.items()})
    with tempfile.TemporaryDirectory() as scratch, contextlib.ExitStack() as stack:
        settings = Settings.load(environ={}, home=Path(scratch))
        version = register(settings)
        port = free_port()
        env = {**os.environ, "GCN_RAG_HOME": scratch}
        argv = [sys.executable, "-m", "gcn_rag", "serve", "--no-auth", "--port", str(port)]
        process = stack.enter_context(server_process(argv, env, Path(scratch) / "server.log"))
        client = Client(port, 30)
        wait_until("the server to start", lambda: _health(client), process, 120)
        for name, guardrails in (("plain", None), ("up", UP_GUARDRAILS), ("guarded", GUARDED)):
            create(client, name, version, guardrails)
            ready = functools.partial(endpoint_ready, client, name)
            wait_until(f"{name} to be READY", ready, process, 120)
        measure(port, questions, args)


def _health(client: Client) -> bool:
    return client.call("GET", "/health")[0] == 200


def measure(port: int, questions: list[str], args: argparse.Namespace) -> None:
    per_round = max(1, args.requests // args.rounds)
    order = ["plain", "up", "guarded"]
    latencies: dict[str, list[float]] = {name: [] for name in order}
    failures = 0
    for name in order:  # warm-up
        run_phase(functools.partial(InvocationAsk, port, _path(name), 30), questions[:50], 1, 300)
    for round_ in range(args.rounds):
        shift = round_ % len(order)
        for name in order[shift:] + order[:shift]:
            batch = [questions[i % len(questions)] for i in range(per_round)]
            ask = functools.partial(InvocationAsk, port, _path(name), 30)
            phase = run_phase(ask, batch, 1, 600)
            latencies[name].extend(phase.latencies_ms)
            failures += sum(phase.failures.values())
    for name, values in latencies.items():
        print(
            f"{name:8} n={len(values)}  p50 {percentile(values, 0.5):.3f} ms  "
            f"p95 {percentile(values, 0.95):.3f} ms"
        )
    p50 = {name: percentile(values, 0.5) for name, values in latencies.items()}
    for name in order[1:]:
        print(f"{name}: overhead at p50 {p50[name] - p50['plain']:+.3f} ms")
    print(f"failures {failures}")


def _path(name: str) -> str:
    return f"/serving-endpoints/{name}/invocations"


if __name__ == "__main__":
    main()
