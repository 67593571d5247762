"""The few columns of a payload table the charts and the endpoints list need, kept in memory.

Reading a whole inference table through DuckDB for every chart refresh would cost a query
plan and every Parquet file each time (~0.4 s at 10,000 rows here). Instead each table's
Delta log is followed (``update_incremental``, ~1 ms when nothing changed) and only the files
a commit added are read, four columns each; files a compaction removed are dropped.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from gcn_rag.tables import Catalog

COLUMNS = ["timestamp_ms", "endpoint_name", "status_code", "execution_duration_ms"]


@dataclasses.dataclass(frozen=True)
class Requests:
    """Captured requests of one endpoint: when, status and latency, oldest first."""

    at_ms: np.ndarray[Any, Any]
    status: np.ndarray[Any, Any]
    latency_ms: np.ndarray[Any, Any]

    def since(self, start_ms: int) -> Requests:
        keep = self.at_ms >= start_ms
        return Requests(self.at_ms[keep], self.status[keep], self.latency_ms[keep])


@dataclasses.dataclass
class _Followed:
    table: Any  # deltalake.DeltaTable
    version: int = -1
    files: dict[str, pa.Table] = dataclasses.field(default_factory=dict)
    rows: pa.Table | None = None
    by_endpoint: dict[str, Requests] = dataclasses.field(default_factory=dict)  # of `version`


class Payloads:
    """Payload tables followed in memory, one entry per table (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._followed: dict[str, _Followed] = {}

    def requests(self, catalog: Catalog, table: str, endpoint: str) -> Requests | None:
        """``endpoint``'s captured requests in ``table`` (None: the table does not exist yet)."""
        with self._lock:
            followed = self._follow(catalog, table)
            if followed is None or followed.rows is None:
                return None
            found = followed.by_endpoint.get(endpoint)
            if found is None:
                found = followed.by_endpoint[endpoint] = _of(followed.rows, endpoint)
            return found

    def _follow(self, catalog: Catalog, table: str) -> _Followed | None:
        """The table brought up to its latest version (None: it does not exist yet)."""
        from deltalake import DeltaTable

        name = catalog.name(table)
        followed = self._followed.get(str(name))
        if followed is None:
            if not catalog.exists(name):
                return None
            followed = _Followed(DeltaTable(str(catalog.path(name))))
            self._followed[str(name)] = followed
        else:
            followed.table.update_incremental()
        if followed.version != followed.table.version():
            _reread(followed)
        return followed


def _of(rows: pa.Table, endpoint: str) -> Requests:
    """One endpoint's rows, oldest first (numpy: no pandas behind ``pyarrow.compute``)."""
    import numpy as np

    mine = rows.column("endpoint_name").to_numpy(zero_copy_only=False) == endpoint
    at_ms = rows.column("timestamp_ms").to_numpy()[mine]
    order = np.argsort(at_ms, kind="stable")
    return Requests(
        at_ms=at_ms[order],
        status=rows.column("status_code").fill_null(0).to_numpy()[mine][order],
        latency_ms=rows.column("execution_duration_ms").fill_null(0).to_numpy()[mine][order],
    )


def _reread(followed: _Followed) -> None:
    """Read the files the table's current version added; forget the ones it removed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gcn_rag.serving.capture import payload_schema

    schema = pa.schema([payload_schema().field(c) for c in COLUMNS])
    files = {}
    for uri in followed.table.file_uris():
        found = followed.files.get(uri)
        files[uri] = found if found is not None else _read(pq, uri, schema)
    followed.files = files
    followed.by_endpoint = {}
    followed.version = followed.table.version()
    followed.rows = pa.concat_tables(files.values()) if files else schema.empty_table()


def _read(pq: Any, uri: str, schema: pa.Schema) -> pa.Table:
    """One data file's columns. ``ParquetFile`` rather than ``read_table``: the latter imports
    ``pyarrow.dataset``, which costs ~0.9 s the first time in a process."""
    path = uri.removeprefix("file://")
    return pq.ParquetFile(path).read(columns=COLUMNS).select(COLUMNS).cast(schema)
