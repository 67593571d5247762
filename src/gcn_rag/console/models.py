"""The Models page: registered versions with aliases, status, eval metrics and lineage, and a
form per alias to move it (CAN_MANAGE), over the same registry calls as ``gcn-rag model``.

Moving an alias here is ``gcn-rag model alias set``: ``registry.set_alias(..., by_hand=True)``,
so the alias is pinned and ``gcn-rag up`` leaves it where a person put it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import threading
from datetime import UTC, datetime

from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from gcn_rag.console.guard import Visit
from gcn_rag.console.pages import render
from gcn_rag.errors import BadInputError, NotFoundError
from gcn_rag.model import registry
from gcn_rag.model.registry import VersionInfo
from gcn_rag.settings import Settings

#: aliases the page always offers a form for, set or not
USUAL_ALIASES = ("champion", "challenger")
_ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
#: lineage tags as the page labels them (packaging.lineage writes them)
LINEAGE = (
    ("corpus_count", "corpus circulars"),
    ("corpus_max_circular_id", "newest circular"),
    ("corpus_hash", "corpus hash"),
    ("index_content_hash", "index content hash"),
    ("gcn_rag_version", "gcn-rag version"),
    ("gcn_rag_code_hash", "code hash"),
    ("git_commit", "git commit"),
    ("gcn_rag_config_hash", "config hash"),
)


@dataclasses.dataclass(frozen=True)
class VersionView:
    """One registered version as the page shows it."""

    version: str
    aliases: tuple[str, ...]
    status: str
    created: str
    run_id: str
    metrics: tuple[tuple[str, str], ...]
    lineage: tuple[tuple[str, str], ...]


@dataclasses.dataclass(frozen=True)
class AliasView:
    """One alias: where it points (empty when unset) and whether a person pinned it."""

    name: str
    version: str
    pinned: bool


def version_view(info: VersionInfo) -> VersionView:
    created = datetime.fromtimestamp(info.created / 1000, UTC)
    return VersionView(
        version=info.version,
        aliases=tuple(info.aliases),
        status=info.status,
        created=f"{created:%Y-%m-%d %H:%M} UTC",
        run_id=info.run_id,
        metrics=tuple((k, f"{v:.3f}") for k, v in sorted(info.metrics.items())),
        lineage=tuple((label, info.tags[k]) for k, label in LINEAGE if info.tags.get(k)),
    )


def alias_views(settings: Settings, infos: list[VersionInfo]) -> list[AliasView]:
    """Every alias that is set, plus the usual ones, with where they point."""
    where = {alias: info.version for info in infos for alias in info.aliases}
    names = sorted(set(where) | set(USUAL_ALIASES))
    return [
        AliasView(name, where.get(name, ""), registry.pinned(settings, name) is not None)
        for name in names
    ]


def store_stamp(settings: Settings) -> tuple[int, ...]:
    """What changes whenever the MLflow store is written: its file's (and journal's) mtime and
    size."""
    stamp: list[int] = []
    for path in (settings.mlflow_store, settings.mlflow_store.with_name("mlflow.db-wal")):
        with contextlib.suppress(OSError):
            found = path.stat()
            stamp += [found.st_mtime_ns, found.st_size]
    return tuple(stamp)


class ModelPages:
    """``GET /models`` and ``POST /models/aliases/{alias}`` over one workspace's registry.

    The versions and aliases are read again only when the MLflow store changed: reading them
    is some 80 MLflow queries (0.1-0.5 s), a page visit should not wait for that each time.
    """

    def __init__(self, settings: Settings | None) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._read: tuple[tuple[int, ...], list[VersionInfo], list[AliasView]] | None = None

    def _registry(self, settings: Settings) -> tuple[list[VersionInfo], list[AliasView]]:
        stamp = store_stamp(settings)  # before reading: a write during the read shows next time
        with self._lock:
            if self._read is not None and self._read[0] == stamp:
                return self._read[1], self._read[2]
        infos = registry.versions(settings)
        aliases = alias_views(settings, infos)
        with self._lock:
            self._read = (stamp, infos, aliases)
        return infos, aliases

    def _workspace(self) -> Settings:
        if self.settings is None:
            raise NotFoundError("This server was started without a workspace's settings.")
        return self.settings

    async def models(self, visit: Visit) -> Response:
        settings = self._workspace()
        infos, aliases = await run_in_threadpool(self._registry, settings)
        return render(
            visit.request,
            "models.html",
            visit.session,
            model=registry.MODEL_NAME,
            versions=[version_view(i) for i in infos],
            aliases=aliases,
            moved=visit.request.query_params.get("moved", ""),
        )

    async def move_alias(self, visit: Visit) -> Response:
        """Point the alias at the form's version, pinned by hand, then back to the page."""
        settings = self._workspace()
        alias = visit.request.path_params["alias"]
        version = visit.form.get("version", "").strip()
        if not _ALIAS.fullmatch(alias):
            raise BadInputError(f"{alias!r} is not an alias name (letters, digits, - and _).")
        if not version.isdigit():
            raise BadInputError("Choose the version the alias should point at.")
        await run_in_threadpool(registry.set_alias, settings, alias, version, by_hand=True)
        root = str(visit.request.scope.get("root_path", ""))
        return RedirectResponse(f"{root}/models?moved={alias}", status_code=303)
