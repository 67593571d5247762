"""`gcn-rag up`, the README's main command, as a real process: deploy, answer, serve, stop."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import TXT_ARCHIVE
from gcn_rag.model import registry
from gcn_rag.model.example import example_question
from gcn_rag.settings import Settings
from gcn_rag.tables import Catalog

pytestmark = pytest.mark.slow


@pytest.fixture
def workspace(fixture_workspace: Settings, tmp_path: Path) -> Settings:
    """A copy of the indexed fixture workspace with no model registered yet."""
    home = tmp_path / "workspace"
    home.mkdir()
    for part in ("warehouse", "index"):
        shutil.copytree(fixture_workspace.home / part, home / part)
    (home / "cache").symlink_to(fixture_workspace.cache.resolve(), target_is_directory=True)
    return Settings.load(environ={}, home=home)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _gcn_rag(*args: str, home: Path) -> list[str]:
    return [sys.executable, "-m", "gcn_rag", *args, "--home", str(home)]


def test_up_deploys_once_then_serves_until_interrupted(workspace: Settings) -> None:
    env = {**os.environ, "COLUMNS": "200"}
    port = str(_free_port())
    first = subprocess.run(
        _gcn_rag("up", "--check", "--port", port, home=workspace.home),
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Alias champion -> version 1." in first.stdout
    assert "creating nasa-gcn-rag-assistant (version 1)" in first.stdout
    asked = example_question(Catalog.from_settings(workspace))  # the workspace's own event
    assert asked.startswith("What is the redshift of ")
    event = asked.removeprefix("What is the redshift of ").rstrip("?")
    assert re.search(
        rf"Q: {re.escape(asked)}\nA: The redshift of {re.escape(event)} is z = \d", first.stdout
    )
    assert "Checked; stopping." in first.stdout
    catalog = Catalog(workspace.warehouse)
    rows = catalog.sql("SELECT key, value FROM rag_endpoint_info").to_pylist()
    info = {row["key"]: row["value"] for row in rows}
    assert info["endpoint_name"] == "nasa-gcn-rag-assistant" and info["model_version"] == "1"
    assert info["inference_table"] == "sandbox.nasa_gcn_dev.rag_inference_payload"
    captured = catalog.sql("SELECT status_code, request FROM rag_inference_payload").to_pylist()
    assert [row["status_code"] for row in captured] == [200]  # the sample question, flushed

    # Second run: nothing to redo; serves until Ctrl-C. The printed curl works as printed.
    server = subprocess.Popen(
        _gcn_rag("up", "--port", port, home=workspace.home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in server.stdout or []:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        output: list[str] = []
        deadline = time.monotonic() + 300
        while not output or "Serving until Ctrl-C" not in output[-1]:
            assert server.poll() is None, "".join(output)
            assert time.monotonic() < deadline, "".join(output)
            try:
                output.append(lines.get(timeout=1))
            except queue.Empty:
                continue
        text = "".join(output)
        assert "champion is version 1, up to date" in text
        assert "nasa-gcn-rag-assistant already serves version 1" in text
        # the last lines, where a person looks: the console and its one-time sign-in link
        *_, console, signin, serving = text.rstrip("\n").splitlines()
        assert console == f"Console: http://127.0.0.1:{port}/console/", text
        assert serving == "Serving until Ctrl-C.", text
        link = re.fullmatch(
            r"Sign in once \(one use, 10 minutes\): (\S+/console/signin\?code=\S+)", signin
        )
        assert link is not None, text
        browser = requests.Session()
        signed = browser.get(link.group(1), allow_redirects=False, timeout=30)
        assert signed.status_code == 303 and "HttpOnly" in signed.headers["set-cookie"]
        page = browser.get(f"http://127.0.0.1:{port}/console/endpoints", timeout=30)
        assert "gcn-rag up" in page.text and 'data-state="READY"' in page.text
        assert requests.get(link.group(1), timeout=30).status_code == 401  # once only
        curl = text[text.index("curl -X POST") :].split("\n\nConsole: ")[0]
        answered = subprocess.run(
            ["bash", "-c", curl], capture_output=True, text=True, timeout=60, check=True
        )
        (prediction,) = json.loads(answered.stdout)["predictions"]
        assert prediction["num_docs"] > 0
        # `gcn-rag endpoints` finds the token `up` saved in the workspace
        listed = subprocess.run(
            _gcn_rag("endpoints", "list", "--url", f"http://127.0.0.1:{port}", home=workspace.home),
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert listed.returncode == 0, listed.stderr
        assert "nasa-gcn-rag-assistant" in listed.stdout and "READY" in listed.stdout
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()
    assert [v.version for v in registry.versions(workspace)] == ["1"]
    assert (workspace.home / "cli-token").stat().st_mode & 0o077 == 0


def test_up_finds_the_corpus_under_a_non_default_catalog(settings: Settings) -> None:
    """Regression: `up` looked for sandbox.nasa_gcn_dev.gcn_circulars whatever the settings,
    so a workspace with another catalog was ingested again at every start."""
    from rich.console import Console

    from gcn_rag.cli.up import _prepare_corpus_and_index
    from gcn_rag.corpus.ingest import CIRCULARS, ingest

    lab = Settings.load(environ={}, home=settings.home, catalog="lab", schema="gcn")
    ingest(lab, str(TXT_ARCHIVE))
    catalog = Catalog.from_settings(lab)
    version = catalog.version(CIRCULARS)
    console = Console(record=True, width=200)
    _prepare_corpus_and_index(lab, console, offline=True)
    said = console.export_text()
    assert "Corpus: present" in said and "Index: building" in said
    assert catalog.version(CIRCULARS) == version  # not ingested again
    assert not Catalog(lab.warehouse).exists("sandbox.nasa_gcn_dev.gcn_circulars")


def test_up_is_the_one_main_command() -> None:
    """`run` (a full re-ingest over the workspace, also called "the main job") is gone; `up`
    is the main job and what `make run` runs."""
    from typer.testing import CliRunner

    from gcn_rag.cli import app

    runner = CliRunner()
    assert "No such command 'run'" in runner.invoke(app, ["run", "--help"]).output
    assert "The main job" in runner.invoke(app, ["up", "--help"]).output
    makefile = (Path(__file__).parent.parent / "Makefile").read_text()
    assert "$(BIN)/gcn-rag up $(ARGS)" in makefile.split("\nrun:")[1].split("\n\n")[0]
