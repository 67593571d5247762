"""The server's state in SQLite (``<home>/serving.db``): endpoint definitions survive a restart.

Tokens live in the same file (:mod:`gcn_rag.serving.auth`); :func:`open_state` opens it for
either, shared across threads.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import sqlite3
import threading
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
        """Release the workspace for another server."""
        with self._lock:
            self._owner.close()
            self._db.close()

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
