"""Spans and dates as users type them: one parser for the CLI, the PyFunc and the library."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import typer
from typer.core import TyperGroup, TyperOption
from typer.testing import CliRunner

from conftest import capture_row
from gcn_rag.cli import app
from gcn_rag.errors import BadInputError
from gcn_rag.serving.capture import CaptureTarget, InferenceCapture
from gcn_rag.settings import Settings
from gcn_rag.tables import Catalog
from gcn_rag.timespan import (
    SINCE_HELP,
    parse_bucket,
    parse_date,
    parse_duration,
    parse_since,
    since_ms,
    span_seconds,
    utc,
)


def test_spans() -> None:
    assert span_seconds("30s") == 30 and span_seconds("2m") == 120
    assert span_seconds("1.5h") == 5400 and span_seconds("7d") == 7 * 86400
    assert span_seconds("45") == 45 and span_seconds(" 10s ") == 10
    for bad in ("", "m", "2w", "-5m", "1e3", "2 m", "yesterday"):
        assert span_seconds(bad) is None, bad


def test_since_is_a_span_ago_or_a_date() -> None:
    now = 1_800_000_000.0
    assert since_ms("2h", now_s=now) == int((now - 7200) * 1000)
    assert since_ms("2026-11-27T10:00") == int(
        datetime(2026, 11, 27, 10, tzinfo=UTC).timestamp() * 1000
    )
    with pytest.raises(BadInputError, match="--since 'yesterday'"):
        since_ms("yesterday")
    assert parse_since("2024-05-01") == datetime(2024, 5, 1, tzinfo=UTC)
    assert parse_since("7d", now_s=now) == datetime.fromtimestamp(now - 7 * 86400, UTC)
    with pytest.raises(BadInputError, match=r"2024-05-01 .* 30m, 2h or 7d"):
        parse_since("last week")


def test_dates_are_utc_unless_they_say_otherwise() -> None:
    assert parse_date("2024-05-01") == datetime(2024, 5, 1, tzinfo=UTC)
    plus_two = timezone(timedelta(hours=2))
    assert parse_date("2024-05-01T12:00+02:00") == datetime(2024, 5, 1, 12, tzinfo=plus_two)
    assert utc(datetime(2024, 5, 1)) == datetime(2024, 5, 1, tzinfo=UTC)
    assert utc(None) is None
    with pytest.raises(BadInputError, match="since 'May 1' is not an ISO date"):
        parse_date("May 1", "since")


def test_buckets_and_durations_have_their_own_bounds() -> None:
    assert parse_bucket("1m") == 60 and parse_bucket("1h") == 3600
    for bad in ("0s", "1.5s", "soon"):
        with pytest.raises(BadInputError, match="--bucket"):
            parse_bucket(bad)
    assert parse_duration("2m", 600) == 120 and parse_duration("1.5", 600) == 1.5
    with pytest.raises(BadInputError, match="between 0 and 600"):
        parse_duration("11m", 600)
    with pytest.raises(BadInputError, match="--duration takes"):
        parse_duration("forever", 600)


# --- every --since takes a date or a span, and says so in the same words ----------------------

runner = CliRunner()


def test_every_since_has_the_same_help() -> None:
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)
    for name in ("ask", "logs", "monitor"):
        (since,) = [p for p in group.commands[name].params if "--since" in p.opts]
        assert isinstance(since, TyperOption) and since.help == SINCE_HELP, name


def _json_rows(out: str) -> list[dict[str, Any]]:
    parsed = [json.loads(line) for line in out.splitlines() if line.strip()]
    return parsed[0] if len(parsed) == 1 and isinstance(parsed[0], list) else parsed


@pytest.fixture
def captured(settings: Settings) -> Settings:
    """Three captured requests: 10 minutes, 3 hours and 3 days ago."""
    capture = InferenceCapture(settings.home / "spool", Catalog(settings.warehouse))
    now_ms = int(time.time() * 1000)
    for i, ago_s in enumerate((600, 3 * 3600, 3 * 86400)):
        row = capture_row(i, now_ms - ago_s * 1000)
        capture.record(CaptureTarget("sandbox.nasa_gcn_dev.rag_inference_payload"), row)
    capture.close()
    return settings


@pytest.mark.parametrize("command", ["logs", "monitor"])
def test_logs_and_monitor_take_a_span_or_a_date(captured: Settings, command: str) -> None:
    def seen(since: str) -> int:
        argv = [command, "--since", since, "--json", "--home", str(captured.home)]
        result = runner.invoke(app, argv)
        assert result.exit_code == 0, result.output
        rows = _json_rows(result.stdout)
        return sum(r.get("requests", 1) for r in rows)  # monitor: buckets; logs: requests

    two_days_ago = datetime.now(UTC) - timedelta(days=2)
    assert seen("1h") == 1 and seen("4h") == 2 and seen("7d") == 3
    assert seen(two_days_ago.date().isoformat()) == 2  # a date: from its midnight, UTC
    assert seen(two_days_ago.isoformat(timespec="seconds")) == 2
    assert seen("2024-05-01") == 3
    bad = runner.invoke(app, [command, "--since", "yesterday", "--home", str(captured.home)])
    assert bad.exit_code == 1 and "--since 'yesterday'" in bad.output


def test_ask_takes_a_span_or_a_date(fixture_workspace: Settings) -> None:
    def answer(*since: str) -> dict[str, Any]:
        argv = ["ask", "What is the redshift of GRB 221009A?", *since, "--json"]
        result = runner.invoke(app, [*argv, "--home", str(fixture_workspace.home)])
        assert result.exit_code == 0, result.output
        return dict(json.loads(result.stdout))

    # GCN 32648 (2022-10-10 09:39 UTC) states the redshift; GCN 32686 (the 11th) confirms it
    days = (datetime.now(UTC) - datetime(2022, 10, 11, tzinfo=UTC)) / timedelta(days=1)
    cited = [c["circular_id"] for c in answer()["citations"]]
    by_date = answer("--since", "2022-10-11")
    by_span = answer("--since", f"{days:.4f}d")
    assert by_date["citations"] == by_span["citations"]
    assert 32648 in cited and [c["circular_id"] for c in by_date["citations"]] == [32686]
    bad = runner.invoke(
        app, ["ask", "x", "--since", "yesterday", "--home", str(fixture_workspace.home)]
    )
    assert bad.exit_code == 1 and "--since 'yesterday'" in bad.output
