"""Gated promotion and rollback of ``champion``, each decision recorded.

**The gate.** ``gcn-rag model promote REF`` compares the current champion (A) with REF (B)
(:mod:`gcn_rag.model.compare`, or a fresh recorded comparison of the same two versions on
the same questions) and moves champion only if

1. no bench category (nor any file pooled) loses accuracy or recall@5 beyond the tolerance:
   a loss refuses when the paired test calls it real (exact McNemar p < ``alpha``, 0.05, with
   B on the losing side of the discordant items), **or** when it is larger than ``max_drop``
   (5 points) whatever the test says. Both halves are needed. The test alone cannot see a
   loss in a small category: with d discordant items its smallest p is 2·0.5^d, so a category
   needs at least 6 items flipped one way before p < 0.05 (the broad set's paraphrase
   categories have 4 items; losing all 4 gives p = 0.125). The points alone would refuse a
   large category for a change the test calls noise, or let a real one through: on 94
   redshift questions, 7 lost and 1 gained is 6.4 points (refused) and p = 0.07; 3 lost and
   0 gained is 3.2 points with p = 0.25 (passes: the test cannot tell it from chance). So a
   significant loss refuses at any size, and an insignificant one only past 5 points, which
   in a category of fewer than 20 items means any net loss at all;
2. latency p95 does not grow by more than ``max_latency_growth`` (20%) of A's, judged only
   on at least 20 questions per version (below that the p95 is one or two calls, noise).

A refusal prints its reasons and moves nothing; ``force`` moves champion anyway and records
the override with the reasons. Promoting the current champion (or with no champion yet) is
today's ``promote``: champion is unpinned, handed back to ``gcn-rag up``. With nothing to
compare on (no bench file, no replay) the promotion is recorded as ``unmeasured``.

**Records.** Every decision is a JSON tag ``gcn_rag.decision`` on both versions; a move also
rewrites ``rag_model_info`` for the new champion with ``champion.decision``,
``champion.previous_champion``, ``champion.comparison_id``, ``champion.decided_at`` and
``champion.reasons`` (each write is one commit of that table's history). The champions a
promotion moved through are a stack, the registered model's tag ``gcn_rag.champion_history``
(a JSON list of versions, oldest first, the last 100).

**Rollback** pops that stack: champion returns to the version before the current one (or to
the last recorded one, when champion was moved since by ``up`` or by hand), pinned by hand so
``up`` leaves it. A second rollback walks one step further back.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gcn_rag.errors import BadInputError, NotFoundError
from gcn_rag.model import champion, registry
from gcn_rag.model.compare import Comparison, Paired

if TYPE_CHECKING:
    from gcn_rag.model.registry import VersionInfo
    from gcn_rag.settings import Settings

DECISION_TAG = "gcn_rag.decision"
HISTORY_TAG = "gcn_rag.champion_history"
HISTORY_KEPT = 100
MIN_LATENCY_SAMPLES = 20  # fewer calls: a p95 is the slowest one or two, too noisy to gate on


@dataclasses.dataclass(frozen=True)
class Policy:
    """The gate's tolerances (see the module docstring for why these defaults)."""

    max_drop: float = 0.05  # a share: 0.05 = 5 points of accuracy or recall@5
    alpha: float = 0.05  # McNemar significance
    max_latency_growth: float = 0.20  # of A's p95

    def __post_init__(self) -> None:
        if not 0 <= self.max_drop <= 1 or not 0 < self.alpha < 1 or self.max_latency_growth < 0:
            raise BadInputError(
                "--max-drop is 0-100 points, --alpha in (0, 1), --max-latency-growth >= 0."
            )


def _loss(where: str, metric: str, paired: Paired, policy: Policy) -> str | None:
    """Why a loss of B against A on one paired metric refuses, or None."""
    if paired.a_only <= paired.b_only:
        return None
    significant = paired.p_value < policy.alpha
    if not significant and paired.drop <= policy.max_drop + 1e-9:
        return None
    why = f"McNemar p = {paired.p_value:.3g}" + (
        f" < {policy.alpha:g}" if significant else f", drop > {policy.max_drop * 100:g} points"
    )
    return (
        f"{where}: {metric} {paired.a} -> {paired.b} ({-paired.drop * 100:+.1f} points; "
        f"{paired.a_only} items lost, {paired.b_only} gained; {why})"
    )


def reasons(comparison: Comparison, policy: Policy) -> list[str]:
    """Why B may not replace A; empty when it may."""
    found = []
    for c in comparison.categories:
        where = f"{c.file} {c.category}"
        for metric, paired in (("accuracy", c.accuracy), ("recall@5", c.recall)):
            if paired is not None and (why := _loss(where, metric, paired, policy)):
                found.append(why)
    a, b = comparison.latency_a.p95_ms, comparison.latency_b.p95_ms
    enough = min(comparison.latency_a.n, comparison.latency_b.n) >= MIN_LATENCY_SAMPLES
    if enough and b > a * (1 + policy.max_latency_growth):
        found.append(
            f"latency p95 {a:.1f} ms -> {b:.1f} ms (+{(b / a - 1) * 100 if a else 100:.0f}%, "
            f"more than {policy.max_latency_growth * 100:g}%)"
        )
    return found


@dataclasses.dataclass(frozen=True)
class Decision:
    """What ``promote`` or ``rollback`` did, as recorded."""

    decision: str  # promoted | refused | forced | unmeasured | unpinned | rolled back
    champion: str  # the champion version after the decision
    candidate: str  # the version asked for
    previous: str | None  # the champion before
    reasons: tuple[str, ...] = ()
    comparison: Comparison | None = None
    decided_at: datetime = dataclasses.field(default_factory=lambda: datetime.now(UTC))

    @property
    def moved(self) -> bool:
        return self.champion != self.previous

    def record(self) -> dict[str, str]:
        """The decision as the tag and the ``rag_model_info`` rows hold it."""
        return {
            "decision": self.decision,
            "champion": self.champion,
            "candidate": self.candidate,
            "previous_champion": self.previous or "",
            "comparison_id": self.comparison.comparison_id if self.comparison else "",
            "decided_at": self.decided_at.isoformat(timespec="seconds"),
            "reasons": "; ".join(self.reasons),
        }


#: (A ref, B ref) -> a recorded comparison; the CLI runs or reuses one (with progress).
Comparer = Callable[[str, str], Comparison | None]


def promote(
    settings: Settings,
    ref: str | None,
    comparer: Comparer,
    *,
    policy: Policy | None = None,
    force: bool = False,
) -> Decision:
    """Move champion to ``ref`` (default: the newest version) if the gate lets it.

    ``comparer`` returns the comparison of the current champion against ``ref`` (None when
    there is nothing to compare on). Returns the decision, recorded; a refusal moves nothing.
    """
    known = registry.versions(settings)
    target = known[0] if ref is None else registry.resolve(settings, ref)
    current = next((v for v in known if champion.CHAMPION in v.aliases), None)
    if current is None or current.version == target.version:
        champion.promote(settings, target.version)
        if current is None:  # the first champion starts the history
            _remember(settings, [target.version])
        before = current.version if current else None
        decision = Decision("unpinned", target.version, target.version, before)
        return _recorded(settings, decision, target, current)
    comparison = comparer(current.version, target.version)
    why = tuple(reasons(comparison, policy or Policy())) if comparison else ()
    kind = "unmeasured" if comparison is None else "refused" if why else "promoted"
    if why and force:
        kind = "forced"
    moved = kind != "refused"
    if moved:  # a measured (or forced) decision is pinned, so `up` does not move it back
        registry.set_alias(
            settings, champion.CHAMPION, target.version, by_hand=kind != "unmeasured"
        )
        _remember(settings, [*_history(settings, current.version), target.version])
    decision = Decision(
        kind, target.version if moved else current.version, target.version, current.version,
        why, comparison,
    )  # fmt: skip
    return _recorded(settings, decision, target, current)


def rollback(settings: Settings) -> Decision:
    """Return champion to the version before it (the recorded history), pinned by hand so
    ``up`` leaves it."""
    current = champion.current(settings)
    if current is None:
        raise NotFoundError("No champion to roll back; see `gcn-rag model list`.")
    history = _history(settings, current.version)
    if len(history) < 2:
        raise NotFoundError(
            f"Champion (version {current.version}) has no recorded previous champion: no "
            "`gcn-rag model promote` moved it here. Point champion by hand: "
            "`gcn-rag model alias set champion N`."
        )
    history.pop()
    previous = history[-1]
    registry.set_alias(settings, champion.CHAMPION, previous, by_hand=True)
    _remember(settings, history)
    target = registry.resolve(settings, previous)
    decision = Decision("rolled back", previous, previous, current.version)
    return _recorded(settings, decision, target, current)


def _history(settings: Settings, current: str) -> list[str]:
    """The recorded champions, oldest first, ending with ``current`` (appended when champion
    was moved since the last record, by ``up`` or by hand)."""
    raw = registry.model_tag(settings, HISTORY_TAG)
    history = [str(v) for v in json.loads(raw)] if raw else []
    return history if history[-1:] == [current] else [*history, current]


def _remember(settings: Settings, history: list[str]) -> None:
    registry.set_model_tag(settings, HISTORY_TAG, json.dumps(history[-HISTORY_KEPT:]))


def _recorded(
    settings: Settings, decision: Decision, target: VersionInfo, current: VersionInfo | None
) -> Decision:
    """Tag both versions with the decision; a move also rewrites ``rag_model_info``."""
    from gcn_rag.tables import Catalog

    record = decision.record()
    tag = json.dumps(record, sort_keys=True)[:5000]
    for version in {target.version, *([current.version] if current else [])}:
        registry.set_version_tags(settings, version, {DECISION_TAG: tag})
    if decision.moved:
        info = registry.resolve(settings, decision.champion)
        extra: dict[str, Any] = {f"champion.{k}": v for k, v in record.items() if k != "champion"}
        registry.write_model_info(
            Catalog.from_settings(settings), info, registry.source(settings, info), extra=extra
        )
    return decision


def decision_rows(decision: Decision) -> Sequence[dict[str, Any]]:
    """The decision as (key, value) rows for printing."""
    return [{"key": k, "value": v} for k, v in decision.record().items() if v]
