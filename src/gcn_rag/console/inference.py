"""The inference table as the console shows it: recent requests with filters, and one request.

Rows come from the endpoints' payload tables (``auto_capture_config``) through
:func:`gcn_rag.ops.monitor.payload_query` (the same validated filters as ``gcn-rag logs``),
plus the request id and a served-entity filter that the page needs.
"""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

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


@dataclasses.dataclass(frozen=True)
class Filters:
    """The page's filters (empty: any)."""

    endpoint: str = ""
    status: str = ""
    entity: str = ""

    @classmethod
    def parse(cls, params: Any) -> Filters:
        status = str(params.get("status", "")).strip()
        if status and not status.isdigit():
            raise BadInputError(f"Status must be an HTTP status code such as 200, not {status!r}.")
        return cls(str(params.get("endpoint", "")), status, str(params.get("entity", "")))


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
    return sorted(rows, key=lambda r: r.time, reverse=True)[:LIMIT]


def one(catalog: Catalog, manager: EndpointManager, request_id: str) -> Row:
    """The request called ``request_id`` in any payload table, or 404."""
    if not _ID.fullmatch(request_id):
        raise BadInputError(f"{request_id!r} is not a request id.")
    for table in sorted(set(capturing(manager).values())):
        if catalog.exists(catalog.name(table)):
            query = f"{payload_query(catalog, table, COLUMNS)} WHERE databricks_request_id = "
            found = catalog.sql(query + f"'{request_id}' LIMIT 1").to_pylist()
            if found:
                return _row(found[0])
    raise NotFoundError(
        f"No captured request {request_id}; rows reach the table within a few seconds."
    )


def _select(catalog: Catalog, table: str, filters: Filters) -> list[Row]:
    query = payload_query(
        catalog,
        table,
        COLUMNS,
        endpoint=filters.endpoint or None,
        status=int(filters.status) if filters.status else None,
    )
    if filters.entity:
        if not _ID.fullmatch(filters.entity):
            raise BadInputError(f"{filters.entity!r} is not a served entity name.")
        query = f"SELECT * FROM ({query}) WHERE served_entity_id = '{filters.entity}'"
    query += f" ORDER BY timestamp_ms DESC LIMIT {LIMIT}"
    return [_row(row) for row in catalog.sql(query).to_pylist()]


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
    )


def _pretty(text: str | None) -> str:
    try:
        return json.dumps(json.loads(text or ""), indent=2, ensure_ascii=False)
    except ValueError:
        return text or ""
