"""Log + register the full-corpus assistant, then cold-load it in fresh processes.

usage: python benchmarks/model.py

Needs a workspace with an index (GCN_RAG_HOME, default ~/.gcn-rag). Logs without evaluation
(the eval is timed by benchmarks/assistant.py), registers a version, and measures a cold
`mlflow.pyfunc.load_model("models:/...@<alias>")` + first answer in a fresh process. The
baseline for the ratio is `Assistant.load` of the same index in a fresh process.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time

from gcn_rag.model import packaging, registry
from gcn_rag.settings import Settings
from gcn_rag.tables import Catalog

ALIAS = "benchmark"

PROBE_MODEL = """
import time
t = time.perf_counter()
import mlflow
imported = time.perf_counter() - t
m = mlflow.pyfunc.load_model({uri!r}, suppress_warnings={quiet})
loaded = time.perf_counter() - t
m.predict(["What is the redshift of GRB 221009A?"])
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
print(imported, loaded, time.perf_counter() - t, int(hwm.split()[1]) / 1024)
"""

PROBE_BASELINE = """
import time
t = time.perf_counter()
from gcn_rag.answer.assistant import Assistant
from gcn_rag.settings import Settings
a = Assistant.load(Settings.load())
loaded = time.perf_counter() - t
a.ask("What is the redshift of GRB 221009A?")
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
print(loaded, time.perf_counter() - t, int(hwm.split()[1]) / 1024)
"""


def probe(code: str, env: dict[str, str]) -> list[float]:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout.splitlines()[-1]
    return [float(x) for x in out.split()]


def main() -> None:
    settings = Settings.load()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.platform()}"
    )
    catalog = Catalog(settings.warehouse, settings.catalog, settings.schema)
    start = time.perf_counter()
    logged = packaging.log_assistant(settings, catalog, settings.index)
    logged_s = time.perf_counter() - start
    version = registry.register(settings, logged.model_uri)
    registry.set_alias(settings, ALIAS, version)
    total_s = time.perf_counter() - start
    print(
        f"log: {logged_s:.1f} s; log + register: {total_s:.1f} s (version {version}); "
        f"artifacts {logged.artifact_bytes / 1e6:,.0f} MB"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": registry.tracking_uri(settings)}
    uri = f"models:/{registry.MODEL_NAME}@{ALIAS}"
    base = min((probe(PROBE_BASELINE, env) for _ in range(3)), key=lambda r: r[0])
    print(f"cold, fresh process, best of 3 (s): Assistant.load incl. imports {base[0]:.2f}")
    for quiet in (False, True):
        runs = [probe(PROBE_MODEL.format(uri=uri, quiet=quiet), env) for _ in range(3)]
        imported, loaded, answered, rss = min(runs, key=lambda r: r[1])
        print(
            f"  load_model(suppress_warnings={quiet}): import mlflow {imported:.2f}, "
            f"load_model {loaded - imported:.2f} ({(loaded - imported) / base[0]:.2f}x "
            f"Assistant.load), total {loaded:.2f}; first answer {answered - loaded:.2f}; "
            f"peak RSS {rss:,.0f} MB"
        )
    registry.delete_alias(settings, ALIAS)


if __name__ == "__main__":
    main()
