"""Open questions about one event, answered from its dossier, deterministic and cited.

What the event is, who reported it first and when, which instruments detected it (or only set
limits), how its status changed, what was measured; and yes/no questions — a counterpart, a
detection by a named instrument, a retraction — answered with "Yes" or "No" first. A question
none of these fit returns None, and the assistant quotes the circulars as before.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING

from gcn_rag.answer.dossier import Dossier, Facility, build, status_sentence
from gcn_rag.answer.facilities import DETECTED, LIMITS, OBSERVED, RETRACTED
from gcn_rag.corpus.circulars import gcn_ref
from gcn_rag.corpus.instruments import named_instruments

if TYPE_CHECKING:
    from gcn_rag.search.index import SearchIndex


_YES_NO = re.compile(r"^\s*(?:was|were|is|are|did|does|do|has|have|had|can|could)\b", re.I)
_RETRACTED = re.compile(
    r"retract|withdrawn|\breal\b|astrophysical|genuine|false (?:alarm|positive|trigger)|"
    r"downgrad|\bspurious\b|\bartifact\b",
    re.I,
)
_COUNTERPART = re.compile(
    r"counterpart|afterglow|electromagnetic|kilonova|host galaxy|"
    r"(?:optical|x-ray|radio|infrared|uv) (?:emission|transient|source|detection|signal)",
    re.I,
)
_DETECT = re.compile(r"detect|observ|\bsee\b|\bsaw\b|trigger|\bseen\b|spotted|found by", re.I)
_FIRST = re.compile(
    r"\bfirst\b|discover|who (?:detected|found|reported|saw)|when was \S.*\b(?:detected|found|"
    r"reported|seen|observed)|\bwhen did\b",
    re.I,
)
_INSTRUMENTS = re.compile(
    r"\b(?:which|what|list)\b.*\b(?:instruments?|telescopes?|facilit\w+|observator\w+|missions?|"
    r"satellites?|detectors?|experiments?|who)\b|\bwho (?:detected|observed|followed)",
    re.I,
)
_STATUS = re.compile(r"status|retract|downgrad|reclassif|still (?:a|considered)|latest", re.I)
_MEASURED = re.compile(r"\bmeasure|propert|parameters|key (?:values|numbers|facts)", re.I)
# "What is the <something> of X?" asks for a property, not for what X is: a quantity outside
# the catalog gets the quoting answer (the circulars' sentences about it), not X's summary
_WHAT_IS = re.compile(
    r"^\s*(?:what|which) (?:is|was)\b(?!\s+(?:the|its)\s[^?]*?\b(?:of|for|towards?|in)\s)|"
    r"^\s*(?:what|which) (?:kind|type|sort|class)\b|tell me about|summar|describe|overview|"
    r"what (?:do|does) .*\bknow|what happened|\bexplain\b|"
    r"what .*\b(?:nature|origin|classif\w*|type|kind)\b",
    re.I,
)
_TENTATIVE = re.compile(r"candidate|possible|potential|tentative|unrelated|not related", re.I)
_CONFIRMED = re.compile(r"confirm|afterglow|kilonova|counterpart (?:identif|detect)", re.I)
# the band a counterpart question names, and how a facility's name or subject says it
_BANDS = {
    "optical": (
        r"optical|\bNIR\b|infrared|\bUV\b|ultraviolet",
        r"optical|\bNIR\b|UVOT|photometr|"
        r"magnitude|\bR ?band|infrared|spectroscop|redshift|telescope|\bGROND\b|MASTER|"
        r"RATIR|X-shooter|\bVLT\b|\bGTC\b|\bNOT\b|\bTNG\b|Skynet|KAIT|BOOTES|ZTF",
    ),
    "x-ray": (r"x-ray", r"x-ray|\bXRT\b|NuSTAR|Chandra|XMM|MAXI|\bFXT\b|\bWXT\b|eROSITA"),
    "radio": (r"radio", r"radio|\bVLA\b|ATCA|MeerKAT|\bAMI\b|GHz|\bGMRT\b|ASKAP|\bNOEMA\b"),
}
_TRIGGERS = frozenset({"LIGO/Virgo/KAGRA", "IceCube"})  # they find events, not counterparts


@dataclasses.dataclass(frozen=True)
class Reply:
    """An answer's text and the (index row, quote) of each circular it cites."""

    text: str
    cited: tuple[tuple[int, str], ...]
    intent: str


def answer_open(index: SearchIndex, question: str, event_id: str) -> Reply | None:
    """The dossier's answer to ``question`` about ``event_id``, or None if none fits."""
    intent = classify(question)
    if intent is None:
        return None
    dossier = build(index, event_id)
    if dossier is None:
        return None
    return _ANSWERS[intent](dossier, question)


def classify(question: str) -> str | None:
    """Which open question this is: retracted / counterpart / detected_by (yes or no), first,
    instruments, status, measured, what_is; None when none fits."""
    if _YES_NO.search(question):
        if _RETRACTED.search(question):
            return "retracted"
        if _COUNTERPART.search(question):
            return "counterpart"
        if _DETECT.search(question) and _named(question):
            return "detected_by"
        return None
    for intent, pattern in (
        ("first", _FIRST),
        ("instruments", _INSTRUMENTS),
        ("status", _STATUS),
        ("measured", _MEASURED),
        ("what_is", _WHAT_IS),
    ):
        if pattern.search(question):
            return intent
    return None


# --- the answers -------------------------------------------------------------------------------


def _what_is(dossier: Dossier, question: str) -> Reply:
    cited = [_cite_entry(dossier)]
    cited += [(_row(dossier, s.circular_id), s.sentence) for s in dossier.status[:1]]
    cited += [(_row(dossier, v.circular_id), v.sentence) for v in dossier.measurements[:4]]
    cited += [_cite_facility(dossier, f) for f in dossier.facilities if f.outcome == DETECTED]
    return Reply(dossier.summary(), _unique(cited), "what_is")


def _first(dossier: Dossier, question: str) -> Reply:
    first = dossier.first
    by = f" by {dossier.discoverer}" if dossier.discoverer else ""
    text = (
        f"{dossier.event_id} was first reported{by}; its first circular is "
        f"{gcn_ref(first.circular_id)} ({first.created_on:%Y-%m-%d %H:%M} UTC: {first.subject})."
    )
    later = [
        f for f in dossier.facilities if f.outcome == DETECTED and f.name != dossier.discoverer
    ]
    if later:
        text += f" Later detections: {_names(later[:5])}."
    return Reply(
        text,
        _unique([_cite_entry(dossier), *(_cite_facility(dossier, f) for f in later[:3])]),
        "first",
    )


def _instruments(dossier: Dossier, question: str) -> Reply:
    groups = [
        (DETECTED, "Detected by"),
        (LIMITS, "Only upper limits from"),
        (OBSERVED, "Also observed by"),
        (RETRACTED, "Retracted reports from"),
    ]
    lines = []
    for outcome, lead in groups:
        facilities = [f for f in dossier.facilities if f.outcome == outcome]
        if facilities:
            lines.append(f"{lead}: {_names(facilities)}.")
    if not lines:
        return Reply(
            f"The circulars about {dossier.event_id} name no instrument in their subjects; "
            f"the first is {gcn_ref(dossier.first.circular_id)} ({dossier.first.subject}).",
            (_cite_entry(dossier),),
            "instruments",
        )
    text = f"{dossier.event_id}: " + " ".join(lines)
    ordered = sorted(dossier.facilities, key=lambda f: f.outcome != DETECTED)
    return Reply(text, _unique([_cite_facility(dossier, f) for f in ordered]), "instruments")


def _status(dossier: Dossier, question: str) -> Reply:
    last = dossier.timeline[-1]
    own = dossier.latest_status
    if own is not None:
        text = status_sentence(dossier.event_id, own)
    else:
        text = (
            f"No circular about {dossier.event_id} retracts, downgrades or reclassifies it; "
            f"the latest is {gcn_ref(last.circular_id)} "
            f"({last.created_on:%Y-%m-%d}: {last.subject})."
        )
    if not dossier.status:
        return Reply(text, ((last.row, last.subject),), "status")
    changes = [
        f"{c.created_on:%Y-%m-%d} {c.kind}"
        f"{' of ' + gcn_ref(c.target) if c.target is not None else ''} ({gcn_ref(c.circular_id)}): "
        f'"{c.sentence}"'
        for c in dossier.status
    ]
    text += " Changes, latest first: " + "; ".join(changes)
    cited = [(_row(dossier, c.circular_id), c.sentence) for c in dossier.status]
    return Reply(text, _unique(cited), "status")


def _measured(dossier: Dossier, question: str) -> Reply:
    if not dossier.measurements:
        return Reply(
            f"The circulars about {dossier.event_id} state no value of a catalog quantity.",
            (_cite_entry(dossier),),
            "measured",
        )
    shown = "; ".join(f"{v.text} ({gcn_ref(v.circular_id)})" for v in dossier.measurements)
    cited = [(_row(dossier, v.circular_id), v.sentence) for v in dossier.measurements]
    return Reply(f"Measurements of {dossier.event_id}: {shown}.", _unique(cited), "measured")


def _retracted(dossier: Dossier, question: str) -> Reply:
    withdrawn = [
        c for c in dossier.status if c.kind in ("retraction", "downgrade") and c.target is None
    ]
    if withdrawn:
        change = withdrawn[0]
        said = "retracted" if change.kind == "retraction" else "downgraded"
        lead = "No" if re.search(r"\breal\b|astrophysical|genuine", question, re.I) else "Yes"
        text = (
            f"{lead}: {dossier.event_id} was {said} on {change.created_on:%Y-%m-%d} "
            f'({gcn_ref(change.circular_id)}: "{change.sentence}").'
        )
        return Reply(text, ((_row(dossier, change.circular_id), change.sentence),), "retracted")
    lead = "Yes" if re.search(r"\breal\b|astrophysical|genuine", question, re.I) else "No"
    latest = gcn_ref(dossier.timeline[-1].circular_id)
    text = (
        f"{lead}: no circular about {dossier.event_id} retracts or downgrades it "
        f"({len(dossier.timeline)} circulars, the latest {latest})."
    )
    partial = [c for c in dossier.status if c.kind == "retraction" and c.target is not None]
    cited = [_cite_entry(dossier)]
    for change in partial[:3]:
        text += f" {gcn_ref(change.circular_id)} retracts {gcn_ref(change.target or 0)} only."
        cited.append((_row(dossier, change.circular_id), change.sentence))
    return Reply(text, _unique(cited), "retracted")


def _counterpart(dossier: Dossier, question: str) -> Reply:
    followers = [
        f for f in dossier.facilities if f.name != dossier.discoverer and f.name not in _TRIGGERS
    ]
    band = next((b for b, (asked, _) in _BANDS.items() if re.search(asked, question, re.I)), "")
    if band:  # "an optical afterglow": facilities of that band only
        said = re.compile(_BANDS[band][1], re.I)
        followers = [f for f in followers if said.search(f.name) or said.search(f.quote)]
    detected = [f for f in followers if f.outcome == DETECTED]
    limits = [f for f in followers if f.outcome == LIMITS]
    if dossier.kind.endswith("gamma-ray burst"):
        confirmed, candidates = detected, []
    else:
        confirmed = [
            f for f in detected if _CONFIRMED.search(f.quote) and not _TENTATIVE.search(f.quote)
        ]
        candidates = [f for f in detected if f not in confirmed]
    retracted = any(c.kind == "retraction" and c.target is None for c in dossier.status)
    withdrawn = [f for f in followers if f.outcome == RETRACTED]
    if confirmed and not retracted:
        what = {"optical": "an optical", "x-ray": "an X-ray", "radio": "a radio"}.get(band, "a")
        what += " counterpart"
        text = f"Yes: {what} of {dossier.event_id} was detected by {_names(confirmed)}."
    elif candidates:
        text = (
            f"No confirmed counterpart: possible counterparts or sources were reported by "
            f"{_names(candidates)}."
        )
    elif limits:
        text = f"No: the circulars report only upper limits, from {_names(limits)}."
    else:
        what = {"x-ray": "X-ray "}.get(band, f"{band} " if band else "")
        text = f"No: the circulars about {dossier.event_id} report no {what}counterpart detection."
    if retracted:
        text = f"No: {dossier.event_id} was retracted. " + text.split(": ", 1)[-1]
    elif (confirmed or candidates) and limits:
        text += f" Upper limits from {_names(limits[:5])}."
    if withdrawn:
        text += f" A reported detection was retracted: {_names(withdrawn)}."
    shown = [*confirmed, *candidates, *withdrawn, *limits][:5]
    cited = [_cite_facility(dossier, f) for f in shown] or [_cite_entry(dossier)]
    return Reply(text, _unique(cited), "counterpart")


def _detected_by(dossier: Dossier, question: str) -> Reply:
    wanted = _named(question)
    matches = [f for f in dossier.facilities if _same_facility(f.name, wanted)]
    if not matches:
        text = (
            f"No: no circular about {dossier.event_id} reports an observation by {wanted[0]} "
            f"(instruments that did: {_names(list(dossier.facilities[:6])) or 'none named'})."
        )
        return Reply(text, (_cite_entry(dossier),), "detected_by")
    best = next((f for f in matches if f.outcome == DETECTED), matches[0])
    said = f"({gcn_ref(best.circulars[0])}: {best.quote})"
    if best.outcome == DETECTED:
        text = f"Yes: {best.name} detected {dossier.event_id} {said}."
    elif best.outcome == LIMITS:
        text = f"No: {best.name} reports only upper limits for {dossier.event_id} {said}."
    else:
        text = f"{best.name} observed {dossier.event_id} {said}."
    return Reply(text, _unique([_cite_facility(dossier, f) for f in matches]), "detected_by")


_ANSWERS = {
    "what_is": _what_is,
    "first": _first,
    "instruments": _instruments,
    "status": _status,
    "measured": _measured,
    "retracted": _retracted,
    "counterpart": _counterpart,
    "detected_by": _detected_by,
}


# --- helpers -----------------------------------------------------------------------------------


def _named(question: str) -> list[str]:
    """Instruments or telescopes the question names: catalog instruments, else capitalized
    words that are not the question's grammar or the event's name."""
    found = named_instruments(question)
    if found:
        return found
    words = re.findall(r"\b[A-Z][A-Za-z]*[A-Z0-9][\w/-]*\b|\b[A-Z][a-z]{2,}\b", question[1:])
    skip = {"GRB", "GCN", "Did", "Was", "Were", "Does", "Has", "Have", "The", "Is", "Are"}
    return [w for w in words if w not in skip and not re.search(r"\d{4,}", w)][:1]


def _same_facility(name: str, wanted: list[str]) -> bool:
    tokens = {t.lower() for t in re.split(r"[-/ ]", name) if len(t) >= 3}
    for want in wanted:
        want_tokens = {t.lower() for t in re.split(r"[-/ ]", want) if len(t) >= 3}
        if name == want or tokens & want_tokens:
            return True
    return False


def _names(facilities: list[Facility]) -> str:
    return ", ".join(f"{f.name} ({gcn_ref(f.circulars[0])})" for f in facilities)


def _cite_entry(dossier: Dossier) -> tuple[int, str]:
    return dossier.first.row, dossier.first.subject


def _cite_facility(dossier: Dossier, facility: Facility) -> tuple[int, str]:
    return _row(dossier, facility.circulars[0]), facility.quote


def _row(dossier: Dossier, circular_id: float) -> int:
    return next((e.row for e in dossier.timeline if e.circular_id == circular_id), -1)


def _unique(cited: list[tuple[int, str]]) -> tuple[tuple[int, str], ...]:
    seen: dict[int, str] = {}
    for row, quote in cited:
        if row >= 0:  # a value stated in a circular about another event is cited by its table row
            seen.setdefault(row, quote)
    return tuple(seen.items())


__all__ = ["Reply", "answer_open", "classify"]
