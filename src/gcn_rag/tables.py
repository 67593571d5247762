"""A small local catalog of Delta Lake tables, queryable with DuckDB SQL.

Tables live at ``<warehouse>/<catalog>/<schema>/<table>`` and are addressed by three-part names
(``sandbox.nasa_gcn_dev.gcn_circulars``) exactly as in Unity Catalog; shorter names are
completed with the default catalog and schema. Every write is one Delta commit, so a failed
write leaves the previous version intact and readers never see half a write.

:meth:`Catalog.sql` runs DuckDB over the current version of every table, with the three-part
names working as written (each Delta table is exposed as a view in an attached in-memory
catalog of the same name).
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gcn_rag.errors import BadInputError, NotFoundError

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from gcn_rag.settings import Settings

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
STATE_KEY = "gcn_rag_state"  # a commit's note of what the table was made from
_KEPT_LOCK = threading.Lock()  # making a catalog's kept connection (see Catalog.sql)


def local_dataset(table: Any, path: Path) -> Any:
    """The Delta table at ``path`` as a pyarrow dataset on the local filesystem. deltalake's
    default wraps its own store in a Python filesystem, whose open files an Arrow I/O thread
    may release while the interpreter exits ("terminate called without an active
    exception", an abort after a command had finished)."""
    from pyarrow import fs

    return table.to_pyarrow_dataset(
        filesystem=fs.SubTreeFileSystem(str(path), fs.LocalFileSystem())
    )


@dataclasses.dataclass(frozen=True, order=True)
class TableName:
    catalog: str
    schema: str
    table: str

    def __str__(self) -> str:
        return f"{self.catalog}.{self.schema}.{self.table}"


@dataclasses.dataclass(frozen=True)
class MergeStats:
    inserted: int
    updated: int


class Catalog:
    """Delta tables under one warehouse directory."""

    def __init__(self, warehouse: Path, catalog: str = "sandbox", schema: str = "nasa_gcn_dev"):
        self.warehouse = warehouse
        self.default_catalog = catalog
        self.default_schema = schema
        self._kept: _Kept | None = None  # made on first use (a Catalog stays picklable)

    @classmethod
    def from_settings(cls, settings: Settings) -> Catalog:
        """The workspace's tables, with its default catalog and schema."""
        return cls(settings.warehouse, settings.catalog, settings.schema)

    # --- names -------------------------------------------------------------------------------

    def name(self, name: str) -> TableName:
        """Complete ``table`` or ``schema.table`` with the defaults, and validate each part."""
        parts = name.split(".")
        if not 1 <= len(parts) <= 3 or not all(_IDENT.match(p) for p in parts):
            raise BadInputError(
                f"{name!r} is not a table name; use catalog.schema.table with letters, digits "
                "and underscores (e.g. sandbox.nasa_gcn_dev.gcn_circulars)."
            )
        full = [self.default_catalog, self.default_schema][: 3 - len(parts)] + parts
        return TableName(*full)

    def path(self, name: str | TableName) -> Path:
        n = name if isinstance(name, TableName) else self.name(name)
        return self.warehouse / n.catalog / n.schema / n.table

    def exists(self, name: str | TableName) -> bool:
        return (self.path(name) / "_delta_log").is_dir()

    def tables(self) -> list[TableName]:
        """Every table in the warehouse, sorted."""
        found = [
            TableName(log.parent.parent.parent.name, log.parent.parent.name, log.parent.name)
            for log in self.warehouse.glob("*/*/*/_delta_log")
        ]
        return sorted(found)

    # --- reading -----------------------------------------------------------------------------

    def _delta(self, name: str | TableName) -> Any:
        from deltalake import DeltaTable

        if not self.exists(name):
            raise NotFoundError(
                f"Table {self.name(str(name))} does not exist yet; run `gcn-rag ingest` first."
            )
        return DeltaTable(str(self.path(name)))

    def read(self, name: str | TableName, columns: list[str] | None = None) -> pa.Table:
        """The current version of a table as Arrow."""
        return local_dataset(self._delta(name), self.path(name)).to_table(columns=columns)

    def version(self, name: str | TableName) -> int:
        return int(self._delta(name).version())

    def state(self, name: str | TableName) -> str:
        """What the table's last commit recorded as ``state`` ("" when none): a writer's note of
        what the contents were made from (Delta keeps a table's description from its first
        write, so a changing note lives in the commit instead)."""
        history = self._delta(name).history(1)
        return str(history[0].get(STATE_KEY, "")) if history else ""

    def count(self, name: str | TableName) -> int:
        return int(local_dataset(self._delta(name), self.path(name)).count_rows())

    # --- writing -----------------------------------------------------------------------------

    def overwrite(
        self,
        name: str | TableName,
        data: pa.Table | pa.RecordBatchReader,
        description: str = "",
        *,
        state: str = "",
    ) -> int:
        """Replace the table's contents (and schema) in one commit; returns the new version.
        ``state`` is recorded with the commit (see :meth:`state`)."""
        from deltalake import CommitProperties, write_deltalake

        path = self.path(name)
        path.mkdir(parents=True, exist_ok=True)
        write_deltalake(
            str(path),
            data,
            mode="overwrite",
            schema_mode="overwrite",
            description=description or None,
            commit_properties=CommitProperties(custom_metadata={STATE_KEY: state})
            if state
            else None,
        )
        return self.version(name)

    def append(self, name: str | TableName, data: pa.Table | pa.RecordBatchReader) -> int:
        """Add rows in one commit (creating the table if needed); returns the new version."""
        from deltalake import write_deltalake

        path = self.path(name)
        path.mkdir(parents=True, exist_ok=True)
        write_deltalake(str(path), data, mode="append")
        return self.version(name)

    def upsert(self, name: str | TableName, data: pa.Table, key: str) -> MergeStats:
        """Insert new rows and replace rows whose ``key`` exists, in one commit."""
        if not self.exists(name):
            self.overwrite(name, data)
            return MergeStats(inserted=data.num_rows, updated=0)
        if data.num_rows == 0:
            return MergeStats(inserted=0, updated=0)
        merge = (
            self._delta(name)
            .merge(data, predicate=f"t.{key} = s.{key}", source_alias="s", target_alias="t")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute()
        )
        return MergeStats(
            inserted=int(merge.get("num_target_rows_inserted", 0)),
            updated=int(merge.get("num_target_rows_updated", 0)),
        )

    # --- SQL ---------------------------------------------------------------------------------

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection where every table is visible under its three-part name.

        The default catalog and schema are on the search path, so ``gcn_circulars`` alone
        also works. Views read the table version current when the connection was made.
        """
        import duckdb
        from deltalake import DeltaTable

        con = duckdb.connect()
        catalogs: set[str] = set()
        schemas: set[tuple[str, str]] = set()
        for n in self.tables():
            if n.catalog not in catalogs:
                con.execute(f"ATTACH ':memory:' AS \"{n.catalog}\"")
                catalogs.add(n.catalog)
            if (n.catalog, n.schema) not in schemas:
                con.execute(f'CREATE SCHEMA "{n.catalog}"."{n.schema}"')
                schemas.add((n.catalog, n.schema))
            view = f'"{n.catalog}"."{n.schema}"."{n.table}"'
            try:
                dataset = local_dataset(DeltaTable(str(self.path(n))), self.path(n))
            except Exception as exc:  # a broken table fails when queried, the rest work
                reason = _broken(n, exc).replace("'", "''")
                con.execute(f"CREATE VIEW {view} AS SELECT error('{reason}') AS broken")
                continue
            source = f"__delta__{n.catalog}__{n.schema}__{n.table}"
            con.register(source, dataset)
            con.execute(f'CREATE VIEW {view} AS SELECT * FROM "{source}"')
        default = (self.default_catalog, self.default_schema)
        if default in schemas:
            con.execute(f"SET search_path = '{self.default_catalog}.{self.default_schema}'")
        return con

    def sql(
        self,
        query: str,
        *,
        allow_files: bool = False,
        tables: Iterable[str | TableName] | None = None,
    ) -> pa.Table:
        """Run one DuckDB SQL statement over the catalog and return the result as Arrow.

        DuckDB may not touch files (``COPY … TO``, ``read_csv``, ``ATTACH``) unless
        ``allow_files``: a query reads the tables, it cannot write over their logs.

        With ``tables``, only those tables are visible, through one connection this catalog
        keeps open: a table is read again only when its Delta version moved. For a server
        asking the same tables again and again (a new connection over every table costs
        ~0.2 s on a full workspace; this, a few ms).
        """
        import duckdb

        if tables is not None and not allow_files:
            with _KEPT_LOCK:
                if self._kept is None:
                    self._kept = _Kept(self)
            return self._kept.sql(
                query, [t if isinstance(t, TableName) else self.name(t) for t in tables]
            )
        con = self.connect()
        if not allow_files:
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
        try:
            result = con.sql(query)
            if result is None:
                raise BadInputError("The statement returned no rows; only queries are supported.")
            return result.to_arrow_table()
        except duckdb.Error as exc:
            raise BadInputError(f"SQL error: {exc}") from exc
        finally:
            con.close()


class _Kept:
    """One DuckDB connection kept open for :meth:`Catalog.sql` with ``tables`` (files off):
    a view per table asked for, re-pointed at the table's current version before each query
    (``update_incremental`` reads only new log entries); one query at a time."""

    def __init__(self, catalog: Catalog) -> None:
        import duckdb

        self.catalog = catalog
        self.lock = threading.Lock()
        self.con = duckdb.connect()
        self.con.execute("SET enable_external_access = false")
        self.con.execute("SET lock_configuration = true")
        self.followed: dict[TableName, tuple[Any, int]] = {}  # name -> (DeltaTable, version)
        self.schemas: set[tuple[str, str]] = set()

    def sql(self, query: str, names: list[TableName]) -> pa.Table:
        import duckdb

        with self.lock:
            for name in names:
                self._follow(name)
            try:
                result = self.con.sql(query)
                if result is None:
                    raise BadInputError(
                        "The statement returned no rows; only queries are supported."
                    )
                return result.to_arrow_table()
            except duckdb.Error as exc:
                raise BadInputError(f"SQL error: {exc}") from exc

    def _follow(self, name: TableName) -> None:
        """The view of ``name`` at the table's current version."""
        known = self.followed.get(name)
        try:
            if known is None:
                table = self.catalog._delta(name)
            else:
                table = known[0]
                table.update_incremental()
        except NotFoundError:
            raise
        except Exception as exc:  # dropped or broken since: forget it, say so
            self.followed.pop(name, None)
            raise BadInputError(_broken(name, exc)) from exc
        version = int(table.version())
        if known is not None and known[1] == version:
            return
        source = f"__delta__{name.catalog}__{name.schema}__{name.table}"
        self.con.register(source, table.to_pyarrow_dataset())
        if known is None:
            self._view(name, source)
        self.followed[name] = (table, version)

    def _view(self, name: TableName, source: str) -> None:
        if (name.catalog, name.schema) not in self.schemas:
            if name.catalog not in {c for c, _ in self.schemas}:
                self.con.execute(f"ATTACH ':memory:' AS \"{name.catalog}\"")
            self.con.execute(f'CREATE SCHEMA "{name.catalog}"."{name.schema}"')
            self.schemas.add((name.catalog, name.schema))
            if (name.catalog, name.schema) == (
                self.catalog.default_catalog,
                self.catalog.default_schema,
            ):
                self.con.execute(f"SET search_path = '{name.catalog}.{name.schema}'")
        view = f'"{name.catalog}"."{name.schema}"."{name.table}"'
        self.con.execute(f'CREATE VIEW {view} AS SELECT * FROM "{source}"')


@dataclasses.dataclass(frozen=True)
class TableInfo:
    """One table as ``gcn-rag tables`` lists it; ``problem`` says why a broken one is."""

    name: TableName
    rows: int | None = None
    version: int | None = None
    problem: str = ""


def describe(catalog: Catalog) -> list[TableInfo]:
    """Every table with its row count and Delta version; a broken one says what is wrong."""
    found = []
    for name in catalog.tables():
        try:
            found.append(TableInfo(name, catalog.count(name), catalog.version(name)))
        except Exception as exc:
            found.append(TableInfo(name, problem=_broken(name, exc)))
    return found


def _broken(name: TableName, exc: Exception) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"table {name} cannot be read ({first[:300]}); restore or drop its folder"


def batched(table: pa.Table, rows: int) -> Iterator[pa.Table]:
    for start in range(0, table.num_rows, rows):
        yield table.slice(start, rows)
