"""The HTTP server: the Databricks Model Serving REST API over :class:`EndpointManager`.

Routes (the subset `databricks-sdk`, the lab's `curl` and the lab's client use)::

    POST   /api/2.0/serving-endpoints                 create
    GET    /api/2.0/serving-endpoints                 list
    GET    /api/2.0/serving-endpoints/{name}          get
    DELETE /api/2.0/serving-endpoints/{name}          delete
    PUT    /api/2.0/serving-endpoints/{name}/config   update_config (zero-downtime swap)
    PUT    /api/2.0/serving-endpoints/{name}/ai-gateway   guardrails, rate limits, inference table
    GET    /api/2.0/serving-endpoints/{name}/openapi  the query schema (OpenAPI 3)
    GET    /api/2.0/serving-endpoints/{name}/metrics  Prometheus text for one endpoint
    GET    /api/2.0/serving-endpoints/{name}/served-models/{entity}/logs | build-logs
    POST   /serving-endpoints/{name}/feedback         a rating/comment on an answer (also
                                                      under /api/2.0; CAN_QUERY)
    POST   /serving-endpoints/{name}/invocations      query (JSON whatever the Content-Type)
    POST   /serving-endpoints/{name}/served-models/{entity}/invocations
    GET    /metrics                                   Prometheus text for every endpoint
    GET    /health                                    ok, + which workspace (X-Gcn-Rag-Workspace)
    GET    /.well-known/databricks-config             {}

Invocations take a lean ASGI path of their own (:mod:`gcn_rag.serving.invocations`) and run in
worker threads within their served entity's concurrency limit; a request that waits too long for a
slot gets 429, one that outlives ``request_timeout_s`` gets 504 (its slot stays taken until the
model returns), and 429/503 carry ``Retry-After``. The rest are FastAPI routes.

Errors are ``{"error_code", "message"}`` with the matching HTTP status, never a stack trace.
With a :class:`TokenStore`, every route but ``/.well-known/databricks-config`` needs a bearer
token: ``CAN_VIEW`` to read, ``CAN_QUERY`` to invoke, ``CAN_MANAGE`` to change endpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from gcn_rag.errors import BadInputError, GcnRagError
from gcn_rag.model.schema import INPUT, JSON_TYPES, OUTPUTS, PARAMS
from gcn_rag.serving import shapes
from gcn_rag.serving.auth import TokenStore
from gcn_rag.serving.feedback import FeedbackStore
from gcn_rag.serving.invocations import Invocations, Receive, Scope, Send, invocation_target
from gcn_rag.serving.manager import EndpointManager
from gcn_rag.serving.metrics import Metrics
from gcn_rag.serving.protocol import decode_json
from gcn_rag.serving.shapes import checked
from gcn_rag.serving.store import WORKSPACE_HEADER, workspace_id

if TYPE_CHECKING:
    import uvicorn

    from gcn_rag.serving.ray_engine import RayEngine
    from gcn_rag.settings import Settings

LOOPBACK = ("127.0.0.1", "localhost", "::1")
FEEDBACK_BYTES = 64 * 1024  # a 4,000-character comment is at most 16 kB of UTF-8 (+ escapes)
Allow = Callable[[Request, str], str]  # (request, permission needed) -> the caller's name
#: Builds the web console (``gcn_rag.console.create_console``), mounted at ``/console``.
Console = Callable[[EndpointManager, TokenStore | None, Metrics], Any]


def create_app(
    manager: EndpointManager,
    tokens: TokenStore | None = None,
    workspace: str | None = None,
    console: Console | None = None,
) -> ServingApp:
    """The ASGI app serving ``manager``'s endpoints; ``tokens=None`` turns auth off; with
    ``console``, the web console's routes under ``/console`` (the API's stay as they are).

    ``workspace`` (:func:`~gcn_rag.serving.store.workspace_id`) is answered by ``GET /health``
    in the ``X-Gcn-Rag-Workspace`` header, so a command can check whose server it reached.
    """

    def allow(request: Request, needed: str) -> str:
        """The caller's name (for logs and per-user limits), or 401/403."""
        if tokens is None:
            return "anonymous"
        return tokens.authorize(request.headers.get("authorization"), needed).name

    app = FastAPI(title="gcn-rag serving", docs_url=None, redoc_url=None, openapi_url=None)
    metrics = Metrics()
    _error_handlers(app)
    _read_routes(app, manager, allow, metrics, workspace)
    _write_routes(app, manager, allow)
    _feedback_route(app, manager, allow)
    if tokens is not None:  # the PII guardrails recognise this server's own tokens
        manager.recognise_tokens(tokens.is_token)
    if console is not None:
        app.mount("/console", console(manager, tokens, metrics))
    return ServingApp(api=app, invocations=Invocations(manager, tokens, metrics))


def _error_handlers(app: FastAPI) -> None:
    """Every error is ``{"error_code", "message"}`` with its status, never a stack trace."""

    @app.exception_handler(GcnRagError)
    async def _known(request: Request, exc: GcnRagError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else {}
        return JSONResponse(
            {"error_code": exc.error_code, "message": exc.message},
            status_code=exc.status_code,
            headers=headers,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _routing(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "ENDPOINT_NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
        message = {
            404: f"No route {request.method} {request.url.path}; see the REST API in the README.",
            405: f"{request.method} is not allowed on {request.url.path}.",
        }.get(exc.status_code, str(exc.detail))
        return JSONResponse(
            {"error_code": codes.get(exc.status_code, "BAD_REQUEST"), "message": message},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unknown(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            {"error_code": "INTERNAL_ERROR", "message": f"{type(exc).__name__}: {exc}"},
            status_code=500,
        )


def _read_routes(
    app: FastAPI, manager: EndpointManager, allow: Allow, metrics: Metrics, workspace: str | None
) -> None:
    """What CAN_VIEW may see: endpoints, their logs, schema and metrics."""

    @app.get("/.well-known/databricks-config")
    async def _databricks_config() -> dict[str, Any]:
        return {}

    @app.get("/health")
    async def _health() -> PlainTextResponse:
        headers = {WORKSPACE_HEADER: workspace} if workspace else None
        return PlainTextResponse("ok", headers=headers)

    @app.get("/api/2.0/serving-endpoints")
    async def _list(request: Request) -> dict[str, Any]:
        allow(request, "CAN_VIEW")
        return {"endpoints": manager.list()}

    @app.get("/api/2.0/serving-endpoints/{name}")
    async def _get(name: str, request: Request) -> dict[str, Any]:
        allow(request, "CAN_VIEW")
        return manager.get(name)

    @app.get("/api/2.0/serving-endpoints/{name}/served-models/{entity}/logs")
    @app.get("/api/2.0/serving-endpoints/{name}/served-models/{entity}/build-logs")
    async def _logs(name: str, entity: str, request: Request) -> dict[str, Any]:
        allow(request, "CAN_VIEW")
        return {"logs": manager.logs(name)}

    @app.get("/api/2.0/serving-endpoints/{name}/openapi")
    async def _openapi(name: str, request: Request) -> JSONResponse:
        allow(request, "CAN_VIEW")
        return JSONResponse(openapi_spec(manager.get(name)))

    @app.get("/api/2.0/serving-endpoints/{name}/metrics", response_class=PlainTextResponse)
    async def _endpoint_metrics(name: str, request: Request) -> str:
        allow(request, "CAN_VIEW")
        manager.require(name)
        return metrics.render(manager, name)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def _metrics(request: Request) -> str:
        allow(request, "CAN_VIEW")
        return metrics.render(manager)


def _write_routes(app: FastAPI, manager: EndpointManager, allow: Allow) -> None:
    """What only CAN_MANAGE may do: create, update, delete, configure the AI gateway."""

    @app.post("/api/2.0/serving-endpoints")
    async def _create(request: Request) -> dict[str, Any]:
        allow(request, "CAN_MANAGE")
        return manager.create(checked(shapes.CreateEndpoint, await _json(request)))

    @app.delete("/api/2.0/serving-endpoints/{name}")
    async def _delete(name: str, request: Request) -> dict[str, Any]:
        allow(request, "CAN_MANAGE")
        manager.delete(name)
        return {}

    @app.put("/api/2.0/serving-endpoints/{name}/config")
    async def _update_config(name: str, request: Request) -> dict[str, Any]:
        allow(request, "CAN_MANAGE")
        return manager.update_config(name, checked(shapes.EndpointConfig, await _json(request)))

    @app.put("/api/2.0/serving-endpoints/{name}/ai-gateway")
    async def _ai_gateway(name: str, request: Request) -> dict[str, Any]:
        allow(request, "CAN_MANAGE")
        return manager.put_ai_gateway(name, checked(shapes.AiGateway, await _json(request)))


def _feedback_route(app: FastAPI, manager: EndpointManager, allow: Allow) -> None:
    """What CAN_QUERY may add: feedback on an answer (:mod:`gcn_rag.serving.feedback`)."""
    store = FeedbackStore.of(manager)

    @app.post("/serving-endpoints/{name}/feedback")
    @app.post("/api/2.0/serving-endpoints/{name}/feedback")
    async def _feedback(name: str, request: Request) -> dict[str, Any]:
        requester = allow(request, "CAN_QUERY")
        manager.require(name)
        body = checked(shapes.Feedback, decode_json(await _small_body(request, FEEDBACK_BYTES)))
        row = await run_in_threadpool(store.submit, name, requester=requester, **body)
        return {"feedback_id": row.feedback_id}


class ServingApp:
    """The ASGI app: invocations on their own lean path, everything else through FastAPI."""

    def __init__(self, api: FastAPI, invocations: Invocations) -> None:
        self.api = api
        self.invocations = invocations

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = invocation_target(scope["path"]) if scope["type"] == "http" else None
        if target is None:
            await self.api(scope, receive, send)
        else:
            await self.invocations(scope, receive, send, *target)


def openapi_spec(endpoint: dict[str, Any]) -> dict[str, Any]:
    """The query schema of an endpoint (OpenAPI 3.1), made from :mod:`gcn_rag.model.schema`."""
    name = endpoint["name"]
    operation = {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _request_schema()}},
        },
        "responses": {
            "200": {
                "description": "One prediction per question.",
                "content": {"application/json": {"schema": _response_schema()}},
            }
        },
    }
    paths = {f"/serving-endpoints/{name}/invocations": {"post": operation}}
    for entity in endpoint["config"]["served_entities"]:
        paths[f"/serving-endpoints/{name}/served-models/{entity['name']}/invocations"] = {
            "post": operation
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": name, "version": str(endpoint["config"].get("config_version", 1))},
        "servers": [{"url": "/"}],
        "paths": paths,
    }


def _request_schema() -> dict[str, Any]:
    question = {"type": JSON_TYPES[INPUT.type], "description": INPUT.description}
    params = {
        p.name: {"type": JSON_TYPES[p.type], "default": p.default, "description": p.description}
        for p in PARAMS
    }
    return {
        "type": "object",
        "description": "Exactly one of the four input formats, plus optional params.",
        "properties": {
            "dataframe_split": {
                "type": "object",
                "properties": {
                    "columns": {"type": "array", "items": {"const": INPUT.name}},
                    "data": {"type": "array", "items": {"type": "array", "items": question}},
                },
            },
            "dataframe_records": {
                "type": "array",
                "items": {"type": "object", "properties": {INPUT.name: question}},
            },
            "instances": {"type": "array", "items": question},
            "inputs": {"type": "array", "items": question},
            "params": {"type": "object", "properties": params},
            "client_request_id": {"type": "string"},
        },
    }


def _response_schema() -> dict[str, Any]:
    prediction = {
        "type": "object",
        "properties": {
            c.name: {"type": JSON_TYPES[c.type], "description": c.description} for c in OUTPUTS
        },
    }
    return {
        "type": "object",
        "properties": {"predictions": {"type": "array", "items": prediction}},
    }


async def _json(request: Request) -> Any:
    return decode_json(await request.body())


async def _small_body(request: Request, limit: int) -> bytes:
    """The body, or 400 once it is over ``limit`` bytes (read no further)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BadInputError(f"The request body is over {limit // 1024} kB.")
    return body


# --- running it -----------------------------------------------------------------------------


class Server:
    """uvicorn serving a workspace's endpoints; :meth:`run` until Ctrl-C or SIGTERM, then flush."""

    def __init__(
        self,
        settings: Settings,
        host: str,
        port: int,
        *,
        no_auth: bool = False,
        console: Console | None = None,
        engine: RayEngine | None = None,
    ):
        import uvicorn

        if no_auth and host not in LOOPBACK:
            raise BadInputError("--no-auth is only allowed on a loopback address (127.0.0.1).")
        self.url = f"http://{host}:{port}"
        self.settings = settings
        tokens = None if no_auth else TokenStore(settings.serving_state)
        self.engine = engine  # None: models load into this process
        if engine is not None:
            engine.start()  # here, in the main thread: run() then takes SIGTERM from Ray
        try:
            self.manager = EndpointManager.for_settings(settings, engine)  # owns the workspace
        except BaseException:
            if engine is not None:
                engine.close()
            raise
        app = create_app(self.manager, tokens, workspace_id(settings.home), console)
        self.manager.store.record_server(_reachable(host, port))
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            http=timely_protocol(settings.header_timeout_s),
            timeout_keep_alive=5,  # an idle keep-alive connection is closed after 5 s
        )
        self.uvicorn: uvicorn.Server = uvicorn.Server(config)

    @property
    def started(self) -> bool:
        return bool(self.uvicorn.started)

    def wait_started(self) -> bool:
        """Block until the server listens (True) or stops without having started (False)."""
        while not self.uvicorn.started and not self.uvicorn.should_exit:
            time.sleep(0.05)
        return self.started

    def stop(self) -> None:
        """Ask the server to stop (from any thread); :meth:`run` then returns."""
        self.uvicorn.should_exit = True

    def run(self) -> None:
        """Serve until stopped, Ctrl-C or SIGTERM, then flush captured requests (none lost)."""
        # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal with the
        # previous handler; make that an exception here, so the flush below runs for both.
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            with contextlib.suppress(KeyboardInterrupt):
                self.uvicorn.run()
        finally:
            signal.signal(signal.SIGTERM, previous)
            self.manager.close()
            if self.engine is not None:  # its applications (and a private cluster) stop
                self.engine.close()


def _reachable(host: str, port: int) -> str:
    """The URL a command on this machine reaches a server bound to ``host:port`` at."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def timely_protocol(header_timeout_s: float) -> type[Any]:
    """uvicorn's httptools protocol with the timeout it lacks: a connection that sends no
    request, or does not finish a request's headers, within ``header_timeout_s`` is closed.

    Without it, idle and slow-header sockets were held for ever (5,000 of them in a probe).
    """
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class TimelyHttpToolsProtocol(HttpToolsProtocol):
        header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self.header_timer = self.loop.call_later(header_timeout_s, self._expire)

        def _disarm(self) -> None:
            if self.header_timer is not None:
                self.header_timer.cancel()
                self.header_timer = None

        def _expire(self) -> None:
            self.header_timer = None
            self.transport.close()

    return TimelyHttpToolsProtocol
