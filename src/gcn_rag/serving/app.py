"""The HTTP server: the Databricks Model Serving REST API over :class:`EndpointManager`.

Routes (the subset `databricks-sdk`, the lab's `curl` and the lab's client use)::

    POST   /api/2.0/serving-endpoints                 create
    GET    /api/2.0/serving-endpoints                 list
    GET    /api/2.0/serving-endpoints/{name}          get
    DELETE /api/2.0/serving-endpoints/{name}          delete
    PUT    /api/2.0/serving-endpoints/{name}/config   update_config (zero-downtime swap)
    PUT    /api/2.0/serving-endpoints/{name}/ai-gateway   rate limits, inference table config
    GET    /api/2.0/serving-endpoints/{name}/openapi  the query schema (OpenAPI 3)
    GET    /api/2.0/serving-endpoints/{name}/metrics  Prometheus text for one endpoint
    GET    /api/2.0/serving-endpoints/{name}/served-models/{entity}/logs | build-logs
    POST   /serving-endpoints/{name}/invocations      query (JSON whatever the Content-Type)
    POST   /serving-endpoints/{name}/served-models/{entity}/invocations
    GET    /metrics                                   Prometheus text for every endpoint
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

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from gcn_rag.errors import GcnRagError
from gcn_rag.serving.auth import TokenStore
from gcn_rag.serving.invocations import (
    Invocations,
    Receive,
    Scope,
    Send,
    decode_json,
    invocation_target,
)
from gcn_rag.serving.manager import EndpointManager
from gcn_rag.serving.metrics import Metrics


def create_app(manager: EndpointManager, tokens: TokenStore | None = None) -> ServingApp:
    """The ASGI app serving ``manager``'s endpoints; ``tokens=None`` turns auth off."""

    def allow(request: Request, needed: str) -> str:
        """The caller's name (for logs and per-user limits), or 401/403."""
        if tokens is None:
            return "anonymous"
        return tokens.authorize(request.headers.get("authorization"), needed).name

    app = FastAPI(title="gcn-rag serving", docs_url=None, redoc_url=None, openapi_url=None)
    metrics = Metrics()

    @app.exception_handler(GcnRagError)
    async def _known(request: Request, exc: GcnRagError) -> JSONResponse:
        headers = {}
        retry_after = getattr(exc, "retry_after", None)
        if retry_after:
            headers["Retry-After"] = str(retry_after)
        return JSONResponse(
            {"error_code": exc.error_code, "message": exc.message},
            status_code=exc.status_code,
            headers=headers,
        )

    @app.exception_handler(Exception)
    async def _unknown(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            {"error_code": "INTERNAL_ERROR", "message": f"{type(exc).__name__}: {exc}"},
            status_code=500,
        )

    @app.get("/.well-known/databricks-config")
    async def _databricks_config() -> dict[str, Any]:
        return {}

    @app.post("/api/2.0/serving-endpoints")
    async def _create(request: Request) -> dict[str, Any]:
        allow(request, "CAN_MANAGE")
        return manager.create(await _json(request))

    @app.get("/api/2.0/serving-endpoints")
    async def _list(request: Request) -> dict[str, Any]:
        allow(request, "CAN_VIEW")
        return {"endpoints": manager.list()}

    @app.get("/api/2.0/serving-endpoints/{name}")
    async def _get(name: str, request: Request) -> dict[str, Any]:
        allow(request, "CAN_VIEW")
        return manager.get(name)

    @app.delete("/api/2.0/serving-endpoints/{name}")
    async def _delete(name: str, request: Request) -> dict[str, Any]:
        allow(request, "CAN_MANAGE")
        manager.delete(name)
        return {}

    @app.put("/api/2.0/serving-endpoints/{name}/config")
    async def _update_config(name: str, request: Request) -> dict[str, Any]:
        allow(request, "CAN_MANAGE")
        return manager.update_config(name, await _json(request))

    @app.get("/api/2.0/serving-endpoints/{name}/served-models/{entity}/logs")
    async def _logs(name: str, entity: str, request: Request) -> dict[str, Any]:
        allow(request, "CAN_VIEW")
        return {"logs": manager.logs(name)}

    @app.get("/api/2.0/serving-endpoints/{name}/served-models/{entity}/build-logs")
    async def _build_logs(name: str, entity: str, request: Request) -> dict[str, Any]:
        allow(request, "CAN_VIEW")
        return {"logs": manager.logs(name)}

    @app.put("/api/2.0/serving-endpoints/{name}/ai-gateway")
    async def _ai_gateway(name: str, request: Request) -> dict[str, Any]:
        allow(request, "CAN_MANAGE")
        return manager.put_ai_gateway(name, await _json(request))

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

    @app.get("/health", response_class=PlainTextResponse)
    async def _health() -> str:
        return "ok"

    return ServingApp(api=app, invocations=Invocations(manager, tokens, metrics))


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
    """The query schema of an endpoint (OpenAPI 3.1), as ``GET …/openapi`` returns it."""
    name = endpoint["name"]
    question = {"type": "string", "description": "A question about GCN Circulars."}
    request = {
        "type": "object",
        "description": "Exactly one of the four input formats, plus optional params.",
        "properties": {
            "dataframe_split": {
                "type": "object",
                "properties": {
                    "columns": {"type": "array", "items": {"const": "question"}},
                    "data": {"type": "array", "items": {"type": "array", "items": question}},
                },
            },
            "dataframe_records": {
                "type": "array",
                "items": {"type": "object", "properties": {"question": question}},
            },
            "instances": {"type": "array", "items": question},
            "inputs": {"type": "array", "items": question},
            "params": {
                "type": "object",
                "properties": {
                    "k": {"type": "integer", "description": "Circulars to retrieve."},
                    "event_filter": {"type": "string", "description": "SQL LIKE on event ids."},
                    "generator": {"type": "string", "description": "'extractive' skips the LLM."},
                },
            },
            "client_request_id": {"type": "string"},
        },
    }
    prediction = {
        "type": "object",
        "properties": {
            "answer": {"type": "string", "description": "Cited answer, or an abstention."},
            "sources": {"type": "string", "description": "JSON array of event ids."},
            "num_docs": {"type": "integer", "description": "Circulars retrieved."},
            "citations": {"type": "string", "description": "JSON array of citations."},
            "generator_fallback": {
                "type": "string",
                "description": "Why an LLM answer was replaced by the extractive one ('' if not).",
            },
        },
    }
    operation = {
        "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
        "responses": {
            "200": {
                "description": "One prediction per question.",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {"predictions": {"type": "array", "items": prediction}},
                        }
                    }
                },
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


async def _json(request: Request) -> Any:
    return decode_json(await request.body())
