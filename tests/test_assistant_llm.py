"""The assistant with an LLM generator: grounded or replaced, citations from retrieval, offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from chat import ChatServer
from gcn_rag.answer.assistant import ABSTAIN, Assistant
from gcn_rag.answer.extraction import first_value
from gcn_rag.answer.generators.openai import OpenAIGenerator
from gcn_rag.model import packaging, registry
from gcn_rag.settings import Settings
from gcn_rag.tables import Catalog

VALUE_QUESTION = "What is the redshift of GRB 221009A?"


@pytest.fixture
def scripted() -> Iterator[ChatServer]:
    llm = ChatServer()
    yield llm
    llm.close()


@pytest.fixture(scope="module")
def plain(fixture_workspace: Settings) -> Assistant:
    return Assistant.load(fixture_workspace, generator="extractive")


def _with(plain: Assistant, scripted: ChatServer) -> Assistant:
    generator = OpenAIGenerator(scripted.url, "scripted", max_retries=0, backoff_s=0.01)
    return Assistant(plain.index, plain.embedder, generator)


def test_a_grounded_answer_that_leads_with_the_value_is_kept(
    plain: Assistant, scripted: ChatServer
) -> None:
    extractive = plain.ask(VALUE_QUESTION)
    value = first_value(extractive.answer)
    assert value is not None
    scripted.replies.append((200, f"GRB 221009A has a redshift of z = {value:g}."))
    answer = _with(plain, scripted).ask(VALUE_QUESTION)
    assert answer.generator_fallback == ""
    assert answer.answer == f"GRB 221009A has a redshift of z = {value:g}."
    assert answer.generator == "openai:scripted" and answer.generator_fallback == ""
    assert answer.citations == extractive.citations  # from retrieval, never from the LLM
    assert answer.sources == extractive.sources
    user = scripted.requests[0]["messages"][-1]["content"]
    assert "GRB 221009A" in user and VALUE_QUESTION in user
    assert scripted.requests[0]["temperature"] == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("The redshift of GRB 221009A is z = 0.151 with 7.77 Mpc.", "7.77"),  # invented number
        ("The redshift of GRB 221009A is z = 0.151, like GRB 990123.", "GRB 990123"),
        ("GRB 221009A peaked at 1.0 MeV; its redshift is z = 0.151.", "does not lead with"),
        ("", "empty answer"),
    ],
)
def test_an_ungrounded_answer_falls_back_to_the_extractive_one(
    plain: Assistant, scripted: ChatServer, reply: str, reason: str
) -> None:
    extractive = plain.ask(VALUE_QUESTION)
    scripted.replies.append((200, reply))
    answer = _with(plain, scripted).ask(VALUE_QUESTION)
    assert answer.answer == extractive.answer
    assert reason in answer.generator_fallback
    assert answer.generated == reply


def test_a_failing_endpoint_falls_back_and_abstentions_skip_the_llm(
    plain: Assistant, scripted: ChatServer
) -> None:
    scripted.replies.append((500, "overloaded"))
    answer = _with(plain, scripted).ask(VALUE_QUESTION)
    assert answer.answer == plain.ask(VALUE_QUESTION).answer
    assert answer.generator_fallback.startswith("generator failed:")
    unknown = _with(plain, scripted).ask("What is the redshift of GRB 990101Z?")
    assert unknown.answer.startswith(ABSTAIN) and unknown.generator == "extractive"
    assert len(scripted.requests) == 1  # the abstention never reached the LLM


@pytest.mark.slow
def test_the_pyfunc_with_a_local_llm_answers_offline_in_a_fresh_process(
    fixture_workspace: Settings, tmp_path: Any
) -> None:
    """Logged with generator=local, the model ships the GGUF and runs llama.cpp itself."""
    logged = packaging.log_assistant(
        fixture_workspace,
        Catalog(fixture_workspace.warehouse),
        fixture_workspace.home / "index",
        generator={"kind": "local", "n_threads": 1, "max_tokens": 32, "max_context_tokens": 300},
    )
    probe = (
        "import json, mlflow\n"
        f"m = mlflow.pyfunc.load_model({logged.model_uri!r})\n"
        "out = m.predict(['What is the redshift of GRB 221009A?', 'What is a GRB?'])\n"
        "print(json.dumps(out.to_dict(orient='records')))\n"
    )
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": registry.tracking_uri(fixture_workspace),
        # offline: no proxy to reach anything, no hub
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "127.0.0.1,localhost",
        "HF_HUB_OFFLINE": "1",
    }
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads(out.stdout.splitlines()[-1])
    assert len(rows) == 2 and all(r["answer"] for r in rows)
    assert all("generator_fallback" in r for r in rows)
    assert first_value(rows[0]["answer"]) == pytest.approx(0.151, abs=0.002)  # checked
