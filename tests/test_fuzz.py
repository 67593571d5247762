"""Fuzzing the HTTP API with Hypothesis: random JSON shapes, types, sizes, encodings and nesting.

Seeded and bounded (``derandomize``, a fixed number of examples per route), so CI runs the
same inputs every time. The properties, for any client input: no 5xx, every error in the
Databricks shape ``{"error_code", "message"}``, and afterwards the server still answers a valid
request and capture still flushes.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gcn_rag.model.schema import PARAMS
from gcn_rag.serving.manager import EndpointManager
from test_hardening import assistant, home, manage, manager, server, tokens

__all__ = ["assistant", "home", "manage", "manager", "server", "tokens"]  # shared fixtures

# CI: the same 300 inputs a route every run. To explore further by hand:
# GCN_RAG_FUZZ_EXAMPLES=5000 pytest tests/test_fuzz.py --hypothesis-seed=<n>
EXAMPLES = int(os.environ.get("GCN_RAG_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize="GCN_RAG_FUZZ_EXAMPLES" not in os.environ,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

_text = st.text(max_size=40) | st.text(st.characters(categories=["Cs"]), min_size=1, max_size=2)
_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | _text
)
json_values = st.recursive(
    _leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=25,
)
_formats = st.sampled_from(["dataframe_split", "dataframe_records", "instances", "inputs"])
_params = st.dictionaries(
    st.sampled_from([p.name for p in PARAMS] + ["unknown"]), json_values, max_size=3
)
invocation_bodies = st.one_of(
    json_values,
    st.builds(lambda f, v: {f: v}, _formats, json_values),
    st.builds(
        lambda f, q, p: {f: q, "params": p},
        _formats,
        st.lists(_text, max_size=3),
        _params,
    ),
    st.builds(
        lambda cols, rows: {"dataframe_split": {"columns": cols, "data": rows}},
        json_values,
        json_values,
    ),
)


def _encoded(value: Any) -> bytes:
    """JSON as a careless client writes it: NaN as is, unpaired surrogates escaped."""
    return json.dumps(value, allow_nan=True).encode()


raw_bodies = st.one_of(
    invocation_bodies.map(_encoded),
    st.binary(max_size=200),
    st.integers(min_value=1, max_value=3000).map(lambda n: b"[" * n + b"]" * n),
)
management_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"name": json_values | _text, "config": json_values},
        optional={"ai_gateway": json_values},
    ),
    st.fixed_dictionaries(
        {
            "served_entities": st.lists(
                st.dictionaries(
                    st.sampled_from(
                        ["entity_name", "entity_version", "workload_size", "scale_to_zero_enabled"]
                    ),
                    json_values,
                ),
                max_size=3,
            ),
            "traffic_config": json_values,
        }
    ),
)


def _well_answered(response: requests.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    body = response.json()
    if response.status_code == 200:
        assert isinstance(body, dict)
    else:
        assert set(body) == {"error_code", "message"}, body
        assert isinstance(body["message"], str) and body["message"]


@FUZZ
@given(raw=raw_bodies)
def test_invocations_never_answer_5xx(
    manage: requests.Session, server: str, assistant: str, raw: bytes
) -> None:
    response = manage.post(
        f"{server}/serving-endpoints/{assistant}/invocations", data=raw, timeout=60
    )
    _well_answered(response)
    if response.status_code == 200:
        assert isinstance(response.json()["predictions"], list)


@FUZZ
@given(body=management_bodies)
def test_management_never_answers_5xx(manage: requests.Session, server: str, body: Any) -> None:
    data = _encoded(body)
    for method, path in (
        ("POST", "/api/2.0/serving-endpoints"),
        ("PUT", "/api/2.0/serving-endpoints/no-such-endpoint/config"),
        ("PUT", "/api/2.0/serving-endpoints/no-such-endpoint/ai-gateway"),
    ):
        _well_answered(manage.request(method, server + path, data=data, timeout=30))


def test_after_the_fuzz_it_still_answers_and_capture_still_flushes(
    manage: requests.Session,
    server: str,
    assistant: str,
    manager: EndpointManager,
    home: Path,
) -> None:
    """Runs after the fuzz tests above (file order): the server is still whole."""
    question = {"inputs": ["What is the redshift of GRB 221009A?"]}
    answered = manage.post(
        f"{server}/serving-endpoints/{assistant}/invocations", json=question, timeout=60
    )
    assert answered.status_code == 200
    assert answered.json()["predictions"][0]["answer"].startswith("The redshift of GRB 221009A")
    assert manager.capture is not None
    deadline = time.monotonic() + 30
    while manager.capture.stats()["backlog_rows"] > 0:
        assert time.monotonic() < deadline, manager.capture.stats()
        time.sleep(0.1)
    stats = manager.capture.stats()
    assert stats["write_errors"] == 0 and stats["quarantined_rows"] == 0, stats
    created = [e["name"] for e in manager.list()]
    assert created == [assistant]  # no random body made an endpoint


@pytest.mark.parametrize("route", ["/api/2.0/serving-endpoints", "/api/2.0/nothing/here"])
def test_reads_ignore_a_body(manage: requests.Session, server: str, route: str) -> None:
    _well_answered(manage.get(server + route, data=b"\xff" * 100, timeout=30))
