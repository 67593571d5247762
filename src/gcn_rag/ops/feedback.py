"""Reading feedback: ``rag_feedback`` rows joined to the requests they rate (``gcn-rag
feedback``, and any reader comparing served entities by what users said).

Each row is one feedback with its request's served entity, question and answer from the
payload table; those three are None while the request is still only in the capture spool
(it reaches Delta within seconds) or when the payload table is not the one it went to.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gcn_rag.ops.monitor import endpoint_is
from gcn_rag.serving.feedback import TABLE
from gcn_rag.serving.protocol import request_question, response_answer

if TYPE_CHECKING:
    from gcn_rag.tables import Catalog

PAYLOAD = "rag_inference_payload"


@dataclasses.dataclass(frozen=True)
class RatedAnswer:
    """One feedback and the request it is about."""

    feedback_id: str
    time: datetime
    endpoint: str
    request_id: str
    rating: str | None
    comment: str | None
    requester: str
    served_entity: str | None
    question: str | None
    answer: str | None

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "time": self.time.isoformat(timespec="seconds")}


def rated_answers(
    catalog: Catalog,
    endpoint: str | None = None,
    *,
    since_ms: int | None = None,
    payload: str = PAYLOAD,
) -> list[RatedAnswer]:
    """Feedback (newest first) joined to its request in ``payload``; [] before any."""
    feedback = catalog.name(TABLE)
    if not catalog.exists(feedback):
        return []
    where = []
    if endpoint is not None:
        where.append(endpoint_is(endpoint, "f.endpoint_name"))
    if since_ms is not None:
        where.append(f"f.timestamp_ms >= {int(since_ms)}")
    requests = catalog.name(payload)
    tables = [feedback]
    if catalog.exists(requests):
        tables.append(requests)
        source = (
            f"(SELECT databricks_request_id, endpoint_name, served_entity_id, request, response "
            f"FROM {requests} WHERE databricks_request_id IN (SELECT databricks_request_id "
            f"FROM {feedback}))"
        )
    else:  # nothing flushed yet: the feedback alone
        source = (
            "(SELECT NULL::VARCHAR AS databricks_request_id, NULL::VARCHAR AS endpoint_name, "
            "NULL::VARCHAR AS served_entity_id, NULL::VARCHAR AS request, "
            "NULL::VARCHAR AS response WHERE false)"
        )
    query = (
        f"SELECT f.*, p.served_entity_id, p.request, p.response FROM {feedback} f "
        f"LEFT JOIN {source} p ON p.databricks_request_id = f.databricks_request_id "
        f"AND p.endpoint_name = f.endpoint_name "
        f"{'WHERE ' + ' AND '.join(where) if where else ''} "
        "ORDER BY f.timestamp_ms DESC, f.feedback_id"
    )
    return [_rated(row) for row in catalog.sql(query, tables=tables).to_pylist()]


def _rated(row: dict[str, Any]) -> RatedAnswer:
    found = row["request"] is not None
    return RatedAnswer(
        feedback_id=row["feedback_id"],
        time=row["timestamp"],
        endpoint=row["endpoint_name"],
        request_id=row["databricks_request_id"],
        rating=row["rating"],
        comment=row["comment"],
        requester=row["requester"],
        served_entity=row["served_entity_id"],
        question=request_question(row["request"]) if found else None,
        answer=response_answer(row["response"]) if found else None,
    )
