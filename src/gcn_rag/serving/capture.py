"""Inference tables: every request and its response into Delta, off the request path, lossless.

The request path only appends one JSON line to a local *spool* segment (one ``os.write`` on
an ``O_APPEND`` descriptor, a few microseconds) before the response is sent, so a row exists
on disk for every response a client saw, even if the process is killed the next instant. A
background thread fsyncs the open segment every ``fsync_interval_s`` (group commit), and every
``flush_interval_s`` (or sooner at ``batch_rows`` rows) rotates the segment and appends its
rows to their Delta tables (one commit per table), then deletes it. Every
``compact_every`` commits a table's small files are compacted.

Exactly once: a segment is deleted only after all its rows are committed; segments left by a
crashed process are replayed at the next start with a MERGE on ``databricks_request_id``, so
rows committed just before the crash are not written twice. A clean stop flushes everything.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gcn_rag.errors import BadInputError
from gcn_rag.serving.spool import Spool, read_lines, read_segment, rewrite

if TYPE_CHECKING:
    import pyarrow as pa

    from gcn_rag.tables import Catalog

MAX_PAYLOAD_BYTES = 1024 * 1024
ROW_GROUP_ROWS = 1024  # rows per Parquet row group when the payload table is compacted
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
REQUEST_TOO_LARGE = "MAX_REQUEST_SIZE_EXCEEDED"
RESPONSE_TOO_LARGE = "MAX_RESPONSE_SIZE_EXCEEDED"
#: Request ids remembered after spooling (~150 bytes each): many flush intervals' worth.
RECENT_REQUESTS = 20_000

log = logging.getLogger(__name__)


def payload_schema() -> pa.Schema:
    """The payload table's columns (DESIGN.md, plus ``timestamp`` and ``endpoint_name``)."""
    import pyarrow as pa

    utc = pa.timestamp("ms", tz="UTC")
    return pa.schema(
        [
            ("databricks_request_id", pa.string()),
            ("client_request_id", pa.string()),
            ("request_date", pa.date32()),
            ("request_time", utc),
            ("timestamp", utc),
            ("timestamp_ms", pa.int64()),
            ("status_code", pa.int32()),
            ("execution_duration_ms", pa.int64()),
            ("request", pa.string()),
            ("response", pa.string()),
            ("served_entity_id", pa.string()),
            ("endpoint_name", pa.string()),
            ("requester", pa.string()),
            ("sampling_fraction", pa.float64()),
            ("logging_error_codes", pa.list_(pa.string())),
        ]
    )


@dataclasses.dataclass(frozen=True)
class CaptureRow:
    """One answered (or refused) request, as the invocations path hands it to capture.

    :meth:`InferenceCapture.record` adds what the table derives (dates, sampling, clipping).
    """

    databricks_request_id: str
    client_request_id: str | None
    timestamp_ms: int
    status_code: int
    execution_duration_ms: int
    request: str  # the body as sent (JSON text)
    response: str  # the body as answered (JSON text)
    served_entity_id: str
    endpoint_name: str
    requester: str  # the caller's name, never a token
    logging_error_codes: tuple[str, ...] = ()  # why the request is not kept whole, if it is not


@dataclasses.dataclass(frozen=True)
class CaptureTarget:
    """Where an endpoint's requests go, and which fraction of them."""

    table: str  # catalog.schema.table
    sampling_fraction: float = 1.0


def normalize_capture_config(raw: Any, field: str = "auto_capture_config") -> dict[str, Any]:
    """Validate an ``auto_capture_config`` / ``inference_table_config`` and fill defaults."""
    if not isinstance(raw, dict):
        raise BadInputError(f"{field} must be a JSON object.")
    config = dict(raw)
    config.setdefault("enabled", True)
    for key in ("catalog_name", "schema_name", "table_name_prefix"):
        value = config.get(key)
        if value is not None and not (
            isinstance(value, str) and value.replace("_", "a").replace("-", "a").isalnum()
        ):
            raise BadInputError(f"{field}.{key} must use letters, digits and underscores.")
    fraction = config.get("sampling_fraction", 1.0)
    if not isinstance(fraction, int | float) or not 0 < float(fraction) <= 1:
        raise BadInputError(f"{field}.sampling_fraction must be in (0, 1].")
    if config["enabled"] and not (config.get("catalog_name") and config.get("schema_name")):
        raise BadInputError(f"{field} needs catalog_name and schema_name.")
    return config


def check_capture(endpoint: str, config: dict[str, Any], field: str) -> None:
    """400 unless the inference table an endpoint would capture into has a valid name."""
    if not config.get("enabled", True):
        return
    table = payload_table(endpoint, config)
    if not all(_IDENT.fullmatch(part) for part in table.split(".")):
        raise BadInputError(
            f"{field}: endpoint {endpoint} would capture into {table}, which is not a table "
            "name (each part starts with an ASCII letter or '_' and has only letters, digits "
            "and '_'); set catalog_name, schema_name and table_name_prefix to fit."
        )


def payload_table(endpoint: str, config: dict[str, Any]) -> str:
    """``<catalog>.<schema>.<prefix>_payload``; the prefix defaults to the endpoint name."""
    prefix = str(config.get("table_name_prefix") or endpoint).replace("-", "_").rstrip("_")
    return f"{config['catalog_name']}.{config['schema_name']}.{prefix}_payload"


def capture_target(
    endpoint: str, config: dict[str, Any], ai_gateway: dict[str, Any] | None
) -> CaptureTarget | None:
    """The AI gateway's inference table if enabled, else ``auto_capture_config``'s, else None."""
    for source in (
        (ai_gateway or {}).get("inference_table_config"),
        config.get("auto_capture_config"),
    ):
        if source and source.get("enabled", True):
            return CaptureTarget(
                payload_table(endpoint, source), float(source.get("sampling_fraction", 1.0))
            )
    return None


def sampled(request_id: str, fraction: float) -> bool:
    """A deterministic draw from the request id (so a replay decides the same way)."""
    if fraction >= 1:
        return True
    draw = int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:8], "big") / 2**64
    return draw < fraction


def clip(text: str, code: str, codes: list[str], limit: int = MAX_PAYLOAD_BYTES) -> str:
    """``text`` cut to ``limit`` UTF-8 bytes, with ``code`` noted when it had to be cut."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    codes.append(code)
    return raw[:limit].decode("utf-8", errors="ignore")


#: The fields a spooled row must have, and their types (the rest are filled by to_arrow).
_ROW_FIELDS: dict[str, type | tuple[type, ...]] = {
    "databricks_request_id": str,
    "timestamp_ms": int,
    "status_code": int,
    "execution_duration_ms": int,
    "request": str,
    "response": str,
}


def _well_formed(record: dict[str, Any]) -> bool:
    """Whether a spooled record can become a row of its table (else it is set aside)."""
    row, table = record.get("row"), record.get("table")
    if not isinstance(table, str) or not isinstance(row, dict):
        return False
    return all(isinstance(row.get(k), kind) for k, kind in _ROW_FIELDS.items())


def to_arrow(rows: list[dict[str, Any]]) -> pa.Table:
    import datetime as dt

    import pyarrow as pa

    full = []
    for row in rows:
        when = dt.datetime.fromtimestamp(row["timestamp_ms"] / 1000, tz=dt.UTC)
        full.append({**row, "request_date": when.date(), "request_time": when, "timestamp": when})
    return pa.Table.from_pylist(full, schema=payload_schema())


class RecentRequests:
    """The ids of the last ``limit`` spooled requests and their endpoint, oldest forgotten
    first: feedback on a request whose row is still in the spool (not yet in Delta) is
    recognised here; an older one is looked up in its table."""

    def __init__(self, limit: int = RECENT_REQUESTS) -> None:
        self.limit = limit
        self._ids: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._lock = threading.Lock()

    def add(self, request_id: str, endpoint: str) -> None:
        with self._lock:
            self._ids[request_id] = endpoint
            while len(self._ids) > self.limit:
                self._ids.popitem(last=False)

    def endpoint(self, request_id: str) -> str | None:
        """The endpoint that answered ``request_id``, if it is among the remembered."""
        with self._lock:
            return self._ids.get(request_id)


class InferenceCapture:
    """The spool, the flusher thread, and their counters (for metrics and endpoint state)."""

    def __init__(
        self,
        directory: Path,
        catalog: Catalog,
        *,
        flush_interval_s: float = 2.0,
        fsync_interval_s: float = 0.1,
        batch_rows: int = 5000,
        compact_every: int = 50,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
        max_attempts: int = 3,
    ) -> None:
        self.catalog = catalog
        self.flush_interval_s = flush_interval_s
        self.fsync_interval_s = fsync_interval_s
        self.batch_rows = batch_rows
        self.compact_every = compact_every
        self.max_payload_bytes = max_payload_bytes
        self.max_attempts = max_attempts
        self.spool = Spool(directory)
        self.recent = RecentRequests()  # what feedback may refer to before it is in Delta
        self._replay = set(self.spool.leftovers)  # merged on request id, not appended
        self._count_lock = threading.Lock()
        self.pending_rows = sum(len(read_segment(p)) for p in self._replay)
        self.flushed_rows = 0
        self.write_errors = 0
        self.quarantined_rows = 0  # lines set aside (not records, or their table failed)
        self.quarantined_files = 0  # files in the spool folder that are not segments
        self.last_quarantine = ""  # where the last thing was set aside (a flush keeps it)
        self._failures: dict[tuple[Path, str], int] = {}  # (segment, table) -> failed commits
        self.flushes = 0
        self.last_flush_ms = 0
        self.last_flush_rows_per_s = 0.0
        self.last_error = ""
        self._commits: dict[str, int] = {}  # table -> commits since its last compaction
        self._done: dict[Path, set[str]] = {}  # a segment's tables already committed
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        for aside in self.spool.set_aside_files:
            message = f"a file in {directory} that is not a segment was set aside in {aside}"
            self._quarantined(aside, message, files=1)

    # --- request path ------------------------------------------------------------------------

    def record(self, target: CaptureTarget, request: CaptureRow) -> None:
        """Spool one request's row (sampled, payloads clipped) before its response is sent."""
        if not sampled(request.databricks_request_id, target.sampling_fraction):
            return
        codes = list(request.logging_error_codes)
        row = dict(vars(request))
        row["request"] = clip(row["request"], REQUEST_TOO_LARGE, codes, self.max_payload_bytes)
        row["response"] = clip(row["response"], RESPONSE_TOO_LARGE, codes, self.max_payload_bytes)
        row["logging_error_codes"] = codes
        row["sampling_fraction"] = target.sampling_fraction
        try:
            self.spool.write({"table": target.table, "row": row})
        except Exception as exc:  # a full disk must not fail the request; it is counted
            with self._count_lock:  # (rows are spooled from the request worker threads)
                self.write_errors += 1
                self.last_error = f"spool write failed: {exc}"
            return
        with self._count_lock:
            self.pending_rows += 1
        self.recent.add(request.databricks_request_id, request.endpoint_name)

    # --- background --------------------------------------------------------------------------

    def start(self) -> None:
        """Replay what a previous process left (exactly once), then flush in the background."""
        try:
            self.flush()
        except Exception as exc:  # kept in the spool; retried by the flusher
            self.last_error = f"{type(exc).__name__}: {exc}"
        self._thread = threading.Thread(target=self._run, name="capture-flusher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last_flush = time.monotonic()
        while not self._stop.wait(self.fsync_interval_s):
            try:
                self.spool.sync()
                due = time.monotonic() - last_flush >= self.flush_interval_s
                if due or self.spool.rows >= self.batch_rows:
                    self.flush()
                    last_flush = time.monotonic()
            except Exception as exc:  # keep capturing; the spool keeps the rows
                self.last_error = f"{type(exc).__name__}: {exc}"

    def flush(self) -> int:
        """Rotate the spool and commit every closed segment; returns the rows committed.

        One segment or table that cannot be written does not hold up the others: it is
        tried again at the next flush, and set aside after ``max_attempts``.
        """
        with self._flush_lock:
            self.spool.rotate()
            written = 0
            for path in self.spool.segments():
                if path != self.spool.current:
                    written += self._flush_segment(path)
            return written

    def _flush_segment(self, path: Path) -> int:
        records = self._screen(path)
        by_table: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            by_table.setdefault(record["table"], []).append(record["row"])
        done = self._done.setdefault(path, set())
        started, written = time.perf_counter(), 0
        for table, rows in sorted(by_table.items()):
            if table in done:
                continue
            committed = self._write_table(path, table, rows)
            if committed is not None:
                done.add(table)
                written += committed
        if len(done) == len(by_table):
            path.unlink()
            del self._done[path]
            self._replay.discard(path)
            self._count_flush(written, time.perf_counter() - started)
        return written  # when not all went in, the rest waits for the next flush

    def _screen(self, path: Path) -> list[dict[str, Any]]:
        """A segment's records; lines that are not records are set aside (and counted)."""
        records, torn = read_lines(path)
        good = [r for r in records if _well_formed(r)]
        bad = [json.dumps(r, default=str).encode() for r in records if not _well_formed(r)]
        if bad or torn:
            where = self.spool.set_aside(path, torn + bad)
            rewrite(path, good)
            message = f"{len(torn) + len(bad)} bad line(s) of {path} set aside in {where}"
            self._quarantined(where, message, rows=len(torn) + len(bad), backlog=len(bad))
        return good

    def _write_table(self, path: Path, table: str, rows: list[dict[str, Any]]) -> int | None:
        """Commit one segment's rows of one table: the rows committed, 0 once they were set
        aside (after ``max_attempts``), None to try again at the next flush."""
        try:
            data = to_arrow(rows)
            if path in self._replay:
                self.catalog.upsert(table, data, key="databricks_request_id")
            else:
                self.catalog.append(table, data)
            self._maybe_compact(table)
        except Exception as exc:
            tries = self._failures[(path, table)] = self._failures.get((path, table), 0) + 1
            self.last_error = (
                f"flush of {path.name} into {table} failed ({tries} of {self.max_attempts}): "
                f"{type(exc).__name__}: {exc}"
            )
            if tries < self.max_attempts:
                return None
            where = self.spool.set_aside(
                path.with_name(f"{path.name}.{table}"),
                [json.dumps({"table": table, "row": row}, default=str).encode() for row in rows],
            )
            message = f"{self.last_error}; rows set aside in {where}"
            self._quarantined(where, message, rows=len(rows), backlog=len(rows))
            self._failures.pop((path, table), None)
            return 0
        self._failures.pop((path, table), None)
        with self._count_lock:
            self.pending_rows -= len(rows)
        self.flushed_rows += len(rows)
        return len(rows)

    def _count_flush(self, rows: int, elapsed: float) -> None:
        self.flushes += 1
        self.last_flush_ms = int(time.time() * 1000)
        self.last_flush_rows_per_s = rows / elapsed if elapsed > 0 else 0.0
        if not self._failures:
            self.last_error = ""

    def _quarantined(
        self, where: Path, message: str, *, rows: int = 0, backlog: int = 0, files: int = 0
    ) -> None:
        """``rows`` lines or ``files`` files set aside in ``where``: counted, logged with the
        path, and kept in ``last_quarantine``, which a good flush (unlike ``last_error``) does
        not clear. ``backlog`` of the rows were counted as waiting until now (a torn line
        never was: its request got no answer)."""
        with self._count_lock:
            self.pending_rows -= backlog
            self.quarantined_rows += rows
            self.quarantined_files += files
        self.last_error = message
        self.last_quarantine = str(where)
        log.warning("capture: %s", message)

    def _maybe_compact(self, table: str) -> None:
        """Merge the small files of the last commits; row groups stay small (their
        ``timestamp_ms`` ranges let a reader of recent rows skip the older ones)."""
        from deltalake import DeltaTable, WriterProperties

        self._commits[table] = self._commits.get(table, 0) + 1
        if self._commits[table] >= self.compact_every:
            properties = WriterProperties(max_row_group_size=ROW_GROUP_ROWS)
            DeltaTable(str(self.catalog.path(table))).optimize.compact(writer_properties=properties)
            self._commits[table] = 0

    def close(self) -> None:
        """Stop the thread and flush everything (a clean stop loses nothing)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        self.flush()
        self.spool.close()

    def stats(self) -> dict[str, Any]:
        return {
            "backlog_rows": self.pending_rows,
            "flushed_rows": self.flushed_rows,
            "write_errors": self.write_errors,
            "quarantined_rows": self.quarantined_rows,
            "quarantined_files": self.quarantined_files,
            "last_quarantine": self.last_quarantine,
            "last_flush_timestamp": self.last_flush_ms,
            "last_error": self.last_error,
        }
