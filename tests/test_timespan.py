"""Spans and dates as users type them: one parser for the CLI, the PyFunc and the library."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from gcn_rag.errors import BadInputError
from gcn_rag.timespan import parse_bucket, parse_date, parse_duration, since_ms, span_seconds, utc


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
