"""Champion decisions (``gcn-rag model promote`` / ``rollback``) as the Models page shows them,
read from what :mod:`gcn_rag.model.gate` records:

- every commit of ``rag_model_info`` written by a move carries the decision
  (``champion.decision``, ``champion.previous_champion``, …): the moves, all of them;
- the ``gcn_rag.decision`` tag on a version holds the last decision that named it, refusals
  included (a refusal moves nothing, so it is only there).

Both are merged (a move is in both) and listed newest first.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import urllib.parse
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gcn_rag.model.gate import DECISION_TAG

if TYPE_CHECKING:
    from gcn_rag.model.registry import VersionInfo
    from gcn_rag.tables import Catalog

MODEL_INFO = "rag_model_info"
LISTED = 20  # decisions on the Models page
COMMITS_READ = 100  # the newest commits of rag_model_info looked at
_PREFIX = "champion."


@dataclasses.dataclass(frozen=True)
class DecisionView:
    """One decision: ``champion`` is the champion after it, ``previous`` the one before."""

    decision: str  # promoted | refused | forced | unmeasured | unpinned | rolled back
    champion: str
    candidate: str
    previous: str
    decided_at: str  # ISO 8601, seconds, UTC (as gate records it)
    reasons: tuple[str, ...]
    comparison_id: str

    @property
    def forced(self) -> bool:
        return self.decision == "forced"

    @property
    def when(self) -> str:
        try:
            return f"{datetime.fromisoformat(self.decided_at):%Y-%m-%d %H:%M:%S} UTC"
        except ValueError:
            return self.decided_at


def decision_view(record: dict[str, str]) -> DecisionView:
    """A decision as ``gate.Decision.record`` writes it (tag or ``rag_model_info`` rows)."""
    reasons = str(record.get("reasons") or "")
    return DecisionView(
        decision=str(record.get("decision", "")),
        champion=str(record.get("champion", "")),
        candidate=str(record.get("candidate", "")),
        previous=str(record.get("previous_champion", "")),
        decided_at=str(record.get("decided_at", "")),
        reasons=tuple(r for r in reasons.split("; ") if r),
        comparison_id=str(record.get("comparison_id", "")),
    )


def from_tags(infos: Iterable[VersionInfo]) -> list[DecisionView]:
    """The last decision recorded on each version."""
    found = []
    for info in infos:
        raw = info.tags.get(DECISION_TAG)
        if raw:
            try:
                found.append(decision_view(json.loads(raw)))
            except (ValueError, AttributeError):  # not gate's JSON: not a decision to show
                continue
    return found


class ModelInfoHistory:
    """The moves recorded in ``rag_model_info``'s commits. A past commit never changes, so
    each is read once (a page visit reads only the commits written since the last)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._lock = threading.Lock()
        self._seen: dict[int, DecisionView | None] = {}

    def decisions(self) -> list[DecisionView]:
        from deltalake import DeltaTable

        if not self.catalog.exists(MODEL_INFO):
            return []
        path = str(self.catalog.path(MODEL_INFO))
        newest = DeltaTable(path).version()
        found = []
        for version in range(newest, max(-1, newest - COMMITS_READ), -1):
            with self._lock:
                known = version in self._seen
                decision = self._seen.get(version)
            if not known:
                decision = _commit(path, version)
                with self._lock:
                    self._seen[version] = decision
            if decision is not None:
                found.append(decision)
        return found


def _commit(path: str, version: int) -> DecisionView | None:
    """The decision one commit of ``rag_model_info`` records (None: a write without one, or a
    commit no longer readable)."""
    from deltalake.exceptions import DeltaError
    from pyarrow.lib import ArrowException

    try:
        rows = _contents(Path(path), version)
    except (OSError, ValueError, KeyError, DeltaError, ArrowException):
        return None
    pairs = {str(k): str(v) for k, v in zip(rows["key"], rows["value"], strict=True)}
    if _PREFIX + "decision" not in pairs:
        return None
    record = {k.removeprefix(_PREFIX): v for k, v in pairs.items() if k.startswith(_PREFIX)}
    return decision_view({**record, "champion": pairs.get("model_version", "")})


def _contents(path: Path, version: int) -> dict[str, list[object]]:
    """The table's contents as of ``version``. ``write_model_info`` only overwrites, so an
    overwrite commit's ``add`` actions are the whole table: read from the commit file, each
    commit costs ~1 ms; time travel (``DeltaTable(path, version=v)``) replays the log, ~30 ms
    a commit on a table of 100 commits (measured), which a page visit should not wait for."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    actions = [
        json.loads(line)
        for line in (path / "_delta_log" / f"{version:020d}.json").read_text().splitlines()
        if line.strip()
    ]
    info: dict[str, Any] = next((a["commitInfo"] for a in actions if "commitInfo" in a), {})
    if version == 0 or info.get("operationParameters", {}).get("mode") == "Overwrite":
        files = [path / urllib.parse.unquote(a["add"]["path"]) for a in actions if "add" in a]
        tables = [pq.read_table(f, columns=["key", "value"]) for f in files]
        if tables:
            return dict(pa.concat_tables(tables).to_pydict())
    table = DeltaTable(str(path), version=version).to_pyarrow_table(columns=["key", "value"])
    return dict(table.to_pydict())


def merged(*sources: Iterable[DecisionView]) -> list[DecisionView]:
    """One list, newest first, each decision once."""
    unique = {
        (d.decided_at, d.decision, d.candidate, d.champion): d for group in sources for d in group
    }
    return sorted(unique.values(), key=lambda d: d.decided_at, reverse=True)


def verdicts(decisions: Iterable[DecisionView]) -> dict[str, str]:
    """Comparison id -> the newest decision a promotion took on it."""
    found: dict[str, str] = {}
    for d in sorted(decisions, key=lambda d: d.decided_at):
        if d.comparison_id:
            found[d.comparison_id] = d.decision
    return found
