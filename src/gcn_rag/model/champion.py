"""The ``champion`` alias: which version ``gcn-rag up`` serves, and when it may move it.

A version matches the workspace when its lineage tags name the same index content, code and
config as a model logged now would (:func:`gcn_rag.model.packaging.fingerprint`); build times
and paths do not count. ``up`` keeps a matching champion, moves champion to a matching
version that exists, or logs a new one. It never moves a champion a person pinned
(``gcn-rag model alias set``); ``gcn-rag model promote`` hands it back.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from gcn_rag.errors import NotFoundError
from gcn_rag.model import registry
from gcn_rag.model.registry import VersionInfo

if TYPE_CHECKING:
    from gcn_rag.settings import Settings

CHAMPION = "champion"


@dataclasses.dataclass(frozen=True)
class Plan:
    """What ``up`` finds: where champion points, and the version to serve.

    ``serve`` is None when no version matches the workspace (log a new one); ``pinned`` when
    a person set champion (serve it, whether or not it matches: ``matches`` says).
    """

    current: VersionInfo | None
    serve: VersionInfo | None
    pinned: bool = False
    matches: bool = False

    @property
    def moves(self) -> bool:
        """Champion moves to an existing version (not pinned, one matching elsewhere)."""
        return self.serve is not None and self.serve != self.current


def matches(info: VersionInfo, wanted: dict[str, str]) -> bool:
    return all(info.tags.get(key) == value for key, value in wanted.items())


def plan(settings: Settings) -> Plan:
    """Decide about champion for the workspace's index, code and config (nothing changes)."""
    from gcn_rag.model.packaging import fingerprint

    wanted = fingerprint(settings)
    try:
        known = registry.versions(settings)
    except NotFoundError:
        return Plan(None, None)
    current = next((v for v in known if CHAMPION in v.aliases), None)
    if current is not None and registry.pinned(settings, CHAMPION) == current.version:
        return Plan(current, current, pinned=True, matches=matches(current, wanted))
    if current is not None and matches(current, wanted):
        return Plan(current, current, matches=True)
    ready = (v for v in known if v.status == "READY" and matches(v, wanted))
    found = next(ready, None)
    return Plan(current, found, matches=found is not None)


def promote(settings: Settings, ref: str | None = None) -> VersionInfo:
    """Point champion at ``ref`` (a version or alias; default: the newest version) and clear
    any pin, so ``up`` manages it again."""
    known = registry.versions(settings)
    target = known[0] if ref is None else registry.resolve(settings, ref)
    registry.set_alias(settings, CHAMPION, target.version)
    return registry.resolve(settings, target.version)


def current(settings: Settings) -> VersionInfo | None:
    """The version champion points at, or None (no model, or no champion)."""
    try:
        known = registry.versions(settings)
    except NotFoundError:
        return None
    return next((v for v in known if CHAMPION in v.aliases), None)
