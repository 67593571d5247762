"""Feedback on answers: ``POST /serving-endpoints/{name}/feedback`` into ``rag_feedback``.

One real server (the console fixture: API + console, capture into a real Delta table) for
every case: the clients' ``feedback``, the join to the inference rows (``rated_answers`` and
``gcn-rag feedback``), feedback before the capture flush, bad input, unknown ids, other
endpoints, permissions, and the console's buttons.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import requests
from typer.testing import CliRunner

from consoles import ENDPOINT, QUESTION, Console, csrf, entity_name, post_form, signed_in
from gcn_rag.cli import app as cli_app
from gcn_rag.ops.feedback import rated_answers
from gcn_rag.serving.capture import InferenceCapture, RecentRequests
from gcn_rag.serving.client import NASAGCNRagClient, ServingClient
from gcn_rag.serving.feedback import TABLE, feedback_schema
from gcn_rag.tables import Catalog

PAYLOAD = "rag_inference_payload"


def _capture(console: Console) -> InferenceCapture:
    assert console.manager.capture is not None
    return console.manager.capture


def _catalog(console: Console) -> Catalog:
    return Catalog(console.home / "warehouse")


def _flushed(console: Console) -> None:
    deadline = time.monotonic() + 60
    while _capture(console).stats()["backlog_rows"] > 0:
        assert time.monotonic() < deadline, _capture(console).stats()
        time.sleep(0.05)


def _captured_ids(console: Console) -> set[str]:
    catalog = _catalog(console)
    if not catalog.exists(PAYLOAD):
        return set()
    return set(catalog.read(PAYLOAD, ["databricks_request_id"])[0].to_pylist())


def _feedback_rows(console: Console) -> list[dict[str, Any]]:
    catalog = _catalog(console)
    return catalog.read(TABLE).to_pylist() if catalog.exists(TABLE) else []


@contextlib.contextmanager
def _flush_held(console: Console) -> Iterator[None]:
    """No spooled row reaches Delta inside the block (the flusher waits for its lock)."""
    with _capture(console)._flush_lock:
        yield


def _lab_client(console: Console, level: str = "CAN_QUERY") -> NASAGCNRagClient:
    url = f"{console.url}/serving-endpoints/{ENDPOINT}/invocations"
    return NASAGCNRagClient(url, console.tokens[level])


def test_feedback_is_stored_and_joins_to_its_request_before_and_after_the_flush(
    console: Console,
) -> None:
    client = _lab_client(console)
    with _flush_held(console):
        answer = client.ask(QUESTION)
        request_id = client.last_request_id
        assert request_id is not None
        first = client.feedback(rating="negative", comment="The redshift is 0.151.")
        assert request_id not in _captured_ids(console)  # accepted from the spool alone
    _flushed(console)
    assert request_id in _captured_ids(console)
    api = ServingClient(console.url, console.tokens["CAN_QUERY"])
    second = api.feedback(ENDPOINT, request_id, rating="positive")
    capture = _capture(console)
    remembered, capture.recent = capture.recent, RecentRequests(limit=1)
    try:  # forgotten by the server: found in the inference table (the /api/2.0 path too)
        third = requests.post(
            f"{console.url}/api/2.0/serving-endpoints/{ENDPOINT}/feedback",
            json={"request_id": request_id, "comment": "Cites GCN 32648."},
            headers={"Authorization": f"Bearer {console.tokens['CAN_QUERY']}"},
            timeout=30,
        )
    finally:
        capture.recent = remembered
    assert third.status_code == 200, third.text
    ids = [first, second, third.json()["feedback_id"]]

    table = _catalog(console).read(TABLE)
    written = feedback_schema()  # Delta keeps timestamps in µs: read back as timestamp[us]
    assert table.schema.names == written.names
    for field in written:
        read = table.schema.field(field.name).type
        assert read == field.type or (read.tz == "UTC" and pa.types.is_timestamp(read))
    rows = {row["feedback_id"]: row for row in table.to_pylist()}
    assert [rows[i]["rating"] for i in ids] == ["negative", "positive", None]
    assert [rows[i]["comment"] for i in ids] == ["The redshift is 0.151.", None, "Cites GCN 32648."]
    for i in ids:
        assert rows[i]["databricks_request_id"] == request_id
        assert rows[i]["endpoint_name"] == ENDPOINT
        assert rows[i]["requester"] == "can_query-user"  # the token's name, never the token
        assert rows[i]["timestamp"].timestamp() * 1000 == rows[i]["timestamp_ms"]

    joined = [r for r in rated_answers(_catalog(console), ENDPOINT) if r.feedback_id in ids]
    assert {r.feedback_id for r in joined} == set(ids)
    for r in joined:
        assert (r.question, r.answer) == (QUESTION, answer["answer"])
        assert r.served_entity == entity_name(_served_version(console))
    printed = CliRunner().invoke(cli_app, ["feedback", ENDPOINT, "--json", "--since", "1h",
                                           "--home", str(console.home)])  # fmt: skip
    assert printed.exit_code == 0, printed.output
    lines = [json.loads(line) for line in printed.stdout.splitlines()]
    assert {line["feedback_id"] for line in lines} >= set(ids)
    assert all(line["question"] == QUESTION for line in lines if line["feedback_id"] in ids)


def _served_version(console: Console) -> str:
    entity = console.manager.get(ENDPOINT)["config"]["served_entities"][0]
    return str(entity["entity_version"])


def test_bad_feedback_is_a_400_naming_the_field_and_unknown_requests_are_404(
    console: Console,
) -> None:
    client = _lab_client(console)
    client.ask(QUESTION)
    request_id = str(client.last_request_id)
    url = f"{console.url}/serving-endpoints/{ENDPOINT}/feedback"
    auth = {"Authorization": f"Bearer {console.tokens['CAN_QUERY']}"}
    before = len(_feedback_rows(console))

    def post(body: Any, *, to: str = url, headers: dict[str, str] = auth) -> requests.Response:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return requests.post(to, data=data, headers=headers, timeout=30)

    bad: list[tuple[Any, str]] = [
        ({}, "request_id"),
        ({"request_id": request_id}, "rating"),
        ({"request_id": request_id, "comment": "   "}, "comment"),
        ({"request_id": request_id, "rating": "meh"}, "rating"),
        ({"request_id": request_id, "rating": 1}, "rating"),
        ({"request_id": request_id, "comment": "x" * 4001}, "comment"),
        ({"request_id": request_id, "comment": ["a"]}, "comment"),
        ({"request_id": "a' OR '1'='1", "rating": "positive"}, "request_id"),
        ({"request_id": 7, "rating": "positive"}, "request_id"),
        ({"request_id": request_id, "rating": "positive", "ratng": "x"}, "ratng"),
        ([request_id], "JSON object"),
        (b"{not json", "JSON"),
        (json.dumps({"request_id": request_id, "comment": "x" * 100_000}).encode(), "kB"),
    ]
    for body, field in bad:
        response = post(body)
        assert response.status_code == 400, (body, response.text)
        error = response.json()
        assert error["error_code"] == "INVALID_PARAMETER_VALUE"
        assert field in error["message"], (body, error)

    console.manager.create(
        {
            "name": "other",
            "config": {"served_entities": [{"entity_name": "x.y.z", "entity_version": "1"}]},
        }
    )
    try:
        missing = [
            post({"request_id": "0" * 32, "rating": "positive"}),  # no such request
            post(
                {"request_id": request_id, "rating": "positive"}, to=url.replace(ENDPOINT, "other")
            ),
            post(
                {"request_id": request_id, "rating": "positive"}, to=url.replace(ENDPOINT, "nope")
            ),
        ]
    finally:
        console.manager.delete("other")
    for response in missing:
        assert response.status_code == 404, response.text
        assert response.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert "request_id" in missing[0].json()["message"]

    viewer = {"Authorization": f"Bearer {console.tokens['CAN_VIEW']}"}
    assert post({"request_id": request_id, "rating": "positive"}, headers=viewer).status_code == 403
    assert post({"request_id": request_id, "rating": "positive"}, headers={}).status_code == 401
    assert len(_feedback_rows(console)) == before  # nothing refused was written


def test_the_query_page_takes_a_thumb_and_a_comment(console: Console) -> None:
    client = signed_in(console, "CAN_QUERY")
    page = post_form(
        client, console, f"/endpoints/{ENDPOINT}/query", {"csrf": _csrf(client, console),
                                                           "question": QUESTION},
    )  # fmt: skip
    assert page.status_code == 200 and 'id="feedback-form"' in page.text
    request_id = page.text.split('name="request_id" value="')[1].split('"')[0]
    form = {"csrf": csrf(page.text), "request_id": request_id, "comment": "Good & cited."}
    path = f"/endpoints/{ENDPOINT}/feedback"
    done = post_form(client, console, path, {**form, "rating": "positive"})
    assert done.status_code == 200 and 'id="feedback-done"' in done.text, done.text
    assert post_form(client, console, path, {**form, "csrf": "stale"}).status_code == 403
    viewer = signed_in(console, "CAN_VIEW")
    refused = post_form(viewer, console, path, {**form, "csrf": _csrf(viewer, console)})
    assert refused.status_code == 403
    mine = [r for r in _feedback_rows(console) if r["databricks_request_id"] == request_id]
    assert [(r["rating"], r["comment"], r["requester"]) for r in mine] == [
        ("positive", "Good & cited.", "can_query-user")
    ]


def _csrf(client: requests.Session, console: Console) -> str:
    page = client.get(f"{console.url}/console/endpoints/{ENDPOINT}/query", timeout=60)
    return csrf(page.text)
