"""Where people wait and what they read: progress that moves, exact metrics, a readable plot."""

from __future__ import annotations

import io
import math
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console

from conftest import capture_row
from gcn_rag.model.registry import mlflow_loader
from gcn_rag.ops.monitor import Bucket
from gcn_rag.ops.report import monitor_figure, monitor_png
from gcn_rag.progress import ConsoleReporter
from gcn_rag.search.build import build_index
from gcn_rag.search.embedding import Embedder
from gcn_rag.search.index import DENSE_MAX_TOKENS
from gcn_rag.serving.capture import CaptureRow, CaptureTarget, InferenceCapture
from gcn_rag.serving.manager import EndpointManager
from gcn_rag.serving.metrics import Metrics, sample
from gcn_rag.serving.store import EndpointStore
from gcn_rag.settings import Settings
from gcn_rag.tables import Catalog


class Recorded:
    """A task that remembers its total, every ``update`` and whether it was closed."""

    def __init__(self, description: str, total: float | None) -> None:
        self.description, self.total = description, total
        self.updates: list[float] = []
        self.closed = False

    def update(self, completed: float, total: float | None = None) -> None:
        self.updates.append(completed)

    def advance(self, amount: float = 1) -> None:
        self.updates.append((self.updates[-1] if self.updates else 0) + amount)

    def close(self) -> None:
        self.closed = True


class Recorder:
    """A :class:`~gcn_rag.progress.Reporter` that keeps its tasks for the test to read."""

    def __init__(self) -> None:
        self.tasks: list[Recorded] = []

    def task(self, description: str, total: float | None = None) -> Recorded:
        self.tasks.append(Recorded(description, total))
        return self.tasks[-1]

    def note(self, message: str) -> None:
        pass


# --- 1. the BM25 step counts chunks ------------------------------------------------------------


def test_the_bm25_step_reports_chunks_done(fixture_workspace: Settings, tmp_path: Path) -> None:
    """It used to be one bar without a total: 0 % for half a minute on the full corpus."""
    recorder = Recorder()
    embedder = Embedder.from_settings(fixture_workspace, max_tokens=DENSE_MAX_TOKENS)
    report = build_index(
        fixture_workspace,
        Catalog(fixture_workspace.warehouse),
        embedder,
        path=tmp_path / "index",
        reporter=recorder,
    )
    tasks = {t.description: t for t in recorder.tasks}
    for name in ("Finding event names in chunks", "Tokenizing chunks (BM25)"):
        assert tasks[name].total == report.chunks > 0
        assert tasks[name].updates[-1] == report.chunks  # it reached the end
    # only bm25s's scoring, which cannot count, has no total
    assert [t.description for t in recorder.tasks if t.total is None] == ["Scoring terms (BM25)"]
    assert all(t.closed for t in recorder.tasks)
    lexical = sorted(p.name for p in (tmp_path / "index" / "lexical").iterdir())
    for name in lexical:  # the same index as the one built without anyone watching
        built = fixture_workspace.index / "lexical" / name
        assert (tmp_path / "index" / "lexical" / name).read_bytes() == built.read_bytes()


def _rendered(reporter: ConsoleReporter) -> str:
    out = io.StringIO()
    Console(file=out, force_terminal=True, width=120, color_system=None).print(reporter.progress)
    return out.getvalue()


def test_a_task_without_a_total_shows_time_not_zero_percent() -> None:
    reporter = ConsoleReporter(Console(file=io.StringIO(), force_terminal=True, width=120))
    waiting = reporter.task("Scoring terms (BM25)", None)
    text = _rendered(reporter)
    assert "Scoring terms (BM25)" in text and "0:00:0" in text  # elapsed time
    assert "%" not in text and "eta" not in text
    waiting.close()
    counted = reporter.task("Tokenizing chunks (BM25)", 200)
    counted.update(50)
    text = _rendered(reporter)
    assert "25.0%" in text and "eta" in text
    counted.close()


def test_bars_are_drawn_on_a_terminal_only() -> None:
    piped = io.StringIO()
    with ConsoleReporter(Console(file=piped, force_terminal=False)) as reporter:
        reporter.task("Loading", None).close()
    assert piped.getvalue() == ""


# --- 3. /metrics prints numbers that read back exactly ----------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1_795_960_123.456, "1795960123.456"),
        (1_795_960_123.0, "1795960123"),
        (1_795_960_123, "1795960123"),
        (0.1 + 0.2, "0.30000000000000004"),
        (2.0**60, repr(2.0**60)),
        (True, "1"),
        (math.nan, "NaN"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
    ],
)
def test_sample_values_are_exact(value: float, text: str) -> None:
    assert sample(value) == text
    if not math.isnan(value):
        assert float(text.replace("Inf", "inf")) == value


def _row(i: int) -> CaptureRow:
    return capture_row(i, int(time.time() * 1000))


def _samples(text: str) -> dict[str, str]:
    return {
        line.rsplit(" ", 1)[0]: line.rsplit(" ", 1)[1]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_the_last_flush_timestamp_reads_back_to_the_millisecond(tmp_path: Path) -> None:
    """``:g`` printed it as ``1.79596e+09``: up to ~5,000 s off."""
    capture = InferenceCapture(tmp_path / "spool", Catalog(tmp_path / "warehouse"))
    manager = EndpointManager(
        EndpointStore(tmp_path / "serving.db"),
        mlflow_loader(f"sqlite:///{tmp_path / 'mlflow.db'}"),
        capture=capture,
    )
    try:
        capture.record(CaptureTarget("sandbox.nasa_gcn_dev.e_payload"), _row(1))
        capture.flush()
        flushed_ms = capture.stats()["last_flush_timestamp"]
        metrics = Metrics()
        metrics.record("e", "m-1", 200, 0.123456789)
        samples = _samples(metrics.render(manager))
    finally:
        manager.close()
    assert flushed_ms > 1_700_000_000_000
    stamp = float(samples["gcn_rag_capture_last_flush_timestamp_seconds"])
    assert round(stamp * 1000) == flushed_ms
    assert samples["gcn_rag_capture_flushed_rows_total"] == "1"
    labels = 'endpoint="e",served_entity="m-1"'
    assert float(samples[f"gcn_rag_request_duration_seconds_sum{{{labels}}}"]) == 0.123456789


# --- 5. the monitor plot: one colour per entity, the legend beside the panels -----------------


def _buckets(entities: int) -> list[Bucket]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        Bucket(
            served_entity=f"gcn_rag_assistant-{e}",
            start=start + timedelta(minutes=m),
            requests=10 + e + m,
            successes=10 + e + m,
            success_rate=1.0,
            latency_p50=50.0 + 10 * e,
            latency_p95=80.0 + 10 * e,
            latency_p99=99.0 + 10 * e,
        )
        for e in range(entities)
        for m in range(5)
    ]


def test_each_entity_has_one_colour_and_the_legend_covers_no_panel(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = monitor_figure(_buckets(7), "monitor")
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        volume, latency = fig.axes
        colours: dict[str, set[str]] = {}
        for axis in (volume, latency):
            for line in axis.get_lines():
                entity = line.get_label().removesuffix(" p50").removesuffix(" p95")
                colours.setdefault(entity, set()).add(str(line.get_color()))
        assert len(colours) == 7
        assert all(len(seen) == 1 for seen in colours.values()), colours  # same in every panel
        assert len({next(iter(seen)) for seen in colours.values()}) == 7  # and told apart
        assert len(latency.get_lines()) == 14 and len(volume.get_lines()) == 7
        assert not volume.get_legend() and not latency.get_legend()
        (legend,) = fig.legends
        box = legend.get_window_extent(renderer)
        for axis in fig.axes:
            assert not box.overlaps(axis.get_window_extent(renderer))
        assert {t.get_text() for t in legend.get_texts()} == {*colours, "p50", "p95"}
    finally:
        plt.close(fig)
    png = monitor_png(_buckets(2), tmp_path / "monitor.png", "monitor")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
