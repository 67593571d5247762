"""The console's pages: sign-in and sign-out, the endpoints, one endpoint, its query box.

Handlers are thin: they read the manager (the API's dicts), turn them into view records
(:mod:`gcn_rag.console.pages`) and render; changes go through the same library calls and the
same shape checks as the REST API.
"""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gcn_rag.console.guard import (
    Guard,
    Visit,
    check_origin,
    error_page,
    is_https,
    read_form,
)
from gcn_rag.console.inference import LIMIT, WINDOWS, Filters, capturing, one, recent
from gcn_rag.console.live import Live
from gcn_rag.console.pages import (
    WORKLOAD_SIZES,
    EndpointView,
    config_change,
    endpoint_view,
    guardrail_sides,
    render,
)
from gcn_rag.console.query import ask, request_body
from gcn_rag.console.series import Window, window
from gcn_rag.console.served import Choice, Example, Served
from gcn_rag.console.sessions import Session, SignInCodes, cookie_header
from gcn_rag.errors import GcnRagError, NotFoundError, UnauthenticatedError
from gcn_rag.ops.abtest import ABTest, ab_test, has_shadow
from gcn_rag.serving import shapes
from gcn_rag.serving.auth import TokenStore
from gcn_rag.serving.feedback import FeedbackStore
from gcn_rag.serving.invocations import Invocations
from gcn_rag.serving.manager import EndpointManager

HOME = "/endpoints"
REFRESH_MS = 5000  # how often the endpoint page fetches its state and charts again


class Pages:
    """The handlers, over one server's manager, tokens and sessions."""

    def __init__(
        self,
        manager: EndpointManager,
        tokens: TokenStore | None,
        guard: Guard,
        invocations: Invocations,
        live: Live,
        served: Served,
    ) -> None:
        self.manager = manager
        self.tokens = tokens
        self.codes = SignInCodes(tokens.path) if tokens is not None else None
        self.guard = guard
        self.invocations = invocations
        self.live = live
        self.served = served

    # --- signing in and out (the only routes without a session) ------------------------------

    async def home(self, request: Request) -> Response:
        return RedirectResponse(_url(request, HOME), status_code=303)

    async def signin_form(self, request: Request) -> Response:
        """The token form; with ``?code=``, a one-time link that signs in at once."""
        code = request.query_params.get("code")
        if self.codes is None:  # no auth: nothing to sign in to
            return RedirectResponse(_url(request, HOME), status_code=303)
        if code:
            try:
                caller = self.codes.consume(code)
            except GcnRagError as exc:
                return error_page(request, exc)
            return self._signed_in(request, self.guard.sessions.start(caller), HOME)
        target = _next(request, request.query_params.get("next"))
        return render(request, "signin.html", None, next=target, error="")

    async def signin(self, request: Request) -> Response:
        """The token form sent: a session for the token's owner, or the form again with why."""
        if self.tokens is None:
            return RedirectResponse(_url(request, HOME), status_code=303)
        try:
            check_origin(request)
            form = await read_form(request)
            caller = self.tokens.caller(form.get("token", "").strip())
            if caller is None:
                raise UnauthenticatedError(
                    "That token is not known here; create one with `gcn-rag tokens create`."
                )
        except GcnRagError as exc:
            return render(
                request, "signin.html", None, status=exc.status_code, error=exc.message, next=HOME
            )
        session = self.guard.sessions.start(caller)
        return self._signed_in(request, session, _next(request, form.get("next")))

    def _signed_in(self, request: Request, session: Session, target: str) -> Response:
        response = RedirectResponse(_url(request, target), status_code=303)
        response.headers.append("set-cookie", cookie_header(session, secure=is_https(request)))
        return response

    async def signout(self, visit: Visit) -> Response:
        self.guard.sessions.end(visit.session.id)
        target = "/signin" if self.tokens is not None else HOME
        response = RedirectResponse(_url(visit.request, target), status_code=303)
        response.headers.append("set-cookie", cookie_header(None, is_https(visit.request)))
        return response

    # --- endpoints --------------------------------------------------------------------------

    async def endpoints(self, visit: Visit) -> Response:
        views = [endpoint_view(e) for e in self.manager.list()]
        counts = await run_in_threadpool(self.live.last_hour)  # reads Delta: off the loop
        return render(
            visit.request, "endpoints.html", visit.session, endpoints=views, last_hour=counts
        )

    async def endpoint(self, visit: Visit) -> Response:
        """Config, state and charts (refreshed by ``static/live.js``), the update form, logs."""
        name = visit.request.path_params["name"]
        shown = window(visit.request.query_params.get("window"))
        live = await run_in_threadpool(self.live.view, name, shown)
        versions = await run_in_threadpool(self._choices, name)
        ab = await run_in_threadpool(self._ab, name, shown, len(live.endpoint.entities))
        return render(
            visit.request,
            "endpoint.html",
            visit.session,
            endpoint=live.endpoint,
            live=live,
            versions=versions,
            refresh_ms=REFRESH_MS,
            logs=self.manager.logs(name),
            guardrails=guardrail_sides(self.manager.get(name)),
            hits=self.invocations.metrics.guardrail_counts(name),
            sizes=WORKLOAD_SIZES,
            done=visit.request.query_params.get("updated") == "1",
            ab=ab,
        )

    async def live_part(self, visit: Visit) -> Response:
        """Just the endpoint page's live part: what its script fetches every few seconds."""
        name = visit.request.path_params["name"]
        shown = window(visit.request.query_params.get("window"))
        live = await run_in_threadpool(self.live.view, name, shown)
        return render(visit.request, "live.html", visit.session, live=live)

    def _ab(self, name: str, shown: Window, entities: int) -> ABTest | None:
        """The A/B table over the window, when there is more than one arm to compare."""
        target, capture = self.manager.capture_target(name), self.manager.capture
        if target is None or capture is None:
            return None
        start = int(time.time() * 1000) - shown.seconds * 1000
        if entities < 2 and not has_shadow(capture.catalog, target.table, name, since_ms=start):
            return None  # one arm: nothing to compare (and the page stays fast)
        try:
            test = ab_test(capture.catalog, target.table, name, since_ms=start)
        except NotFoundError:  # nothing captured yet
            return None
        return test if test.arms else None

    def _choices(self, name: str) -> dict[str, tuple[Choice, ...]]:
        """Per served entity of ``name``, the versions its model has in the registry."""
        view = endpoint_view(self.manager.get(name))
        return {s.name: self.served.choices(s.entity_name, s.version) for s in view.entities}

    async def change_config(self, visit: Visit) -> Response:
        """The endpoint form: the same checked body and zero-downtime update as the API."""
        name = visit.request.path_params["name"]
        body = config_change(self.manager.get(name), visit.form)
        self.manager.update_config(name, shapes.checked(shapes.EndpointConfig, body))
        target = f"/endpoints/{urllib.parse.quote(name)}?updated=1"
        return RedirectResponse(_url(visit.request, target), status_code=303)

    # --- inference table ----------------------------------------------------------------------

    async def inference(self, visit: Visit) -> Response:
        """Recent requests of every capturing endpoint, filtered by the query string."""
        filters = Filters.parse(visit.request.query_params)
        catalog = self.manager.capture.catalog if self.manager.capture else None
        # DuckDB over Delta: off the event loop, which also serves the invocations
        rows = await run_in_threadpool(recent, catalog, self.manager, filters) if catalog else []
        return render(
            visit.request,
            "inference.html",
            visit.session,
            rows=rows,
            filters=filters,
            endpoints=sorted(capturing(self.manager)),
            captured=catalog is not None,
            windows=WINDOWS,
            limit=LIMIT,
        )

    async def inference_row(self, visit: Visit) -> Response:
        if self.manager.capture is None:
            raise NotFoundError("This server captures no requests.")
        row = await run_in_threadpool(
            one, self.manager.capture.catalog, self.manager, visit.request.path_params["request_id"]
        )
        return render(visit.request, "request.html", visit.session, row=row)

    # --- query ------------------------------------------------------------------------------

    async def query_form(self, visit: Visit, **shown: Any) -> Response:
        """The Query page with the model's input example (and what ``shown`` adds)."""
        name = visit.request.path_params["name"]
        view = endpoint_view(self.manager.get(name))
        example = await run_in_threadpool(self._example, view)
        return render(
            visit.request,
            "query.html",
            visit.session,
            endpoint=view,
            question=example.question,
            raw="",
            example=example.body,
            result=None,
            **shown,
        )

    async def query(self, visit: Visit) -> Response:
        name = visit.request.path_params["name"]
        view = endpoint_view(self.manager.get(name))
        question, raw = visit.form.get("question", ""), visit.form.get("raw", "")
        started = time.perf_counter()
        result = await ask(self.invocations, visit.session, name, request_body(question, raw))
        example = await run_in_threadpool(self._example, view)
        return render(
            visit.request,
            "query.html",
            visit.session,
            endpoint=view,
            question=question,
            raw=raw,
            example=example.body,
            result=result,
            page_ms=(time.perf_counter() - started) * 1000,
        )

    async def feedback(self, visit: Visit) -> Response:
        """A rating and/or comment on an answer: the API's shape check and store; then the
        Query page again, saying so."""
        name = visit.request.path_params["name"]
        fields = ("request_id", "rating", "comment")
        body = {k: v for k, v in visit.form.items() if k in fields and v.strip()}
        checked = shapes.checked(shapes.Feedback, body)
        store = FeedbackStore.of(self.manager)
        row = await run_in_threadpool(
            store.submit, name, requester=visit.session.caller.name, **checked
        )
        return await self.query_form(visit, feedback=row)

    def _example(self, view: EndpointView) -> Example:
        """The input example of the model the endpoint's first entity serves."""
        first = view.entities[0] if view.entities else None
        if first is None:
            return self.served.example("", "")
        return self.served.example(first.entity_name, first.version)


def _url(request: Request, path: str) -> str:
    """``path`` inside the console, wherever it is mounted."""
    return str(request.scope.get("root_path", "")) + path


def _next(request: Request, target: str | None) -> str:
    """Where to go after signing in: a console path only (never another site)."""
    root = str(request.scope.get("root_path", ""))
    if target and target.startswith(root + "/") and "//" not in target and "\\" not in target:
        return target[len(root) :]
    return HOME
