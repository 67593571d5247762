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

Invocations run in worker threads within their served entity's concurrency limit; a request
that waits too long for a slot gets 429, one that outlives ``request_timeout_s`` gets 504 (its
slot stays taken until the model returns), and 429/503 carry ``Retry-After``.

Errors are ``{"error_code", "message"}`` with the matching HTTP status, never a stack trace.
With a :class:`TokenStore`, every route but ``/.well-known/databricks-config`` needs a bearer
token: ``CAN_VIEW`` to read, ``CAN_QUERY`` to invoke, ``CAN_MANAGE`` to change endpoints.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from gcn_rag.auth import TokenStore
from gcn_rag.errors import BadInputError, DeadlineExceededError, GcnRagError
from gcn_rag.metrics import Metrics
from gcn_rag.serving import EndpointManager

MAX_BODY_BYTES = 16 * 1024 * 1024


def create_app(manager: EndpointManager, tokens: TokenStore | None = None) -> FastAPI:
    """The ASGI app serving ``manager``'s endpoints; ``tokens=None`` turns auth off."""

    def allow(request: Request, needed: str) -> str:
        """The caller's name (for logs and per-user limits), or 401/403."""
        if tokens is None:
            return "anonymous"
        return tokens.authorize(request.headers.get("authorization"), needed).name

    app = FastAPI(title="gcn-rag serving", docs_url=None, redoc_url=None, openapi_url=None)
    metrics = Metrics()
    workers: list[anyio.CapacityLimiter] = []  # created in the event loop, on first use

    @app.exception_handler(GcnRagError)
    async def _known(request: Request, exc: GcnRagError) -> JSONResponse:
        headers = {}
        retry_after = getattr(exc, "retry_after", None)
        if retry_after:
            headers["Retry-After"] = str(retry_after)
        request_id = getattr(request.state, "request_id", None)
        if request_id:
            headers["x-request-id"] = request_id
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

    async def _invoke(request: Request, name: str, entity: str | None) -> JSONResponse:
        started, status, served = time.perf_counter(), 500, entity or ""
        caller, body, model_ms = "unauthenticated", None, 0.0
        request_id = request.state.request_id = uuid.uuid4().hex
        response: JSONResponse | None = None
        error: dict[str, str] = {}
        try:
            caller = allow(request, "CAN_QUERY")
            manager.require(name)  # an unknown endpoint is a 404 whatever the body
            body = await _json(request)
            frame, params = parse_invocation(body)
            replica = manager.route(name, entity, caller)
            served = replica.name
            if not workers:
                workers.append(anyio.CapacityLimiter(1024))
            timeout = manager.limits.request_timeout_s
            model_started = time.perf_counter()
            try:
                with anyio.fail_after(timeout):
                    result = await anyio.to_thread.run_sync(
                        manager.predict,
                        replica,
                        frame,
                        params,
                        abandon_on_cancel=True,
                        limiter=workers[0],
                    )
            except TimeoutError:
                raise DeadlineExceededError(
                    f"The model did not answer within {timeout:g} s; try a shorter request."
                ) from None
            except GcnRagError:
                raise
            except Exception as exc:  # the model's own failure: a 500 with its message
                raise GcnRagError(f"{type(exc).__name__}: {exc}") from exc
            finally:
                model_ms = (time.perf_counter() - model_started) * 1000
            predictions = records(result)
            status = 200
            total_ms = (time.perf_counter() - started) * 1000
            timing = f"model;dur={model_ms:.2f}, total;dur={total_ms:.2f}"
            response = JSONResponse(
                {"predictions": predictions},
                headers={
                    "served-model-name": served,
                    "server-timing": timing,
                    "x-request-id": request_id,
                },
            )
            return response
        except GcnRagError as exc:
            status, error = exc.status_code, {"error_code": exc.error_code, "message": exc.message}
            raise
        except Exception as exc:
            error = {"error_code": "INTERNAL_ERROR", "message": f"{type(exc).__name__}: {exc}"}
            raise
        finally:
            known = status != 404 or bool(served)
            metrics.record(name if known else "", served, status, time.perf_counter() - started)
            target = manager.capture_target(name) if manager.capture is not None else None
            if target is not None and manager.capture is not None:
                raw = await request.body()
                manager.capture.record(
                    target,
                    {
                        "databricks_request_id": request_id,
                        "client_request_id": _client_request_id(body),
                        "timestamp_ms": int(time.time() * 1000),
                        "status_code": status,
                        "execution_duration_ms": round(model_ms),
                        "request": raw.decode("utf-8", errors="replace"),
                        "response": (
                            bytes(response.body).decode()
                            if response is not None
                            else json.dumps(error, ensure_ascii=False)
                        ),
                        "served_entity_id": served,
                        "endpoint_name": name,
                        "requester": caller,
                    },
                )

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
            columns, rows = data.get("columns"), data["data"]
            if _one_column(columns, rows):  # the lab's shape; half the cost of the general one
                frame = pd.DataFrame({columns[0]: [row[0] for row in rows]}, copy=False)
            else:
                frame = pd.DataFrame(data=rows, columns=columns)
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


def _client_request_id(body: Any) -> str | None:
    value = body.get("client_request_id") if isinstance(body, dict) else None
    return value[:256] if isinstance(value, str) else None


def _one_column(columns: Any, rows: Any) -> bool:
    return (
        isinstance(columns, list)
        and len(columns) == 1
        and isinstance(rows, list)
        and all(isinstance(row, list) and len(row) == 1 for row in rows)
    )


def records(frame: Any) -> list[dict[str, Any]]:
    """A predictions DataFrame as JSON-ready rows (NaN -> null), without a JSON round trip."""
    if not all(kind in "OUifb" for kind in (dtype.kind for dtype in frame.dtypes)):
        return list(json.loads(frame.to_json(orient="records", force_ascii=False)))
    keys = [str(column) for column in frame.columns]
    return [
        {k: None if isinstance(v, float) and v != v else v for k, v in zip(keys, row, strict=True)}
        for row in frame.to_numpy(dtype=object).tolist()
    ]
