"""The gcn-rag command, in process (typer's runner) and as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from conftest import FIXTURE_COUNT, TXT_ARCHIVE
from gcn_rag.cli import app
from gcn_rag.settings import Settings

runner = CliRunner()


def invoke(settings: Settings, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--home", str(settings.home)])
    return result.exit_code, result.output.strip()


def test_help_is_fast_because_heavy_modules_stay_unloaded() -> None:
    code = (
        "import sys; from gcn_rag.cli import app; "
        "heavy = {'deltalake', 'duckdb', 'pyarrow', 'tokenizers'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    help_text = subprocess.run(
        [sys.executable, "-m", "gcn_rag", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("ingest", "sql", "chunk", "tables", "run"):
        assert command in help_text


def test_ingest_then_sql(settings: Settings) -> None:
    code, out = invoke(settings, "ingest", str(TXT_ARCHIVE))
    assert code == 0, out
    assert f"Read {FIXTURE_COUNT} circulars" in out
    assert "NASA GCN Circulars" in out
    code, out = invoke(
        settings, "sql", "SELECT count(*) AS n FROM sandbox.nasa_gcn_dev.gcn_circulars", "--json"
    )
    assert code == 0 and json.loads(out) == {"n": FIXTURE_COUNT}
    code, out = invoke(
        settings,
        "sql",
        "SELECT circular_id, event_id FROM gcn_circulars WHERE circular_id = 19565",
        "--csv",
    )
    assert code == 0 and out.splitlines() == ['"circular_id","event_id"', '19565,"GRB 160624A"']
    code, out = invoke(settings, "tables")
    assert code == 0 and "sandbox.nasa_gcn_dev.gcn_circulars_chunks" in out


def test_errors_are_one_line_and_exit_1(settings: Settings, tmp_path: Path) -> None:
    code, out = invoke(settings, "sql", "SELECT * FROM sandbox.nasa_gcn_dev.nope")
    assert code == 1 and out.startswith("Error: SQL error") and "Traceback" not in out
    code, out = invoke(settings, "ingest", str(tmp_path / "missing.tar.gz"))
    assert code == 1 and "does not exist" in out
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"garbage" * 50)
    code, out = invoke(settings, "ingest", str(junk))
    assert code == 1 and "neither a tar archive" in out


def test_truncated_archive_warns_but_ingests_what_it_read(
    settings: Settings, tmp_path: Path
) -> None:
    data = TXT_ARCHIVE.read_bytes()
    cut = tmp_path / "archive.txt.tar.gz"
    cut.write_bytes(data[: len(data) // 2])
    code, out = invoke(settings, "ingest", str(cut))
    assert code == 0, out
    assert "ended early" in " ".join(out.split())


def test_chunk_command_rebuilds_only_when_asked(settings: Settings) -> None:
    invoke(settings, "ingest", str(TXT_ARCHIVE), "--no-chunk")
    code, out = invoke(settings, "chunk")
    assert code == 0 and "Chunks written:" in out and "Chunks written: 0;" not in out
    code, out = invoke(settings, "chunk")
    assert code == 0 and "Chunks written: 0;" in out
    code, out = invoke(settings, "chunk", "--force")
    assert code == 0 and "Chunks written: 0;" not in out
