"""The Delta catalog: three-part names, SQL through DuckDB, atomic writes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from gcn_rag.errors import BadInputError, NotFoundError
from gcn_rag.tables import Catalog, TableName


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog(tmp_path / "warehouse")


def test_names_are_completed_and_validated(catalog: Catalog) -> None:
    assert catalog.name("t") == TableName("sandbox", "nasa_gcn_dev", "t")
    assert catalog.name("other.t") == TableName("sandbox", "other", "t")
    assert str(catalog.name("a.b.c")) == "a.b.c"
    for bad in ("a.b.c.d", "x-y", "", "t; DROP TABLE t", "a..b"):
        with pytest.raises(BadInputError, match="not a table name"):
            catalog.name(bad)


def test_three_part_names_work_in_sql(catalog: Catalog) -> None:
    catalog.overwrite("sandbox.nasa_gcn_dev.t", pa.table({"a": [1, 2, 3]}))
    catalog.overwrite("main_cat.other.u", pa.table({"b": ["x"]}))
    assert catalog.sql("SELECT sum(a) AS s FROM sandbox.nasa_gcn_dev.t").to_pylist() == [{"s": 6}]
    assert catalog.sql("SELECT count(*) AS n FROM t").to_pylist() == [{"n": 3}]  # search path
    joined = catalog.sql("SELECT count(*) AS n FROM sandbox.nasa_gcn_dev.t, main_cat.other.u")
    assert joined.to_pylist() == [{"n": 3}]
    assert catalog.tables() == [
        TableName("main_cat", "other", "u"),
        TableName("sandbox", "nasa_gcn_dev", "t"),
    ]


def test_sql_errors_are_bad_input(catalog: Catalog) -> None:
    catalog.overwrite("t", pa.table({"a": [1]}))
    with pytest.raises(BadInputError, match="SQL error"):
        catalog.sql("SELECT nope FROM t")
    with pytest.raises(BadInputError, match="SQL error"):
        catalog.sql("SELECT * FROM sandbox.nasa_gcn_dev.missing")


def test_missing_table_says_what_to_do(catalog: Catalog) -> None:
    with pytest.raises(NotFoundError, match="gcn-rag ingest"):
        catalog.read("gcn_circulars")


def test_failed_write_leaves_previous_version_intact(catalog: Catalog) -> None:
    catalog.overwrite("t", pa.table({"a": [1, 2, 3]}))
    schema = pa.schema([("a", pa.int64())])

    def batches() -> Iterator[pa.RecordBatch]:
        yield pa.record_batch({"a": [10, 20]}, schema=schema)
        raise RuntimeError("disk on fire")

    with pytest.raises(Exception, match="disk on fire"):
        catalog.overwrite("t", pa.RecordBatchReader.from_batches(schema, batches()))
    assert catalog.version("t") == 0
    assert sorted(catalog.read("t")["a"].to_pylist()) == [1, 2, 3]


def test_upsert_inserts_and_replaces_in_one_commit(catalog: Catalog) -> None:
    catalog.upsert("t", pa.table({"k": [1, 2], "v": ["a", "b"]}), key="k")
    stats = catalog.upsert("t", pa.table({"k": [2, 3], "v": ["B", "c"]}), key="k")
    assert (stats.inserted, stats.updated) == (1, 1)
    assert catalog.version("t") == 1
    rows = catalog.sql("SELECT k, v FROM t ORDER BY k").to_pylist()
    assert rows == [{"k": 1, "v": "a"}, {"k": 2, "v": "B"}, {"k": 3, "v": "c"}]
