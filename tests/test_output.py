"""What the commands print: whole TSV tables when piped, rich tables on a terminal, strict
JSON, help without type tags, and a non-zero exit when the filters exclude every circular."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import typer.main
from rich.console import Console
from typer.testing import CliRunner

from conftest import TXT_ARCHIVE
from gcn_rag.cli import app
from gcn_rag.cli.common import is_piped, json_text, print_rows
from gcn_rag.search.retrieval import Filters
from gcn_rag.settings import Settings

runner = CliRunner()
BOX = set("│┃─━┏┓┗┛┡┩╇╈┼╭╮╰╯")


def strict_json(text: str) -> Any:
    """``json.loads`` that refuses NaN and Infinity, as every strict parser does."""

    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def cli(settings: Settings, *args: str) -> Any:
    return runner.invoke(app, [*args, "--home", str(settings.home)])


@pytest.fixture
def ingested(settings: Settings) -> Settings:
    assert cli(settings, "ingest", str(TXT_ARCHIVE), "--no-chunk").exit_code == 0
    return settings


def test_piped_sql_prints_every_column_and_value_whole(ingested: Settings) -> None:
    query = "SELECT * FROM sandbox.nasa_gcn_dev.gcn_circulars WHERE circular_id = 32648"
    (row,) = map(json.loads, cli(ingested, "sql", query, "--json").stdout.splitlines())
    # a real pipe, as `gcn-rag sql ... | cat` has it
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "COLUMNS": "80"}
    env.pop("FORCE_COLOR", None)
    piped = subprocess.run(
        [sys.executable, "-m", "gcn_rag", "sql", query, "--home", str(ingested.home)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    header, line = piped.stdout.rstrip("\n").split("\n")
    assert header.split("\t") == list(row)  # every column name, none cut to "c…"
    cells = line.split("\t")
    assert cells[list(row).index("subject")] == row["subject"]
    whole = row["body"].translate(str.maketrans("\t\n\r", "   "))
    assert cells[list(row).index("body")] == whole and len(whole) > 500
    assert "…" not in piped.stdout and not BOX & set(piped.stdout) and "\x1b[" not in piped.stdout
    assert "1 row(s)" in piped.stderr  # words for people go to stderr


def test_piped_tables_are_tsv_and_a_terminal_keeps_rich_tables(ingested: Settings) -> None:
    tables = cli(ingested, "tables")
    assert tables.exit_code == 0, tables.output
    lines = [line.split("\t") for line in tables.stdout.splitlines()]
    assert lines[0] == ["table", "rows", "version"]
    assert ["sandbox.nasa_gcn_dev.gcn_circulars", "46", "0"] in lines
    assert not BOX & set(tables.stdout)

    rows = [{"run_id": "a" * 32, "metric": math.pi, "note": "[red]x[/] tab\there"}]
    terminal = Console(file=io.StringIO(), force_terminal=True, width=40)
    assert not is_piped(terminal)
    print_rows(terminal, "Title", rows)
    drawn = terminal.file.getvalue()  # type: ignore[attr-defined]
    assert BOX & set(drawn) and "…" in drawn  # cropped to the terminal: that is its job
    pipe = Console(file=io.StringIO(), width=40)
    assert is_piped(pipe)
    print_rows(pipe, "Title", rows)
    assert pipe.file.getvalue().splitlines() == [  # type: ignore[attr-defined]
        "run_id\tmetric\tnote",
        f"{'a' * 32}\t3.142\t[red]x[/] tab here",  # data, not markup; one line per row
    ]


def test_piped_model_list_shows_whole_run_ids(
    fixture_workspace: Settings, champion: dict[str, Any]
) -> None:
    result = cli(fixture_workspace, "model", "list")
    assert result.exit_code == 0, result.output
    header, *lines = [line.split("\t") for line in result.stdout.splitlines()]
    run_id = champion["logged"].run_id
    assert header[:5] == ["version", "aliases", "created", "status", "run_id"]
    assert any(line[4] == run_id for line in lines), result.stdout
    shown = cli(fixture_workspace, "model", "show", str(champion["version"]))
    assert ["run_id", run_id] in [line.split("\t") for line in shown.stdout.splitlines()]


def test_json_is_strict_null_for_missing_numbers() -> None:
    value = {
        "p95": math.nan,
        "max": math.inf,
        "levels": [1.5, -math.inf],
        "at": datetime(2024, 1, 1),
    }
    assert strict_json(json_text(value)) == {
        "p95": None,
        "max": None,
        "levels": [1.5, None],
        "at": "2024-01-01 00:00:00",
    }
    with pytest.raises(ValueError, match="NaN"):
        strict_json(json.dumps(value, default=str))  # what the commands printed before


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command path under ``command``: (), ("sql",), ("endpoints", "list"), ..."""
    yield path
    ctx = typer.Context(command)
    for name in getattr(command, "commands", {}):
        sub = command.get_command(ctx, name)
        if sub is not None:
            yield from _commands(sub, (*path, name))


def test_help_shows_no_type_tags() -> None:
    every = list(_commands(typer.main.get_command(app)))
    assert ("endpoints", "test") in every and ("model", "list") in every
    for path in every:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (path, result.output)
        for tag in ("<bool>", "<str>", "<int>", "<float>", "<path>", "<datetime>"):
            assert tag not in result.output, (path, tag, result.output)
    loadtest = runner.invoke(app, ["loadtest", "--help"], env={"COLUMNS": "200"}).output
    assert "--requests   " in loadtest and "INTEGER" in loadtest and "DIR" in loadtest


def test_ask_says_when_the_filters_exclude_every_circular(fixture_workspace: Settings) -> None:
    question = "What is the redshift of GRB 221009A?"
    result = cli(fixture_workspace, "ask", question, "--since", "2030-01-01")
    assert result.exit_code == 1, result.output
    message = " ".join(result.output.split())
    assert message.startswith(
        "Error: No circular about GRB 221009A matches the filters (since 2030-01-01)"
    )
    assert "do not state" not in message
    result = cli(fixture_workspace, "ask", "What was observed?", "--event", "GRB 999999A")
    assert result.exit_code == 1
    assert "No circular matches the filters (event GRB 999999A)" in " ".join(result.output.split())
    assert cli(fixture_workspace, "ask", question, "--since", "2020-01-01").exit_code == 0


def test_the_pyfunc_row_says_when_the_filters_exclude_every_circular(
    fixture_assistant: Any,
) -> None:
    late = Filters(since=datetime(2030, 1, 1, tzinfo=UTC))
    record = fixture_assistant.predict_row(
        {"id": 7, "question": "What is the redshift of GRB 221009A?"}, filters=late
    )
    assert record["id"] == 7 and record["num_docs"] == 0 and record["citations"] == []
    assert record["answer"] == f"Error: {record['error']}"
    assert record["error"].startswith("No circular about GRB 221009A matches the filters")
    kept = fixture_assistant.predict_row({"question": "What is the redshift of GRB 221009A?"})
    assert "error" not in kept and kept["num_docs"] > 0


def test_predict_exits_1_on_row_errors_unless_allowed(
    fixture_workspace: Settings, tmp_path: Path
) -> None:
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"id": "a", "question": "What is a GRB?"}\nnot json\n')
    out = tmp_path / "p.jsonl"
    args = ("predict", "--input", str(questions), "--output", str(out))
    strict = cli(fixture_workspace, *args)
    assert strict.exit_code == 1, strict.output
    assert "1 of 2 rows could not be answered" in " ".join(strict.output.split())
    assert len(out.read_text().splitlines()) == 2  # every row is still written
    out.unlink()
    allowed = cli(fixture_workspace, *args, "--allow-errors")
    assert allowed.exit_code == 0 and "(1 with errors)" in allowed.output
    assert len(out.read_text().splitlines()) == 2
