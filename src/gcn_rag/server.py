"""The HTTP server: the Databricks Model Serving REST API over :class:`EndpointManager`.

Routes (the subset `databricks-sdk`, the lab's `curl` and the lab's client use)::

    POST   /api/2.0/serving-endpoints                 create
    GET    /api/2.0/serving-endpoints                 list
    GET    /api/2.0/serving-endpoints/{name}          get
    DELETE /api/2.0/serving-endpoints/{name}          delete
    PUT    /api/2.0/serving-endpoints/{name}/config   update_config (zero-downtime swap)
    GET    /api/2.0/serving-endpoints/{name}/served-models/{entity}/logs
    POST   /serving-endpoints/{name}/invocations      query (JSON whatever the Content-Type)
    POST   /serving-endpoints/{name}/served-models/{entity}/invocations
    GET    /.well-known/databricks-config             {}

Errors are ``{"error_code", "message"}`` with the matching HTTP status, never a stack trace.
With a :class:`TokenStore`, every route but ``/.well-known/databricks-config`` needs a bearer
token: ``CAN_VIEW`` to read, ``CAN_QUERY`` to invoke, ``CAN_MANAGE`` to change endpoints.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from gcn_rag.auth import TokenStore
from gcn_rag.errors import BadInputError, GcnRagError
from gcn_rag.serving import EndpointManager

MAX_BODY_BYTES = 16 * 1024 * 1024


def create_app(manager: EndpointManager, tokens: TokenStore | None = None) -> FastAPI:
    """The ASGI app serving ``manager``'s endpoints; ``tokens=None`` turns auth off."""

    def allow(request: Request, needed: str) -> None:
        if tokens is not None:
            tokens.authorize(request.headers.get("authorization"), needed)

    app = FastAPI(title="gcn-rag serving", docs_url=None, redoc_url=None)

    @app.exception_handler(GcnRagError)
    async def _known(request: Request, exc: GcnRagError) -> JSONResponse:
        return JSONResponse(
            {"error_code": exc.error_code, "message": exc.message}, status_code=exc.status_code
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

    async def _invoke(request: Request, name: str, entity: str | None) -> JSONResponse:
        import anyio

        allow(request, "CAN_QUERY")
        manager.require(name)  # an unknown endpoint is a 404 whatever the body
        frame, params = parse_invocation(await _json(request))
        result, served = await anyio.to_thread.run_sync(
            lambda: manager.invoke(name, frame, params, entity)
        )
        predictions = json.loads(result.to_json(orient="records", force_ascii=False))
        return JSONResponse({"predictions": predictions}, headers={"served-model-name": served})

    @app.post("/serving-endpoints/{name}/invocations")
    async def _invocations(name: str, request: Request) -> JSONResponse:
        return await _invoke(request, name, None)

    @app.post("/serving-endpoints/{name}/served-models/{entity}/invocations")
    async def _entity_invocations(name: str, entity: str, request: Request) -> JSONResponse:
        return await _invoke(request, name, entity)

    @app.get("/health", response_class=PlainTextResponse)
    async def _health() -> str:
        return "ok"

    return app


async def _json(request: Request) -> Any:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise BadInputError(f"The request body is over {MAX_BODY_BYTES // (1024 * 1024)} MB.")
    try:
        return json.loads(body or b"null")
    except ValueError as exc:
        raise BadInputError(f"The request body is not valid JSON ({exc}).") from exc


def parse_invocation(body: Any) -> tuple[Any, dict[str, Any] | None]:
    """A DataFrame and params from any of the four MLflow/Databricks input formats."""
    import pandas as pd

    if not isinstance(body, dict):
        raise BadInputError(
            "The body must be a JSON object with dataframe_split, "
            "dataframe_records, instances or inputs."
        )
    params = body.get("params")
    if params is not None and not isinstance(params, dict):
        raise BadInputError("params must be a JSON object.")
    keys = [k for k in ("dataframe_split", "dataframe_records", "instances", "inputs") if k in body]
    if len(keys) != 1:
        raise BadInputError(
            "Send exactly one of dataframe_split, dataframe_records, instances or inputs; "
            f"got {keys or 'none'}."
        )
    data = body[keys[0]]
    try:
        if keys[0] == "dataframe_split":
            frame = pd.DataFrame(data=data["data"], columns=data.get("columns"))
        elif keys[0] == "dataframe_records":
            frame = pd.DataFrame.from_records(data)
        elif isinstance(data, dict):
            frame = pd.DataFrame({k: v if isinstance(v, list) else [v] for k, v in data.items()})
        elif isinstance(data, list) and data and isinstance(data[0], dict):
            frame = pd.DataFrame.from_records(data)
        else:
            frame = pd.DataFrame({"question": data if isinstance(data, list) else [data]})
    except (KeyError, TypeError, ValueError) as exc:
        raise BadInputError(f"{keys[0]} is malformed: {exc}") from exc
    if "question" not in frame.columns and len(frame.columns) != 1:
        raise BadInputError(f"The input needs a 'question' column; got {list(frame.columns)}.")
    return frame, params
