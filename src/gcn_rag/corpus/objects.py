"""Whose value is it: the objects a circular names besides its event.

A circular about a gravitational-wave or neutrino alert reports the search of a wide region:
candidate transients ("AT 2019ebq", "ZTF19aarykkb", "PS15cbm", "iPTF-15dkn"), numbered X-ray
sources ("Source 13:"), galaxies and their redshifts. Their magnitudes, positions and redshifts
are not the alert's. A burst's circular may list several numbered sources in the error circle
without saying which, if any, is the afterglow. :class:`Owners` reads a circular sentence by
sentence and says whose a value is: the object named last before it (in its sentence, else
earlier in its paragraph), the circular's event when the event itself is named last, or
nobody known (``None``).
"""

from __future__ import annotations

import dataclasses
import re

from gcn_rag.corpus.events import event_key, event_spans
from gcn_rag.corpus.quantity import GW, NEUTRINO, event_kind

# quantities a circular states for the objects it finds, not only for its event
OF_OBJECTS = frozenset(
    {"redshift", "magnitude", "ra", "dec", "error_radius", "nh", "photon_index", "gw_distance"}
)
# ... of which these only when their own sentence names the object ("the galaxy NGC 4993 at a
# luminosity distance of 40 Mpc"): an alert's circulars state them for the alert too
_IN_SENTENCE = frozenset({"gw_distance"})
# a catalog galaxy's designation: a redshift right after it is the galaxy's, unless its host
_CATALOGUED = re.compile(
    r"\b(?:SDSS|2MASX|2MASS|WISEA?|GALEXASC|LEDA|PGC|NGC|UGC|ESO|MCG|GLADE|6dFGS|APMUKS)"
    r"\s*(?:J\s*)?\d"
)
_HOST = re.compile(r"\bhost", re.I)
# survey designations of transients that the event patterns do not know
_DESIGNATED = re.compile(
    r"(?<![\w/-])(?:i?PTF-?\d\d[a-z]{2,4}|PS1?-?\d\d[a-z]{2,4}|ATLAS\d\d[a-z]{3,5}|"
    r"LSQ\d\d[a-z]{2,4}|DLT\d\d[a-z]{1,3}|Gaia\d\d[a-z]{2,4}|GOTO\d\d[a-z]{1,4}|"
    r"ASAS-?SN-\d\d[a-z]{2,4}|PTSS-\d\d[a-z]{3,4}|DES\d\d[A-Z]\d[a-z]{2,4}|"
    r"MASTER\s*OT\s*J\d{6}\.\d{2}[+-]\d{6}\.\d|TCP\s*J\d{8}[+-]\d{7})(?!\w)"
)
# "Source 13:", "candidate #2", "object 3": one of several, named by its number
_NUMBERED = re.compile(
    r"\b(?:[Ss]ources?|[Cc]andidates?|[Oo]bjects?|[Tt]ransients?)\s*(?:#|[Nn]o\.\s*)?"
    r"(?P<n>\d{1,3})\b(?![.,]\d)(?!\s*(?:arcs|arcm|\"|'|deg|sigma|%|[kM]?eV|s\b|ks|min|h\b))"
)
# in an alert's circular, words that introduce another object (a catalog galaxy, an X-ray
# source); not what says what a named object is ("a type Ia SN", "a star")
_OTHER = re.compile(
    r"\b(?:sources?(?!\s+(?:direction|classification|propert|frame|parameter|type))|"
    r"transients?|candidates?|counterparts?|objects?|galax(?:y|ies)|OTs?|afterglows?|NGC|UGC|"
    r"PGC|ESO|2MASX|2MASS|SDSS|WISEA?|GALEXASC|LEDA|GLADE|1RXS|2SXPS|4FGL|3FHL|TXS|PKS)\b",
    re.I,
)
# ... and what is another object however it is introduced ("the galaxy 2MASX J0807-2927",
# "the highest significance ... at RA =", "a new excess, Fermi J1707.0+2528")
_FOUND = re.compile(
    rf"{_CATALOGUED.pattern}|\bFermi\s+J\d|\b(?:[1-4]FGL|[1-3]FHL|[1-3]HWC|[23]EG)\s*J\s*\d|"
    r"\bhot\s?spots?\b|\bhighest significance\b|"
    r"\bmost significant (?:location|position|spot)\b|\bnew (?:[\w-]+ ){0,2}excess\b|"
    r"\b(?:pre|post)[- ]?trials?\b",  # a search's best spot ("3.1 sigma pre-trials, at RA =")
    re.I,
)
# ... and words about the alert itself, after which a bare value is the alert's again
_ITSELF = re.compile(
    r"neutrino|sky ?map|locali[sz]ation|gravitational|\bGW\b|\balert\b|\btrigger\b|IceCube|"
    r"LIGO|Virgo|\bLVK\b|\bKAGRA\b|contour|tiling|\btiles?\b",
    re.I,
)
# "Source 2 ... is the afterglow": that numbered source is the event's
_IS_AFTERGLOW = re.compile(
    r"(?:is|as|be)\s+(?:likely\s+|probably\s+|most\s+likely\s+)?(?:the\s+)?"
    r"(?:(?:X-ray|optical)\s+)?(?:afterglow|counterpart)",
    re.I,
)
# a sentence that says its object is not the event's ("a second source ... outside the XRT
# error circle", "unlikely associated with the GRB")
_UNRELATED = re.compile(
    r"\b(?:unlikely|not(?: likely)?|un)\s*(?:to\s+be\s+)?(?:associated|related|connected)\s+"
    r"\w+\s+(?:the\s+|this\s+)?(?:GRB|burst|event|trigger|alert|neutrino|GW)\b|"
    r"\boutside (?:of )?(?:the |our |its )?(?:[\w/.-]+ ){0,3}(?:error|circle|region|box|contour)",
    re.I,
)
_ITS_OWN = re.compile(r"afterglow|counterpart|\bOT\b|transient|fading|new source", re.I)
# ... quantities of that object (an error radius there is the event's circle)
_OF_THAT_OBJECT = frozenset({"redshift", "magnitude", "ra", "dec", "nh", "photon_index"})
# a table row that starts with another burst's date-name ("000516  J>20.5, K>17.5")
_ROW_NAME = re.compile(r"\s*(?P<yy>\d\d)(?P<mm>0[1-9]|1[0-2])(?P<dd>0[1-9]|[12]\d|3[01])[A-Z]?\s")
_BURST = re.compile(r"^(?:GRB|XRF)\s*(\d{6})")
_PARAGRAPH = re.compile(r"\n\s*\n")
_ANAPHORA = re.compile(r"\b(?:the|this|that|its|their|host)\s+(?:[\w-]+\s+){0,2}$", re.I)


@dataclasses.dataclass(frozen=True)
class Mark:
    """An object named at ``start``: the circular's own event, a named one, or an unnamed one."""

    start: int
    own: bool = False
    name: str | None = None  # a transient's designation; None for "Source 2", "a galaxy"


class Owners:
    """Whose values a circular's sentences state, read in order (one instance per circular)."""

    def __init__(self, own: str | None, body: str) -> None:
        self.own = own
        self.field = own is not None and event_kind(own) in (GW, NEUTRINO)
        self.own_key = event_key(own) if own else ""
        self.body = body
        self.afterglows = {m["n"] for m in _NUMBERED.finditer(body) if _names_afterglow(body, m)}
        self.listed = len({m["n"] for m in _NUMBERED.finditer(body)}) >= 2
        self.active = self.field or self.listed
        self.context: Mark | None = None  # the object the paragraph named last
        self.marks: list[Mark] = []
        self.end = 0
        self.sentence = ""
        self.other_row = False  # the sentence is a row of another burst's
        self.unrelated = False  # ... says its object is not the event's

    def read(self, offset: int, sentence: str) -> None:
        """Move on to the next sentence (``offset`` in the body; -1 for the subject)."""
        self.sentence = sentence
        self.other_row = _earlier_burst_row(self.own, sentence)
        self.unrelated = bool(_UNRELATED.search(sentence) and not _ITS_OWN.search(sentence))
        if not self.active:
            return
        carry = self.marks[-1] if self.marks else self.context
        if offset < 0 or _PARAGRAPH.search(self.body, self.end, max(self.end, offset)):
            carry = None  # a new paragraph (or the subject) starts afresh
        self.marks = self._marks(sentence, carry)
        if self.field and not self.marks and _ITSELF.search(sentence):
            carry = None  # "the neutrino's best-fit position": the alert again
        self.context = carry
        if offset >= 0:
            self.end = offset + len(sentence)

    def event(self, key: str, at: int, limit: bool, event: str | None) -> str | None:
        """The event a value of ``key`` at ``at`` in the sentence belongs to (``event``: as the
        sentence alone says). Limits go to a named object only when their sentence names it."""
        if key == "redshift" and self._catalogued(at):
            return None  # "SDSS J0908+4149 09:08:58.1 +41:49:27 z=0.045": a catalog galaxy's
        if self.other_row or (self.unrelated and not limit and key in _OF_THAT_OBJECT):
            return None  # another burst's row; "a second source ... outside the error circle"
        if not self.active or key not in OF_OBJECTS:
            return event
        before = [m for m in self.marks if m.start < at]
        if limit:
            before = [m for m in before if m.own or m.name]
        alone = limit or key in _IN_SENTENCE  # no object carried from an earlier sentence
        mark = before[-1] if before else None if alone else self.context
        if mark is not None and not mark.own:
            return mark.name
        if self.field and not limit and key in ("redshift", "magnitude"):
            return None  # an alert has neither: they are of objects found in its region
        return event

    def _catalogued(self, at: int) -> bool:
        """Is a catalog galaxy named before ``at`` in the sentence, after the event, and the
        sentence says nothing of a host?"""
        before = self.sentence[:at]
        named = [m.end() for m in _CATALOGUED.finditer(before)]
        if not named or _HOST.search(self.sentence):
            return False
        return not any(start > named[-1] for start, _, _ in event_spans(before))

    def _marks(self, sentence: str, carry: Mark | None) -> list[Mark]:
        marks = [
            Mark(m.start()) for m in _NUMBERED.finditer(sentence) if m["n"] not in self.afterglows
        ]
        for start, _, name in event_spans(sentence):  # in a burst's circular: as before
            own = not self.field or event_key(name) == self.own_key
            marks.append(Mark(start, own=own, name=None if own else name))
        marks.extend(
            Mark(m.start(), own=not self.field, name=" ".join(m.group().split()))
            for m in _DESIGNATED.finditer(sentence)
        )
        if self.field:
            marks.extend(  # "the transient" is the one named before (if any); "a galaxy" another
                Mark(m.start())
                for m in _OTHER.finditer(sentence)
                if not _ANAPHORA.search(sentence, max(0, m.start() - 30), m.start())
                or ((carry is None or carry.own) and not any(k.start < m.start() for k in marks))
            )
            marks.extend(Mark(m.start()) for m in _FOUND.finditer(sentence))
        return sorted(marks, key=lambda mark: mark.start)


def _earlier_burst_row(own: str | None, sentence: str) -> bool:
    """Does ``sentence`` start with the date-name of a burst earlier than the circular's own
    ("000516  J>20.5, K>17.5  17" in a table of earlier afterglows)? A later date is an
    observation's, a row of the burst's own table."""
    burst = _BURST.match(own or "")
    row = _ROW_NAME.match(sentence)
    if burst is None or row is None:
        return False
    return _dated(row.group()[:6]) < _dated(burst.group(1))


def _dated(yymmdd: str) -> str:
    """A burst's date-name as a sortable date ("991208" is 1999, "000516" 2000)."""
    return ("19" if yymmdd[:2] > "80" else "20") + yymmdd


def _names_afterglow(body: str, numbered: re.Match[str]) -> bool:
    after = body[numbered.end() : numbered.end() + 80]
    return _IS_AFTERGLOW.search(after.split(".")[0]) is not None and "not" not in after[:40]
