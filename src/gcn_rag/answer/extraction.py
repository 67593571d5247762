"""Find the asked-for value in circular sentences, and weigh the evidence.

A question is parsed into what it asks (:class:`Asked`): the quantity (from the catalog in
:mod:`gcn_rag.corpus.quantities`), the instrument and the energy band it names, if any.
Values are read from the circulars' own sentences (:mod:`gcn_rag.corpus.measurements`) and
weighed: the named instrument's reports and refined values count more, doubtful ones less.
Everything is deterministic pattern work, and a value is only ever reported together with the
sentence it was read from, so an answer can never state a number that is not in a cited
sentence.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from gcn_rag.corpus.chunking import split_sentences
from gcn_rag.corpus.events import event_aliases, event_key, find_event_ids
from gcn_rag.corpus.instruments import INSTRUMENTS, named_instrument
from gcn_rag.corpus.measurements import SPECTROSCOPIC, band, mentions, read
from gcn_rag.corpus.quantities import BY_KEY, asked_quantity
from gcn_rag.corpus.quantity import GW, NEUTRINO, Quantity, event_kind

#: Without a named instrument, a T90 is the Swift-BAT one (the duration a GRB is known by).
_DEFAULT_INSTRUMENT = {"t90": "Swift-BAT"}
#: ... and an event's own measurements come from the team that found it.
_DISCOVERER = {GW: "LIGO/Virgo/KAGRA", NEUTRINO: "IceCube"}
_DOUBTFUL = re.compile(
    r"photometric|\bphot-z|if (?:the|this|it)|assum|would|could be|might|candidate host|"
    r"upper limit|lower limit|pseudo|tentative|unlikely|not consistent|rule out|excluded|"
    r"possibl|not correct|incorrect|retract|erroneous|superseded",
    re.I,
)
_RA = re.compile(r"right ascension|\bR\.?A\b", re.I)
_REVISED = re.compile(r"\brefined|\brevised|\bcorrected|\bupdated|\bconfirm", re.I)


@dataclasses.dataclass(frozen=True)
class Asked:
    """What a value question asks: a quantity, and the instrument and band it names."""

    quantity: Quantity
    instrument: str | None = None  # named in the question
    band: tuple[float, float] | None = None  # keV, named in the question
    usual: bool = True  # without a named instrument, prefer the usual one (Swift-BAT for T90)
    kind: str | None = None  # of the event asked about
    event: str | None = None  # the event asked about
    also: Quantity | None = None  # asked together ("where on the sky": RA, and Dec as well)

    def about_another_event(self, sentence: str) -> bool:
        """Whether ``sentence`` names events, none of them the asked one (any alias)."""
        if self.event is None:
            return False
        named = find_event_ids(sentence)
        keys = {event_key(alias) for alias in event_aliases(self.event)}
        return bool(named) and not any(event_key(e) in keys for e in named)

    @property
    def preferred(self) -> str | None:
        """The instrument whose reports count most: the named one, else the usual one, else
        the team that found the event (LVK for a GW candidate, IceCube for its alerts)."""
        if self.instrument or not self.usual:
            return self.instrument
        usual = _DEFAULT_INSTRUMENT.get(self.quantity.key)
        return usual or (_DISCOVERER.get(self.kind) if self.kind else None)

    @property
    def by_instrument(self) -> bool:
        """Whether the value depends on the instrument that measured it."""
        return self.quantity.by_instrument

    @property
    def label(self) -> str:
        """How the answer names the quantity: "Fermi GBM peak energy Epeak", "redshift"."""
        label = self.quantity.label
        if self.quantity.by_instrument and self.preferred:
            label = f"{self.preferred} {label}"
        if self.band is not None and self.quantity.key == "fluence":
            label = f"{label} ({_band_text(self.band)})"
        return label


def parse_question(question: str, events: list[str]) -> Asked | None:
    """What a question about ``events`` asks for, when it asks for a catalog quantity."""
    kind = event_kind(events[0]) if events else None
    quantity = asked_quantity(question, kind)
    if quantity is None:
        return None
    event = events[0] if events else None
    dec = BY_KEY["dec"]
    # a position is both coordinates, unless the question names RA alone
    also = (
        dec
        if quantity.key == "ra" and (dec.asked.search(question) or not _RA.search(question))
        else None
    )
    instrument = named_instrument(question)
    return Asked(quantity, instrument, band(question), kind=kind, event=event, also=also)


def _band_text(keV: tuple[float, float]) -> str:
    return f"{keV[0]:g}-{keV[1]:g} keV"


@dataclasses.dataclass(frozen=True)
class Evidence:
    """One value read from one sentence of one circular."""

    value: float
    text: str  # the value as an answer writes it ("0.151", "3.6E-06")
    sentence: str
    weight: float
    circular_row: int
    instrument: str | None = None  # the instrument the sentence or its circular names
    limit: str = ""  # "upper" / "lower": a limit, not a value (``text`` carries its sign)


def sentences(text: str) -> list[str]:
    """Sentences of a chunk, table lines kept as they are."""
    out: list[str] = []
    for paragraph in text.split("\n"):
        out.extend(split_sentences(" ".join(paragraph.split())))
    return [s for s in out if s]


def can_state(asked: Asked, text: str) -> bool:
    """Could ``text`` state the asked value? (a cheap test before splitting it)"""
    return mentions(asked.quantity, text)


def find_values(asked: Asked, sentence: str, subject: str, circular_row: int) -> list[Evidence]:
    """Every value of the asked quantity stated in ``sentence``, with a plausibility weight;
    a limit comes as one too, marked (it is no value, but it says the sentence is not silent)."""
    found: list[Evidence] = []
    for reading in read(asked.quantity, sentence):
        weight, instrument = _weight(asked, sentence, subject)
        text = f"{asked.quantity.limit_sign(reading.limit)} {reading.text}".lstrip()
        found.append(
            Evidence(reading.value, text, sentence, weight, circular_row, instrument, reading.limit)
        )
    return found


def _weight(asked: Asked, sentence: str, subject: str) -> tuple[float, str | None]:
    weight = 1.0
    if _DOUBTFUL.search(sentence):
        weight *= 0.3
    if _REVISED.search(sentence) or (_REVISED.search(subject) and _about(asked, subject)):
        weight *= 1.5  # a later, refined measurement supersedes a preliminary one
    quantity = asked.quantity
    if asked.about_another_event(sentence):
        weight *= 0.1  # "... GRB <another> with T90 = 12.8 s" is no T90 of the asked burst
    if quantity.specific is not None and quantity.specific.search(sentence):
        weight *= 2.0
    if quantity.foreign is not None and quantity.foreign.search(sentence):
        weight *= 0.3  # the value of something else (a galaxy's distance, a host's redshift)
    spectroscopic = SPECTROSCOPIC.search(sentence) or re.search(r"redshift|spectr", subject, re.I)
    if asked.quantity.key == "redshift" and spectroscopic:
        weight *= 2.0
    instrument = named_instrument(sentence) or named_instrument(subject)
    wanted = asked.preferred
    if wanted is not None:
        pattern = INSTRUMENTS[wanted]
        if pattern.search(sentence) or pattern.search(subject):
            weight *= 3.0
            instrument = wanted
        elif instrument is not None:
            weight *= 0.5
    if asked.band is not None:
        stated = band(sentence)
        if stated is not None:
            weight *= 3.0 if _same_band(stated, asked.band) else 0.5
    return weight, instrument


def _about(asked: Asked, subject: str) -> bool:
    """Whether a circular's subject is about the asked quantity or from its usual measurer
    ("BAT refined analysis" refines a T90; "redshift confirmation" does not refine an Epeak)."""
    preferred = asked.preferred
    by_measurer = preferred is not None and INSTRUMENTS[preferred].search(subject) is not None
    return by_measurer or mentions(asked.quantity, subject)


def _same_band(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return abs(a[0] - b[0]) <= 0.05 * b[0] and abs(a[1] - b[1]) <= 0.05 * b[1]


def tolerance(quantity: Quantity | str, value: float) -> float:
    """How far apart two reports may be and still count as the same value."""
    q = BY_KEY[quantity] if isinstance(quantity, str) else quantity
    return max(q.absolute, q.relative * abs(value))


@dataclasses.dataclass(frozen=True)
class ValueGroup:
    """Reports that agree (within tolerance), strongest first."""

    text: str  # the most common spelling
    value: float
    support: float
    evidence: tuple[Evidence, ...]

    def said(self, unit: str) -> str:
        """The value with ``unit``, unless it is written with its own ("3 arcmin")."""
        return f"{self.text} {unit}" if unit and self.text[-1:].isdigit() else self.text

    @property
    def rows(self) -> list[int]:
        seen: list[int] = []
        for e in self.evidence:
            if e.circular_row not in seen:
                seen.append(e.circular_row)
        return seen


def group_values(quantity: Quantity, evidence: Iterable[Evidence]) -> list[ValueGroup]:
    """Cluster agreeing values; a circular counts once per group (its best sentence)."""
    groups: list[list[Evidence]] = []
    for item in sorted(evidence, key=lambda e: -e.weight):
        for group in groups:
            if abs(group[0].value - item.value) <= tolerance(quantity, group[0].value):
                group.append(item)
                break
        else:
            groups.append([item])
    out = []
    for group in groups:
        best: dict[int, Evidence] = {}
        for e in group:
            if e.circular_row not in best or e.weight > best[e.circular_row].weight:
                best[e.circular_row] = e
        support = sum(e.weight for e in best.values())
        spellings = [e.text for e in best.values()]
        text = max(spellings, key=lambda s: (spellings.count(s), -spellings.index(s)))
        ordered = tuple(sorted(best.values(), key=lambda e: -e.weight))
        value = next(e.value for e in ordered if e.text == text)
        out.append(ValueGroup(text, value, support, ordered))
    return sorted(out, key=lambda g: (-g.support, -len(g.evidence)))


# --- the value an answer leads with ------------------------------------------------------

# The benchmark's rule (../shared/bench/README.md), which gcn_rag.answer.evaluation scores by:
# blanked out, in this order, before the first number is read. The order matters: event names
# go first, so "at 13:17 UT" loses "at 13" before the time pattern can see it. Event-name
# prefixes are case-sensitive ("peaks at 189 keV" keeps 189; "AT 2017gfo" is a name).
_NOISE = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        r"\b(?-i:GRB|GW|S|EP|IceCube-|FRB|AT|SN|ZTF)\s?\d{2,}[A-Za-z]*\b",  # event names
        r"\b(?:GCN|circular|circ\.?)s?\s*(?:no\.?|number|#)?\s*\d+(?:\.5)?"
        r"(?:\s*(?:,|;|and|&)\s*(?:GCN\s*)?\d+)*",  # circular references
        r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?",  # ISO dates
        r"\b\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:UT|UTC)?",  # times
        r"\[\d+\]",  # bracketed references
        r"\b\d+(?:\.\d+)?\s*(?:keV|MeV|GeV|TeV)?\s*(?:-|\u2013|to)\s*\d+(?:\.\d+)?\s*"
        r"(?:keV|MeV|GeV|TeV)\b",  # energy bands
    )
)
# A number not glued to a word or a decimal point: "T90" and the ".5" of "18453.5" are not.
_LEADING_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?")
_SUPERSCRIPT_DIGITS = str.maketrans(
    "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079\u207b\u207a", "0123456789-+"
)
# "+/- 0.4" between a mantissa and its power of ten: "(2.3 +/- 0.4)E-07".
_LEAD_ERROR = r"\s*(?:\+/-|\+-|\u00b1|\+/\u2212)\s*\d+(?:\.\d+)?\s*"
# The power of ten right after a mantissa: "E-07", "x 10^-7", "times 10^{-7}", superscripts.
_LEAD_EXPONENT = re.compile(
    r"^\s*(?:[eE]\s*([-+]?\d+)"
    r"|(?:x|\u00d7|\*|times)\s*10\s*(?:\^|\*\*)?\s*\{?\s*\(?\s*([-+\u2212\u2013]?\s*\d+))"
)


def _denoise(answer: str) -> str:
    text = answer
    for pattern in _NOISE:
        text = pattern.sub(" ", text)
    return text


def first_value(answer: str) -> float | None:
    """The first number of an answer that is not part of a name, reference, date, time or band.

    Answers must therefore lead with the value: "The redshift of GRB 130427A is z = 0.34
    (GCN 14455)."
    """
    match = _LEADING_NUMBER.search(_denoise(answer))
    return float(match.group()) if match else None


def first_value_scientific(answer: str) -> float | None:
    """:func:`first_value` read with the power of ten that follows it, as fluences are written:
    "(2.3 +/- 0.4)E-07" and "2.3 (+/-0.4) x 10^-7" are 2.3e-07; "0.00012" is 0.00012."""
    text = _denoise(answer).translate(_SUPERSCRIPT_DIGITS)
    match = _LEADING_NUMBER.search(text)
    if not match:
        return None
    mantissa, rest = float(match.group()), text[match.end() :]
    # an uncertainty may stand between mantissa and exponent; skip it only if one follows
    error = re.match(r"^" + _LEAD_ERROR + r"\)?", rest) or re.match(
        r"^\s*\(" + _LEAD_ERROR + r"\)", rest
    )
    if error and _LEAD_EXPONENT.match(rest[error.end() :]):
        rest = rest[error.end() :]
    exponent = _LEAD_EXPONENT.match(rest)
    if exponent is None:
        return mantissa
    power = exponent.group(1) or exponent.group(2)
    digits = power.replace("\u2212", "-").replace("\u2013", "-").replace(" ", "")
    return float(mantissa * 10.0 ** int(digits))
