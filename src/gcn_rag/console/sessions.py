"""Console sign-in: server-side sessions, one-time sign-in codes, and the session cookie.

A session is a random id in a cookie (``HttpOnly; SameSite=Strict; Path=/console``) that names
a :class:`Session` kept in memory: the caller (name and permission level, never their token)
and the session's CSRF value. A restart of the server signs everybody out.

One-time sign-in codes live in the workspace's ``serving.db`` (table ``console_signin``) as
sha256 digests, so any process on the workspace (``gcn-rag up``) can issue one; the console
consumes a code once, within :data:`CODE_TTL_S`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
import threading
import time
from pathlib import Path

from gcn_rag.errors import BadInputError, UnauthenticatedError
from gcn_rag.serving.auth import LEVELS, Caller, TokenStore
from gcn_rag.serving.store import open_state

COOKIE = "gcn_rag_console"
COOKIE_PATH = "/console"
SESSION_IDLE_S = 12 * 3600
#: Sessions kept at most; past it the least recently seen goes (clients without cookies,
#: on a server without auth, each start one).
MAX_SESSIONS = 10_000
CODE_TTL_S = 600
#: What a session id looks like in the Authorization header of a console question.
SESSION_SCHEME = "Console"


@dataclasses.dataclass
class Session:
    """One signed-in browser."""

    id: str
    caller: Caller
    csrf: str
    last_seen: float

    def can(self, needed: str) -> bool:
        return LEVELS[self.caller.permission] >= LEVELS[needed]

    def csrf_matches(self, sent: str | None) -> bool:
        return sent is not None and hmac.compare_digest(sent.encode(), self.csrf.encode())


class Sessions:
    """The signed-in sessions of one server, in memory."""

    def __init__(self, idle_s: float = SESSION_IDLE_S, limit: int = MAX_SESSIONS) -> None:
        self.idle_s = idle_s
        self.limit = limit
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}

    def start(self, caller: Caller) -> Session:
        session = Session(secrets.token_urlsafe(32), caller, secrets.token_urlsafe(32), 0.0)
        session.last_seen = time.monotonic()
        with self._lock:
            self._drop_idle(session.last_seen)
            if len(self._sessions) >= self.limit:
                oldest = min(self._sessions.values(), key=lambda s: s.last_seen)
                del self._sessions[oldest.id]
            self._sessions[session.id] = session
        return session

    def find(self, session_id: str | None) -> Session | None:
        """The live session called ``session_id`` (its idle clock restarts), or None."""
        if not session_id:
            return None
        now = time.monotonic()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None or now - session.last_seen > self.idle_s:
                self._sessions.pop(session_id, None)
                return None
            session.last_seen = now
            return session

    def end(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)

    def _drop_idle(self, now: float) -> None:
        for key in [k for k, s in self._sessions.items() if now - s.last_seen > self.idle_s]:
            del self._sessions[key]

    # --- the Authority protocol: console questions go through the API's invocations handler

    def identify(self, header: str | None) -> Caller:
        """The caller of ``Console <session id>`` (set by the console itself), or 401."""
        scheme, _, session_id = (header or "").partition(" ")
        session = self.find(session_id) if scheme == SESSION_SCHEME else None
        if session is None:
            raise UnauthenticatedError("Your console session has ended; sign in again.")
        return session.caller

    @staticmethod
    def require(caller: Caller, needed: str) -> None:
        TokenStore.require(caller, needed)


def cookie_header(session: Session | None, secure: bool) -> str:
    """The ``Set-Cookie`` value that stores ``session`` (or, for None, clears the cookie)."""
    value, age = (session.id, SESSION_IDLE_S) if session else ("", 0)
    flags = f"Path={COOKIE_PATH}; Max-Age={age}; HttpOnly; SameSite=Strict"
    return f"{COOKIE}={value}; {flags}" + ("; Secure" if secure else "")


def _digest(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


class SignInCodes:
    """One-time sign-in codes (for links such as ``/console/signin?code=…``)."""

    def __init__(self, path: Path) -> None:
        self._db, self._lock = open_state(
            path,
            "CREATE TABLE IF NOT EXISTS console_signin (digest TEXT PRIMARY KEY, "
            "permission TEXT NOT NULL, name TEXT NOT NULL, expires_ms INTEGER NOT NULL)",
        )

    def issue(self, permission: str, name: str, ttl_s: float = CODE_TTL_S) -> str:
        """A new code that signs in once as ``name`` with ``permission``, within ``ttl_s``."""
        if permission not in LEVELS:
            raise BadInputError(f"permission must be one of {', '.join(LEVELS)}.")
        code = secrets.token_urlsafe(24)
        expires = int((time.time() + ttl_s) * 1000)
        with self._lock, self._db:
            self._db.execute("DELETE FROM console_signin WHERE expires_ms < ?", (_now_ms(),))
            self._db.execute(
                "INSERT INTO console_signin VALUES (?, ?, ?, ?)",
                (_digest(code), permission, name, expires),
            )
        return code

    def consume(self, code: str) -> Caller:
        """The caller a code signs in, once; 401 if unknown, used or expired."""
        with self._lock, self._db:
            row = self._db.execute(
                "DELETE FROM console_signin WHERE digest = ? RETURNING permission, name, "
                "expires_ms",
                (_digest(code),),
            ).fetchone()
        if row is None or int(row[2]) < _now_ms():
            raise UnauthenticatedError(
                "This sign-in link was used already or has expired; sign in with a token, or "
                "run `gcn-rag up` again for a new link."
            )
        return Caller(str(row[1]), str(row[0]))


def _now_ms() -> int:
    return int(time.time() * 1000)
