"""The Models page: every registered model of the workspace (name, newest version, aliases,
last updated), and for the one selected (the assistant's unless ``?name=`` names another) its
versions with aliases, status, eval metrics and lineage and a form per alias to move it
(CAN_MANAGE); for the assistant also the recorded comparisons and champion decisions, over the
same registry calls and tables as ``gcn-rag model``; and one comparison's page.

Moving an alias here is ``gcn-rag model alias set``: ``registry.set_alias(..., by_hand=True)``,
so the alias is pinned and ``gcn-rag up`` leaves it where a person put it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

import gcn_rag.console.comparisons as comparisons
import gcn_rag.console.decisions as decisions
from gcn_rag.console.decisions import DecisionView, ModelInfoHistory
from gcn_rag.console.guard import Visit
from gcn_rag.console.pages import render
from gcn_rag.errors import BadInputError, NotFoundError
from gcn_rag.model import registry
from gcn_rag.model.gate import HISTORY_TAG
from gcn_rag.model.registry import ModelSummary, VersionInfo
from gcn_rag.settings import Settings
from gcn_rag.tables import Catalog

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
class ModelRow:
    """One registered model in the page's listing."""

    name: str
    latest: str
    aliases: tuple[tuple[str, str], ...]
    updated: str


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


def model_row(model: ModelSummary) -> ModelRow:
    updated = datetime.fromtimestamp(model.updated / 1000, UTC)
    return ModelRow(
        model.name, model.latest, tuple(model.aliases.items()), f"{updated:%Y-%m-%d %H:%M} UTC"
    )


def alias_views(
    settings: Settings, infos: list[VersionInfo], name: str = registry.MODEL_NAME
) -> list[AliasView]:
    """Every alias of ``name`` that is set, plus the usual ones, with where they point."""
    where = {alias: info.version for info in infos for alias in info.aliases}
    aliases = sorted(set(where) | set(USUAL_ALIASES))
    return [
        AliasView(a, where.get(a, ""), registry.pinned(settings, a, name=name) is not None)
        for a in aliases
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


@dataclasses.dataclass(frozen=True)
class RegistryRead:
    """What the page reads from the registry for one model: versions, aliases, the champions a
    promotion moved through (oldest first; the assistant's only)."""

    infos: list[VersionInfo]
    aliases: list[AliasView]
    champions: list[str]


def champion_history(settings: Settings) -> list[str]:
    """The registered model's ``gcn_rag.champion_history`` (what ``rollback`` walks back)."""
    raw = registry.model_tag(settings, HISTORY_TAG)
    try:
        found = json.loads(raw) if raw else []
    except ValueError:
        return []
    return [str(v) for v in found] if isinstance(found, list) else []


T = TypeVar("T")


class ModelPages:
    """``GET /models``, ``POST /models/aliases/{alias}`` and ``GET /models/comparisons/{id}``
    over one workspace's registry and tables.

    The listing and each model's versions and aliases are read again only when the MLflow store
    changed: reading a model's versions is some 80 MLflow queries (0.1-0.5 s), a page visit
    should not wait for that each time.
    """

    def __init__(self, settings: Settings | None) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        # the store's stamp and what was read under it: "" the listing, a name its RegistryRead
        self._reads: tuple[tuple[int, ...], dict[str, Any]] = ((), {})
        # one catalog for the server's life: its kept DuckDB connection makes queries cheap
        self.catalog = Catalog.from_settings(settings) if settings is not None else None
        self.history = ModelInfoHistory(self.catalog) if self.catalog is not None else None

    def _cached(self, settings: Settings, key: str, read: Callable[[], T]) -> T:
        stamp = store_stamp(settings)  # before reading: a write during the read shows next time
        with self._lock:
            if self._reads[0] == stamp and key in self._reads[1]:
                return self._reads[1][key]  # type: ignore[no-any-return]
        found = read()
        with self._lock:
            if self._reads[0] != stamp:
                self._reads = (stamp, {})
            self._reads[1][key] = found
        return found

    def _listing(self, settings: Settings) -> list[ModelSummary]:
        return self._cached(settings, "", lambda: registry.registered_models(settings))

    def _known(self, settings: Settings, name: str) -> str:
        """``name`` when the registry has such a model, else a 404."""
        if any(m.name == name for m in self._listing(settings)):
            return name
        if name == registry.MODEL_NAME:
            raise NotFoundError(f"No registered model {name}; run `gcn-rag model log --register`.")
        raise NotFoundError(f"This workspace has no registered model {name[:300]!r}.")

    def _registry(self, settings: Settings, name: str = registry.MODEL_NAME) -> RegistryRead:
        def read() -> RegistryRead:
            infos = registry.versions(settings, name=name)
            history = champion_history(settings) if name == registry.MODEL_NAME else []
            return RegistryRead(infos, alias_views(settings, infos, name), history)

        return self._cached(settings, name, read)

    def _workspace(self) -> tuple[Settings, Catalog, ModelInfoHistory]:
        if self.settings is None or self.catalog is None or self.history is None:
            raise NotFoundError("This server was started without a workspace's settings.")
        return self.settings, self.catalog, self.history

    def _decisions(self, settings: Settings) -> tuple[RegistryRead, list[DecisionView]]:
        """The registry read and every champion decision recorded, newest first."""
        read = self._registry(settings)
        history = self._workspace()[2]
        return read, decisions.merged(history.decisions(), decisions.from_tags(read.infos))

    def _models(self, settings: Settings, name: str) -> dict[str, Any]:
        """The listing, the selected model's versions and aliases; for the assistant also its
        comparisons and champion decisions (only recorded for it)."""
        listed = [model_row(m) for m in self._listing(settings)]
        read = self._registry(settings, self._known(settings, name))
        found: dict[str, Any] = {"models": listed, "model": name, "assistant": False}
        found["assistant_name"] = registry.MODEL_NAME
        found |= {"versions": [version_view(i) for i in read.infos], "aliases": read.aliases}
        if name != registry.MODEL_NAME:
            return found
        decided = self._decisions(settings)[1]
        catalog = self._workspace()[1]
        recent = comparisons.recent(catalog, decisions.verdicts(decided))
        return found | {
            "assistant": True,
            "champions": read.champions,
            "decisions": decided[: decisions.LISTED],
            "comparisons": recent,
        }

    async def models(self, visit: Visit) -> Response:
        settings = self._workspace()[0]
        name = visit.request.query_params.get("name", "") or registry.MODEL_NAME
        found = await run_in_threadpool(self._models, settings, name)
        moved = visit.request.query_params.get("moved", "")
        return render(visit.request, "models.html", visit.session, moved=moved, **found)

    async def comparison(self, visit: Visit) -> Response:
        """One recorded comparison: per category, latency, changed answers; and the
        promotions decided on it."""
        settings, catalog, _ = self._workspace()
        wanted = visit.request.path_params["comparison_id"]
        found = await run_in_threadpool(comparisons.one, catalog, wanted)
        decided = (await run_in_threadpool(self._decisions, settings))[1]
        return render(
            visit.request,
            "comparison.html",
            visit.session,
            comparison=found,
            categories=comparisons.category_views(found),
            changed=found.changed[: comparisons.CHANGED_SHOWN],
            decisions=[d for d in decided if d.comparison_id == found.comparison_id],
            when=comparisons.when(found.compared_at),
            ms=comparisons.ms,
        )

    async def move_alias(self, visit: Visit) -> Response:
        """Point the form's model's alias at the form's version, pinned by hand, then back to
        that model's page."""
        settings = self._workspace()[0]
        alias = visit.request.path_params["alias"]
        version = visit.form.get("version", "").strip()
        name = visit.form.get("model", "").strip() or registry.MODEL_NAME
        if not _ALIAS.fullmatch(alias):
            raise BadInputError(f"{alias!r} is not an alias name (letters, digits, - and _).")
        if not version.isdigit():
            raise BadInputError("Choose the version the alias should point at.")
        await run_in_threadpool(self._known, settings, name)
        await run_in_threadpool(
            registry.set_alias, settings, alias, version, name=name, by_hand=True
        )
        query = {"moved": alias} if name == registry.MODEL_NAME else {"name": name, "moved": alias}
        root = str(visit.request.scope.get("root_path", ""))
        return RedirectResponse(f"{root}/models?{urlencode(query)}", status_code=303)
