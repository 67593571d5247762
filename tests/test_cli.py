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
    for command in ("ingest", "sql", "chunk", "tables", "up"):
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


def test_ask_prints_answer_and_json(fixture_workspace: Settings) -> None:
    code, out = invoke(fixture_workspace, "ask", "What is the redshift of GRB 221009A?")
    assert code == 0, out
    assert out.startswith("The redshift of GRB 221009A is z = 0.15")
    assert "GCN 32648" in out or "GCN 32686" in out
    code, out = invoke(fixture_workspace, "ask", "What is the redshift of GRB 221009A?", "--json")
    answer = json.loads(out)
    assert answer["sources"] == ["GRB 221009A"] and answer["num_docs"] > 0
    assert answer["citations"][0]["url"].startswith("https://gcn.nasa.gov/circulars/")
    code, out = invoke(fixture_workspace, "ask", "   ")
    assert code == 1 and out.startswith("Error: The question is empty")
    code, out = invoke(fixture_workspace, "ask", "x", "--mode", "psychic")
    assert code == 1 and "Unknown mode" in out


def test_predict_and_eval(fixture_workspace: Settings, tmp_path: Path) -> None:
    questions = tmp_path / "q.jsonl"
    rows = [
        {
            "id": "r",
            "category": "redshift",
            "question": "What is the redshift of GRB 221009A?",
            "answers": ["0.151"],
            "relevant_circulars": [32648, 32686],
        },
        {
            "id": "t",
            "category": "t90",
            "question": "What is the Swift-BAT T90 duration of GRB 050401?",
            "answers": ["33.3"],
            "relevant_circulars": [3173],
        },
        {
            "id": "u",
            "category": "unanswerable",
            "question": "What is the redshift of GRB 190231Z?",
            "answers": [],
            "relevant_circulars": [],
        },
    ]
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")
    out_path = tmp_path / "p.jsonl"
    code, out = invoke(
        fixture_workspace, "predict", "--input", str(questions), "--output", str(out_path)
    )
    assert code == 1 and "Wrote 4 predictions" in out and "(1 with errors)" in out
    assert "1 of 4 rows could not be answered" in " ".join(out.split())
    predictions = [json.loads(line) for line in out_path.read_text().splitlines()]
    assert [p["id"] for p in predictions] == ["r", "t", "u", "line-4"]
    assert predictions[0]["sources"] == ["GRB 221009A"]
    assert predictions[3]["answer"].startswith("Error:")
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out = invoke(
        fixture_workspace, "eval", "--questions", str(questions), "--modes", "hybrid,lexical"
    )
    assert code == 0, out
    assert "q.jsonl - hybrid" in out and "q.jsonl - lexical" in out
    history = invoke(
        fixture_workspace,
        "sql",
        "SELECT category, accuracy FROM "
        "sandbox.nasa_gcn_dev.rag_evaluation_history WHERE category = 'all'",
        "--json",
    )[1]
    accuracies = [json.loads(line)["accuracy"] for line in history.splitlines()]
    assert accuracies == [1.0, 1.0]


def test_home_is_read_once_from_the_option_or_the_environment(
    settings: Settings, tmp_path: Path
) -> None:
    """``--home`` (or GCN_RAG_HOME) becomes the command's Settings; a broken config.toml is
    a one-line error with exit code 1, whichever command reads it."""
    invoke(settings, "ingest", str(TXT_ARCHIVE), "--no-chunk")
    by_env = runner.invoke(app, ["tables"], env={"GCN_RAG_HOME": str(settings.home)})
    assert by_env.exit_code == 0 and "sandbox.nasa_gcn_dev.gcn_circulars" in by_env.output
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.toml").write_text("catalog = [unclosed\n")
    for command in (["tables"], ["sql", "SELECT 1"], ["model", "list"]):
        result = runner.invoke(app, [*command, "--home", str(broken)])
        assert result.exit_code == 1, (command, result.output)
        assert result.output.startswith("Error: ") and "not valid TOML" in result.output
        assert "Traceback" not in result.output


def test_a_folder_is_no_archive(settings: Settings, tmp_path: Path) -> None:
    code, out = invoke(settings, "ingest", str(tmp_path))
    assert code == 1 and out.startswith("Error: ") and "is a folder, not an archive" in out
    assert "Traceback" not in out


def test_one_broken_table_leaves_the_others_readable(settings: Settings) -> None:
    invoke(settings, "ingest", str(TXT_ARCHIVE), "--no-chunk")
    log = settings.warehouse / "sandbox" / "nasa_gcn_dev" / "rag_config" / "_delta_log"
    for commit in log.glob("*.json"):
        commit.write_text("this is not a delta log\n")
    wide = runner.invoke(app, ["tables", "--home", str(settings.home)], env={"COLUMNS": "300"})
    assert wide.exit_code == 0, wide.output
    flat = " ".join(wide.output.split())
    assert "broken" in flat and "rag_config cannot be read" in flat
    assert "sandbox.nasa_gcn_dev.gcn_circulars" in flat
    code, out = invoke(settings, "sql", "SELECT count(*) AS n FROM gcn_circulars", "--json")
    assert code == 0 and json.loads(out) == {"n": FIXTURE_COUNT}
    code, out = invoke(settings, "sql", "SELECT * FROM rag_config")
    assert code == 1 and "rag_config cannot be read" in " ".join(out.split())


def test_sql_cannot_touch_files_unless_allowed(settings: Settings, tmp_path: Path) -> None:
    invoke(settings, "ingest", str(TXT_ARCHIVE), "--no-chunk")
    target = tmp_path / "out.csv"
    code, out = invoke(settings, "sql", f"COPY (SELECT 1 AS one) TO '{target}'")
    assert code == 1 and "file system operations are disabled" in out and not target.exists()
    code, out = invoke(settings, "sql", "SELECT * FROM read_csv('/etc/hostname')")
    assert code == 1
    code, out = invoke(settings, "sql", f"COPY (SELECT 1 AS one) TO '{target}'", "--allow-files")
    assert target.exists()
