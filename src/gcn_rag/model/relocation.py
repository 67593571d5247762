"""A moved or copied workspace re-points its MLflow store at its own artifacts.

MLflow records absolute artifact URIs: the experiment's artifact location, each run's
artifact URI, each logged model's and model version's storage location. A workspace copied
or moved elsewhere would then log into, and load from, the original directory. Before MLflow
opens the workspace's ``mlflow.db``, :func:`repoint_artifacts` rewrites every URI under the
old ``mlartifacts`` directory to the same path under the current one, in that database only.
"""

from __future__ import annotations

import logging
import sqlite3
from contextlib import closing
from pathlib import Path
from urllib.parse import unquote, urlparse

log = logging.getLogger(__name__)


def repoint_artifacts(store: Path, artifacts: Path, experiment: str) -> Path | None:
    """Rewrite ``store``'s artifact URIs from the artifact root ``experiment`` was created
    with to ``artifacts``, when that root is another workspace's (a directory of the same
    name elsewhere). A store that is a link to another workspace's keeps that workspace's
    artifacts. Returns the old root, or None when nothing was re-pointed."""
    if not store.is_file():
        return None
    if store.is_symlink():  # a store shared from elsewhere: its artifacts are beside it there
        artifacts = store.resolve().parent / artifacts.name
    new = artifacts.resolve().as_uri()
    with closing(sqlite3.connect(store)) as db:
        _contain_default_experiment(db, new)
        old = _artifact_root(db, experiment)
        if old is None or old == new or not old.startswith("file://"):
            return None
        old_path = Path(unquote(urlparse(old).path))
        if old_path.name != artifacts.name:  # not a workspace's own artifact directory
            return None
        with db:  # one transaction
            for prefix, replacement in ((old, new), (str(old_path), str(artifacts.resolve()))):
                _replace_prefix(db, prefix, replacement)
    log.warning(
        "This workspace was moved or copied: its MLflow artifact locations now point at %s "
        "(were %s).",
        artifacts.resolve(),
        old_path,
    )
    return old_path


def _artifact_root(db: sqlite3.Connection, experiment: str) -> str | None:
    try:
        row = db.execute(
            "SELECT artifact_location FROM experiments WHERE name = ?", (experiment,)
        ).fetchone()
    except sqlite3.OperationalError:  # not an MLflow store (yet)
        return None
    return str(row[0]) if row and row[0] else None


def _contain_default_experiment(db: sqlite3.Connection, root: str) -> None:
    """MLflow creates experiment 0 with ``./mlruns`` of the current directory as its artifact
    location; point it into the workspace, so a run logged there stays inside."""
    try:
        row = db.execute("SELECT artifact_location FROM experiments WHERE experiment_id = 0")
        found = row.fetchone()
    except sqlite3.OperationalError:
        return
    if found is not None and not str(found[0]).startswith(root + "/"):
        with db:
            db.execute(
                "UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                (root + "/0",),
            )


def _replace_prefix(db: sqlite3.Connection, old: str, new: str) -> None:
    """In every text column of every table: ``old`` and ``old/...`` become ``new``, ``new/...``."""
    tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for table in tables:
        for column in db.execute(f'PRAGMA table_info("{table}")').fetchall():
            name, kind = str(column[1]), str(column[2]).upper()
            if not any(text in kind for text in ("CHAR", "TEXT", "CLOB")):
                continue
            db.execute(
                f'UPDATE "{table}" SET "{name}" = ? || substr("{name}", ?) '
                f'WHERE "{name}" = ? OR substr("{name}", 1, ?) = ?',
                (new, len(old) + 1, old, len(old) + 1, old + "/"),
            )
