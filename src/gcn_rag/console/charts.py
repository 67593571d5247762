"""The endpoint page's charts as server-side SVG: request rate, latency p50/p95/p99, error rate
and capture backlog over a window, each with a title and a text summary.

This module only computes geometry and words (:class:`Chart` records); the template
``charts.html`` writes the SVG, so every label goes through the templates' escaping. No
JavaScript draws anything: the page's small script only fetches the charts again.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from datetime import UTC, datetime

from gcn_rag.console.series import BUCKETS, Series, Window

WIDTH, HEIGHT = 640, 200
LEFT, RIGHT, TOP, BOTTOM = 56, 630, 12, 172  # the plot area inside the view box
X_TICKS = 5


@dataclasses.dataclass(frozen=True)
class Line:
    """One series: polylines over runs of buckets with a value, dots for lone values."""

    label: str
    css: str  # its class in console.css (colour, dash)
    paths: tuple[str, ...]
    dots: tuple[tuple[float, float], ...]


@dataclasses.dataclass(frozen=True)
class Tick:
    label: str
    at: float  # x for the time axis, y for the value axis


@dataclasses.dataclass(frozen=True)
class Chart:
    """One chart: what it shows, its summary in words, its lines and axes."""

    key: str
    title: str
    unit: str
    summary: str
    lines: tuple[Line, ...]
    y_ticks: tuple[Tick, ...]
    x_ticks: tuple[Tick, ...]
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = RIGHT
    top: int = TOP
    bottom: int = BOTTOM


def charts(series: Series, w: Window, backlog_now: int | None) -> tuple[Chart, ...]:
    """The four charts of one endpoint over ``w``; ``backlog_now`` None: no capture."""
    minutes = series.bucket_ms / 60_000
    rate = [n / minutes for n in series.requests]
    errors = [
        100 * e / n if n else None for e, n in zip(series.errors, series.requests, strict=True)
    ]
    latency = [
        (f"p{round(q * 100)}", f"line-p{round(q * 100)}", series.latency_ms[q])
        for q in (0.5, 0.95, 0.99)
    ]
    x_ticks = _time_ticks(series)
    return (
        _chart(
            series,
            "rate",
            "Request rate",
            "requests per minute",
            [("requests/min", "line-rate", rate)],
            x_ticks,
            _rate_summary(series, w, rate),
        ),
        _chart(series, "latency", "Latency", "ms", latency, x_ticks, _latency_summary(series, w)),
        _chart(
            series,
            "errors",
            "Error rate",
            "% of requests (4xx and 5xx)",
            [("errors %", "line-errors", errors)],
            x_ticks,
            _error_summary(series, w),
        ),
        _chart(
            series,
            "backlog",
            "Capture backlog",
            "rows waiting for Delta",
            [("rows", "line-backlog", list(series.backlog))],
            x_ticks,
            _backlog_summary(series, backlog_now),
        ),
    )


def _chart(
    series: Series,
    key: str,
    title: str,
    unit: str,
    lines: Sequence[tuple[str, str, Sequence[float | None]]],
    x_ticks: tuple[Tick, ...],
    summary: str,
) -> Chart:
    top = nice_ceiling(max((v for _, _, vs in lines for v in vs if v is not None), default=0))
    y_ticks = tuple(Tick(number(top * i / 4), _y(top * i / 4, top)) for i in range(5))
    drawn = tuple(_line(label, css, values, top) for label, css, values in lines)
    return Chart(key, title, unit, summary, drawn, y_ticks, x_ticks)


def _line(label: str, css: str, values: Sequence[float | None], top: float) -> Line:
    runs: list[list[tuple[float, float]]] = [[]]
    for bucket, value in enumerate(values):
        if value is None:
            runs.append([])
        else:
            runs[-1].append((_x(bucket), _y(value, top)))
    paths = tuple(" ".join(f"{x:.1f},{y:.1f}" for x, y in run) for run in runs if len(run) > 1)
    dots = tuple(run[0] for run in runs if len(run) == 1)
    return Line(label, css, paths, dots)


def _x(bucket: float) -> float:
    return LEFT + (bucket + 0.5) * (RIGHT - LEFT) / BUCKETS


def _y(value: float, top: float) -> float:
    return BOTTOM - (value / top) * (BOTTOM - TOP)


def _time_ticks(series: Series) -> tuple[Tick, ...]:
    span = series.bucket_ms * BUCKETS
    ticks = []
    for i in range(X_TICKS):
        at_ms = series.start_ms + span * i // (X_TICKS - 1)
        x = LEFT + (RIGHT - LEFT) * i / (X_TICKS - 1)
        ticks.append(Tick(clock(at_ms), x))
    return tuple(ticks)


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above ``value`` (1 for 0)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return float(next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= value * (1 - 1e-12)))


def number(value: float) -> str:
    """An axis or summary number: whole from 10 up, else at most two decimals."""
    if abs(value) >= 10:
        return f"{value:,.0f}"
    return f"{value:.2f}".rstrip("0").rstrip(".") or "0"


def clock(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, tz=UTC).strftime("%H:%M")


# --- the summaries (what a screen reader, or a glance, gets) --------------------------------


def _rate_summary(series: Series, w: Window, rate: Sequence[float]) -> str:
    total = sum(series.requests)
    if not total:
        return f"No requests in the last {w.label} ({series.source})."
    peak = max(range(BUCKETS), key=lambda b: rate[b])
    at = clock(series.start_ms + peak * series.bucket_ms)
    return (
        f"{total:,} request{'' if total == 1 else 's'} in the last {w.label} ({series.source}), "
        f"{number(total / (w.seconds / 60))} per minute on average; "
        f"peak {number(rate[peak])} per minute at {at} UTC."
    )


def _latency_summary(series: Series, w: Window) -> str:
    found = series.total_latency_ms
    if found[0.5] is None:
        return f"No requests in the last {w.label}: no latency to show."
    shown = ", ".join(f"p{round(q * 100)} {number(v or 0)} ms" for q, v in found.items())
    return f"Over the last {w.label}: {shown} ({series.source})."


def _error_summary(series: Series, w: Window) -> str:
    total, errors = sum(series.requests), sum(series.errors)
    if not total:
        return f"No requests in the last {w.label}: no errors."
    return (
        f"{errors:,} of {total:,} requests failed in the last {w.label} "
        f"({number(100 * errors / total)}%)."
    )


def _backlog_summary(series: Series, backlog_now: int | None) -> str:
    if backlog_now is None:
        return "This server captures no requests: no backlog."
    peak = max((v for v in series.backlog if v is not None), default=backlog_now)
    return (
        f"{backlog_now:,} rows waiting to be committed to the inference table now; "
        f"at most {peak:,} in the window (sampled every few seconds since the server started)."
    )
