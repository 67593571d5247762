"""User feedback on answers: a rating and/or a comment on one request, into ``rag_feedback``.

``POST /serving-endpoints/{name}/feedback`` (CAN_QUERY) names a request by the ``x-request-id``
its invocation answered with (the inference table's ``databricks_request_id``). The request
must be one of that endpoint's captured requests: a recent one is recognised from the ids the
capture remembers as it spools them (:class:`~gcn_rag.serving.capture.RecentRequests`, so
feedback sent right after the answer, before the spool reaches Delta, is accepted); an older
one is looked up in the endpoint's inference table. A request of another endpoint, one that
was not captured (capture off, or left out by ``sampling_fraction``) or one older than the
endpoint's current inference table is a 404.

Storage: each feedback is one row appended to the Delta table ``rag_feedback`` (the
workspace's catalog and schema, beside the payload table) *before* the 200 is sent, so an
acknowledged feedback is never lost. A direct commit rather than the capture spool: feedback
comes at a person's pace (a commit took 40-80 ms here), and a 200 then means "in the table"; its
small files are compacted every :data:`COMPACT_EVERY` commits. Several feedbacks on one
request are several rows (a reader wanting one verdict takes the latest).

Table ``rag_feedback`` (a contract its readers rely on)::

    feedback_id            string       uuid4 hex
    databricks_request_id  string       the request the feedback is about
    endpoint_name          string
    rating                 string       'positive', 'negative' or null
    comment                string       at most 4,000 characters, or null
    requester              string       the caller's name (never a token)
    timestamp              timestamp[ms, UTC] (Delta keeps µs: read back as timestamp[us, UTC])
    timestamp_ms           int64
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
import uuid
import weakref
from typing import TYPE_CHECKING

from gcn_rag.errors import BadInputError, NotFoundError

if TYPE_CHECKING:
    import pyarrow as pa

    from gcn_rag.serving.manager import EndpointManager
    from gcn_rag.tables import Catalog

TABLE = "rag_feedback"
RATINGS = ("positive", "negative")
MAX_COMMENT = 4000
#: What a request id looks like (ours are uuid4 hex; the console takes the same).
REQUEST_ID = r"^[0-9A-Za-z_-]{1,64}$"
COMPACT_EVERY = 50


def feedback_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            ("feedback_id", pa.string()),
            ("databricks_request_id", pa.string()),
            ("endpoint_name", pa.string()),
            ("rating", pa.string()),
            ("comment", pa.string()),
            ("requester", pa.string()),
            ("timestamp", pa.timestamp("ms", tz="UTC")),
            ("timestamp_ms", pa.int64()),
        ]
    )


@dataclasses.dataclass(frozen=True)
class Feedback:
    """One row of ``rag_feedback``."""

    feedback_id: str
    databricks_request_id: str
    endpoint_name: str
    rating: str | None
    comment: str | None
    requester: str
    timestamp_ms: int


def to_arrow(rows: list[Feedback]) -> pa.Table:
    import datetime as dt

    import pyarrow as pa

    return pa.Table.from_pylist(
        [
            {
                **dataclasses.asdict(row),
                "timestamp": dt.datetime.fromtimestamp(row.timestamp_ms / 1000, tz=dt.UTC),
            }
            for row in rows
        ],
        schema=feedback_schema(),
    )


class FeedbackStore:
    """Checks feedback against a server's endpoints and captured requests, and writes it.

    One per :class:`EndpointManager` (:meth:`of`), so the API and the console share one writer.
    """

    def __init__(self, manager: EndpointManager) -> None:
        self.manager = manager
        self._lock = threading.Lock()
        self._commits = 0

    @classmethod
    def of(cls, manager: EndpointManager) -> FeedbackStore:
        with _STORES_LOCK:
            store = _STORES.get(manager)
            if store is None:
                store = _STORES[manager] = cls(manager)
            return store

    def submit(
        self,
        endpoint: str,
        request_id: str,
        rating: str | None = None,
        comment: str | None = None,
        requester: str = "anonymous",
    ) -> Feedback:
        """Check, then commit one feedback row (blocking: call it off the event loop)."""
        comment = comment if comment is not None and comment.strip() else None
        _check(request_id, rating, comment)
        self.manager.require(endpoint)
        self.require_request(endpoint, request_id)
        row = Feedback(
            feedback_id=uuid.uuid4().hex,
            databricks_request_id=request_id,
            endpoint_name=endpoint,
            rating=rating,
            comment=comment,
            requester=requester,
            timestamp_ms=int(time.time() * 1000),
        )
        self._write(row)
        return row

    def require_request(self, endpoint: str, request_id: str) -> None:
        """404 unless ``request_id`` is a captured request of ``endpoint``."""
        capture, target = self.manager.capture, self.manager.capture_target(endpoint)
        answered_by = capture.recent.endpoint(request_id) if capture is not None else None
        if answered_by == endpoint or (
            answered_by is None
            and capture is not None
            and target is not None
            and _in_table(capture.catalog, target.table, endpoint, request_id)
        ):
            return
        raise NotFoundError(
            f"request_id {request_id} is not a captured request of endpoint {endpoint}; send the "
            "x-request-id of one of its answers (feedback needs the endpoint's inference table)."
        )

    def _write(self, row: Feedback) -> None:
        capture = self.manager.capture
        if capture is None:  # require_request has refused every request already
            raise NotFoundError("This server captures no requests.")
        catalog = capture.catalog
        with self._lock:
            catalog.append(TABLE, to_arrow([row]))
            self._commits += 1
            if self._commits % COMPACT_EVERY == 0:
                from deltalake import DeltaTable

                DeltaTable(str(catalog.path(TABLE))).optimize.compact()


_STORES: weakref.WeakKeyDictionary[EndpointManager, FeedbackStore] = weakref.WeakKeyDictionary()
_STORES_LOCK = threading.Lock()


def _check(request_id: str, rating: str | None, comment: str | None) -> None:
    """400 naming the field that is wrong (the HTTP edge checks types first)."""
    if not isinstance(request_id, str) or not re.fullmatch(REQUEST_ID, request_id):
        raise BadInputError(
            "request_id must be the x-request-id of an answer (1 to 64 letters, digits, '-', '_')."
        )
    if rating is not None and rating not in RATINGS:
        raise BadInputError(f"rating must be 'positive' or 'negative', not {rating!r}.")
    if comment is not None and len(comment) > MAX_COMMENT:
        raise BadInputError(f"comment is at most {MAX_COMMENT:,} characters.")
    if rating is None and comment is None:
        raise BadInputError("Send a rating ('positive' or 'negative'), a comment, or both.")


def _in_table(catalog: Catalog, table: str, endpoint: str, request_id: str) -> bool:
    """Whether the payload table holds ``request_id`` answered by ``endpoint`` (both checked
    before: an existing endpoint's name, a request id of :data:`REQUEST_ID`'s form)."""
    if not catalog.exists(table):
        return False
    query = (
        f"SELECT 1 FROM {catalog.name(table)} WHERE databricks_request_id = '{request_id}' "
        f"AND endpoint_name = '{endpoint}' LIMIT 1"
    )
    return bool(catalog.sql(query, tables=[table]).num_rows > 0)
