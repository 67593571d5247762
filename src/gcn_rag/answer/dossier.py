"""An event's dossier: what it is, who reported it first, who followed it up, how its status
changed, and its key measurements — read from one loaded index, every statement cited.

:func:`build` makes a :class:`Dossier` from the circulars about an event (their subjects and
chunks) and the index's copy of ``gcn_measurements``. It is deterministic and cheap (a few ms
for an event with a hundred circulars), so the assistant builds one per open question and
``gcn-rag event`` prints it. :mod:`gcn_rag.answer.open_questions` answers questions with it.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gcn_rag.answer.facilities import (
    DETECTED,
    LIMITS,
    OBSERVED,
    RETRACTED,
    facility_of,
    outcome,
)
from gcn_rag.corpus.chunking import sentence_spans
from gcn_rag.corpus.circulars import (
    CIRCULAR_REFERENCE,
    circular_id_json,
    circular_url,
    gcn_ref,
)
from gcn_rag.corpus.events import event_aliases, event_key
from gcn_rag.corpus.instruments import named_instrument
from gcn_rag.corpus.quantities import BY_KEY, CATALOG
from gcn_rag.corpus.quantity import GRB, GW, NEUTRINO, event_kind

if TYPE_CHECKING:
    from gcn_rag.search.index import SearchIndex

MAX_STATUS = 6
_ORDER = {quantity.key: i for i, quantity in enumerate(CATALOG)}
_OF_COUNTERPARTS = {GW: ("magnitude", "ra", "dec", "error_radius"), NEUTRINO: ("magnitude",)}
_SHOWN_FIRST = ("redshift", "t90", "epeak", "fluence", "gw_distance", "false_alarm_rate")

# how a status changes, latest first in a dossier
_STATUS = (
    ("retraction", re.compile(r"\bretract\w*|\bwithdraw\w*", re.I)),
    (
        "downgrade",
        re.compile(
            r"downgrad\w*|(?:lower|reduced|decreased) (?:the )?significance|no longer "
            r"(?:considered|significant|a candidate)|not (?:of )?astrophysical|(?:likely|probably"
            r"|most likely) (?:of )?(?:terrestrial|instrumental) origin|noise artifact|"
            r"consistent with (?:a )?background fluctuation",
            re.I,
        ),
    ),
    (
        "reclassification",
        re.compile(
            r"re-?classif\w*|(?:is|was) (?:not|likely not|probably not) (?:a |an )?(?:GRB|"
            r"gamma-ray burst|astrophysical)|(?:is|was) (?:now |instead |rather )?(?:re-?)?"
            r"identified as (?:a |an )?(?:\w+ ){0,2}(?:flare|star|AGN|SGR|magnetar|binary|"
            r"particle event|solar|variable)",
            re.I,
        ),
    ),
    ("correction", re.compile(r"^[^:]*:.*\b(?:erratum|corrigendum|correction)\b", re.I)),
)
# "Retraction of GCN 37255", "Correction to GCN Circ. 30915": one circular, not the event
# a body sentence changes the event's status only when it is about the event itself
_ITSELF = r"\b(?:this|the) (?:event|trigger|alert|candidate|burst|signal|GRB|source)\b"
_KIND_WORDS = (  # subject words that say more than the event's name does
    ("magnetar burst", re.compile(r"\bSGR\b|magnetar|soft gamma repeater", re.I)),
    ("fast radio burst", re.compile(r"\bFRB\b|fast radio burst", re.I)),
    ("supernova", re.compile(r"\bsupernova\b|\bSN ?\d{4}", re.I)),
    ("tidal disruption event", re.compile(r"tidal disruption|\bTDE\b", re.I)),
    ("X-ray transient", re.compile(r"Einstein Probe|\bEP\d{6}|fast X-ray transient", re.I)),
)


@dataclasses.dataclass(frozen=True)
class Entry:
    """One circular about the event."""

    circular_id: float
    created_on: datetime
    subject: str
    row: int  # in the index

    def to_dict(self) -> dict[str, Any]:
        return {
            "circular_id": circular_id_json(self.circular_id),
            "created_on": self.created_on.isoformat(),
            "subject": self.subject,
            "url": circular_url(self.circular_id),
        }


@dataclasses.dataclass(frozen=True)
class Facility:
    """An instrument or telescope that observed the event, and what it saw."""

    name: str
    outcome: str  # detected / limits only / observed
    circulars: tuple[float, ...]
    first: datetime
    quote: str  # the subject (or sentence) that says so

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "outcome": self.outcome,
            "circulars": [circular_id_json(c) for c in self.circulars],
            "first": self.first.isoformat(),
        }


@dataclasses.dataclass(frozen=True)
class StatusChange:
    kind: str  # retraction / downgrade / reclassification / correction
    circular_id: float
    created_on: datetime
    sentence: str
    target: float | None = None  # the circular it retracts or corrects ("Retraction of GCN 37255")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "circular_id": circular_id_json(self.circular_id),
            "created_on": self.created_on.isoformat(),
            "sentence": self.sentence,
            "target": None if self.target is None else circular_id_json(self.target),
        }


@dataclasses.dataclass(frozen=True)
class Value:
    """The best value of one quantity (per instrument) among the event's measurements."""

    quantity: str
    label: str
    value: float
    value_text: str
    unit: str
    limit: str
    band: str
    instrument: str
    status: str
    circular_id: float
    sentence: str
    time_after_s: float | None = None  # when after the trigger (magnitudes), if said

    @property
    def text(self) -> str:
        """ "T90 (Fermi GBM) = 32 s", "magnitude (r) > 21.5 mag"."""
        qualifier = ", ".join(q for q in (self.instrument, self.band) if q)
        sign = BY_KEY[self.quantity].limit_sign(self.limit) or "="
        unit = f" {self.unit}" if self.unit and not self.value_text[-1:].isalpha() else ""
        label = f"{self.label} ({qualifier})" if qualifier else self.label
        return f"{label} {sign} {self.value_text}{unit}"

    def to_dict(self) -> dict[str, Any]:
        fields = dataclasses.asdict(self)
        fields["circular_id"] = circular_id_json(self.circular_id)
        return fields


@dataclasses.dataclass(frozen=True)
class Dossier:
    event_id: str
    kind: str  # "gamma-ray burst", "gravitational-wave candidate", ...
    timeline: tuple[Entry, ...]  # oldest first
    facilities: tuple[Facility, ...]  # in order of first report
    status: tuple[StatusChange, ...]  # latest first
    measurements: tuple[Value, ...]
    mentions: int  # circulars that name the event without being about it

    @property
    def latest_status(self) -> StatusChange | None:
        """The latest change of the event's own status (not a correction of one circular)."""
        own = (c for c in self.status if c.target is None and c.kind != "correction")
        return next(own, None)

    @property
    def first(self) -> Entry:
        return self.timeline[0]

    @property
    def discoverer(self) -> str:
        """Who reported the event first: the detectors that find GW candidates and neutrino
        alerts, else the facility of its first circular."""
        kind = event_kind(self.event_id)
        if kind == GW:
            return "LIGO/Virgo/KAGRA"
        if kind == NEUTRINO:
            return named_instrument(self.event_id) or self.event_id.split("-")[0]
        facilities = [f for f in self.facilities if self.first.circular_id in f.circulars]
        return facilities[0].name if facilities else ""

    def summary(self) -> str:
        """A few plain sentences with circular references, latest status first."""
        parts = []
        latest = self.latest_status
        if latest is not None:
            parts.append(status_sentence(self.event_id, latest))
        parts.append(f"{self.event_id} is {_article(self.kind)} {self.kind}.")
        retracted = [c for c in self.status if c.target is not None and c.kind == "retraction"]
        parts += [status_sentence(self.event_id, c) for c in retracted]
        by = f"First reported by {self.discoverer}; its" if self.discoverer else "Its"
        parts.append(
            f"{by} first circular is {gcn_ref(self.first.circular_id)} "
            f"({self.first.created_on:%Y-%m-%d}: {self.first.subject})."
        )
        if self.measurements:
            shown = "; ".join(f"{v.text} ({gcn_ref(v.circular_id)})" for v in self.measurements[:6])
            parts.append(f"Key measurements: {shown}.")
        detected = [f for f in self.facilities if f.outcome == DETECTED]
        limits = [f for f in self.facilities if f.outcome == LIMITS]
        if detected:
            parts.append(f"Detected by: {_facility_list(detected)}.")
        if limits:
            parts.append(f"Only limits from: {_facility_list(limits)}.")
        last = self.timeline[-1]
        parts.append(
            f"{len(self.timeline)} circulars are about it, from {self.first.created_on:%Y-%m-%d}"
            f" to {last.created_on:%Y-%m-%d}."
        )
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "kind": self.kind,
            "summary": self.summary(),
            "first": self.first.to_dict(),
            "discoverer": self.discoverer,
            "status": [s.to_dict() for s in self.status],
            "measurements": [v.to_dict() for v in self.measurements],
            "facilities": [f.to_dict() for f in self.facilities],
            "timeline": [e.to_dict() for e in self.timeline],
            "mentions": self.mentions,
        }


def build(index: SearchIndex, event_id: str) -> Dossier | None:
    """The dossier of ``event_id``, or None when no circular is about it or names it."""
    rows = [int(r) for r in index.rows_about([event_id])]
    keys = {event_key(alias) for alias in event_aliases(event_id)}
    about = [
        r
        for r in rows
        if (index.event_ids[r] or "") and event_key(index.event_ids[r] or "") in keys
    ]
    own = about or rows
    if not own:
        return None
    timeline = tuple(
        sorted(
            (
                Entry(float(index.circ_ids[r]), index.created_on(r), index.subject(r), r)
                for r in own
            ),
            key=lambda e: (e.created_on, e.circular_id),
        )
    )
    texts = _Bodies(index)
    values = _values(index, keys, event_kind(event_id))
    status = _status(event_id, timeline, texts)
    return Dossier(
        event_id=event_id,
        kind=_kind(event_id, timeline, values),
        timeline=timeline,
        facilities=_facilities(timeline, texts, status),
        status=status,
        measurements=values,
        mentions=len(rows) - len(about) if about else 0,
    )


# --- pieces ----------------------------------------------------------------------------------


class _Bodies(dict[int, str]):
    """Circular bodies by index row, read from the chunks when first needed."""

    def __init__(self, index: SearchIndex) -> None:
        super().__init__()
        self.index = index

    def __missing__(self, row: int) -> str:
        chunks = self.index.chunk_rows_of(row)
        body = " ".join(
            self.index.chunk_text(c) for c in chunks if self.index.chunk_kind(c) != "header"
        )
        self[row] = body
        return body


def _kind(event_id: str, timeline: tuple[Entry, ...], values: tuple[Value, ...]) -> str:
    kind = event_kind(event_id)
    best = {v.quantity: v for v in values if not v.limit}
    if kind == GRB:
        t90 = best.get("t90")
        if t90 is not None:
            return f"{'short' if t90.value < 2.0 else 'long'} gamma-ray burst"
        return "gamma-ray burst"
    if kind == GW:
        return "gravitational-wave candidate" + _gw_class(values)
    if kind == NEUTRINO:
        return "high-energy neutrino alert"
    subjects = " ".join(e.subject for e in timeline[:10])
    for label, pattern in _KIND_WORDS:
        if pattern.search(event_id) or pattern.search(subjects):
            return label
    return "transient"


def _gw_class(values: tuple[Value, ...]) -> str:
    """ " (most likely BBH, >99%)" from the classification probabilities, when one dominates."""
    names = {"p_bns": "BNS", "p_nsbh": "NSBH", "p_bbh": "BBH", "p_terrestrial": "terrestrial"}
    shares = [
        (v.value, v.limit, names[v.quantity])
        for v in values
        if v.quantity in names and v.limit != "upper"
    ]
    if not shares:
        return ""
    share, limit, name = max(shares)
    if share < 50:
        return ""
    return f" (most likely {name}, {'>' if limit else ''}{share:g}%)"


def _values(index: SearchIndex, keys: set[str], kind: str) -> tuple[Value, ...]:
    """Per quantity and instrument, the value the most circulars state (then the refined,
    then the latest report of it); limits only where no value was measured."""
    table = index.measurements
    if table is None or table.num_rows == 0:
        return ()
    slots: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in index.measurements_of(keys).to_pylist():
        if row["status"] not in ("retracted", "superseded") and _about_event(row, kind):
            slots.setdefault((row["quantity"], row["instrument"] or ""), []).append(row)
    best = {slot: _supported(rows) for slot, rows in slots.items()}
    measured = {q for (q, _), row in best.items() if row["limit_type"] is None}
    kept = [r for r in best.values() if r["limit_type"] is None or r["quantity"] not in measured]
    chosen = sorted(kept, key=lambda r: (_priority(r["quantity"]), r["instrument"] or ""))
    return tuple(_value(r) for r in chosen[:15])


def _about_event(row: dict[str, Any], kind: str) -> bool:
    """Whether a row can be a value of an event of ``kind``: a GW candidate has no redshift
    or magnitude of its own (those are of candidate counterparts), nor one position."""
    quantity = BY_KEY.get(row["quantity"])
    if quantity is None or kind not in quantity.kinds:
        return False
    return not (kind in (GW, NEUTRINO) and quantity.key in _OF_COUNTERPARTS[kind])


def _supported(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The best row of the value that most circulars agree on."""
    quantity = BY_KEY[rows[0]["quantity"]]
    measured = [r for r in rows if r["limit_type"] is None] or rows
    groups: list[list[dict[str, Any]]] = []
    for row in sorted(measured, key=_rank, reverse=True):
        home = next((g for g in groups if quantity.agree(g[0]["value"], row["value"])), None)
        if home is None:
            groups.append([row])
        else:
            home.append(row)
    support = max(groups, key=lambda g: len({r["circular_id"] for r in g}))
    return support[0]


def _rank(row: dict[str, Any]) -> tuple[int, int, Any]:
    measured = row["limit_type"] is None
    if row["quantity"] == "magnitude":  # the first magnitude measured says most
        return (measured, 0, -row["created_on"].timestamp())
    return (measured, row["status"] == "refined", row["created_on"])


def _priority(quantity: str) -> tuple[int, int]:
    first = _SHOWN_FIRST.index(quantity) if quantity in _SHOWN_FIRST else len(_SHOWN_FIRST)
    return first, _ORDER[quantity]


def _value(row: dict[str, Any]) -> Value:
    quantity = BY_KEY[row["quantity"]]
    return Value(
        quantity=quantity.key,
        label=quantity.label,
        value=row["value"],
        value_text=row["value_text"],
        unit=row["unit"] or "",
        limit=row["limit_type"] or "",
        band=row["band"] or "",
        instrument=row["instrument"] or "",
        status=row["status"],
        circular_id=row["circular_id"],
        sentence=row["sentence"],
        time_after_s=row.get("time_after_s"),  # an index built before the column: None
    )


def _facilities(
    timeline: tuple[Entry, ...], texts: dict[int, str], status: tuple[StatusChange, ...]
) -> tuple[Facility, ...]:
    retracted = {c.target for c in status if c.kind == "retraction" and c.target is not None}
    found: dict[str, list[tuple[Entry, str, str]]] = {}
    for entry in timeline:
        name = facility_of(entry.subject)
        if name:
            said = outcome(entry.subject, functools.partial(texts.__getitem__, entry.row))
            if entry.circular_id in retracted:
                said = RETRACTED  # "Retraction of GCN 37255": that detection does not count
            found.setdefault(name, []).append((entry, said, entry.subject))
    facilities = []
    for name, seen in found.items():
        outcomes = {said for _, said, _ in seen}
        best = next(o for o in (DETECTED, LIMITS, OBSERVED, RETRACTED) if o in outcomes)
        quote = next(q for _, o, q in seen if o == best)
        ids = tuple(e.circular_id for e, _, _ in seen)
        facilities.append(Facility(name, best, ids, seen[0][0].created_on, quote))
    return tuple(sorted(facilities, key=lambda f: f.first))


def _status(
    event_id: str, timeline: tuple[Entry, ...], texts: dict[int, str]
) -> tuple[StatusChange, ...]:
    itself = re.compile("|".join([_ITSELF, *(re.escape(a) for a in event_aliases(event_id))]), re.I)
    changes = []
    for entry in timeline:
        body = texts[entry.row]
        for kind, pattern in _STATUS:
            sentence = _first_match(pattern, [entry.subject])
            if not sentence and kind != "correction" and pattern.search(body):
                said = (s for s in _sentences(body) if itself.search(s))
                sentence = _first_match(pattern, said)
            if sentence:
                target = CIRCULAR_REFERENCE.search(sentence)
                named = float(target["id"]) if target else None
                changes.append(
                    StatusChange(kind, entry.circular_id, entry.created_on, sentence, named)
                )
                break
    changes.sort(key=lambda c: (c.created_on, c.circular_id), reverse=True)
    return tuple(changes[:MAX_STATUS])


def _sentences(body: str) -> Iterable[str]:
    return (sentence for _, sentence in sentence_spans(body))


def _first_match(pattern: re.Pattern[str], texts: Iterable[str]) -> str:
    for text in texts:
        if pattern.search(text):
            return text if len(text) <= 300 else text[:299].rstrip() + "…"
    return ""


def status_sentence(event_id: str, change: StatusChange) -> str:
    if change.target is not None:
        verb = "retracted" if change.kind == "retraction" else "corrected"
        return (
            f"{gcn_ref(change.circular_id)} ({change.created_on:%Y-%m-%d}) {verb} "
            f'{gcn_ref(change.target)}: "{change.sentence}".'
        )
    said = {
        "retraction": "was retracted",
        "downgrade": "was downgraded",
        "reclassification": "was reclassified",
        "correction": "had a correction",
    }[change.kind]
    return (
        f"Latest status: {event_id} {said} on {change.created_on:%Y-%m-%d} "
        f'({gcn_ref(change.circular_id)}: "{change.sentence}").'
    )


def _facility_list(facilities: list[Facility]) -> str:
    shown = [f"{f.name} ({gcn_ref(f.circulars[0])})" for f in facilities[:8]]
    more = f" and {len(facilities) - 8} more" if len(facilities) > 8 else ""
    return ", ".join(shown) + more


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiox" and not word.startswith("one") else "a"
