"""The query path's parts: path matching, the worker pool, input frames, output rows."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
import time
from typing import Any

import numpy as np
import pandas as pd
import pytest

from gcn_rag.errors import BadInputError
from gcn_rag.serving.invocations import Workers, invocation_target
from gcn_rag.serving.protocol import (
    Inputs,
    parse_invocation,
    query_body,
    records,
    request_question,
    response_answer,
)


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("/serving-endpoints/nasa-gcn-rag-assistant/invocations", ("nasa-gcn-rag-assistant", None)),
        ("/serving-endpoints/e/served-models/e-2/invocations", ("e", "e-2")),
        ("/serving-endpoints//invocations", None),
        ("/serving-endpoints/e/served-models//invocations", None),
        ("/serving-endpoints/e/invocations/", None),
        ("/serving-endpoints/e", None),
        ("/api/2.0/serving-endpoints/e/invocations", None),
        ("/invocations", None),
    ],
)
def test_invocation_paths(path: str, target: tuple[str, str | None] | None) -> None:
    assert invocation_target(path) == target


def test_workers_run_calls_in_threads_and_reuse_them() -> None:
    workers = Workers()

    async def main() -> list[str]:
        names = []
        for _ in range(5):
            names.append(await workers.run(lambda: threading.current_thread().name))
        return names

    names = asyncio.run(main())
    assert names == ["gcn-rag-invoke"] * 5
    assert workers._threads == 1  # one call at a time: one thread, reused


def test_workers_pass_errors_back_with_their_type() -> None:
    def fail() -> None:
        raise KeyError("missing")

    async def main() -> None:
        await Workers().run(fail)

    with pytest.raises(KeyError, match="missing"):
        asyncio.run(main())


def test_workers_run_calls_at_the_same_time() -> None:
    """Six calls that can only finish together (a barrier) finish: six threads ran at once."""
    barrier = threading.Barrier(6, timeout=10)
    workers = Workers()

    async def main() -> list[int]:
        return list(await asyncio.gather(*(workers.run(barrier.wait) for _ in range(6))))

    assert sorted(asyncio.run(main())) == list(range(6))
    assert workers._threads == 6


def test_an_abandoned_call_finishes_quietly_and_its_thread_is_reused() -> None:
    workers = Workers()
    finished = threading.Event()

    def slow() -> str:
        time.sleep(0.3)
        finished.set()
        return "late"

    async def main() -> str:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await workers.run(slow)
        await asyncio.sleep(0.5)  # the late result is delivered to a cancelled future
        result: str = await workers.run(lambda: "next")
        return result

    assert asyncio.run(main()) == "next"
    assert finished.is_set()
    assert workers._threads == 1


def test_idle_workers_leave() -> None:
    workers = Workers(idle_s=0.05)

    async def main() -> None:
        await asyncio.gather(*(workers.run(time.sleep, 0.05) for _ in range(3)))

    asyncio.run(main())
    assert workers._threads == 3
    deadline = time.monotonic() + 10
    while workers._threads and time.monotonic() < deadline:
        time.sleep(0.02)
    assert workers._threads == 0
    assert asyncio.run(_answer(workers)) == 42  # and new ones start when work comes


async def _answer(workers: Workers) -> int:
    result: int = await workers.run(lambda: 42)
    return result


@pytest.mark.parametrize(
    "body",
    [
        {"dataframe_split": {"columns": ["question"], "data": [["a?"], ["b?"]]}},
        {"dataframe_split": {"index": [0, 1], "columns": ["question"], "data": [["a?"], ["b?"]]}},
        {"dataframe_records": [{"question": "a?"}, {"question": "b?"}]},
        {"instances": ["a?", "b?"]},
        {"inputs": ["a?", "b?"]},
        {"inputs": {"question": ["a?", "b?"]}},
        {"instances": [{"question": "a?"}, {"question": "b?"}]},
    ],
)
def test_every_input_format_makes_the_same_frame(body: dict[str, object]) -> None:
    inputs, params = parse_invocation(body)
    frame = inputs.frame()
    assert params is None
    assert list(frame.columns) == ["question"]
    assert frame["question"].tolist() == ["a?", "b?"]
    assert list(frame.index) == [0, 1]


def test_the_text_frame_matches_what_pandas_builds() -> None:
    lean = Inputs("dataframe_split", {"columns": ["question"], "data": [["a?"], ["b?"]]}).frame()
    plain = pd.DataFrame({"question": ["a?", "b?"]}, dtype=object)
    pd.testing.assert_frame_equal(lean, plain, check_column_type=False)
    assert lean["question"].dtype == object
    lean.loc[0, "question"] = "changed"  # frames share no state between requests
    again = Inputs("dataframe_split", {"columns": ["question"], "data": [["a?"]]}).frame()
    assert again["question"].tolist() == ["a?"]


def test_non_text_rows_take_the_general_path() -> None:
    frame = Inputs("dataframe_split", {"columns": ["question"], "data": [[1], [None]]}).frame()
    assert frame["question"].tolist()[0] == 1
    two = Inputs("dataframe_split", {"columns": ["question", "k"], "data": [["a?", 3]]}).frame()
    assert two.to_dict("records") == [{"question": "a?", "k": 3}]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ([1, 2], "JSON object"),
        ({"inputs": ["a"], "instances": ["b"]}, "exactly one"),
        ({"inputs": ["a"], "params": [1]}, "params must be"),
        ({"dataframe_split": ["a"]}, "dataframe_split is malformed"),
        ({"dataframe_records": "a"}, "dataframe_records is malformed"),
    ],
)
def test_bad_shapes_are_400_before_any_work(body: object, fragment: str) -> None:
    with pytest.raises(BadInputError, match=fragment):
        parse_invocation(body)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"dataframe_split": {"columns": ["question"]}}, "malformed"),
        ({"dataframe_split": {"columns": ["a", "b"], "data": [["x"]]}}, "malformed"),
        ({"dataframe_records": [{"a": 1, "b": 2}]}, "'question' column"),
    ],
)
def test_rows_that_make_no_frame_are_400(body: object, fragment: str) -> None:
    inputs, _ = parse_invocation(body)
    with pytest.raises(BadInputError, match=fragment):
        inputs.frame()


def test_records_are_what_to_json_would_say() -> None:
    frame = pd.DataFrame(
        {"answer": ["x", None], "score": [1.5, np.nan], "n": [1, 2], "ok": [True, False]},
    )
    expected = json.loads(frame.to_json(orient="records"))
    assert records(frame) == expected
    as_object = frame.astype(object)
    assert records(as_object) == expected
    assert type(records(as_object)[0]["n"]) is int


def test_records_of_other_types_go_through_to_json() -> None:
    when = pd.DataFrame({"t": [dt.datetime(2022, 10, 9, tzinfo=dt.UTC)]})
    assert records(when) == [{"t": 1665273600000}]
    missing = pd.DataFrame({"a": pd.array(["x", pd.NA], dtype="string")})
    assert records(missing) == [{"a": "x"}, {"a": None}]
    nested = pd.DataFrame({"a": [[1, 2], {"k": "v"}]})
    assert records(nested) == [{"a": [1, 2]}, {"a": {"k": "v"}}]


@pytest.mark.parametrize(
    "body",
    [
        {"dataframe_split": {"columns": ["question"], "data": [["Q1"], ["Q2"]]}},
        {"dataframe_split": {"columns": ["k", "question"], "data": [[3, "Q1"], [5, "Q2"]]}},
        {"dataframe_records": [{"question": "Q1"}, {"question": "Q2"}]},
        {"instances": ["Q1", "Q2"]},
        {"inputs": {"question": ["Q1", "Q2"]}},
    ],
)
def test_one_reader_of_the_questions_in_every_format(body: dict[str, Any]) -> None:
    inputs, _ = parse_invocation(body)
    assert inputs.questions() == ["Q1", "Q2"]
    assert list(inputs.frame()["question"]) == ["Q1", "Q2"]  # what the model reads
    assert request_question(json.dumps(body)) == "Q1"


def test_captured_bodies_read_back_for_logs() -> None:
    assert request_question('{"instances": []}') == ""
    assert request_question("not json at all") == "not json at all"
    assert request_question('{"nothing": 1}') == ""
    answered = json.dumps({"predictions": [{"answer": "z = 0.151", "num_docs": 5}]})
    assert response_answer(answered) == "z = 0.151"
    refused = json.dumps({"error_code": "BAD_REQUEST", "message": "no"})
    assert response_answer(refused) == "BAD_REQUEST: no"
    assert query_body(["Q"]) == {"dataframe_split": {"columns": ["question"], "data": [["Q"]]}}
