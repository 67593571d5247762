"""Guardrails on the serving path: invocation latency with guardrails on vs off.

usage: python benchmarks/guardrails_serving.py [--requests 2000] [--rounds 8]
                                               [--questions FILE]

Self-contained (a scratch workspace, nothing downloaded): a PyFunc that answers at once with
a realistic prediction (the question, a ~0.5 KB answer and five ~300-character quotes of real
circulars from tests/fixtures, 2.6 KB of JSON in all) is registered, and one
`gcn-rag serve --no-auth` subprocess serves it twice, both endpoints capturing into the same
inference table: `plain` (no guardrails, the baseline) and `guarded` (every rule that runs on
every request: input PII MASK + safety, output PII MASK + safety). With a model that costs
nothing, the difference between the two is the guardrails' own serving overhead. Rounds
alternate the endpoints (plain, guarded, guarded, plain, ...) at concurrency 1 so the
machine's drift falls on both alike; every answer must be HTTP 200 with one prediction.

Also timed in this process, per request (the same calls the server makes): the input
screen of the question, the output screen of the prediction and the redaction of the stored
request.
"""

from __future__ import annotations

import argparse
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
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from gcn_rag.model import registry
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


def fixture_quotes(n: int = 5, size: int = 300) -> list[str]:
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
            cited = [{"circular_id": i, "quote": q} for i, q in enumerate(self.quotes)]
            answer = f"{question} {' '.join(q[:100] for q in self.quotes)}"
            rows.append(
                {
                    "answer": answer,
                    "sources": "[]",
                    "num_docs": len(cited),
                    "citations": json.dumps(cited, ensure_ascii=False),
                    "generator_fallback": "",
                    "measurements": "[]",
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
    """Median µs per request of each guardrail step, as the server runs them."""
    from gcn_rag.serving.guarding import EndpointGuards
    from gcn_rag.serving.protocol import encode, parse_invocation, records

    guards = EndpointGuards.build(GUARDED)
    assert guards is not None
    model = Answerer(quotes)
    steps: dict[str, list[float]] = {"input screen": [], "output screen": [], "redaction": []}
    for question in questions:
        body = {"dataframe_split": {"columns": ["question"], "data": [[question]]}}
        inputs, _ = parse_invocation(body)
        rows = records(model.predict(None, pd.DataFrame({"question": [question]})))
        start = time.perf_counter()
        guards.screen_inputs(inputs)
        middle = time.perf_counter()
        guards.screen_predictions(rows)
        end = time.perf_counter()
        guards.redact(encode(body).decode())
        steps["input screen"].append((middle - start) * 1e6)
        steps["output screen"].append((end - middle) * 1e6)
        steps["redaction"].append((time.perf_counter() - end) * 1e6)
    return {step: statistics.median(values) for step, values in steps.items()}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="calls per endpoint")
    parser.add_argument("--rounds", type=int, default=8)
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
        for name, guardrails in (("plain", None), ("guarded", GUARDED)):
            create(client, name, version, guardrails)
            ready = functools.partial(endpoint_ready, client, name)
            wait_until(f"{name} to be READY", ready, process, 120)
        measure(port, questions, args)


def _health(client: Client) -> bool:
    return client.call("GET", "/health")[0] == 200


def measure(port: int, questions: list[str], args: argparse.Namespace) -> None:
    per_round = max(1, args.requests // args.rounds)
    latencies: dict[str, list[float]] = {"plain": [], "guarded": []}
    failures = 0
    order = ["plain", "guarded"]
    for name in order:  # warm-up
        run_phase(functools.partial(InvocationAsk, port, _path(name), 30), questions[:50], 1, 300)
    for round_ in range(args.rounds):
        for name in order if round_ % 2 == 0 else order[::-1]:
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
    print(
        f"guardrails overhead at p50: {p50['guarded'] - p50['plain']:+.3f} ms; failures {failures}"
    )


def _path(name: str) -> str:
    return f"/serving-endpoints/{name}/invocations"


if __name__ == "__main__":
    main()
