"""The server's state in SQLite (``<home>/serving.db``): endpoint definitions survive a restart.

Tokens live in the same file (:mod:`gcn_rag.serving.auth`); :func:`open_state` opens it for
either, shared across threads. So does the running server's address (table ``server``: one row
``url, pid, started_ms`` while a server owns the workspace), which HTTP commands read to find
their workspace's own server (:func:`recorded_server`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path

from gcn_rag.errors import AlreadyExistsError
from gcn_rag.serving.endpoints import Endpoint


def open_state(path: Path, schema: str) -> tuple[sqlite3.Connection, threading.Lock]:
    """The server's SQLite state file (``<home>/serving.db``), shared across threads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), check_same_thread=False)
    lock = threading.Lock()
    with lock, db:
        db.execute(schema)
    return db, lock


class EndpointStore:
    """Endpoint definitions in SQLite, so they survive a restart.

    One server owns a workspace's endpoints at a time: the store holds an exclusive lock on
    ``serving.lock`` beside the database until :meth:`close` (or the process ends), so a
    second server on the same workspace fails at start instead of overwriting the first's
    state.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._owner = open(path.with_suffix(".lock"), "a+", encoding="utf-8")  # noqa: SIM115
        try:
            fcntl.flock(self._owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._owner.seek(0)
            pid = self._owner.read().strip() or "unknown"
            self._owner.close()
            raise AlreadyExistsError(
                f"Another gcn-rag server (pid {pid}) is serving the endpoints of "
                f"{path.parent}; stop it first, or give this one another GCN_RAG_HOME."
            ) from None
        self._owner.truncate(0)
        self._owner.write(str(os.getpid()))
        self._owner.flush()
        self._db, self._lock = open_state(
            path, "CREATE TABLE IF NOT EXISTS endpoints (name TEXT PRIMARY KEY, body TEXT NOT NULL)"
        )

    def close(self) -> None:
        """Release the workspace for another server (and forget where this one listened)."""
        with self._lock:
            if self._owner.closed:
                return
            with contextlib.suppress(sqlite3.Error), self._db:
                self._db.execute(_SERVER_TABLE)
                self._db.execute("DELETE FROM server")
            self._owner.close()
            self._db.close()

    def record_server(self, url: str) -> None:
        """Note where this workspace's server listens, for the CLI's HTTP commands."""
        with self._lock, self._db:
            self._db.execute(_SERVER_TABLE)
            self._db.execute("DELETE FROM server")
            self._db.execute(
                "INSERT INTO server VALUES (?, ?, ?)", (url, os.getpid(), int(time.time() * 1000))
            )

    def save(self, endpoint: Endpoint) -> None:
        body = json.dumps(dataclasses.asdict(endpoint))
        with self._lock:
            if self._owner.closed:
                return  # closed: a late background save must not resurrect state
            with self._db:
                self._db.execute(
                    "INSERT OR REPLACE INTO endpoints VALUES (?, ?)", (endpoint.name, body)
                )

    def delete(self, name: str) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM endpoints WHERE name = ?", (name,))

    def all(self) -> list[Endpoint]:
        with self._lock:
            rows = self._db.execute("SELECT body FROM endpoints ORDER BY name").fetchall()
        return [Endpoint(**json.loads(body)) for (body,) in rows]


WORKSPACE_HEADER = "X-Gcn-Rag-Workspace"  # GET /health answers the server's workspace_id
_SERVER_TABLE = (
    "CREATE TABLE IF NOT EXISTS server (url TEXT NOT NULL, pid INTEGER, started_ms INTEGER)"
)


def recorded_server(path: Path) -> str | None:
    """The URL the workspace's server recorded in ``path`` (``serving.db``), if any.

    Read-only: it never creates the file, so it works on a workspace it may not write.
    """
    if not path.exists():
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT url FROM server").fetchone()
    except sqlite3.Error:  # no such table: no server ever recorded itself here
        return None
    finally:
        db.close()
    return str(row[0]) if row else None


def workspace_id(home: Path) -> str:
    """Which directory ``home`` is: the same after ``mv`` (same inode), new in a copy.

    A server answers it in a header; a command compares it with its own workspace's before it
    trusts the recorded server, so a copied workspace never drives the original's server.
    """
    stat = home.resolve().stat()
    return hashlib.sha256(f"{stat.st_dev}:{stat.st_ino}".encode()).hexdigest()[:16]
