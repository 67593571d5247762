"""Instruments and facilities: how questions, subjects and sentences name them.

:data:`INSTRUMENTS` are the ones whose measurements differ (a T90 from Swift-BAT is not one from
Fermi GBM): a question may name one, and a value read from a sentence is tagged with the one
the sentence or its circular names (:func:`measuring_instrument`).
"""

from __future__ import annotations

import re

from gcn_rag.corpus.quantity import Quantity, words

#: Instruments a question may name, and how a circular's sentence or subject names them.
INSTRUMENTS: dict[str, re.Pattern[str]] = {
    "Swift-BAT": words(r"\bBAT\b|15-350\s*keV|Burst Alert Telescope"),
    # spelled out too; SVOM's GRM is a "Gamma-Ray burst Monitor" as well
    "Fermi GBM": words(
        r"\bGBM\b|\bFermi\b(?![- ]?LAT)|50-300\s*keV|"
        r"(?<!SVOM )(?<!SVOM/)gamma[- ]ray burst monitor(?!\s*\(?GRM)"
    ),
    "Fermi LAT": words(r"\bLAT\b|Large Area Telescope"),
    "Konus-Wind": words(r"Konus|\bKW\b"),
    "INTEGRAL": words(r"INTEGRAL|SPI-ACS|\bIBIS\b|\bISGRI\b"),
    "AstroSat CZTI": words(r"AstroSat|CZTI"),
    "GECAM": words(r"\bGECAM\b"),
    "Insight-HXMT": words(r"\bHXMT\b"),
    "AGILE": words(r"\bAGILE\b|\bMCAL\b"),
    "SVOM": words(r"\bSVOM\b|ECLAIRs|\bGRM\b"),
    "Einstein Probe": words(r"Einstein Probe|\bWXT\b|\bFXT\b"),
    "MAXI": words(r"\bMAXI\b"),
    "NuSTAR": words(r"\bNuSTAR\b"),
    "Swift-XRT": words(r"\bXRT\b"),
    "Swift-UVOT": words(r"\bUVOT\b"),
    "IceCube": words(r"\bIceCube\b"),
    "LIGO/Virgo/KAGRA": words(r"\bLIGO\b|\bVirgo\b|\bKAGRA\b|\bLVK\b"),
    # the earlier missions of the interplanetary network and before Swift
    "Ulysses": words(r"\bUlysses\b"),
    "BeppoSAX": words(r"BeppoSAX|\bSAX\b"),  # not "GRBM": also the Band model's name
    "HETE-2": words(r"\bHETE\b|FREGATE|\bWXM\b"),
    "BATSE": words(r"\bBATSE\b"),
    "RHESSI": words(r"\bRHESSI\b"),
    "Suzaku WAM": words(r"\bSuzaku\b|\bWAM\b"),
}

ALERTS = frozenset({"IceCube", "LIGO/Virgo/KAGRA"})  # they name the event in a subject
_IN_REGION = re.compile(  # "within the +/-2.5 arcmin BAT", "on the SE edge of the XRT"
    r"\b(?:within|in|inside|outside(?:\s+of)?|near|edge\s+of)\s+(?:the\s+)?(?:\S+[\s/]+){0,2}$",
    re.I,
)
# "data from the BAT trigger 339852": the trigger's number names a data set, not a measurer
_TRIGGER_ID = re.compile(r"[\s/-]*trigger\s*(?:no\.?|number|#|id:?)?\s*\d{4,}", re.I)
_TIME_ZERO = re.compile(r"\bT_?0\s*[(\[]\s*$")  # "measured from T0(BAT)-1.6 s": a time
_SINCE = re.compile(
    r"\b(?:after|since|before|post|following|relative to)\s+(?:the\s+)?(?:[\w.-]+[\s/-]+){0,2}$",
    re.I,
)
_TRIGGER = re.compile(
    r"(?:[\s/-]+[\w-]+)?[\s-]*trigger\b(?!\s+(?:data|position|location|locali))", re.I
)
_REGION = re.compile(
    r"[\w-]*\s*(?:[\w-]+\s+)?(?:error|position|locali[sz]ation|location|region|circle|box)", re.I
)


def named_instrument(text: str) -> str | None:
    """The first instrument ``text`` names, by catalog order."""
    for name, pattern in INSTRUMENTS.items():
        if pattern.search(text):
            return name
    return None


def first_named_instrument(text: str) -> str | None:
    """The instrument ``text`` names first ("Swift XRT observations of the INTEGRAL burst"),
    after the alert's facility ("LIGO/Virgo S190425z: INTEGRAL upper limits" is INTEGRAL's)."""
    found = [(name in ALERTS, m.start(), name) for name, m in instrument_mentions(text)]
    return min(found)[2] if found else None


def named_instruments(text: str) -> list[str]:
    """Every instrument ``text`` names, by catalog order."""
    return [name for name, pattern in INSTRUMENTS.items() if pattern.search(text)]


def instrument_mentions(text: str) -> list[tuple[str, re.Match[str]]]:
    """Every mention of an instrument in ``text``: (name, match), in no particular order."""
    return [(name, m) for name, pattern in INSTRUMENTS.items() for m in pattern.finditer(text)]


def measuring_instrument(
    quantity: Quantity, mentions: list[tuple[str, re.Match[str]]], subject: str | None, at: int
) -> str | None:
    """The instrument that measured a value: the one the sentence names last before it ("the
    LAT location (Ra = 305.30"), else for an instrument's quantity (a T90) the first one the
    sentence names, or its subject's; only instruments that can measure the quantity.
    ``mentions`` are the sentence's (:func:`instrument_mentions`)."""
    can = quantity.instruments
    # named for a time ("after the BAT trigger", "T0(BAT)") or a region ("in the XRT error
    # circle, a source at RA ="), it measured nothing here but that region's radius
    usable = [
        (m, name)
        for name, m in mentions
        if (can is None or name in can)
        and not _trigger(m)
        and not _time_zero(m)
        and (quantity.key == "error_radius" or not _region(m))
    ]
    before = [(m.end(), name) for m, name in usable if m.end() <= at]
    if before:
        return max(before)[1]
    if not quantity.by_instrument:
        return None
    named = {name for _, name in usable}
    first = next((name for name in INSTRUMENTS if name in named), None)
    return first or subject


def _trigger(mention: re.Match[str]) -> bool:
    """Is the instrument named only for the time of its trigger ("34 min after the Swift/BAT
    trigger")? Its trigger data are still its own ("using the GBM trigger data, is RA =")."""
    text = mention.string
    if _TRIGGER_ID.match(text, mention.end()):
        return True
    return bool(
        _SINCE.search(text, max(0, mention.start() - 40), mention.start())
        and _TRIGGER.match(text, mention.end())
    )


def _time_zero(mention: re.Match[str]) -> bool:
    return bool(_TIME_ZERO.search(mention.string, max(0, mention.start() - 8), mention.start()))


def _region(mention: re.Match[str]) -> bool:
    """Is the instrument named only for its error region ("within the XRT error circle")?"""
    text = mention.string
    return bool(
        _IN_REGION.search(text, max(0, mention.start() - 40), mention.start())
        and _REGION.match(text, mention.end())
    )
