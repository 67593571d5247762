"""The inference table as the console shows it: recent requests with filters, and one request.

Rows come from the endpoints' payload tables (``auto_capture_config``) through
:func:`gcn_rag.ops.monitor.payload_query` (the same validated filters as ``gcn-rag logs``),
plus the request id and a served-entity filter that the page needs.
"""

from __future__ import annotations

import dataclasses
import json
import re
import urllib.parse
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gcn_rag import timespan
from gcn_rag.errors import BadInputError, NotFoundError
from gcn_rag.ops.monitor import payload_query
from gcn_rag.serving.protocol import request_question, response_answer

if TYPE_CHECKING:
    from gcn_rag.serving.manager import EndpointManager
    from gcn_rag.tables import Catalog

LIMIT = 100
COLUMNS = (
    "databricks_request_id, timestamp, timestamp_ms, endpoint_name, served_entity_id, status_code, "
    "execution_duration_ms, requester, request, response"
)
_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
_CURSOR = re.compile(r"(\d{1,16})-([0-9A-Za-z_-]{1,64})")


@dataclasses.dataclass(frozen=True)
class Row:
    """One captured request."""

    request_id: str
    time: datetime
    endpoint: str
    served_entity: str
    status: int
    latency_ms: int
    requester: str
    question: str
    answer: str  # or the error message
    request: str  # the whole body as captured, pretty-printed when it is JSON
    response: str
    timestamp_ms: int = 0


#: the page's time windows: value of ``since`` -> label
WINDOWS = {"": "any time", "15m": "last 15 minutes", "1h": "last hour", "24h": "last 24 hours"}
WINDOWS |= {"7d": "last 7 days"}


@dataclasses.dataclass(frozen=True)
class Filters:
    """The page's filters (empty: any); ``before`` is the paging cursor ``<ms>-<request id>``:
    rows older than that one."""

    endpoint: str = ""
    status: str = ""
    entity: str = ""
    since: str = ""
    before: str = ""

    @classmethod
    def parse(cls, params: Any) -> Filters:
        status = str(params.get("status", "")).strip()
        if status and not status.isdigit():
            raise BadInputError(f"Status must be an HTTP status code such as 200, not {status!r}.")
        since, before = str(params.get("since", "")), str(params.get("before", ""))
        if since not in WINDOWS:
            raise BadInputError(f"The window is one of {', '.join(w for w in WINDOWS if w)}.")
        if before and not _CURSOR.fullmatch(before):
            raise BadInputError("That page of older requests does not exist; start again.")
        return cls(
            str(params.get("endpoint", "")), status, str(params.get("entity", "")), since, before
        )

    def older(self, last: Row) -> str:
        """The query string of the next page (rows older than ``last``)."""
        values = dataclasses.asdict(self) | {"before": f"{last.timestamp_ms}-{last.request_id}"}
        return urllib.parse.urlencode({k: v for k, v in values.items() if v})


def capturing(manager: EndpointManager) -> dict[str, str]:
    """Endpoint name -> its payload table, for the endpoints that capture."""
    found = {}
    for endpoint in manager.list():
        target = manager.capture_target(endpoint["name"])
        if target is not None:
            found[endpoint["name"]] = target.table
    return found


def recent(catalog: Catalog, manager: EndpointManager, filters: Filters) -> list[Row]:
    """The newest :data:`LIMIT` requests that pass ``filters``, newest first."""
    by_endpoint = capturing(manager)
    if filters.endpoint:
        if filters.endpoint not in by_endpoint:
            return []
        by_endpoint = {filters.endpoint: by_endpoint[filters.endpoint]}
    rows: list[Row] = []
    for table in sorted(set(by_endpoint.values())):
        if not catalog.exists(catalog.name(table)):
            continue
        rows += _select(catalog, table, filters)
    return sorted(rows, key=lambda r: (r.timestamp_ms, r.request_id), reverse=True)[:LIMIT]


def one(catalog: Catalog, manager: EndpointManager, request_id: str) -> Row:
    """The request called ``request_id`` in any payload table, or 404."""
    if not _ID.fullmatch(request_id):
        raise BadInputError(f"{request_id!r} is not a request id.")
    for table in sorted(set(capturing(manager).values())):
        if catalog.exists(catalog.name(table)):
            query = f"{payload_query(catalog, table, COLUMNS)} WHERE databricks_request_id = "
            found = catalog.sql(query + f"'{request_id}' LIMIT 1", tables=[table]).to_pylist()
            if found:
                return _row(found[0])
    raise NotFoundError(
        f"No captured request {request_id}; rows reach the table within a few seconds."
    )


def _select(catalog: Catalog, table: str, filters: Filters) -> list[Row]:
    """The newest :data:`LIMIT` rows of ``table`` that pass ``filters``, in two steps: their
    times from two small columns, then whole rows from that time on only (the payload
    table's row groups are in time order, so the older ones are skipped unread)."""
    conditions = _conditions(filters)

    def newest(columns: str, more: list[str]) -> str:
        query = payload_query(
            catalog,
            table,
            columns,
            endpoint=filters.endpoint or None,
            since_ms=timespan.since_ms(filters.since) if filters.since else None,
            status=int(filters.status) if filters.status else None,
        )
        if conditions + more:
            query = f"SELECT * FROM ({query}) WHERE {' AND '.join(conditions + more)}"
        return query + f" ORDER BY timestamp_ms DESC, databricks_request_id DESC LIMIT {LIMIT}"

    times = newest("timestamp_ms, databricks_request_id, served_entity_id", [])
    found = catalog.sql(f"SELECT min(timestamp_ms) AS oldest FROM ({times})", tables=[table])
    oldest = found.to_pylist()[0]["oldest"]
    if oldest is None:
        return []
    rows = catalog.sql(newest(COLUMNS, [f"timestamp_ms >= {int(oldest)}"]), tables=[table])
    return [_row(row) for row in rows.to_pylist()]


def _conditions(filters: Filters) -> list[str]:
    """SQL conditions for the served entity and the paging cursor (both checked)."""
    where = []
    if filters.entity:
        if not _ID.fullmatch(filters.entity):
            raise BadInputError(f"{filters.entity!r} is not a served entity name.")
        where.append(f"served_entity_id = '{filters.entity}'")
    cursor = _CURSOR.fullmatch(filters.before)
    if cursor is not None:
        ms, request_id = int(cursor.group(1)), cursor.group(2)
        where.append(
            f"(timestamp_ms < {ms} OR (timestamp_ms = {ms} AND "
            f"databricks_request_id < '{request_id}'))"
        )
    return where


def _row(row: dict[str, Any]) -> Row:
    return Row(
        request_id=str(row["databricks_request_id"]),
        time=row["timestamp"],
        endpoint=str(row["endpoint_name"]),
        served_entity=str(row["served_entity_id"] or ""),
        status=int(row["status_code"]),
        latency_ms=int(row["execution_duration_ms"] or 0),
        requester=str(row["requester"] or ""),
        question=request_question(row["request"]),
        answer=response_answer(row["response"]),
        request=_pretty(row["request"]),
        response=_pretty(row["response"]),
        timestamp_ms=int(row["timestamp_ms"]),
    )


def _pretty(text: str | None) -> str:
    try:
        return json.dumps(json.loads(text or ""), indent=2, ensure_ascii=False)
    except ValueError:
        return text or ""
