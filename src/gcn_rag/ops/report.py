"""Pictures of load tests and monitoring: PNG plots and a self-contained HTML page.

Reports land in the workspace's ``reports/``: ``loadtest-<run id>/`` (``loadtest.png`` and
``report.html``) per load test, ``monitor-<UTC time>.png`` per monitoring run.
"""

from __future__ import annotations

import base64
import html
import math
import platform
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gcn_rag.ops.loadtest import LoadTest
    from gcn_rag.ops.monitor import Bucket
    from gcn_rag.ops.results import Summary


def loadtest_report(test: LoadTest, reports: Path) -> tuple[Path, Path]:
    """``reports/loadtest-<run id>/``: the plot and the page; returns (page, plot)."""
    directory = reports / f"loadtest-{test.run_id}"
    directory.mkdir(parents=True, exist_ok=True)
    title = f"Load test of {test.endpoint}, {test.run_time:%Y-%m-%d %H:%M} UTC"
    png = loadtest_png(test.summaries, directory / "loadtest.png", title)
    facts = {
        "endpoint": test.target,
        "run id": test.run_id,
        "mode": f"closed loop, {test.per_level} per level",
        "questions": f"{len(test.questions)} (cycled)",
        "client machine": f"{platform.machine()}, {platform.platform()}",
    }
    page = loadtest_html(test.summaries, png, directory / "report.html", title, facts)
    return page, png


def monitor_report(found: Sequence[Bucket], reports: Path, title: str) -> Path:
    """``reports/monitor-<UTC time>.png``: the buckets drawn; returns the file."""
    reports.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return monitor_png(found, reports / f"monitor-{stamp}.png", title)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def loadtest_png(summaries: Sequence[Summary], path: Path, title: str) -> Path:
    """Latency percentiles and throughput against concurrency, side by side."""
    plt = _pyplot()
    levels = [s.concurrency for s in summaries]
    fig, (latency, throughput) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for label, values, style in (
        ("p50", [s.latency_p50 for s in summaries], "o-"),
        ("p95", [s.latency_p95 for s in summaries], "s--"),
        ("p99", [s.latency_p99 for s in summaries], "^:"),
    ):
        latency.plot(levels, values, style, label=label)
    latency.set_xlabel("concurrency (clients)")
    latency.set_ylabel("latency (ms)")
    latency.set_title("Latency of successful requests")
    latency.legend(title="percentile")
    throughput.plot(levels, [s.throughput for s in summaries], "o-", color="tab:green")
    throughput.set_xlabel("concurrency (clients)")
    throughput.set_ylabel("throughput (successful requests/s)")
    throughput.set_title("Throughput")
    for s in summaries:
        if s.success_rate < 1:
            throughput.annotate(
                f"{s.success_rate:.0%} ok", (s.concurrency, s.throughput), fontsize=8
            )
    for axis in (latency, throughput):
        if len(levels) > 2 and max(levels) / min(levels) >= 4:
            axis.set_xscale("log", base=2)
        axis.set_xticks(levels, [str(level) for level in levels])
        axis.set_ylim(bottom=0)
        axis.grid(True, alpha=0.3)
    fig.suptitle(title)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def loadtest_html(
    summaries: Sequence[Summary], png: Path, path: Path, title: str, facts: dict[str, str]
) -> Path:
    """One page with the facts, the summary table and the plot (embedded)."""
    image = base64.b64encode(png.read_bytes()).decode()
    head = (
        "concurrency requests successes success&nbsp;rate req/s mean&nbsp;ms p50&nbsp;ms "
        "p95&nbsp;ms p99&nbsp;ms max&nbsp;ms errors"
    ).split()
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{cell}</td>"
            for cell in (
                s.concurrency,
                s.requests,
                s.successes,
                f"{s.success_rate:.1%}",
                _num(s.throughput),
                _num(s.latency_mean),
                _num(s.latency_p50),
                _num(s.latency_p95),
                _num(s.latency_p99),
                _num(s.latency_max),
                html.escape(", ".join(f"{k}: {v}" for k, v in s.errors.items()) or "none"),
            )
        )
        + "</tr>"
        for s in summaries
    )
    fact_rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts.items()
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }}
th {{ background: #f4f4f4; text-align: left; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<table>{fact_rows}</table>
<table><tr>{"".join(f"<th>{h}</th>" for h in head)}</tr>{rows}</table>
<p>Closed loop: each client sends its next request when the previous one is answered.
Latency percentiles are over successful requests.</p>
<img alt="latency and throughput against concurrency" src="data:image/png;base64,{image}">
</body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path


def monitor_png(buckets: Sequence[Bucket], path: Path, title: str) -> Path:
    """:func:`monitor_figure` written to ``path``."""
    plt = _pyplot()
    fig = monitor_figure(buckets, title)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def monitor_figure(buckets: Sequence[Bucket], title: str) -> Any:
    """Per served entity: requests per bucket and p50/p95 latency over time.

    Each entity has one colour in both panels, and one legend for the figure sits to the
    right of the panels, never over the data: colours name the entities, line styles the
    percentiles.
    """
    from matplotlib.lines import Line2D

    plt = _pyplot()
    colours = entity_colours(b.served_entity for b in buckets)
    fig, (volume, latency) = plt.subplots(2, 1, figsize=(11, 6), sharex=True, layout="constrained")
    for entity, colour in colours.items():
        mine = [b for b in buckets if b.served_entity == entity]
        times = [b.start for b in mine]
        volume.plot(times, [b.requests for b in mine], "o-", color=colour, label=entity)
        for style, name in (("o-", "p50"), ("s--", "p95")):
            values = [getattr(b, f"latency_{name}") for b in mine]
            latency.plot(times, values, style, color=colour, label=f"{entity} {name}")
    volume.set(ylabel="requests per bucket", title="Traffic")
    latency.set(ylabel="latency in the model (ms)", xlabel="time (UTC)")
    latency.set_title("Latency of successful requests (p50 solid, p95 dashed)")
    for axis in (volume, latency):
        axis.grid(True, alpha=0.3)
        axis.set_ylim(bottom=0)
    handles = [Line2D([], [], color=c, marker="o", label=e) for e, c in colours.items()]
    handles += [
        Line2D([], [], color="0.4", linestyle="-", marker="o", label="p50"),
        Line2D([], [], color="0.4", linestyle="--", marker="s", label="p95"),
    ]
    fig.legend(handles=handles, loc="outside right upper", title="served entity")
    fig.suptitle(title)
    fig.autofmt_xdate()
    return fig


def entity_colours(entities: Iterable[str]) -> dict[str, str]:
    """One colour per served entity, by sorted name (tab10, tab20 past ten entities)."""
    import matplotlib

    names = sorted(set(entities))
    palette = "tab10" if len(names) <= 10 else "tab20"
    cmap = matplotlib.colormaps[palette]
    return {name: matplotlib.colors.to_hex(cmap(i % cmap.N)) for i, name in enumerate(names)}


def _num(value: float) -> str:
    return "" if math.isnan(value) else f"{value:,.1f}"
