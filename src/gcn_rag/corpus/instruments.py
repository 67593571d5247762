"""Instruments and facilities: how questions, subjects and sentences name them.

:data:`INSTRUMENTS` are the ones whose measurements differ (a T90 from Swift-BAT is not one from
Fermi GBM): a question may name one, and a value read from a sentence is tagged with the one
the sentence or its circular names.
"""

from __future__ import annotations

import re

from gcn_rag.corpus.quantity import words

#: Instruments a question may name, and how a circular's sentence or subject names them.
INSTRUMENTS: dict[str, re.Pattern[str]] = {
    "Swift-BAT": words(r"\bBAT\b|15-350\s*keV"),
    "Fermi GBM": words(r"\bGBM\b|\bFermi\b(?![- ]?LAT)|50-300\s*keV"),
    "Fermi LAT": words(r"\bLAT\b"),
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
}


def named_instrument(text: str) -> str | None:
    """The first instrument ``text`` names, by catalog order."""
    for name, pattern in INSTRUMENTS.items():
        if pattern.search(text):
            return name
    return None


def named_instruments(text: str) -> list[str]:
    """Every instrument ``text`` names, by catalog order."""
    return [name for name, pattern in INSTRUMENTS.items() if pattern.search(text)]


def instrument_mentions(text: str) -> list[tuple[str, re.Match[str]]]:
    """Every mention of an instrument in ``text``: (name, match), in no particular order."""
    return [(name, m) for name, pattern in INSTRUMENTS.items() for m in pattern.finditer(text)]
