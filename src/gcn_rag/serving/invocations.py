"""The query path: ``POST /serving-endpoints/{name}[/served-models/{entity}]/invocations``.

A plain ASGI handler rather than a FastAPI route: this is the one path whose cost users pay
on every question, and the framework's middleware, request object and response classes were
about a third of our serving overhead. What runs where:

- the event loop: auth, endpoint lookup, reading the body (16 MB cap), JSON, the shape check
  of the four input formats, routing and rate limits;
- one worker thread per request: the DataFrame, the model (within its entity's concurrency
  limit), the predictions turned into JSON bytes and the capture row spooled. Doing the
  pandas work next to ``predict`` keeps it off the event loop and runs it while the CPU's
  caches still hold pandas from the model's own output; on the event loop, after 25 ms of
  retrieval, building a one-row frame took 0.9 ms and reading one back 0.7 ms.

Every outcome is one JSON response: ``{"predictions": [...]}`` with ``served-model-name``,
``server-timing`` (``model``: time in the entity, incl. its queue; ``total``: the handler)
and ``x-request-id``; or ``{"error_code", "message"}`` with the status of the
:class:`GcnRagError` (``Retry-After`` on 429/503, 504 past ``request_timeout_s``, 500 with the
model's message, never a stack trace). Each is counted in :class:`Metrics` and, if the
endpoint captures, spooled before the response is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import queue
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from gcn_rag.errors import (
    BadInputError,
    DeadlineExceededError,
    GcnRagError,
    MethodNotAllowedError,
)
from gcn_rag.guardrails.policy import GuardrailError, Hit
from gcn_rag.serving.auth import Authority
from gcn_rag.serving.capture import REQUEST_TOO_LARGE, CaptureRow, CaptureTarget
from gcn_rag.serving.guarding import EndpointGuards, withheld_hits
from gcn_rag.serving.manager import EndpointManager
from gcn_rag.serving.metrics import Metrics
from gcn_rag.serving.protocol import (
    MAX_BODY_BYTES,
    Inputs,
    client_request_id,
    decode_json,
    encode,
    parse_invocation,
    records,
)
from gcn_rag.serving.replicas import Replica
from gcn_rag.serving.shadow import Mirror, Shadows

#: What is kept of a body the caller could not authenticate for (the row says the rest was
#: not kept): strangers cannot fill the inference table.
UNAUTHENTICATED_KEEP = 1024
REQUEST_NOT_KEPT = "REQUEST_NOT_KEPT_UNAUTHENTICATED"
EMPTY = encode({"predictions": []})
#: MLflow error codes of a model refusing its input.
CLIENT_ERROR_CODES = frozenset({"INVALID_PARAMETER_VALUE", "BAD_REQUEST"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def invocation_target(path: str) -> tuple[str, str | None] | None:
    """``(endpoint, entity or None)`` if ``path`` is an invocations path, else None."""
    parts = path.split("/")
    if len(parts) == 4 and parts[1] == "serving-endpoints" and parts[3] == "invocations":
        return (parts[2], None) if parts[2] else None
    if (
        len(parts) == 6
        and parts[1] == "serving-endpoints"
        and parts[3] == "served-models"
        and parts[5] == "invocations"
        and parts[2]
        and parts[4]
    ):
        return parts[2], parts[4]
    return None


class Workers:
    """Daemon threads that run blocking calls for the event loop, one call per thread at a time.

    anyio's and ``concurrent.futures``' pools wake a thread that has been idle for a few ms in
    230-390 µs on our 2-core VM; a thread blocked on a C ``SimpleQueue`` wakes in ~75 µs, and
    each question pays that once. Threads are started as needed (at most ``max_threads``) and
    leave after ``idle_s`` without work.
    """

    def __init__(self, max_threads: int = 1024, idle_s: float = 30.0) -> None:
        self.max_threads = max_threads
        self.idle_s = idle_s
        self._queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0  # waiting for work and not yet promised any

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in a worker thread; cancelling the wait abandons (not stops) the call."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            if self._idle:
                self._idle -= 1
            elif self._threads < self.max_threads:
                self._threads += 1
                threading.Thread(target=self._work, name="gcn-rag-invoke", daemon=True).start()
        self._queue.put((loop, future, fn, args))
        return await future

    def _work(self) -> None:
        while True:
            try:
                loop, future, fn, args = self._queue.get(timeout=self.idle_s)
            except queue.Empty:
                with self._lock:
                    if self._idle:  # no call was promised to an idle thread: leave
                        self._idle -= 1
                        self._threads -= 1
                        return
                continue
            try:
                outcome = (True, fn(*args))
            except BaseException as exc:  # handed to the awaiting coroutine
                outcome = (False, exc)
            with self._lock:
                self._idle += 1
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                loop.call_soon_threadsafe(_settle, future, outcome)
            # idle, hold nothing: the last call's replica would keep a deleted endpoint's
            # model (and, on Ray, its application) alive until this thread's next call
            del loop, future, fn, args, outcome


def _settle(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.done():  # abandoned (timed out or the client left)
        return
    if outcome[0]:
        future.set_result(outcome[1])
    else:
        future.set_exception(outcome[1])


@dataclasses.dataclass
class _Call:
    """What one invocation knows so far (filled in as it goes; logged whatever the outcome)."""

    name: str
    entity: str | None
    request_id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)
    started: float = dataclasses.field(default_factory=time.perf_counter)
    caller: str = "unauthenticated"
    served: str = ""
    raw: bytes | None = None
    body: Any = None
    model_ms: float = 0.0
    content: bytes | None = None  # the answer, once the worker has spooled it
    abandoned: bool = False  # the client got 504; a late answer is dropped, not spooled
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    target: CaptureTarget | None = None  # where the row goes, fixed when the request starts
    received: bool = False  # the body has been read (it cannot be read twice)
    codes: list[str] = dataclasses.field(default_factory=list)  # the row's logging codes
    guards: EndpointGuards | None = None  # the endpoint's guardrails, fixed at the start
    hits: list[Hit] = dataclasses.field(default_factory=list)  # their decisions, for the row
    mirror: Mirror | None = None  # what a shadow entity gets, once answered (200)


class Invocations:
    """The ASGI handler of both invocations paths (see the module docstring)."""

    def __init__(self, manager: EndpointManager, tokens: Authority | None, metrics: Metrics):
        self.manager = manager
        self.tokens = tokens
        self.metrics = metrics
        self.workers = Workers()
        self.shadows = Shadows(manager, metrics)
        manager.shadows = self.shadows  # stopped (its last row spooled) before capture flushes

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, name: str, entity: str | None
    ) -> None:
        call = _Call(name, entity, served=entity or "")
        call.target = self.manager.capture_target(name)  # a DELETE in flight keeps the row
        call.guards = self.manager.guardrails(name)
        self.shadows.enter()  # live traffic first: no shadow request starts until it ends
        try:
            await self._respond(call, scope, receive, send)
        finally:
            self.shadows.leave()
        if call.mirror is not None:  # after the response: mirror it
            self.shadows.offer(call.mirror, call.served)

    async def _respond(self, call: _Call, scope: Scope, receive: Receive, send: Send) -> None:
        name = call.name
        try:
            status, content, headers = 200, await self._answer(call, scope, receive), []
            timing = f"model;dur={call.model_ms:.2f}, total;dur={self._ms(call):.2f}"
            headers = [
                (b"served-model-name", call.served.encode()),
                (b"server-timing", timing.encode()),
            ]
        except GcnRagError as exc:
            status, content, headers = exc.status_code, self._error(exc), []
            if exc.retry_after:
                headers.append((b"retry-after", str(exc.retry_after).encode()))
        except Exception as exc:  # a bug of ours: a 500 with the message, not a traceback
            error = GcnRagError(f"{type(exc).__name__}: {exc}")
            status, content, headers = 500, self._error(error), []
        if status != 200:
            await self._capture(call, receive, status, content)
        known = status != 404 or bool(call.served)
        self.metrics.record(name if known else "", call.served, status, self._ms(call) / 1000)
        if call.hits:
            self.metrics.guardrail_hits(name, call.hits)
        headers += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(content)).encode()),
            (b"x-request-id", call.request_id.encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    async def _answer(self, call: _Call, scope: Scope, receive: Receive) -> bytes:
        if scope["method"] != "POST":
            raise MethodNotAllowedError(f"{scope['method']} is not allowed here; POST a query.")
        self._allow(scope, call)
        self.manager.require(call.name)  # an unknown endpoint is a 404 whatever the body
        await self._receive(call, receive, MAX_BODY_BYTES)
        call.body = decode_json(call.raw or b"")
        inputs, params = parse_invocation(call.body)
        inputs.check_rows(self.manager.limits.max_rows)
        replica = self.manager.route(call.name, call.entity, call.caller)
        call.served = replica.name
        if inputs.rows == 0:  # nothing to ask the model
            self._spool(call, 200, EMPTY)
            return EMPTY
        timeout = self.manager.limits.request_timeout_s
        try:
            async with asyncio.timeout(timeout):
                content: bytes = await self.workers.run(self._run, call, replica, inputs, params)
                return content
        except TimeoutError:
            with call.lock:
                if call.content is not None:  # answered (and spooled) just in time
                    return call.content
                call.abandoned = True
            raise DeadlineExceededError(
                f"The model did not answer within {timeout:g} s; try a shorter request."
            ) from None

    def _run(
        self, call: _Call, replica: Replica, inputs: Inputs, params: dict[str, Any] | None
    ) -> bytes:
        """In a worker thread: input guardrails, frame, model, output guardrails, JSON,
        capture row; the response body."""
        if call.guards is not None and call.guards.input:
            inputs = self._guard_inputs(call, call.guards, inputs)
        frame = inputs.frame()
        started = time.perf_counter()
        try:
            result = self.manager.predict(replica, frame, params)
        except GcnRagError:
            raise
        except Exception as exc:  # the model's refusal (400) or its own failure (500)
            raise model_error(exc) from exc
        finally:
            call.model_ms = (time.perf_counter() - started) * 1000
        rows = records(result)
        call.hits.extend(withheld_hits(rows))
        if call.guards is not None and call.guards.output:
            screened = call.guards.screen_predictions(rows)
            call.hits.extend(screened.hits)
            if screened.blocked is not None:
                raise GuardrailError(screened.blocked)
            rows = screened.value
        content = encode({"predictions": rows})
        with call.lock:
            if not call.abandoned:
                request = self._spool(call, 200, content)
                call.content = content
                if call.entity is None and self.manager.mirrors(call.name):
                    call.mirror = Mirror(
                        call.name, call.request_id, inputs, params, request,
                        client_request_id(call.body), call.caller, call.target, call.guards,
                    )  # fmt: skip
        return content

    @staticmethod
    def _guard_inputs(call: _Call, guards: EndpointGuards, inputs: Inputs) -> Inputs:
        """The rows the model gets (masked), or 400 when a rule refuses them; the body the
        row keeps is the one the model got."""
        screened = guards.screen_inputs(inputs)
        call.hits.extend(screened.hits)
        if isinstance(call.body, dict):
            call.body = {**call.body, inputs.format: screened.value.data}
        if screened.blocked is not None:
            raise GuardrailError(screened.blocked)
        result: Inputs = screened.value
        return result

    def _allow(self, scope: Scope, call: _Call) -> None:
        """The caller's name on ``call`` (also when refused, for the row), or 401/403."""
        if self.tokens is None:
            call.caller = "anonymous"
            return
        header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        caller = self.tokens.identify(header.decode("latin-1") if header is not None else None)
        call.caller = caller.name
        self.tokens.require(caller, "CAN_QUERY")

    async def _receive(self, call: _Call, receive: Receive, keep: int) -> None:
        """Read the body once onto ``call`` (at most ``keep`` bytes kept); over the size
        limit, the row says so and the request is refused."""
        call.received = True
        call.raw, size = await _read_body(receive, keep)
        if size > MAX_BODY_BYTES:
            call.raw = f"(a body of {size:,} bytes, over the limit: not kept)".encode()
            call.codes.append(REQUEST_TOO_LARGE)
            raise BadInputError(f"The request body is over {MAX_BODY_BYTES // (1024 * 1024)} MB.")
        if size > keep:
            call.codes.append(REQUEST_NOT_KEPT)

    async def _capture(self, call: _Call, receive: Receive, status: int, content: bytes) -> None:
        """Spool a failed request (successes are spooled by :meth:`_run`)."""
        if self.manager.capture is None or call.target is None:
            return
        if not call.received:  # failed before the body was read: read it for the row
            refused = status in (401, 403)  # keep little of what strangers send
            try:
                keep = UNAUTHENTICATED_KEEP if refused else MAX_BODY_BYTES
                await self._receive(call, receive, keep)
            except GcnRagError:
                pass
        self._spool(call, status, content)

    def _spool(self, call: _Call, status: int, content: bytes) -> str:
        """Spool the row (if the endpoint captures); the request text as the row keeps it."""
        capture = self.manager.capture
        if capture is None or call.target is None:
            return ""
        request = self._request_text(call)
        capture.record(
            call.target,
            CaptureRow(
                databricks_request_id=call.request_id,
                client_request_id=self._redacted(call, client_request_id(call.body)),
                timestamp_ms=int(time.time() * 1000),
                status_code=status,
                execution_duration_ms=round(call.model_ms),
                request=request,
                response=content.decode(),
                served_entity_id=call.served,
                endpoint_name=call.name,
                requester=call.caller,
                logging_error_codes=(*call.codes, *(hit.code for hit in call.hits)),
            ),
        )
        return request

    @staticmethod
    def _redacted(call: _Call, text: str | None) -> str | None:
        if text is None or call.guards is None or not call.guards.redacts:
            return text
        return call.guards.redact(text)

    @staticmethod
    def _request_text(call: _Call) -> str:
        """The request as the row keeps it: as sent, or, when the endpoint masks personal
        data, as the model got it with every finding masked (also when it was refused)."""
        text = (call.raw or b"").decode("utf-8", errors="replace")
        if call.guards is None or not call.guards.redacts:
            return text
        if call.body is not None:  # as parsed: escapes such as \u0040 cannot hide a value
            text = encode(call.body).decode()
        return call.guards.redact(text)

    @staticmethod
    def _error(exc: GcnRagError) -> bytes:
        return encode({"error_code": exc.error_code, "message": exc.message})

    @staticmethod
    def _ms(call: _Call) -> float:
        return (time.perf_counter() - call.started) * 1000


def model_error(exc: Exception) -> GcnRagError:
    """A model's exception as an answer: its refusal of the input (MLflow's
    ``INVALID_PARAMETER_VALUE`` and the like) is a 400 with its message, the rest a 500."""
    if getattr(exc, "error_code", None) in CLIENT_ERROR_CODES:
        return BadInputError(str(getattr(exc, "message", exc)))
    return GcnRagError(f"{type(exc).__name__}: {exc}")


async def _read_body(receive: Receive, keep: int) -> tuple[bytes, int]:
    """The request body (its first ``keep`` bytes) and its whole size; all of it is read."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        if size < keep:
            chunks.append(chunk[: keep - size])
        size += len(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks), size
