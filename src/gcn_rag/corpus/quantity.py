"""What a catalog quantity is: :class:`Quantity`, and the pieces its entries are written with.

The entries themselves are :mod:`gcn_rag.corpus.quantities`; reading values with them is
:mod:`gcn_rag.corpus.measurements`.
"""

from __future__ import annotations

import dataclasses
import re

GRB, GW, NEUTRINO, OTHER = "grb", "gw", "neutrino", "other"
ANY = (GRB, GW, NEUTRINO, OTHER)

# What may stand between a quantity's name and its value: "Epeak, is", "of about", "= ~",
# "is <" (a limit, which the reader keeps as one).
LINK = (
    r"(?:\s*(?:,|:|=|~|≈|~=|\(|<=?|>=?|≤|≥|is|was|are|were|of|at|to|be|around|about|"
    r"approximately|approx\.?|roughly|estimated|measured|found|determined|derived|given|as|"
    r"by|a|an|the|value|estimate|best[- ]fit|(?<=\s)by)\s*)*"
)


def event_kind(event_id: str) -> str:
    """The kind of an event from its name: a GRB, a GW candidate, a neutrino alert, other."""
    name = event_id.strip()
    if re.match(r"(?:GRB|XRF)\b", name):
        return GRB
    if re.match(r"(?:S\d{6}[a-z]+|GW\d{6}|G\d{4,})", name):
        return GW
    if re.match(r"(?:IceCube|ANTARES|KM3NeT|Baikal)", name, re.I):
        return NEUTRINO
    return OTHER


@dataclasses.dataclass(frozen=True)
class Quantity:
    """One measured quantity: how questions name it and how circulars write its values."""

    key: str
    label: str  # in answers: "The <label> of <event> is <value> <unit>"
    unit: str  # the unit values are kept and answered in ("" for none)
    asked: re.Pattern[str]  # the quantity named in a question (paraphrases too)
    cue: re.Pattern[str]  # what a circular writes right before the value (matched at the end)
    mention: re.Pattern[str]  # the cue's words: a sentence without them states no value
    units: tuple[tuple[str, float], ...] = ()  # (regex of a spelling, factor to ``unit``)
    unit_required: bool = False  # a number without one of ``units`` is not this quantity
    bare: float = 1.0  # factor for a number written without a unit (0.99 -> 99 %)
    low: float = float("-inf")  # plausible range, in ``unit``
    high: float = float("inf")
    scientific: bool = False  # written with powers of ten ("3.6E-06")
    as_written: bool = False  # answers keep the circular's unit ("3.5 arcsec", "1.2 deg")
    inverted: bool = False  # a larger number is less (magnitudes): "r > 22" is an upper limit
    not_after: re.Pattern[str] | None = None  # right after the value: not this quantity
    # shortly before the cue: the value is not this event's measurement ("assuming",
    # "decay index", "USNO star")
    reject: re.Pattern[str] | None = None
    # in the cue's gap: the value after it is something else ("error, at a distance of")
    interrupted: re.Pattern[str] | None = None
    pair: int = -1  # 0 / 1: first / second of a pair ("RA, Dec = 17.34, +35.81")
    instruments: tuple[str, ...] | None = None  # that can measure it (None: any)
    prefix: str = ""  # before the value in answers ("z = ")
    kinds: tuple[str, ...] = ANY  # the event kinds it is asked about
    relative: float = 0.01  # two reports within this share of each other agree
    absolute: float = 0.0  # ... or within this much
    retrieval: tuple[str, ...] = ()  # extra search words for the event's circulars
    specific: re.Pattern[str] | None = None  # a sentence that says it precisely: weighs more
    foreign: re.Pattern[str] | None = None  # a sentence about another object's value
    by_instrument: bool = False  # the value depends on the instrument (named in answers)
    timed: bool = False  # its rows say when after the trigger (a magnitude fades)

    def agree(self, a: float, b: float) -> bool:
        return abs(a - b) <= max(self.absolute, self.relative * abs(a))

    def limit_sign(self, limit: str | None) -> str:
        """How a limit is written before its value: "<" for an upper limit (">" for a
        magnitude, where a larger number is fainter), ">" for a lower one, "" for a value."""
        if not limit:
            return ""
        return ">" if (limit == "upper") == self.inverted else "<"


def words(pattern: str) -> re.Pattern[str]:
    """A case-insensitive pattern."""
    return re.compile(pattern, re.I)


def cue(pattern: str, gap: int = 0) -> re.Pattern[str]:
    """A cue: its words, then up to ``gap`` characters of anything ("as estimated by the
    online analysis"), then linking words, at the very end of the text before a value."""
    between = rf"(?:[\s,(]+[^=;]{{0,{gap}}}?)?" if gap else ""
    return re.compile(rf"(?:{pattern}){between}{LINK}$", re.I)


KEV = ((r"keV", 1.0), (r"MeV", 1000.0), (r"GeV", 1e6))
SECONDS = ((r"s\b|sec\b|secs\b|seconds?\b", 1.0), (r"ms\b|msec", 0.001), (r"min\b|minutes?", 60))
_CM2 = r"cm\s*(?:\^?\s*-?\s*2|2|\u00b2|\^\{-2\}|\*\*\s*-?2)"
_PER_S = r"(?:s(?:ec)?\s*\^?\s*-1|(?:/|per\s)\s*s(?:ec)?\b)"
FLUENCE = ((rf"erg\s*(?:/|per)?\s*{_CM2}|erg\b", 1.0),)
FLUX = (
    (
        rf"erg\s*(?:/|per)?\s*(?:{_CM2}\s*{_PER_S}|s(?:ec)?\s*\^?-1\s*{_CM2}|/s(?:ec)?\s*/\s*{_CM2})",
        1.0,
    ),
)
PHOTON_FLUX = (
    (
        rf"(?:ph(?:otons?)?|counts?)\s*(?:/|per)?\s*(?:{_CM2}\s*{_PER_S}|s(?:ec)?\s*\^?-1\s*{_CM2}"
        rf"|/s(?:ec)?\s*/\s*{_CM2})",
        1.0,
    ),
)
PER_YEAR = (
    (r"(?:events?\s*)?(?:per|/)\s*(?:yr|year)|yr\s*\^?-1|yr\u207b\u00b9|year\s*\^?-1", 1.0),
    (r"(?:events?\s*)?(?:per|/)\s*day|day\s*\^?-1", 365.25),
    (r"Hz", 31_557_600.0),
)
DEGREES = (  # arcsec before arcmin: 0.4'' is 0.4 arcsec
    (r"deg(?:rees?)?\b|\u00b0", 1.0),
    (r"arcsec\w*|\"|''|\u2033|\u201d", 1 / 3600),
    (r"arcmin\w*|'|\u2032", 1 / 60),
)
PERCENT = ((r"%|per ?cent", 1.0),)
# after a value: a rate ("erg/cm2/s") is no fluence, an angle or time no magnitude
RATE_AFTER = words(r"\s*(?:/\s*s(?:ec)?\b|s\s*\^?\s*-1|per s(?:ec(?:ond)?)?\b|s\b(?![-\w]))")
# a value assumed to compute another ("for a typical Band spectrum with alpha = -1")
ASSUMED = (
    r"\bassum\w*|\baverage\b|\btypical\b|\bcanonical\b|\bcharacteristic\b|\bfix(?:ed|ing)\b|"
    r"\badopt\w*|\bmodels?\s+\d\b|\bpseudo|hypothetical|simulated|"  # "Band model 2": a template
    r"parametri[sz]ed with|\btemplates?\b|\bnormal\W{0,2}\s+spectrum"  # a search's spectra
)
# a depth still to be reached, not one measured ("will extend ... down to V=22")
PLANNED = (
    r"\bwill (?:\w+ ){0,3}(?:reach|extend|go|achieve|get)\b|\bplann\w* (?:depth|limit|observ)|"
    r"\bexpected (?:depth|limit|sensitivity)|\b(?:is|are) expected to\b|\bshould reach\b"
)
# a comparison or catalog object's value, not the event's
REFERENCE = r"\bUSNO|\bstars?\b|reference|comparison|calibrat\w*|\b4FGL|\b3FHL|catalog source"
NOT_A_MAGNITUDE = words(
    r"\s*(?:arcsec|arcmin|deg|\"|'|\u00b0|keV|MeV|s\b|sec|min|hr|h\b|d\b|days?|km|Mpc|%|"
    r"sigma|ks|mJy|uJy|Jy|counts?|cts|pixel|pix|(?:field |reference |comparison )?stars?\b|"
    r"for\s+(?:the\s+|a\s+|this\s+)?(?:[\w.-]+\s+){0,2}?(?:USNO|stars?\b|reference|comparison))"
)
# an epeak that was not observed: assumed, or moved to the source's rest frame ("Ep,i")
NOT_OBSERVED = words(
    rf"{ASSUMED}|rest[- ]frame|source[- ]frame|intrinsic (?:peak|E_?p)|\bE_?p(?:eak)?,\s*[iz]\b|"
    r"\(1\s*\+\s*z\)"
)
# the part of a region the Earth hides ("behind the Earth for Fermi, located at RA=")
EARTH = (
    r"behind the Earth|\bEarth[- ]occult\w*|occulted by the Earth|"
    r"\bEarth(?:'s)? (?:limb|cent(?:er|re))"
)
_NOT_ITS_POSITION = words(
    rf"{REFERENCE}|{EARTH}|annul\w*|fields? of view|\bFoV\b|pointing|corners?\b|\bbeams?\b"
)
_FOREIGN_SOURCE = words(r"nearest|\b4FGL|\b3FHL|catalog source|galax|\bstar\b|\bhost\b")


def probability(key: str, label: str, asked: str, name: str) -> Quantity:
    """A GW candidate's classification probability: "BNS (>99%)", "(HasNS) is <1%"."""
    return Quantity(
        key=key,
        label=label,
        unit="%",
        asked=words(asked),
        mention=words(name),
        cue=cue(rf"(?:{name})\)?(?:\s*(?:is|=|:))?", gap=0),
        units=PERCENT,
        bare=100.0,
        low=0.0,
        high=100.0,
        kinds=(GW,),
        absolute=1.0,
        relative=0.0,
        retrieval=tuple(w.lower() for w in re.findall(r"[A-Za-z]+", name)[:1]),
    )


def position(
    pair: int, key: str, label: str, asked: str, name: str, span: tuple[float, float]
) -> Quantity:
    """A coordinate, in degrees or sexagesimal, alone or in a pair ("RA, Dec = 17.3, +35.8")."""
    return Quantity(
        key=key,
        label=label,
        unit="deg",
        asked=words(rf"{label}|{asked}"),
        mention=words(rf"{name}|{label}"),
        cue=cue(rf"{name}\s*(?:\([JB]?(?:2000|1950)(?:\.0)?\))?|{label}"),
        units=DEGREES,
        low=span[0],
        high=span[1],
        absolute=0.5,
        relative=0.0,
        retrieval=(key,),
        pair=pair,
        foreign=_FOREIGN_SOURCE,
        reject=_NOT_ITS_POSITION,
    )
