"""The console's route table and its error pages.

Every route but sign-in and the static files is wrapped by :meth:`Guard.page` with the
permission level it needs; the table below is the one place to see who may do what.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from gcn_rag.console.ask import AskPage
from gcn_rag.console.guard import Guard, error_page
from gcn_rag.console.live import Live
from gcn_rag.console.models import ModelPages
from gcn_rag.console.reports import ReportPages
from gcn_rag.console.routes import Pages
from gcn_rag.console.served import Served
from gcn_rag.console.sessions import Sessions
from gcn_rag.console.timeline import Timeline
from gcn_rag.errors import BadInputError, GcnRagError, MethodNotAllowedError, NotFoundError
from gcn_rag.serving.auth import TokenStore
from gcn_rag.serving.invocations import Invocations
from gcn_rag.serving.manager import EndpointManager
from gcn_rag.serving.metrics import Metrics
from gcn_rag.settings import Settings


def build(
    manager: EndpointManager,
    tokens: TokenStore | None,
    metrics: Metrics,
    settings: Settings | None = None,
) -> Starlette:
    """The console over ``manager``; its questions are counted in the API's ``metrics``;
    ``settings`` (the workspace) feed the Models page and the Ask page's dossiers."""
    sessions = Sessions()
    guard = Guard(sessions, auth=tokens is not None)
    invocations = Invocations(manager, sessions, metrics)
    timeline = Timeline(metrics, manager)
    timeline.start()
    pages = Pages(manager, tokens, guard, invocations, Live(manager, timeline), Served(settings))
    models, asking = ModelPages(settings), AskPage(invocations, settings)
    reports = ReportPages(settings)
    page = guard.page
    routes = [
        Route("/", pages.home, methods=["GET"]),
        Route("/signin", pages.signin_form, methods=["GET"]),
        Route("/signin", pages.signin, methods=["POST"]),
        Route("/signout", page("CAN_VIEW", pages.signout), methods=["POST"]),
        Route("/endpoints", page("CAN_VIEW", pages.endpoints), methods=["GET"]),
        Route("/endpoints/{name}", page("CAN_VIEW", pages.endpoint), methods=["GET"]),
        Route("/endpoints/{name}/live", page("CAN_VIEW", pages.live_part), methods=["GET"]),
        Route(
            "/endpoints/{name}/config", page("CAN_MANAGE", pages.change_config), methods=["POST"]
        ),
        Route("/endpoints/{name}/query", page("CAN_VIEW", pages.query_form), methods=["GET"]),
        Route("/endpoints/{name}/query", page("CAN_QUERY", pages.query), methods=["POST"]),
        Route("/endpoints/{name}/feedback", page("CAN_QUERY", pages.feedback), methods=["POST"]),
        Route("/inference", page("CAN_VIEW", pages.inference), methods=["GET"]),
        Route("/inference/{request_id}", page("CAN_VIEW", pages.inference_row), methods=["GET"]),
        Route("/models", page("CAN_VIEW", models.models), methods=["GET"]),
        Route("/models/aliases/{alias}", page("CAN_MANAGE", models.move_alias), methods=["POST"]),
        Route(
            "/models/comparisons/{comparison_id}",
            page("CAN_VIEW", models.comparison),
            methods=["GET"],
        ),
        Route("/ask", page("CAN_VIEW", asking.form), methods=["GET"]),
        Route("/ask", page("CAN_QUERY", asking.answer), methods=["POST"]),
        Route("/reports", page("CAN_VIEW", reports.reports), methods=["GET"]),
        Route("/reports/monitor/{file}", page("CAN_VIEW", reports.monitor_png), methods=["GET"]),
        Route(
            "/reports/loadtest/{run_id}/loadtest.png",
            page("CAN_VIEW", reports.loadtest_png),
            methods=["GET"],
        ),
        Route("/reports/{kind}/{run_id}", page("CAN_VIEW", reports.run), methods=["GET"]),
        Mount("/static", StaticFiles(packages=[("gcn_rag.console", "static")]), name="static"),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, Exception: _unknown_error},
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    """Routing errors (no such page, wrong method) as pages."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    error: GcnRagError
    if status == 404:
        error = NotFoundError(f"There is no console page at {request.url.path}.")
    elif status == 405:
        error = MethodNotAllowedError(f"{request.method} is not allowed on {request.url.path}.")
    else:
        error = BadInputError(str(getattr(exc, "detail", exc)))
    return error_page(request, error)


async def _unknown_error(request: Request, exc: Exception) -> Response:
    """A bug of ours: a page with the message, never a stack trace."""
    return error_page(request, GcnRagError(f"{type(exc).__name__}: {exc}"))
