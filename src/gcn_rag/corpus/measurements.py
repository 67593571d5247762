"""Reading measured values out of circular sentences, with the quantity catalog.

A value is read only right after one of its quantity's cues ("Epeak, is", "fluence
(10-1000 keV) ... is", "distance estimate is"), in the forms circulars use: plain numbers,
symmetric and asymmetric errors ("807 +/- 186", "330 (+402/-150)", "76.46 (+5.09 -6.83)"),
powers of ten ("(3.6 +/- 0.1)E-06", "1.2 x 10^-5", superscript exponents), sexagesimal positions
("05h 06m 07.8s", "+06:21:00") and a unit from the catalog, converted to the quantity's unit.
A value after "<", "less than" or "upper limit" is a limit, kept as one. A number that starts a
range ("15-350 keV") is not a value. Every reading keeps its span in the sentence, so an answer
can cite exactly where it came from.
"""

from __future__ import annotations

import dataclasses
import math
import re

from gcn_rag.corpus.quantities import Quantity

_SUPERSCRIPTS = str.maketrans(
    "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079\u207b\u207a\u2212",
    "0123456789-+-",
)
_U = r"\d+(?:\.\d+)?"  # an unsigned number
_VALUE = re.compile(r"(?P<open>\(\s*)?(?P<digits>[-+]?" + _U + r")")
# Where a value may start: a number, or "(" before one ("(3.6 +/- 0.1)E-06").
_START = re.compile(r"(?<![\w.])(?:\(\s*)?[-+]?\d")
_ERRORS = re.compile(
    rf"\s*(?:(?:\+/-|\+-|\u00b1|\ufffd{{1,2}})\s*(?P<sym>{_U})"  # +/- 0.1 (or a mangled ±)
    rf"|\(\s*\+\s*(?P<up1>{_U})\s*[/,]?\s*-\s*(?P<lo1>{_U})\s*\)?"  # (+402/-150), "(+5.09 -6.83"
    rf"|\(\s*-\s*(?P<lo3>{_U})\s*[/,]?\s*\+\s*(?P<up3>{_U})\s*\)?"  # (-65/+230)
    rf"|\(\s*(?:\+/-|\u00b1)\s*(?P<sym2>{_U})\s*\)"  # (+/- 0.4)
    rf"|\+\s*(?P<up2>{_U})\s*[/,]?\s*-\s*(?P<lo2>{_U}))"  # +5.09 -6.83
)
_EXPONENT = re.compile(
    r"\s*(?:[eE]\s*(?P<e1>[-+]?\d+)"
    r"|(?:x|\u00d7|\*|times)\s*10\s*(?:\^|\*\*)?\s*\{?\s*\(?\s*(?P<e2>[-+]?\s*\d+)\s*\)?\}?)",
    re.I,
)
_RANGE = re.compile(r"\s*(?:-|\u2013|to)\s*\d")  # "15-350 keV": the start of a range
_RANGE_END = re.compile(r"\d\s*(?:-|\u2013|to)\s*$")  # ... and what ends one
_LIMIT = re.compile(
    r"(?:<|>|≤|≥|less than|more than|greater than|below|above|upper limit|lower limit|"
    r"at most|at least|fainter than|brighter than)\s*(?:of|is|=|~|:)?\s*$",
    re.I,
)
_SEXAGESIMAL_RA = re.compile(
    r"(?P<h>\d{1,2})\s*(?:h|:|\s)\s*(?P<m>\d{1,2})\s*(?:m|:|\s)\s*(?P<s>\d{1,2}(?:\.\d+)?)\s*s?"
)
_SEXAGESIMAL_DEC = re.compile(
    r"(?P<sign>[-+]?)(?P<d>\d{1,2})\s*(?:d|°|:|\s)\s*(?P<m>\d{1,2})\s*(?:m|'|:|\s)\s*"
    r"(?P<s>\d{1,2}(?:\.\d+)?)\s*(?:s|\")?"
)


@dataclasses.dataclass(frozen=True)
class Reading:
    """One value of one quantity, as one sentence states it."""

    quantity: str
    value: float  # in the quantity's unit
    text: str  # the value as an answer writes it ("807", "3.6E-06", "76.46")
    start: int  # its span in the sentence
    end: int
    limit: str = ""  # "upper" / "lower" when the sentence states a limit, not a value
    error: tuple[float, float] | None = None  # (minus, plus), in the quantity's unit


def mentions(quantity: Quantity, text: str) -> bool:
    """Could ``text`` state a value of ``quantity``? (a cheap test before reading sentences)"""
    return quantity.mention.search(text) is not None


def read(quantity: Quantity, sentence: str) -> list[Reading]:
    """Every value of ``quantity`` that ``sentence`` states right after one of its cues."""
    text = sentence.translate(_SUPERSCRIPTS)
    found: list[Reading] = []
    for start in _START.finditer(text):
        left = text[max(0, start.start() - 160) : start.start()]
        if _RANGE_END.search(left) or not quantity.cue.search(left):
            continue  # the end of a range ("50-300 keV") is no value
        reading = _reading(quantity, text, start.start())
        if reading is not None and (not found or reading.start >= found[-1].end):
            limit = _LIMIT.search(left)
            if limit:
                upper = re.search(r"<|≤|less|below|upper|most|fainter", limit.group(), re.I)
                reading = dataclasses.replace(reading, limit="upper" if upper else "lower")
            found.append(reading)
    return found


def _reading(quantity: Quantity, text: str, at: int) -> Reading | None:
    if quantity.key in ("ra", "dec"):
        position = _sexagesimal(quantity, text, at)
        if position is not None:
            return position
    match = _VALUE.match(text, at)
    if match is None:
        return None
    digits, end = match["digits"], match.end()
    errors = _ERRORS.match(text, end)
    if errors:
        end = errors.end()
    if match["open"]:  # "(3.6 +/- 0.1)E-06": the group closes before its power of ten
        closing = re.compile(r"\s*\)").match(text, end)
        if closing is None:
            return None
        end = closing.end()
    elif not errors and _RANGE.match(text, end):
        return None
    power = 0
    exponent = _EXPONENT.match(text, end)
    if exponent:
        power = int((exponent["e1"] or exponent["e2"]).replace(" ", ""))
        end = exponent.end()
    factor, end, has_unit = _unit(quantity, text, end)
    if (quantity.unit_required and not has_unit) or re.compile(r"\s*%").match(text, end):
        return None
    value = float(digits) * 10.0**power * factor
    if not (math.isfinite(value) and quantity.low <= value <= quantity.high):
        return None
    return Reading(
        quantity=quantity.key,
        value=value,
        text=_written(digits, power, factor, quantity),
        start=at,
        end=end,
        error=_error(errors, power, factor),
    )


def _unit(quantity: Quantity, text: str, at: int) -> tuple[float, int, bool]:
    """(factor to the quantity's unit, end, whether a unit was there) for what follows."""
    for spelling, factor in quantity.units:
        match = re.compile(rf"\s*(?:{spelling})", re.I).match(text, at)
        if match:
            return factor, match.end(), True
    return 1.0, at, False


def _written(digits: str, power: int, factor: float, quantity: Quantity) -> str:
    """The value as an answer writes it: the circular's digits when no conversion happened."""
    if factor == 1.0 and not power:
        return digits.lstrip("+")
    value = float(digits) * 10.0**power * factor
    if quantity.scientific or abs(value) < 1e-3 or abs(value) >= 1e6:
        if factor == 1.0:
            mantissa, exponent = digits.lstrip("+"), power
        else:
            exponent = math.floor(math.log10(abs(value)))
            mantissa = f"{value / 10.0**exponent:.3g}"
        return f"{mantissa}E{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    return f"{value:.6g}"


def _error(errors: re.Match[str] | None, power: int, factor: float) -> tuple[float, float] | None:
    if errors is None:
        return None
    scale = 10.0**power * factor
    if errors.group("sym") or errors.group("sym2"):
        size = float(errors.group("sym") or errors.group("sym2")) * scale
        return size, size
    up = errors.group("up1") or errors.group("up2") or errors.group("up3")
    low = errors.group("lo1") or errors.group("lo2") or errors.group("lo3")
    return float(low) * scale, float(up) * scale


def _sexagesimal(quantity: Quantity, text: str, at: int) -> Reading | None:
    """A position written in hours (RA) or degrees (Dec), minutes and seconds, in degrees."""
    if quantity.key == "ra":
        match = _SEXAGESIMAL_RA.match(text, at)
        if match is None:
            return None
        hours = int(match["h"]) + int(match["m"]) / 60 + float(match["s"]) / 3600
        value = hours * 15.0
    else:
        match = _SEXAGESIMAL_DEC.match(text, at)
        if match is None:
            return None
        sign = -1.0 if match["sign"] == "-" else 1.0
        value = sign * (int(match["d"]) + int(match["m"]) / 60 + float(match["s"]) / 3600)
    if not quantity.low <= value <= quantity.high:
        return None
    return Reading(quantity.key, value, f"{value:.4f}", at, match.end())
