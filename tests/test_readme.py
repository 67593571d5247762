"""The README's shell and Python blocks, run as written against a live fixture workspace.

A new user pastes the README's blocks into a shell with ``GCN_RAG_HOME`` set, after `make
run` (``gcn-rag up``) printed the ``DATABRICKS_HOST``/``DATABRICKS_TOKEN`` exports. This test
does the same: it copies the indexed fixture workspace, runs a real ``gcn-rag up`` on a free
loopback port, then runs every ```bash and ```python block of README.md in README order (one
workspace, one working directory laid out like a checkout: ``.venv`` and ``../shared/bench``),
each shell block with ``bash -euo pipefail`` and each Python block with this interpreter. HOME
is a scratch directory holding ``~/Downloads/archive.json.tar.gz`` (the fixture archive), so
nothing may be written to ``~/.gcn-rag``.

A block that cannot run here (it serves until Ctrl-C, or fetches the whole corpus) has
``<!-- readme-test: skip — why -->`` on the line before it; no other block is skipped.
"""

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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import EVENTS_ARCHIVE, JSON_ARCHIVE
from gcn_rag.settings import Settings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
RUNNABLE = {"bash": "bash", "sh": "bash", "python": "python"}
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w+-]*)\s*$")
SKIP = re.compile(r"^\s*<!-- readme-test: skip — (?P<reason>.+?) -->\s*$")
DIRECTIVE = "readme-test:"
# What a block's output must show, where that is cheap to say: (text in the block, a pattern
# its stdout must match, lines anchored with ^ and $)
EXPECTED_OUTPUT = [
    ('gcn-rag ask "What is the redshift of GRB 221009A?"', r"GRB 221009A is (z = )?0\.15"),
    ("endpoints get my-endpoint --json", r'"ready": ?"READY"'),
    ("mlflow.pyfunc.load_model", r"GRB 221009A is (z = )?0\.15"),  # the champion, through MLflow
    ("WorkspaceClient()", r"^READY$"),  # the state's value, not EndpointStateReady.READY
    ("NASAGCNRagClient(url", r"GCN \d+"),  # an answer that cites circulars
    ("/metrics", r'^gcn_rag_requests_total\{.*status="200"\} [1-9]'),  # requests answered
]
# The question file `gcn-rag up` and `model log` evaluate on (../shared/bench/dev.jsonl)
DEV_QUESTIONS = [
    {
        "id": "redshift",
        "category": "redshift",
        "question": "What is the redshift of GRB 221009A?",
        "answers": ["0.151"],
        "relevant_circulars": [32648, 32686],
    },
    {
        "id": "none",
        "category": "unanswerable",
        "question": "What is the redshift of GRB 190231Z?",
        "answers": [],
        "relevant_circulars": [],
    },
]


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    skip: str | None  # the reason given, for a skipped block

    @property
    def name(self) -> str:
        return f"README.md:{self.line}-{self.lang}"


def readme_blocks(text: str) -> list[Block]:
    """Every fenced block with a language tag; a skip comment belongs to the block after it."""
    blocks: list[Block] = []
    lines = text.splitlines()
    number = 0
    while number < len(lines):
        opening = FENCE.match(lines[number])
        if opening is None:
            number += 1
            continue
        indent, lang = opening["indent"], opening["lang"]
        end = number + 1
        while not re.match(r"^\s*```\s*$", lines[end]):
            end += 1
        code = "\n".join(line.removeprefix(indent) for line in lines[number + 1 : end]) + "\n"
        previous = next((line for line in reversed(lines[:number]) if line.strip()), "")
        skip = SKIP.match(previous)
        if lang:
            blocks.append(Block(number + 1, lang, code, skip["reason"] if skip else None))
        number = end + 1
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))


def test_only_blocks_marked_with_a_reason_are_skipped() -> None:
    text = README.read_text(encoding="utf-8")
    languages = {block.lang for block in BLOCKS}
    assert languages <= {*RUNNABLE, "text"}, f"a block no test runs: {languages - {*RUNNABLE}}"
    runnable = [block for block in BLOCKS if block.lang in RUNNABLE]
    skipped = [block for block in runnable if block.skip is not None]
    assert all(len(block.skip or "") >= 10 for block in skipped), "say why a block is skipped"
    # every directive is a well-formed skip right before a block (none dangling or misspelt)
    directives = [n for n, line in enumerate(text.splitlines(), 1) if DIRECTIVE in line]
    marked = {n for n, line in enumerate(text.splitlines(), 1) if SKIP.match(line)}
    assert set(directives) == marked, "a readme-test comment that is not a skip"
    assert len(marked) == len(skipped), "a skip comment that is not right before a block"


def test_blocks_follow_the_active_workspace() -> None:
    """Skipped blocks are not run, so at least they may not hard-code the default workspace."""
    for block in BLOCKS:
        for match in re.finditer(r"\S*\.gcn-rag", block.code):
            assert "GCN_RAG_HOME:-" in match.group(), f"{block.name}: {match.group()}"


def test_skipped_blocks_still_parse() -> None:
    for block in BLOCKS:
        if block.skip is None or block.lang not in RUNNABLE:
            continue
        if RUNNABLE[block.lang] == "python":
            compile(block.code, block.name, "exec")
        else:
            subprocess.run(["bash", "-n"], input=block.code, text=True, check=True)


@dataclass
class Shell:
    """Where the blocks run: a checkout-like directory, the environment, a live server."""

    cwd: Path
    env: dict[str, str]
    home: Path  # HOME


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _workspace(home: Path, fixture_workspace: Settings) -> None:
    """The indexed fixture workspace, plus the events fixture (the README asks about them)."""
    from gcn_rag.corpus.ingest import ingest
    from gcn_rag.search.build import build_index
    from gcn_rag.search.embedding import Embedder
    from gcn_rag.search.index import DENSE_MAX_TOKENS
    from gcn_rag.tables import Catalog

    home.mkdir()
    for part in ("warehouse", "index"):
        shutil.copytree(fixture_workspace.home / part, home / part)
    (home / "cache").symlink_to(fixture_workspace.cache.resolve(), target_is_directory=True)
    settings = Settings.load(environ={}, home=home)
    ingest(settings, str(EVENTS_ARCHIVE))
    embedder = Embedder.from_settings(settings, max_tokens=DENSE_MAX_TOKENS)
    build_index(settings, Catalog(settings.warehouse), embedder)


def _layout(base: Path, fixture_workspace: Settings) -> Shell:
    """A workspace, a scratch HOME and a checkout-like directory."""
    workspace = base / "workspace"
    _workspace(workspace, fixture_workspace)
    home = base / "home"
    (home / "Downloads").mkdir(parents=True)
    shutil.copy(JSON_ARCHIVE, home / "Downloads" / "archive.json.tar.gz")
    bench = base / "shared" / "bench"
    bench.mkdir(parents=True)
    (bench / "dev.jsonl").write_text("".join(json.dumps(q) + "\n" for q in DEV_QUESTIONS))
    checkout = base / "gcn-rag"
    checkout.mkdir()
    venv = Path(sys.prefix)
    if (venv / "bin" / "activate").is_file():
        (checkout / ".venv").symlink_to(venv, target_is_directory=True)
    else:  # not run from a virtualenv: an activate script that puts this Python first
        (checkout / ".venv" / "bin").mkdir(parents=True)
        bin_dir = Path(sys.executable).parent
        (checkout / ".venv" / "bin" / "activate").write_text(f'PATH="{bin_dir}:$PATH"\n')
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GCN_RAG_", "DATABRICKS_", "MLFLOW_", "VIRTUAL_ENV"))
    }
    env |= {
        "HOME": str(home),
        "GCN_RAG_HOME": str(workspace),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        # this checkout's code, even where the venv's gcn-rag was installed from another one
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")])),
        "COLUMNS": "200",
    }
    return Shell(checkout, env, home)


def _wait_for(server: subprocess.Popen[str], lines: queue.Queue[str], marker: str) -> str:
    output: list[str] = []
    deadline = time.monotonic() + 600
    while not output or marker not in output[-1]:
        assert server.poll() is None, "".join(output)
        assert time.monotonic() < deadline, "".join(output)
        try:
            output.append(lines.get(timeout=1))
        except queue.Empty:
            continue
    return "".join(output)


@pytest.fixture(scope="module")
def shell(tmp_path_factory: pytest.TempPathFactory, fixture_workspace: Settings) -> Iterator[Shell]:
    """The README's premise: `gcn-rag up` serves the workspace and printed its exports."""
    shell = _layout(tmp_path_factory.mktemp("readme"), fixture_workspace)
    server = subprocess.Popen(
        ["gcn-rag", "up", "--port", str(_free_port())],
        cwd=shell.cwd,
        env=shell.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in server.stdout or []:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        said = _wait_for(server, lines, "Serving until Ctrl-C")
        exports = re.search(r"^export (DATABRICKS_HOST=\S+) (DATABRICKS_TOKEN=\S+)$", said, re.M)
        assert exports is not None, said
        shell.env |= dict(pair.split("=", 1) for pair in exports.groups())
        yield shell
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=60) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()


@pytest.mark.parametrize(
    "block", [block for block in BLOCKS if block.lang in RUNNABLE], ids=lambda block: block.name
)
def test_readme_block_runs(block: Block, shell: Shell) -> None:
    if block.skip is not None:
        pytest.skip(block.skip)
    kind = RUNNABLE[block.lang]
    script = shell.cwd / f"block-{block.line}.{'py' if kind == 'python' else 'sh'}"
    script.write_text(block.code, encoding="utf-8")
    interpreter = [sys.executable] if kind == "python" else ["bash", "-euo", "pipefail"]
    done = subprocess.run(
        [*interpreter, str(script)],
        cwd=shell.cwd,
        env=shell.env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    said = f"{block.name} exited {done.returncode}:\n{block.code}\n{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, said
    assert "Traceback" not in done.stderr, said
    for needle, expected in EXPECTED_OUTPUT:
        if needle in block.code:
            assert re.search(expected, done.stdout, re.MULTILINE), said


def test_nothing_was_written_to_the_default_workspace(shell: Shell) -> None:
    """With GCN_RAG_HOME set, no block (nor `gcn-rag up`) touches ~/.gcn-rag."""
    assert not (shell.home / ".gcn-rag").exists()
    assert (Path(shell.env["GCN_RAG_HOME"]) / "mlflow.db").is_file()
