"""The Reports page: load-test and endpoint-test runs from their tables (the rows `gcn-rag
loadtest` and `gcn-rag endpoints test` append), one run's levels or questions with the plot the
CLI drew, and the monitoring plots of `gcn-rag monitor`.

Plots are served from the workspace's ``reports/`` folder only: a run id and a file name are
checked against what the CLI writes (``loadtest-<run id>/loadtest.png``,
``monitor-<UTC time>.png``), and the resolved path must lie inside ``reports/`` (a symbolic
link that leads out of it is refused).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, Response

from gcn_rag.console.guard import Visit
from gcn_rag.console.pages import render
from gcn_rag.errors import NotFoundError
from gcn_rag.settings import Settings
from gcn_rag.tables import Catalog

#: kind of run (as in the page's address) -> its results table
TABLES = {"loadtest": "rag_endpoint_load_test_results", "test": "rag_endpoint_test_results"}
KIND_LABELS = {"loadtest": "load test", "test": "endpoint test"}
LIMIT = 100  # runs in the list, newest first
MAX_REQUESTS = 200  # rows of one run shown (an endpoint test's questions, a load test's failures)
MONITOR_PLOTS = 20
_RUN_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
_MONITOR = re.compile(r"monitor-\d{8}-\d{6}\.png")
_OK = "FILTER (WHERE status = 'success')"


@dataclasses.dataclass(frozen=True)
class RunView:
    """One run in the list: when, what, how many, how fast (successful requests)."""

    kind: str  # a key of TABLES
    run_id: str
    time: datetime
    endpoint: str
    levels: tuple[int, ...]
    requests: int
    successes: int
    p50: str
    p95: str
    plot: bool  # the CLI's loadtest.png is in the reports folder

    @property
    def label(self) -> str:
        return KIND_LABELS[self.kind]

    @property
    def success(self) -> str:
        return f"{self.successes / self.requests:.1%}" if self.requests else "-"


@dataclasses.dataclass(frozen=True)
class LevelView:
    """One concurrency level of a run (latencies of successful requests, in ms)."""

    concurrency: int
    requests: int
    successes: int
    success: str
    mean: str
    p50: str
    p95: str
    p99: str
    max: str
    errors: str


@dataclasses.dataclass(frozen=True)
class RequestView:
    """One request of a run, as its results row has it."""

    concurrency: int
    question: str
    status: str
    status_code: int
    latency: str
    num_docs: int
    answer: str  # or the error message


def ms(value: Any) -> str:
    """Milliseconds as the pages show them; a dash for none (no successful request)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{float(value):,.1f}"


def list_runs(catalog: Catalog, reports: Path) -> list[RunView]:
    """The newest :data:`LIMIT` runs of both tables, newest first."""
    kinds = [kind for kind, table in TABLES.items() if catalog.exists(table)]
    parts = [
        f"SELECT '{kind}' AS kind, run_id, min(run_time) AS run_time, "
        "min(endpoint_name) AS endpoint, list_sort(list(DISTINCT concurrency)) AS levels, "
        f"count(*) AS requests, count(*) {_OK} AS successes, "
        f"quantile_cont(latency_ms, 0.5) {_OK} AS p50, "
        f"quantile_cont(latency_ms, 0.95) {_OK} AS p95 "
        f"FROM {catalog.name(TABLES[kind])} GROUP BY run_id"
        for kind in kinds
    ]
    if not parts:
        return []
    query = " UNION ALL ".join(parts) + f" ORDER BY run_time DESC, run_id LIMIT {LIMIT}"
    rows = catalog.sql(query, tables=[TABLES[kind] for kind in kinds]).to_pylist()
    return [_run(row, reports) for row in rows]


def _run(row: dict[str, Any], reports: Path) -> RunView:
    kind, run_id = str(row["kind"]), str(row["run_id"])
    return RunView(
        kind=kind,
        run_id=run_id,
        time=row["run_time"],
        endpoint=str(row["endpoint"]),
        levels=tuple(int(level) for level in row["levels"]),
        requests=int(row["requests"]),
        successes=int(row["successes"]),
        p50=ms(row["p50"]),
        p95=ms(row["p95"]),
        plot=kind == "loadtest" and loadtest_plot(reports, run_id) is not None,
    )


def one_run(
    catalog: Catalog, reports: Path, kind: str, run_id: str
) -> tuple[RunView, list[LevelView]]:
    """One run and its levels, or 404."""
    table = _table(catalog, kind, run_id)
    query = (
        f"SELECT concurrency, count(*) AS requests, count(*) {_OK} AS successes, "
        f"avg(latency_ms) {_OK} AS mean, quantile_cont(latency_ms, 0.5) {_OK} AS p50, "
        f"quantile_cont(latency_ms, 0.95) {_OK} AS p95, "
        f"quantile_cont(latency_ms, 0.99) {_OK} AS p99, max(latency_ms) {_OK} AS max, "
        "list(CASE WHEN status_code > 0 THEN CAST(status_code AS VARCHAR) ELSE status END) "
        "FILTER (WHERE status <> 'success') AS errors, min(run_time) AS run_time, "
        f"min(endpoint_name) AS endpoint FROM {table} WHERE run_id = '{run_id}' "
        "GROUP BY concurrency ORDER BY concurrency"
    )
    rows = catalog.sql(query, tables=[table]).to_pylist()
    if not rows:
        raise NotFoundError(f"No {KIND_LABELS[kind]} run {run_id} in {table}.")
    levels = [_level(row) for row in rows]
    summary = {
        "kind": kind,
        "run_id": run_id,
        "run_time": rows[0]["run_time"],
        "endpoint": rows[0]["endpoint"],
        "levels": [level.concurrency for level in levels],
        "requests": sum(level.requests for level in levels),
        "successes": sum(level.successes for level in levels),
        "p50": rows[0]["p50"] if len(rows) == 1 else None,  # across levels: see each level
        "p95": rows[0]["p95"] if len(rows) == 1 else None,
    }
    return _run(summary, reports), levels


def _level(row: dict[str, Any]) -> LevelView:
    requests, successes = int(row["requests"]), int(row["successes"])
    errors = Counter(row["errors"] or [])
    return LevelView(
        concurrency=int(row["concurrency"]),
        requests=requests,
        successes=successes,
        success=f"{successes / requests:.1%}",
        mean=ms(row["mean"]),
        p50=ms(row["p50"]),
        p95=ms(row["p95"]),
        p99=ms(row["p99"]),
        max=ms(row["max"]),
        errors=", ".join(f"{k}: {v}" for k, v in sorted(errors.items())) or "none",
    )


def requests_of(catalog: Catalog, kind: str, run_id: str) -> list[RequestView]:
    """An endpoint test's questions in order; a load test's failed requests (what went wrong)."""
    table = _table(catalog, kind, run_id)
    where = f"run_id = '{run_id}'" + (" AND status <> 'success'" if kind == "loadtest" else "")
    query = (
        "SELECT concurrency, question, status, status_code, latency_ms, num_docs, answer "
        f"FROM {table} WHERE {where} LIMIT {MAX_REQUESTS}"
    )
    return [
        RequestView(
            concurrency=int(row["concurrency"]),
            question=str(row["question"]),
            status=str(row["status"]),
            status_code=int(row["status_code"]),
            latency=ms(row["latency_ms"]),
            num_docs=int(row["num_docs"] or 0),
            answer=str(row["answer"]),
        )
        for row in catalog.sql(query, tables=[table]).to_pylist()
    ]


def _table(catalog: Catalog, kind: str, run_id: str) -> str:
    """The results table of ``kind`` (checked), for a well-formed ``run_id``; else 404."""
    if kind not in TABLES or not _RUN_ID.fullmatch(run_id):
        raise NotFoundError("There is no such run; see the Reports page for the runs there are.")
    name = catalog.name(TABLES[kind])
    if not catalog.exists(name):
        raise NotFoundError(f"No {KIND_LABELS[kind]} has been run here yet ({name}).")
    return str(name)


def inside(reports: Path, relative: str) -> Path | None:
    """``reports/relative`` when it is a file inside ``reports`` once links are resolved."""
    root = reports.resolve()
    path = (root / relative).resolve()
    return path if path.is_relative_to(root) and path.is_file() else None


def loadtest_plot(reports: Path, run_id: str) -> Path | None:
    """The CLI's plot of load test ``run_id`` (None when it wrote none)."""
    if not _RUN_ID.fullmatch(run_id):
        return None
    return inside(reports, f"loadtest-{run_id}/loadtest.png")


def monitor_plots(reports: Path) -> list[str]:
    """File names of the newest monitoring plots, newest first."""
    if not reports.is_dir():
        return []
    names = sorted((p.name for p in reports.iterdir() if _MONITOR.fullmatch(p.name)), reverse=True)
    return names[:MONITOR_PLOTS]


def _png(path: Path | None) -> Response:
    if path is None:
        raise NotFoundError("There is no such plot in this workspace's reports.")
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=60"}
    return FileResponse(path, media_type="image/png", headers=headers)


class ReportPages:
    """``GET /reports``, one run, and the plots, over one workspace's tables and reports."""

    def __init__(self, settings: Settings | None) -> None:
        self.settings = settings
        # one catalog for the server's life: its kept DuckDB connection makes queries cheap
        self.catalog = Catalog.from_settings(settings) if settings is not None else None

    def _workspace(self) -> tuple[Settings, Catalog]:
        if self.settings is None or self.catalog is None:
            raise NotFoundError("This server was started without a workspace's settings.")
        return self.settings, self.catalog

    async def reports(self, visit: Visit) -> Response:
        settings, catalog = self._workspace()
        found = await run_in_threadpool(list_runs, catalog, settings.reports)
        plots = await run_in_threadpool(monitor_plots, settings.reports)
        return render(visit.request, "reports.html", visit.session, runs=found, monitors=plots)

    async def run(self, visit: Visit) -> Response:
        settings, catalog = self._workspace()
        kind, run_id = visit.request.path_params["kind"], visit.request.path_params["run_id"]
        found, levels = await run_in_threadpool(one_run, catalog, settings.reports, kind, run_id)
        rows = await run_in_threadpool(requests_of, catalog, kind, run_id)
        return render(
            visit.request, "report.html", visit.session, run=found, levels=levels, requests=rows
        )

    async def loadtest_png(self, visit: Visit) -> Response:
        reports = self._workspace()[0].reports
        return _png(loadtest_plot(reports, visit.request.path_params["run_id"]))

    async def monitor_png(self, visit: Visit) -> Response:
        name = visit.request.path_params["file"]
        reports = self._workspace()[0].reports
        return _png(inside(reports, name) if _MONITOR.fullmatch(name) else None)
