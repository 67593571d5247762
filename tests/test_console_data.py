"""How the console's pages read their data fast enough for a busy workspace (the page times
are measured in benchmarks/console.py, never asserted here): the inference table's time window
and pages past the newest 100 rows, the DuckDB connection a catalog keeps for the pages, the
payload table's small row groups, and the Models page's registry read, redone only when the
MLflow store changed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from consoles import ENDPOINT, Console, Serve, running_console, signed_in
from gcn_rag.errors import BadInputError, NotFoundError
from gcn_rag.model import registry
from gcn_rag.serving.capture import ROW_GROUP_ROWS, CaptureRow, CaptureTarget, InferenceCapture
from gcn_rag.settings import Settings
from gcn_rag.tables import Catalog

PAYLOAD = "sandbox.nasa_gcn_dev.rag_inference_payload"
ROWS = 250
MINUTE_MS = 60_000


def _row(i: int, at_ms: int, endpoint: str = ENDPOINT) -> CaptureRow:
    return CaptureRow(
        databricks_request_id=f"req{i:04d}",
        client_request_id=None,
        timestamp_ms=at_ms,
        status_code=200 if i % 10 else 500,
        execution_duration_ms=20 + i % 7,
        request='{"dataframe_records": [{"question": "GRB ' + str(i) + '?"}]}',
        response='{"predictions": [{"answer": "answer ' + str(i) + '"}]}',
        served_entity_id="champion-1",
        endpoint_name=endpoint,
        requester="tester",
    )


@pytest.fixture(scope="module")
def console(
    tmp_path_factory: pytest.TempPathFactory,
    fixture_workspace: Settings,
    champion: dict[str, Any],
    serve_app: Serve,
) -> Iterator[Console]:
    """A console whose inference table holds 250 requests, one a minute back from now
    (req0000 the newest), written through the real capture path in many commits."""
    home = tmp_path_factory.mktemp("console-data")
    with running_console(home, fixture_workspace, champion["version"], serve_app) as running:
        capture = running.manager.capture
        assert capture is not None
        now = int(time.time() * 1000)
        for i in range(ROWS):
            capture.record(CaptureTarget(PAYLOAD), _row(i, now - i * MINUTE_MS))
            if i % 10 == 9:
                capture.flush()
        capture.flush()
        yield running


def _ids(html: str) -> list[str]:
    return re.findall(r'data-request-id="(req\d{4})"', html)


def _older(html: str) -> str | None:
    found = re.search(r'<a id="older" href="([^"]+)"', html)
    return found.group(1).replace("&amp;", "&") if found else None


def _all_pages(client: requests.Session, console: Console, first: str) -> list[list[str]]:
    """The request ids of each page, following the Older link to the end."""
    pages: list[list[str]] = []
    url: str | None = first
    while url is not None:
        page = client.get(console.url + url, timeout=60)
        assert page.status_code == 200, page.text
        pages.append(_ids(page.text))
        url = _older(page.text)
    return pages


def test_the_inference_table_pages_past_the_newest_100(console: Console) -> None:
    viewer = signed_in(console, "CAN_VIEW")
    pages = _all_pages(viewer, console, "/console/inference")
    assert [len(page) for page in pages] == [100, 100, 50]  # no link under the last
    seen = [request_id for page in pages for request_id in page]
    assert seen == [f"req{i:04d}" for i in range(ROWS)]  # newest first, none twice or lost
    ok = _all_pages(viewer, console, "/console/inference?status=200")  # the filter holds
    assert [len(page) for page in ok] == [100, 100, 25]
    assert [r for page in ok for r in page] == [f"req{i:04d}" for i in range(ROWS) if i % 10]


def test_the_inference_table_keeps_to_a_time_window(console: Console) -> None:
    viewer = signed_in(console, "CAN_VIEW")
    page = viewer.get(f"{console.url}/console/inference?since=15m", timeout=60)
    assert page.status_code == 200, page.text
    ids = _ids(page.text)  # one a minute: the last 15 minutes hold 15 or 16
    assert ids[0] == "req0000" and 14 <= len(ids) <= 16 and _older(page.text) is None
    assert '<option value="15m" selected>last 15 minutes</option>' in page.text
    hour = _ids(viewer.get(f"{console.url}/console/inference?since=1h", timeout=60).text)
    assert 59 <= len(hour) <= 61
    for query in ("since=1y", "since=%3Cscript%3E", "before=1'%20OR%201=1"):
        refused = viewer.get(f"{console.url}/console/inference?{query}", timeout=60)
        assert refused.status_code == 400, query
        assert "<script>" not in refused.text and "Traceback" not in refused.text


def test_a_new_capture_shows_on_the_next_visit(console: Console) -> None:
    """The page's kept connection follows the table: a new commit is read, not a stale view."""
    viewer = signed_in(console, "CAN_VIEW")
    assert _ids(viewer.get(f"{console.url}/console/inference", timeout=60).text)[0] == "req0000"
    capture = console.manager.capture
    assert capture is not None
    capture.record(CaptureTarget(PAYLOAD), _row(9999, int(time.time() * 1000) + 1000))
    capture.flush()
    page = viewer.get(f"{console.url}/console/inference", timeout=60)
    assert _ids(page.text)[:2] == ["req9999", "req0000"]
    one = viewer.get(f"{console.url}/console/inference/req9999", timeout=60)
    assert one.status_code == 200 and "GRB 9999?" in one.text


def test_a_kept_catalog_sees_new_commits_and_only_the_tables_named(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "warehouse")
    catalog.append("numbers", pa.table({"n": [1, 2]}))
    catalog.append("other", pa.table({"m": [9]}))
    total = "SELECT sum(n) AS s FROM sandbox.nasa_gcn_dev.numbers"
    assert catalog.sql(total, tables=["numbers"]).to_pylist() == [{"s": 3}]
    catalog.append("numbers", pa.table({"n": [10]}))
    assert catalog.sql(total, tables=["numbers"]).to_pylist() == [{"s": 13}]
    assert catalog.sql("SELECT count(*) AS c FROM numbers", tables=["numbers"]).to_pylist() == [
        {"c": 3}
    ]
    with pytest.raises(BadInputError, match="SQL error"):
        catalog.sql("SELECT * FROM sandbox.nasa_gcn_dev.never_named", tables=["numbers"])
    with pytest.raises(BadInputError, match="SQL error"):  # files stay out of reach
        catalog.sql(f"SELECT * FROM read_csv('{tmp_path}/x.csv')", tables=["numbers"])
    with pytest.raises(NotFoundError):
        catalog.sql("SELECT 1", tables=["missing"])
    assert catalog.sql("SELECT m FROM other", tables=["other"]).to_pylist() == [{"m": 9}]


def test_compaction_keeps_the_payload_tables_row_groups_small(tmp_path: Path) -> None:
    """Row groups in time order let the inference page skip all but the newest unread."""
    catalog = Catalog(tmp_path / "warehouse")
    capture = InferenceCapture(tmp_path / "spool", catalog, compact_every=2)
    rows = ROW_GROUP_ROWS * 2 + 10
    for i in range(rows):
        capture.record(CaptureTarget(PAYLOAD), _row(i % 10_000, i))
        if i == rows // 2:
            capture.flush()
    capture.flush()  # the second commit: compacted into one file
    (path,) = catalog._delta(PAYLOAD).file_uris()
    parquet = pq.ParquetFile(path.removeprefix("file://"))
    assert parquet.metadata.num_rows == rows
    groups = [parquet.metadata.row_group(g).num_rows for g in range(parquet.num_row_groups)]
    assert max(groups) <= ROW_GROUP_ROWS and len(groups) >= 3, groups


def test_the_models_page_reads_the_registry_again_once_it_changed(
    console: Console, fixture_workspace: Settings, champion: dict[str, Any]
) -> None:
    viewer = signed_in(console, "CAN_VIEW")

    def aliases() -> str:
        page = viewer.get(f"{console.url}/console/models", timeout=60)
        assert page.status_code == 200, page.text
        row = re.search(rf'<th scope="row">{champion["version"]}</th>(.*?)</tr>', page.text, re.S)
        assert row is not None, page.text
        return row.group(1)

    assert "@reports-check" not in aliases()
    aliases()  # again: the same store, the kept read
    registry.set_alias(fixture_workspace, "reports-check", champion["version"])  # as the CLI
    try:
        assert "@reports-check" in aliases()
    finally:
        registry.delete_alias(fixture_workspace, "reports-check")
    assert "@reports-check" not in aliases()


def test_without_a_session_the_inference_pages_redirect(console: Console) -> None:
    response = requests.get(
        f"{console.url}/console/inference?since=1h", allow_redirects=False, timeout=30
    )
    assert response.status_code == 303
