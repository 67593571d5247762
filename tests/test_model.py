"""The assistant as a real MLflow model: log, register, alias, load in a fresh process, serve."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from conftest import PREDICTION_COLUMNS
from gcn_rag.answer.assistant import Assistant
from gcn_rag.model import registry
from gcn_rag.search.index import content_hash
from gcn_rag.settings import Settings
from gcn_rag.tables import Catalog

CHAMPION = f"models:/{registry.MODEL_NAME}@champion"
QUESTIONS = [
    "What is the redshift of GRB 221009A?",
    "What is the Swift-BAT T90 duration of GRB 050401?",
    "What is the redshift of GRB 190231Z?",
    "What high-energy neutrino events were detected by IceCube?",
]


def test_registered_with_alias_lineage_and_model_info(
    fixture_workspace: Settings, champion: dict[str, Any]
) -> None:
    info = registry.resolve(fixture_workspace, "champion")
    assert info.version == champion["version"] and "champion" in info.aliases
    assert info.tags["corpus_count"] == "46" and info.tags["corpus_max_circular_id"] == "38717"
    assert info.tags["embedding_model_id"].startswith("all-MiniLM-L6-v2/onnx-int8@")
    assert "gcn_rag_version" in info.tags
    # what decides the answers, as `up` compares it (no build times, no paths)
    assert info.tags["index_content_hash"] == content_hash(fixture_workspace.index)
    assert {"gcn_rag_code_hash", "gcn_rag_config_hash"} <= set(info.tags)
    assert info.metrics == {"all_accuracy": 1.0}
    rows = dict(
        (r["key"], r["value"])
        for r in Catalog(fixture_workspace.warehouse)
        .sql("SELECT * FROM rag_model_info")
        .to_pylist()
    )
    assert rows["model_name"] == registry.MODEL_NAME and rows["model_version"] == info.version
    assert champion["logged"].artifact_bytes > 100_000


def test_fresh_process_gives_the_same_answers(
    fixture_assistant: Assistant, champion: dict[str, Any]
) -> None:
    code = (
        "import json, sys, mlflow, pandas as pd\n"
        f"m = mlflow.pyfunc.load_model({CHAMPION!r})\n"
        f"out = m.predict(pd.DataFrame({{'question': {QUESTIONS!r}}}))\n"
        "print(json.dumps(out.to_dict('records')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=champion["env"],
        timeout=300,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    for question, row in zip(QUESTIONS, rows, strict=True):
        expected = fixture_assistant.ask(question).to_dict()
        assert row["answer"] == expected["answer"]
        assert json.loads(row["sources"]) == expected["sources"]
        assert row["num_docs"] == expected["num_docs"]
        assert json.loads(row["citations"]) == expected["citations"]


def test_predict_shapes_params_and_bad_rows(champion: dict[str, Any]) -> None:
    import mlflow

    os.environ["MLFLOW_TRACKING_URI"] = champion["env"]["MLFLOW_TRACKING_URI"]
    model = mlflow.pyfunc.load_model(CHAMPION)
    frame = model.predict(pd.DataFrame({"question": ["What is the redshift of GRB 221009A?"]}))
    assert tuple(frame.columns) == PREDICTION_COLUMNS
    (value,) = json.loads(frame.iloc[0]["measurements"])  # a value answer names its value
    assert value["quantity"] == "redshift" and value["unit"] == "" and value["circular_id"] > 0
    assert model.predict(["What is a GRB?", "What is the redshift of GRB 221009A?"]).shape[0] == 2
    assert model.predict("What is a GRB?").shape[0] == 1
    assert model.predict({"question": "What is a GRB?"}).shape[0] == 1
    few = model.predict(
        ["What optical telescopes conducted follow-up observations?"], params={"k": 2}
    )
    assert len(json.loads(few.iloc[0]["citations"])) == 2
    scoped = model.predict(["What was observed?"], params={"event_filter": "IceCube%"})
    events = [c["event_id"] for c in json.loads(scoped.iloc[0]["citations"])]
    assert events and all(e.startswith("IceCube") for e in events)
    bad = model.predict(pd.DataFrame({"question": ["", "x" * 5000, "What is a GRB?"]}))
    assert bad["answer"][0].startswith("Error:") and bad["num_docs"][0] == 0
    assert bad["answer"][1].startswith("Error:") and bad["num_docs"][1] == 0
    assert bad["num_docs"][2] > 0
    assert json.loads(bad["measurements"][2]) == []  # not a value answer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_mlflow_models_serve_answers_the_labs_curl(
    champion: dict[str, Any], tmp_path: Path
) -> None:
    port = _free_port()
    bin_dir = Path(sys.executable).parent  # mlflow execs uvicorn from PATH
    env = {**champion["env"], "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [
            str(bin_dir / "mlflow"),
            "models",
            "serve",
            "-m",
            CHAMPION,
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            "1",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd="/",
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2).close()
                break
            except OSError:
                output = (tmp_path / "serve.log").read_text()[-2000:]
                assert server.poll() is None, output
                assert time.monotonic() < deadline, f"mlflow models serve did not come up: {output}"
                time.sleep(0.5)
        body = json.dumps(
            {"dataframe_split": {"columns": ["question"], "data": [["What is a GRB?"]]}}
        ).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = json.loads(response.read())
        (prediction,) = payload["predictions"]
        assert set(prediction) == set(PREDICTION_COLUMNS)
        assert prediction["num_docs"] > 0 and prediction["answer"]
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.mark.slow
def test_model_installs_in_a_new_virtualenv(champion: dict[str, Any], tmp_path: Path) -> None:
    """The logged model's own requirements, in an empty venv, are enough to load and answer."""
    import mlflow

    os.environ["MLFLOW_TRACKING_URI"] = champion["env"]["MLFLOW_TRACKING_URI"]
    local = Path(mlflow.artifacts.download_artifacts(CHAMPION, dst_path=str(tmp_path / "model")))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-compile",
            "-r",
            str(local / "requirements.txt"),
        ],
        check=True,
        timeout=1200,
    )
    code = (
        "import mlflow, sys\n"
        f"m = mlflow.pyfunc.load_model({str(local)!r})\n"
        "print(m.predict(['What is the redshift of GRB 221009A?']).iloc[0]['answer'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI")}
    done = subprocess.run(
        [str(python), "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (
        done.stdout.strip().splitlines()[-1].startswith("The redshift of GRB 221009A is z = 0.15")
    )
    # gcn_rag was not installed there: the model brought its own code
    probe = subprocess.run(
        [str(python), "-c", "import gcn_rag"], capture_output=True, env=env, cwd=str(tmp_path)
    )
    assert probe.returncode != 0


def test_model_cli(fixture_workspace: Settings, champion: dict[str, Any], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gcn_rag.cli import app

    questions = tmp_path / "q.jsonl"
    questions.write_text(
        json.dumps(
            {
                "id": "r",
                "category": "redshift",
                "question": "What is the redshift of GRB 221009A?",
                "answers": ["0.151"],
                "relevant_circulars": [32648, 32686],
            }
        )
        + "\n"
    )
    home = ["--home", str(fixture_workspace.home)]

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, [*args, *home])
        return result.exit_code, " ".join(result.output.split())

    code, out = run(
        "model", "log", "--questions", str(questions), "--register", "--alias", "challenger"
    )
    assert code == 0, out
    assert "Registered sandbox.nasa_gcn_models.gcn_rag_assistant version" in out
    version = registry.resolve(fixture_workspace, "challenger").version
    assert registry.resolve(fixture_workspace, "challenger").metrics["redshift_accuracy"] == 1.0
    code, out = run("model", "list")
    assert code == 0 and "challenger" in out and "champion" in out
    code, out = run("model", "show", "challenger")
    assert code == 0 and f"version {version}" in out and "corpus_hash" in out
    code, out = run("model", "alias", "set", "champion", "999")
    assert code == 1 and "has no version 999" in out
    code, out = run("model", "show", "nonesuch")
    assert code == 1 and "no version or alias 'nonesuch'" in out


def test_signature_defaults_and_openapi_come_from_one_schema() -> None:
    from gcn_rag.answer.assistant import PREDICTION_FIELDS
    from gcn_rag.model.packaging import signature
    from gcn_rag.model.schema import default_params
    from gcn_rag.serving.app import openapi_spec

    model = signature()
    params = {p.name: p.default for p in model.params.params}
    assert params == default_params() and len(params) == 6
    assert [c.name for c in model.outputs.inputs] == list(PREDICTION_FIELDS)
    spec = openapi_spec({"name": "e", "config": {"served_entities": [{"name": "m-1"}]}})
    assert set(spec["paths"]) == {
        "/serving-endpoints/e/invocations",
        "/serving-endpoints/e/served-models/m-1/invocations",
    }
    operation = spec["paths"]["/serving-endpoints/e/invocations"]["post"]
    request = operation["requestBody"]["content"]["application/json"]["schema"]
    assert request["properties"]["params"]["properties"]["k"] == {
        "type": "integer",
        "default": 5,
        "description": "Circulars to answer from (1-100).",
    }
    assert set(request["properties"]["params"]["properties"]) == set(params)
    response = operation["responses"]["200"]["content"]["application/json"]["schema"]
    columns = response["properties"]["predictions"]["items"]["properties"]
    assert list(columns) == list(PREDICTION_FIELDS)
    assert columns["num_docs"]["type"] == "integer"


def test_a_missing_requirement_says_how_to_get_it() -> None:
    from gcn_rag.errors import NotFoundError
    from gcn_rag.model.packaging import pinned_requirements, pins

    assert all("==" in pin for pin in pinned_requirements("local"))
    with pytest.raises(NotFoundError) as caught:
        pins(["gcn-rag-no-such-distribution"])
    message = caught.value.message
    assert "pip install gcn-rag-no-such-distribution" in message and "extra" not in message
