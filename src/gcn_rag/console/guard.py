"""The guard around every console route: a session, the permission level it needs, and, for
a form that changes something, the CSRF value and the Origin; errors become readable pages.

A route is declared with :func:`page` and the level it needs; there is no way to declare one
without. A GET without a session goes to the sign-in page; a POST without one is refused.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gcn_rag.console.pages import render
from gcn_rag.console.sessions import COOKIE, Session, Sessions, cookie_header
from gcn_rag.errors import BadInputError, GcnRagError, PermissionDeniedError, UnauthenticatedError
from gcn_rag.serving.auth import Caller

MAX_FORM_BYTES = 64 * 1024
ANONYMOUS = Caller("anonymous", "CAN_MANAGE")  # without auth (loopback only), as the API does


@dataclasses.dataclass(frozen=True)
class Visit:
    """One guarded request: who is asking and, for a POST, the form they sent."""

    request: Request
    session: Session
    form: dict[str, str]


Handler = Callable[[Visit], Awaitable[Response]]


class Guard:
    """Sessions and the rules every route follows."""

    def __init__(self, sessions: Sessions, auth: bool) -> None:
        self.sessions = sessions
        self.auth = auth

    def session(self, request: Request) -> Session | None:
        """The request's session; without auth, a new anonymous one if it has none."""
        found = self.sessions.find(request.cookies.get(COOKIE))
        if found is None and not self.auth:
            found = self.sessions.start(ANONYMOUS)
            request.state.new_session = found
        return found

    def page(self, needed: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """``handler`` behind a session with at least ``needed``, and CSRF checks on POST."""

        async def guarded(request: Request) -> Response:
            session = None
            try:
                session = self.session(request)
                if session is None:
                    if request.method == "GET":
                        return RedirectResponse(signin_url(request), status_code=303)
                    raise UnauthenticatedError("Your session has ended; sign in again.")
                form: dict[str, str] = {}
                if request.method == "POST":
                    check_origin(request)
                    form = await read_form(request)
                    if not session.csrf_matches(form.get("csrf")):
                        raise PermissionDeniedError(
                            "This form is out of date or came from another site; reload the "
                            "page and send it again."
                        )
                if not session.can(needed):
                    raise PermissionDeniedError(
                        f"This needs {needed}; you are signed in with {session.caller.permission}."
                    )
                response = await handler(Visit(request, session, form))
            except GcnRagError as exc:
                response = error_page(request, exc, session)
            return with_new_session(request, response)

        return guarded


def signin_url(request: Request) -> str:
    """The sign-in page, remembering where the visitor was going (a console path only)."""
    root = request.scope.get("root_path", "")
    return f"{root}/signin?" + urllib.parse.urlencode({"next": request.url.path})


def check_origin(request: Request) -> None:
    """403 when the browser says the form comes from another site (its ``Origin``; without
    one, the CSRF value and the SameSite cookie still hold)."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    if urllib.parse.urlsplit(origin).netloc != request.headers.get("host"):
        raise PermissionDeniedError(
            "This form was sent from another site; open the console and send it from there."
        )


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form (the last value of each field), at most :data:`MAX_FORM_BYTES`."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise BadInputError(f"The form is over {MAX_FORM_BYTES // 1024} kB.")
    pairs = urllib.parse.parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return dict(pairs)


def error_page(request: Request, exc: GcnRagError, session: Session | None = None) -> Response:
    """A page a person can read: the status, the message, and where to go next."""
    found = session or getattr(request.state, "new_session", None)
    return render(
        request,
        "error.html",
        found,
        status=exc.status_code,
        status_code=exc.status_code,
        message=exc.message,
        signin=exc.status_code == 401,
    )


def with_new_session(request: Request, response: Response) -> Response:
    """Set the cookie of a session started for this request (anonymous, without auth)."""
    started = getattr(request.state, "new_session", None)
    if started is not None:
        response.headers.append("set-cookie", cookie_header(started, secure=is_https(request)))
    return response


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"
