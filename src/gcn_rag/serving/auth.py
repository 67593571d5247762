"""Bearer tokens for the serving API, with Databricks' permission levels.

Tokens are random (``dapi`` + 32 hex digits), shown once at creation and stored only as
sha256 hashes in ``<home>/serving.db``. Levels are ordered: ``CAN_VIEW`` (read endpoint
state) < ``CAN_QUERY`` (also invoke) < ``CAN_MANAGE`` (also create, update, delete).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from pathlib import Path
from typing import NamedTuple, Protocol

from gcn_rag.errors import BadInputError, PermissionDeniedError, UnauthenticatedError
from gcn_rag.serving.store import open_state

LEVELS = {"CAN_VIEW": 1, "CAN_QUERY": 2, "CAN_MANAGE": 3}


class Caller(NamedTuple):
    """Who made a request: a name safe to log (never the token) and their permission."""

    name: str
    permission: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Authority(Protocol):
    """Who may invoke: :class:`TokenStore`, or the console's sessions."""

    def identify(self, header: str | None) -> Caller: ...

    def require(self, caller: Caller, needed: str) -> None: ...


class TokenStore:
    """Hashed tokens and their permission level."""

    def __init__(self, path: Path) -> None:
        self.path = path  # the workspace's serving.db (the console keeps sign-in codes there)
        self._db, self._lock = open_state(
            path,
            "CREATE TABLE IF NOT EXISTS tokens (digest TEXT PRIMARY KEY, "
            "permission TEXT NOT NULL, comment TEXT, created_ms INTEGER NOT NULL)",
        )
        # Tokens are never changed or revoked (there is no such command), so a token found
        # once stays valid: later requests skip the database (0.15 ms per query). Unknown
        # tokens are looked up every time, so one created by another process works at once.
        # A revoke command would have to clear this.
        self._known: dict[str, Caller] = {}

    def create(self, permission: str, comment: str = "") -> str:
        """A new token with ``permission``; the only time the token itself is visible."""
        if permission not in LEVELS:
            raise BadInputError(f"permission must be one of {', '.join(LEVELS)}.")
        token = "dapi" + secrets.token_hex(16)
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO tokens VALUES (?, ?, ?, ?)",
                (_digest(token), permission, comment, int(time.time() * 1000)),
            )
        return token

    def caller(self, token: str) -> Caller | None:
        """The token's owner: its comment (or ``token-<digest prefix>``) and permission."""
        digest = _digest(token)
        known = self._known.get(digest)
        if known is not None:
            return known
        with self._lock:
            row = self._db.execute(
                "SELECT permission, comment FROM tokens WHERE digest = ?", (digest,)
            ).fetchone()
        if row is None:
            return None
        caller = self._known[digest] = Caller(str(row[1] or f"token-{digest[:8]}"), str(row[0]))
        return caller

    def is_token(self, token: str) -> bool:
        """Whether ``token`` is a bearer token of this server (for the PII guardrails)."""
        return self.caller(token) is not None

    def authorize(self, header: str | None, needed: str) -> Caller:
        """The caller, or 401 (no/unknown token) / 403 (too little permission)."""
        caller = self.identify(header)
        self.require(caller, needed)
        return caller

    def identify(self, header: str | None) -> Caller:
        """Who an ``Authorization`` header names (the scheme is case-insensitive), or 401."""
        scheme, _, token = (header or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise UnauthenticatedError(
                "Missing bearer token; send 'Authorization: Bearer <token>' (create one with "
                "`gcn-rag tokens create --permission CAN_QUERY`)."
            )
        caller = self.caller(token.strip())
        if caller is None:
            raise UnauthenticatedError("Invalid token; create one with `gcn-rag tokens create`.")
        return caller

    @staticmethod
    def require(caller: Caller, needed: str) -> None:
        """403 unless ``caller`` has at least the ``needed`` permission."""
        if LEVELS[caller.permission] < LEVELS[needed]:
            raise PermissionDeniedError(f"This needs {needed}; the token has {caller.permission}.")


def saved_token(path: Path) -> str | None:
    """The token kept in ``path`` (the workspace's token file), if there is one."""
    return path.read_text().strip() or None if path.exists() else None


def manage_token(store: TokenStore, path: Path) -> str:
    """A CAN_MANAGE token for the CLI: the one kept in ``path`` if still valid, else a new
    one, kept there in a file only its owner can read (mode 0600)."""
    token = saved_token(path)
    if token is not None and store.caller(token) is not None:
        return token
    token = store.create("CAN_MANAGE", "gcn-rag up")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return token
