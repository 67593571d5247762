"""Time as users type it: spans (``30s``, ``2m``, ``7d``) and dates (``2026-11-27T10:00``).

One parser for each, shared by the CLI (``--bucket``, ``--duration``; ``--since`` takes either),
the PyFunc's ``since``/``until`` params and the library. A date without a time zone is UTC.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import overload

from gcn_rag.errors import BadInputError

UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SPAN = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([smhd]?)")


def span_seconds(text: str) -> float | None:
    """``30s``, ``2m``, ``1.5h``, ``7d`` or ``45`` (seconds) in seconds; None if not a span."""
    match = _SPAN.fullmatch(text.strip())
    if match is None:
        return None
    return float(match[1]) * UNITS[match[2] or "s"]


@overload
def utc(value: datetime) -> datetime: ...
@overload
def utc(value: None) -> None: ...
def utc(value: datetime | None) -> datetime | None:
    """``value`` with UTC as its zone when it has none."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def parse_date(value: str | datetime, what: str = "date") -> datetime:
    """An ISO date or date-time (``2026-11-27``, ``2026-11-27T10:00``), in UTC if no zone."""
    if isinstance(value, datetime):
        return utc(value)
    try:
        return utc(datetime.fromisoformat(value.strip()))
    except ValueError:
        raise BadInputError(
            f"{what} {value!r} is not an ISO date such as 2026-11-27 or 2026-11-27T10:00."
        ) from None


#: The help of every ``--since`` (``ask``, ``logs``, ``monitor``): one meaning everywhere.
SINCE_HELP = (
    "From this time on: a date or ISO time (2024-05-01, 2024-05-01T10:00; UTC unless it has "
    "a zone) or a span ago (30m, 2h, 7d)."
)


def parse_since(value: str, *, now_s: float | None = None) -> datetime:
    """``--since``: a span ago (``30m``, ``2h``, ``7d``) or an ISO date/time (UTC if no zone)."""
    ago = span_seconds(value)
    if ago is not None:
        return datetime.fromtimestamp((time.time() if now_s is None else now_s) - ago, UTC)
    try:
        return utc(datetime.fromisoformat(value.strip()))
    except ValueError:
        raise BadInputError(
            f"--since {value!r}: use a date or ISO time such as 2024-05-01 or "
            "2024-05-01T10:00, or a span ago such as 30m, 2h or 7d."
        ) from None


def since_ms(value: str, *, now_s: float | None = None) -> int:
    """:func:`parse_since` as epoch milliseconds."""
    return int(parse_since(value, now_s=now_s).timestamp() * 1000)


def parse_duration(text: str, limit_s: float) -> float:
    """A positive span of at most ``limit_s`` seconds (``--duration``)."""
    seconds = span_seconds(text)
    if seconds is None:
        raise BadInputError(f"--duration takes 30s, 2m or seconds; got {text!r}.")
    if not 0 < seconds <= limit_s:
        raise BadInputError(f"--duration must be between 0 and {limit_s:g} s.")
    return seconds


def parse_bucket(text: str) -> int:
    """A whole number of seconds, at least one (``--bucket``: 10s, 1m, 5m, 1h)."""
    seconds = span_seconds(text)
    if seconds is None or seconds < 1 or not seconds.is_integer():
        raise BadInputError(f"--bucket takes 10s, 1m, 5m or 1h; got {text!r}.")
    return int(seconds)
