"""The quantity catalog: what astronomers measure and how the circulars write it, as data.

One :class:`Quantity` per measured quantity: the words a question uses for it (paraphrases
included), the words a circular puts right before its value, the units it is written in (and
their conversion to one unit), its plausible range, and whether it is usually written with a
power of ten. :mod:`gcn_rag.corpus.measurements` reads values with it; the answerer picks the
quantity a question asks for with :func:`asked_quantity`. A new quantity is a new entry here,
not new code.

Events have kinds (a GRB, a gravitational-wave candidate, a neutrino alert, ...): a quantity
applies to some kinds only, so "how far is it?" asks for a redshift of a GRB and for a
luminosity distance of a GW candidate.
"""

from __future__ import annotations

import dataclasses
import re

GRB, GW, NEUTRINO, OTHER = "grb", "gw", "neutrino", "other"
ANY = (GRB, GW, NEUTRINO, OTHER)

# What may stand between a quantity's name and its value: "Epeak, is", "of about", "= ~".
LINK = (
    r"(?:\s*(?:,|:|=|~|≈|~=|\(|is|was|are|were|of|at|to|be|around|about|approximately|"
    r"approx\.?|roughly|estimated|measured|found|determined|derived|given|as|by|"
    r"a|an|the|value|estimate|best[- ]fit|(?<=\s)by)\s*)*"
)


@dataclasses.dataclass(frozen=True)
class Quantity:
    """One measured quantity (see the module docstring)."""

    key: str
    label: str  # in answers: "The <label> of <event> is <value> <unit>"
    unit: str  # the unit answers use ("" for none)
    asked: re.Pattern[str]  # the quantity named in a question (paraphrases too)
    cue: re.Pattern[str]  # what a circular writes right before the value (matched at the end)
    mention: re.Pattern[str]  # the cue's words: a chunk without them cannot state a value
    units: tuple[tuple[str, float], ...] = ()  # (regex of a spelling, factor to ``unit``)
    unit_required: bool = False  # a number without one of ``units`` is not this quantity
    low: float = float("-inf")  # plausible range, in ``unit``
    high: float = float("inf")
    scientific: bool = False  # written with powers of ten ("3.6E-06")
    prefix: str = ""  # before the value in answers ("z = ")
    kinds: tuple[str, ...] = ANY  # the event kinds it is asked about
    relative: float = 0.01  # two reports within this share of each other agree
    absolute: float = 0.0  # ... or within this much
    retrieval: tuple[str, ...] = ()  # extra search words for the event's circulars
    specific: re.Pattern[str] | None = None  # a sentence that says it precisely: weighs more
    foreign: re.Pattern[str] | None = None  # a sentence about another object's value

    def agree(self, a: float, b: float) -> bool:
        return abs(a - b) <= max(self.absolute, self.relative * abs(a))


def _q(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.I)


def _cue(pattern: str, gap: int = 0) -> re.Pattern[str]:
    """A cue: its words, then up to ``gap`` characters of anything ("as estimated by the
    online analysis"), then linking words, at the very end of the text before a value."""
    between = rf"(?:[\s,(]+[^=;]{{0,{gap}}}?)?" if gap else ""
    return re.compile(rf"(?:{pattern}){between}{LINK}$", re.I)


_KEV = (
    (r"keV", 1.0),
    (r"MeV", 1000.0),
    (r"GeV", 1e6),
)
_SECONDS = ((r"s\b|sec\b|secs\b|seconds?\b", 1.0), (r"ms\b|msec", 0.001), (r"min\b|minutes?", 60))
_FLUENCE = ((r"erg\s*(?:/|per)?\s*cm\s*(?:\^?\s*-?2|2|\u00b2|\^\{-2\}|\u207b\u00b2)|erg", 1.0),)
_PER_YEAR = (
    (r"(?:events?\s*)?(?:per|/)\s*(?:yr|year)|yr\s*\^?-1|yr\u207b\u00b9|year\s*\^?-1", 1.0),
    (r"(?:events?\s*)?(?:per|/)\s*day|day\s*\^?-1", 365.25),
    (r"Hz", 31_557_600.0),
)
_DEGREES = ((r"deg(?:rees?)?\b|\u00b0", 1.0), (r"arcmin\b|'", 1 / 60), (r"arcsec\b|\"", 1 / 3600))

CATALOG: tuple[Quantity, ...] = (
    Quantity(
        key="t90",
        label="T90",
        unit="s",
        asked=_q(
            r"\bT_?90\b|\bduration\b|how long\b|how many seconds|"
            r"\blast(?:ed|ing)?\b[^?]{0,30}\?|"
            r"(?:length|long) (?:in|of) (?:seconds|time)|"
            r"\bseconds\b[^?]{0,40}\b(?:last|long|length)|"
            r"time ?(?:span|interval|window)|90\s*(?:%|per ?cent)\s*of (?:the )?"
            r"(?:counts|photons|fluence|emission|flux|signal)"
        ),
        mention=_q(r"T_?90"),
        cue=re.compile(
            r"(?:\bT_?90\b\s*(?:\([^)]{0,30}\))?\s*(?:duration\s*)?|duration\s*\(T_?90\)\s*)"
            r"(?:[\s,]+(?:estimated|measured|derived|calculated|computed)\b[^=;]{0,70}?\s)?"
            r"(?:(?:is|was|of|=|~|≈|:|about|approximately|estimated\s+(?:at|to\s+be)|,)\s*)*$",
            re.I,
        ),
        units=_SECONDS,
        low=0.0,
        high=100_000.0,
        kinds=(GRB, OTHER),
        relative=0.10,
        retrieval=("t90",),
    ),
    Quantity(
        key="epeak",
        label="peak energy Epeak",
        unit="keV",
        asked=_q(
            r"\bE_?peak\b|\bE_?p\b|\bE_?pk\b|peak (?:photon )?energy|\bnu\s*F\s*nu\b|\u03bdF\u03bd|"
            r"\bEF\(E\)|E\^?2\s*N|(?:spectr\w*|SED|energy distribution|power)\b[^?]{0,60}"
            r"\b(?:peak|maxim|turn(?:s|ing)? over)|"
            r"\b(?:peak|maxim\w*)\b[^?]{0,40}\b(?:spectr\w*|SED)\b"
        ),
        mention=_q(r"E_?peak|\bE_?pk?\b|peak energy|nu\s*F\s*nu"),
        cue=_cue(r"\bE_?peak\b|\bE_?p(?:,i)?\b|\bE_?pk\b|peak energy|nu\s*F\s*nu peak", gap=40),
        units=_KEV,
        unit_required=True,
        low=1.0,
        high=100_000.0,
        kinds=(GRB, OTHER),
        relative=0.10,
        retrieval=("epeak", "peak", "energy"),
    ),
    Quantity(
        key="fluence",
        label="fluence",
        unit="erg/cm^2",
        asked=_q(
            r"\bfluence\b|energy (?:per|over|across|through) (?:a |each |every )?(?:unit )?"
            r"(?:area|square|cm|surface)|erg\s*(?:/|per)?\s*(?:square )?(?:cm|centimet)|"
            r"\bintegrated\b[^?]{0,40}\bflux\b|time-integrated|total energy (?:received|collected)"
        ),
        mention=_q(r"fluence"),
        cue=_cue(r"\bfluence\b", gap=110),
        units=_FLUENCE,
        unit_required=True,
        low=1e-12,
        high=1.0,
        scientific=True,
        kinds=(GRB, OTHER),
        relative=0.10,
        retrieval=("fluence",),
    ),
    Quantity(
        key="gw_distance",
        label="luminosity distance",
        unit="Mpc",
        asked=_q(r"\bdistan(?:ce|t)\b|how far\b|\baway\b|\b[MG]pc\b|(?:mega|giga) ?parsec"),
        mention=_q(r"distance|\bD_?L\b"),
        cue=_cue(r"\b(?:luminosity )?distance(?: estimate)?|\bD_?L\b", gap=40),
        units=((r"Mpc\b", 1.0), (r"Gpc\b", 1000.0)),
        unit_required=True,
        low=0.01,
        high=100_000.0,
        kinds=(GW,),
        relative=0.15,
        retrieval=("distance", "mpc"),
        specific=_q(r"luminosity distance|a posteriori|posterior|marginali[sz]ed|sky ?map"),
        foreign=_q(r"galax|GLADE|\bhost\b|catalog|\bNGC\b|\bPGC\b|\bUGC\b"),
    ),
    Quantity(
        key="redshift",
        label="redshift",
        unit="",
        asked=_q(r"\bredshift|\bz\b|\bdistance\b|\bdistant\b|how far\b|\brecession\b|\bz[- ]value"),
        mention=_q(r"redshift|(?<![\w'])z\s*[=~≈:]"),
        cue=re.compile(
            r"(?:\bredshifts?|(?<![\w'])z)"
            r"(?:\s*(?:of|is|was|at|to|be|around|about|approximately|approx\.?|=|~|≈|~=|:|\(|,)\s*)*"
            r"(?:z\s*[=~≈:]\s*)?$",
            re.I,
        ),
        low=0.0,
        high=15.0,
        prefix="z = ",
        kinds=(GRB, OTHER),
        relative=0.01,
        absolute=0.01,
        retrieval=("redshift",),
    ),
    Quantity(
        key="false_alarm_rate",
        label="false alarm rate",
        unit="per year",
        asked=_q(
            r"false[- ]alarm|\bFAR\b|background (?:rate|alerts?|events?)|noise alone|by chance|"
            r"chance (?:rate|coincidence)|accidental|\bmimic|times (?:a|per|each) year|"
            r"per year|yearly rate|how often"
        ),
        mention=_q(r"false[- ]alarm|\bFAR\b"),
        cue=_cue(r"false[- ]alarm[- ]rate|\bFAR\b", gap=60),
        units=_PER_YEAR,
        unit_required=True,
        low=0.0,
        high=1e12,
        kinds=(NEUTRINO, GW),
        relative=0.10,
        retrieval=("false", "alarm", "rate"),
    ),
    Quantity(
        key="signalness",
        label="signalness",
        unit="",
        asked=_q(r"signalness|astrophysical origin|probability[^?]{0,30}astrophysical"),
        mention=_q(r"signalness"),
        cue=_cue(r"signalness"),
        low=0.0,
        high=1.0,
        kinds=(NEUTRINO,),
        relative=0.05,
        retrieval=("signalness",),
    ),
    Quantity(
        key="neutrino_energy",
        label="most probable neutrino energy",
        unit="TeV",
        asked=_q(r"(?:neutrino|most probable|muon)\b[^?]{0,30}\benergy\b|\benergy of the neutrino"),
        mention=_q(r"energy|\bE_?nu\b"),
        cue=_cue(r"(?:neutrino|most probable)\s+energy|\bE_?nu\b"),
        units=((r"TeV", 1.0), (r"GeV", 0.001), (r"PeV", 1000.0)),
        unit_required=True,
        low=0.001,
        high=1e6,
        kinds=(NEUTRINO,),
        relative=0.10,
        retrieval=("energy", "tev"),
    ),
    Quantity(
        key="ra",
        label="right ascension",
        unit="deg",
        asked=_q(r"right ascension|\bRA\b"),
        mention=_q(r"\bR\.?A\b|right ascension"),
        cue=_cue(r"\bR\.?A\.?\b\s*(?:\(J2000(?:\.0)?\))?|right ascension"),
        units=_DEGREES,
        low=0.0,
        high=360.0,
        kinds=ANY,
        absolute=0.5,
        relative=0.0,
        retrieval=("ra",),
        foreign=_q(r"nearest|\b4FGL|\b3FHL|catalog source|galax|\bstar\b|\bhost\b"),
    ),
    Quantity(
        key="dec",
        label="declination",
        unit="deg",
        asked=_q(r"declination|\bDec\b"),
        mention=_q(r"\bDec|declination"),
        cue=_cue(r"\bDec(?:l\.?)?\b\s*(?:\(J2000(?:\.0)?\))?|declination"),
        units=_DEGREES,
        low=-90.0,
        high=90.0,
        kinds=ANY,
        absolute=0.5,
        relative=0.0,
        retrieval=("dec",),
        foreign=_q(r"nearest|\b4FGL|\b3FHL|catalog source|galax|\bstar\b|\bhost\b"),
    ),
)

BY_KEY = {quantity.key: quantity for quantity in CATALOG}

#: Instruments a question may name, and how a circular's sentence or subject names them.
INSTRUMENTS: dict[str, re.Pattern[str]] = {
    "Swift-BAT": _q(r"\bBAT\b|15-350\s*keV"),
    "Fermi GBM": _q(r"\bGBM\b|\bFermi\b(?![- ]?LAT)|50-300\s*keV"),
    "Fermi LAT": _q(r"\bLAT\b"),
    "Konus-Wind": _q(r"Konus|\bKW\b"),
    "INTEGRAL": _q(r"INTEGRAL|SPI-ACS|\bIBIS\b|\bISGRI\b"),
    "AstroSat CZTI": _q(r"AstroSat|CZTI"),
    "GECAM": _q(r"\bGECAM\b"),
    "Insight-HXMT": _q(r"\bHXMT\b"),
    "AGILE": _q(r"\bAGILE\b|\bMCAL\b"),
    "Swift-XRT": _q(r"\bXRT\b"),
    "IceCube": _q(r"\bIceCube\b"),
    "LIGO/Virgo/KAGRA": _q(r"\bLIGO\b|\bVirgo\b|\bKAGRA\b|\bLVK\b"),
}


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


def asked_quantity(question: str, kind: str | None = None) -> Quantity | None:
    """The catalog quantity a question asks for (of an event of ``kind``), or None."""
    for quantity in CATALOG:
        if (kind is None or kind in quantity.kinds) and quantity.asked.search(question):
            return quantity
    return None


def named_instrument(text: str) -> str | None:
    """The first instrument ``text`` names, by catalog order."""
    for name, pattern in INSTRUMENTS.items():
        if pattern.search(text):
            return name
    return None
