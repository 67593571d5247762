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
import functools
import math
import re

from gcn_rag.corpus.circulars import CIRCULAR_REFERENCE
from gcn_rag.corpus.quantity import ASSUMED, Quantity, words

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
_AN_ERROR = re.compile(r"\d\s*(?:\+/-|\+-|\u00b1)\s*$")  # "67.978 +/- 0.205": no second value
_PAIR = re.compile(  # "RA, Dec = ", "RA,Dec (J2000) = (": two values follow, RA first
    r"\bR\.?A\.?\s*(?:\([JB]?(?:2000|1950)(?:\.0)?\))?\s*[,/&]\s*Dec\w*\.?\s*(?:\([JB]?(?:2000|1950)(?:\.0)?\))?\s*"
    r"(?:=|:|is|are)?\s*[(\[]?\s*$",
    re.I,  # "Ra, Dec ="
)
# a value assumed (or expected) from a circular it cites is still that circular's value
_PASSED_ON = words(rf"{ASSUMED}|\bexpect\w*")
_SIGMA_AFTER = re.compile(r"\s*\(\s*\d(?:\.\d)?[- ]?(?:sigma|\u03c3)\s*\)", re.I)
_Z_BAND_FLOOR = 12.0  # "z < 6", "z = 5.91" below this are redshifts, not z-band magnitudes
_ABBREVIATED = re.compile(r"\b(?:et al|e\.g|i\.e|cf|vs)\.$")  # no sentence ends there
_CITED = re.compile(rf"[^;]{{0,40}}?(?:{CIRCULAR_REFERENCE.pattern}|\bet al)")  # "z = 2.9 (GCN 31)"
_CLAUSE = re.compile(
    r";|(?<!\bal)(?<!\bcf)\.\s+(?=[A-Z])|,\s+(?:we|and we|which|while|whereas|but)\b"
)  # a clause ends
_COMPOUND = re.compile(r"[-\u2013][a-zA-Z]")  # "1-s", "3-sigma" after a number
_OF_ANTECEDENT = re.compile(r",\s+(?:which|that)\s+(?:has|have|had)\b")  # its values
_LIMIT_ON = re.compile(  # "the (upper) limit on the total isotropic energy ... of"
    r"\b(?:(?:(?P<kind>upper|lower)[- ])?limits?\s*(?:\([^()]{0,30}\)\s*)?(?:on|of|for|to)\s+"
    r"(?:the\s+|a\s+|its\s+)?|(?P<limiting>limiting)\s+)"
    r"(?:[\w.-]+\s+){0,4}$",  # "... (90% conf.) on the 20 - 1500 keV fluence", "limiting peak flux"
    re.I,
)
_LIMITING = re.compile(
    r"limiting (?:\w+ )?mag|upper limit|down to|to a limit|fainter than|deeper than|"
    r"no (?:\w+ )?(?:source|object|transient)|\bnot? (?:\w+ ){0,2}detect|\bundetected|"
    r"non-?detection|\bup to\b|\b(?:faded|fell|dropped) below\b|"
    r"\b(?:no|not|any)\b[^.;]{0,60}\bbrighter than|"  # "do not see any new sources brighter than"
    r"\b(?:below|(?<!close )(?<!closer )(?<!near )to|beyond) (?:the |our |a )?(?:[\w-]+ ){0,2}"
    r"detection limit",
    re.I,
)
_GOES_ON = re.compile(r"[\d(+\-a-z]")  # a unit that starts so goes on from the line before
# a line that introduces corners ("and its corners lie at"): the positions after it are theirs
_CORNERS = re.compile(r"\b(?:corners?|vertex|vertices)\b[^.;]{0,40}$", re.I)
# "1: 172.055 -26.864": a row's number in a list, not a value
_ROW_NUMBER = re.compile(r"\d{1,3}\s*[:)]\s+[-+]?\d")
# "= 0.4 (1-s peak photon flux < 1.0 ...)": a criterion's threshold after the value, no limit
_CRITERION = re.compile(r"\d\s*(?:[\w/^-]+\s*)?\(\s*[^()]{0,40}(?:<|>|≤|≥)\s*$")
_SIGMA = re.compile(r"\s*(?:sigma\b|\u03c3)")
# "1'.5", "0\".3": an angle's mark written before its decimals
_MARK_POINT = re.compile(r"(?P<mark>'|\"|\u2032|\u2033)\.(?P<decimals>\d+)")
# "changes by 2.9 arcmin", "improved by 0.5": a difference, not a value
_BY = re.compile(
    r"\b(?:chang|shift|mov|increas|decreas|improv|reduc|grow|grew|rose|ris|drop|fell|differ)"
    r"\w*\s+by\s+(?:about\s+|only\s+|~\s*)?$",
    re.I,
)
# after a value: "z = 1.1 would place", "0.33 s in the rest frame": not what was observed
_NOT_OBSERVED_AFTER = re.compile(  # ... and '"alpha = 0.67" was changed to': a corrected one
    r"\s*(?:would|could|might)\b|[\"']?\s*(?:was|were|has been|had been)\s+(?:changed|corrected)",
    re.I,
)
# ... and for a duration or an energy: "0.33 s in the rest frame" (a column there is intrinsic)
# ... also for both of a pair ("T90 ~ 1 s and Ep ~ 900 keV in the GRB rest frame")
_REST_FRAME_AFTER = re.compile(
    r"\s+(?:and\s+[^.;,]{0,30}?\s+)?in\s+the\s+(?:\w+\s+)?rest[- ]?frame\b", re.I
)
# after a number with no unit: "at 4 hrs post burst" is a time, not an index or a redshift
_TIME_AFTER = re.compile(
    r"\s*(?:hrs?|hours?|days?|min(?:utes?)?|ks(?:ec)?|sec(?:onds?)?|s|yrs?|years?)\b", re.I
)
_MONTH = re.compile(r"\bDec\.?\s+$")  # "Dec 04": a month, unless the number is a coordinate
_MONTH_DOT = re.compile(r"\bDec\.\s+$")  # "Dec. 25 21.67" in a table: a date, unless RA came
_WHOLE_DAY = re.compile(r"(?:[1-9]|[12]\d|3[01])(?![\d.:'])")
_RA_NEAR = re.compile(r"\bR\.?\s?A\b", re.I)
# ... "Dec 04" alone, or "Dec 18.840" before a time, a year, a value: a date
_DAY = re.compile(r"\d{1,2}(?:(?![\d.:\s]*\d)|\.\d+\s*(?:UT\b|,?\s+(?:19|20)\d\d\b|\s+\d))")
_DAY_ONLY = re.compile(r"\d{1,2}(?:\.\d+)?(?![\d:])")
_ON_DATE = re.compile(
    r"(?:\b(?:on|from|until|till|since|between|by|UTC?)|(?:19|20)\d\d|\()\s*Dec\.?\s+$"
    r"|^(?:(?!\bR\.?A\b|right ascension).)*\band\s+Dec\.?\s+$",
    re.I,
)
_LIMIT = re.compile(
    r"(?:<|>|≤|≥|less than|more than|greater than|below|above|upper limit|lower limit|"
    r"at most|at least|fainter than|brighter than|limiting\s*(?:\([^)]{0,40}\)\s*)?mag\w*"
    r"(?: limit)?)"
    r"\s*(?:of|is|was|=|~|:|about|approximately)?\s*~?\s*$",
    re.I,
)
_SEXAGESIMAL_RA = re.compile(
    r"\+?(?P<h>\d{1,2})\s*(?:h|:|\s)\s*(?P<m>\d{1,2})\s*(?:m|'|\u2032|:|\s)\s*"
    r"(?P<s>\d{1,2}(?:\.\d+)?)\s*(?:s|\"|\u2033)?"  # "16h 07' 21.10\"" too
)
_SEXAGESIMAL_DEC = re.compile(
    r"(?P<sign>[-+]?)(?P<d>\d{1,2})\s*(?:deg|d|°|o|:|\s)\s*(?P<m>\d{1,2})\s*(?:m|'|\u2032|:|\s)\s*"
    r"(?P<s>\d{1,2}(?:\.\d+)?)\s*(?:s|\"|\u2033|'')?"
)

SPECTROSCOPIC = re.compile(
    r"spectr|absorption|emission line|lines? of|Mg\s*II|Ly-?\s*alpha|Lyman|\bFe\s*II|C\s*IV|"
    r"\[O\s*(?:II|III)\]|H-?alpha|Balmer|X-shooter|GMOS|LRIS|OSIRIS|FORS",
    re.I,
)
_BAND = re.compile(
    r"(?P<lo>\d+(?:\.\d+)?)\s*(?P<lo_unit>keV|MeV|GeV)?\s*(?:-|\u2013|to)\s*"
    r"(?P<hi>\d+(?:\.\d+)?)\s*(?P<hi_unit>keV|MeV|GeV)",
    re.I,
)
_KEV = {"kev": 1.0, "mev": 1e3, "gev": 1e6}


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
    unit_text: str = ""  # the unit as written ("arcsec", "MeV"), when one was
    qualifier: str = ""  # what the cue itself names (a magnitude's filter: "r")


def mentions(quantity: Quantity, text: str) -> bool:
    """Could ``text`` state a value of ``quantity``? (a cheap test before reading sentences)"""
    return quantity.mention.search(text) is not None


def line_before(previous: str, sentence: str) -> str:
    """The end of the unit before ``sentence`` when the sentence goes on from it (a line break
    splits "the USNO-B1.0 star ... RA=" from its value), else ""."""
    if _CORNERS.search(previous[-60:]):
        return previous[-100:] + " "  # "and its corners lie at" / "RA = ..., Dec = ..."
    if _ABBREVIATED.search(previous):
        return previous[-100:] + " "  # "Based on SDSS stars (Cool et al." | "GCN 6950) RA="
    if not previous or previous.endswith((".", "!", "?")) or not _GOES_ON.match(sentence):
        return ""
    return previous[-100:] + " "


def read(quantity: Quantity, sentence: str, before: str = "") -> list[Reading]:
    """Every value of ``quantity`` that ``sentence`` states right after one of its cues.

    ``before`` (:func:`line_before`) is the line the sentence goes on from: a value that
    does not stand when both are read together is dropped ("the USNO star ... RA=" there)."""
    found = _read(quantity, sentence)
    if before and found and quantity.pair >= 0 and _CORNERS.search(before):
        return []  # the corners of an error box, listed after the line that names them
    if before and found:
        starts = {r.start - len(before) for r in _read(quantity, before + sentence)}
        found = [r for r in found if r.start in starts]
    return found


def _read(quantity: Quantity, sentence: str) -> list[Reading]:
    text = sentence.translate(_SUPERSCRIPTS)
    found: list[Reading] = []
    for start in _START.finditer(text):
        at = start.start()
        offset = max(0, at - 160)
        left = text[offset:at]
        if _RANGE_END.search(left) or _AN_ERROR.search(left) or not quantity.mention.search(left):
            continue  # the end of a range ("50-300 keV") or an error is no value; no cue words
        if _ROW_NUMBER.match(text, at) or _CRITERION.search(left) or _BY.search(left):
            continue  # "1: 172.05 -26.86" a row number; "= 0.4 (flux < 1.0)" a threshold
        pair = _PAIR.search(left) if quantity.pair >= 0 else None
        cue = pair or quantity.cue.search(left)
        if cue is None or (found and found[-1].end > offset + cue.start()):
            continue  # no cue, or its value was read already ("fluence of 1e-5, peak flux 2e-7")
        if quantity.interrupted is not None and quantity.interrupted.search(cue.group()):
            continue  # "the error circle, at a distance of 1.9 deg": an offset, no radius
        near = _near(text[max(0, offset + cue.start() - 120) : at])
        if quantity.reject is not None and _rejected(quantity.reject, near, text, at):
            continue  # "assuming alpha = -1", "decay index alpha", "the USNO star at RA ="
        if pair is not None:
            reading = _paired(quantity, text, at)
        elif quantity.key == "dec" and _date(left, text, at):
            continue  # "2008 Dec 04", "on Dec 27.76" are dates
        else:
            reading = _reading(quantity, text, at)
        if reading is not None and (not found or reading.start >= found[-1].end):
            qualified = _qualified(quantity, reading, cue, text, offset + cue.start(), left)
            if qualified is not None:
                found.append(qualified)
    return found


def _qualified(
    quantity: Quantity, reading: Reading, cue: re.Match[str], text: str, cue_at: int, left: str
) -> Reading | None:
    """``reading`` with its limit and the filter its cue names; None for a z-band value that
    is a redshift ("imply z < 6")."""
    qualifier = (cue.groupdict().get("band") or "").strip()
    if quantity.inverted and qualifier == "z" and reading.value < _Z_BAND_FLOOR:
        return None
    before = _limit_before(text[:cue_at], quantity)
    # in a list of limiting magnitudes, "J < 18.3" is one more limit, however written
    limit = before if before and quantity.inverted else _limit(quantity, left) or before
    if quantity.inverted and not limit and _SIGMA_AFTER.match(text, reading.end):
        limit = "upper"  # "V ~ 20.7 (3-sigma)": a limiting magnitude
    return dataclasses.replace(reading, limit=limit, qualifier=qualifier)


def _rejected(reject: re.Pattern[str], near: str, text: str, at: int) -> bool:
    """Do the words before a value say it is not the event's? An assumption that cites a
    circular ("Assuming z = 2.35 (Quimby et al., GCN 4221)") passes on that circular's value;
    a star's, a rest-frame or a decay index's value stays what it is however cited."""
    found = [m.group() for m in reject.finditer(near)]
    if not found:
        return False
    return not (_CITED.match(text, at) and all(_PASSED_ON.fullmatch(word) for word in found))


def _near(window: str) -> str:
    """The clause a value is in; with the one before it when it is that one's relative clause
    ("the USNO star ..., which has magnitudes R = 18.3": the star's)."""
    bounds = list(_CLAUSE.finditer(window))
    i = len(bounds) - 1
    if i >= 0 and len(window[bounds[i].end() :].strip()) < 12:
        i -= 1  # "RA = 17 40 53.13; Dec =": a clause of its cue alone goes with the one before
    while i >= 0 and _OF_ANTECEDENT.match(window, bounds[i].start()):
        i -= 1
    return window[bounds[i].end() :] if i >= 0 else window


def _date(left: str, text: str, at: int) -> bool:
    """Is the number at ``at``, after "Dec", a day of December rather than a declination?"""
    if not _MONTH.search(left):
        return False
    if _DAY.match(text, at):
        return True
    if _MONTH_DOT.search(left) and _WHOLE_DAY.match(text, at) and not _RA_NEAR.search(left[-60:]):
        return True  # "Dec. 25 21.67 +/- 0.05": an unsigned whole day after "Dec.", no RA before
    # "on Dec 27.76 (1700-s)", "(Dec 27.76)": a day after what introduces a date
    day = _DAY_ONLY.match(text, at)
    return bool(day and float(day.group()) < 32 and _ON_DATE.search(left))


def _paired(quantity: Quantity, text: str, at: int) -> Reading | None:
    """The first or second value of "RA, Dec = a, b" (the pair index of ``quantity``)."""
    opening = re.compile(r"\(\s*").match(text, at)
    at = opening.end() if opening else at  # "RA,Dec (J2000) = (11:15:19.00, -21:58:04.9)"
    first = _reading(quantity, text, at) if quantity.pair == 0 else _any_coordinate(text, at)
    if quantity.pair == 0 or first is None:
        return first
    comma = re.compile(r"\s*[,;/]?\s*").match(text, first.end)
    return _reading(quantity, text, comma.end()) if comma else None


def _any_coordinate(text: str, at: int) -> Reading | None:
    """The first value of a pair, only for its span (an RA in degrees or hours)."""
    match = _SEXAGESIMAL_RA.match(text, at) or re.compile(r"[-+]?" + _U + r"\s*(?:deg\w*)?").match(
        text, at
    )
    return None if match is None else Reading("ra", 0.0, match.group(), at, match.end())


def _limit_before(text: str, quantity: Quantity) -> str:
    """ "upper" for "an upper limit on the <cue> ..." (the limit named before the quantity),
    and for magnitudes listed after "limiting magnitudes of" or "down to"."""
    limit = _LIMIT_ON.search(text[-60:])
    if limit is not None:
        return (limit["kind"] or "upper").lower()
    clause = _CLAUSE.split(text[-120:])[-1]
    return "upper" if quantity.inverted and _LIMITING.search(clause) else ""


def _limit(quantity: Quantity, left: str) -> str:
    """ "upper" or "lower" when the words before a value make it a limit, else ""."""
    limit = _LIMIT.search(left)
    if limit is None:
        return ""
    said = limit.group()
    if quantity.inverted:  # "r > 22.5", "J < 19.8" (in lists of limits): not detected to
        return "lower" if re.search(r"brighter|lower|above", said, re.I) else "upper"
    upper = re.search(r"<|≤|less|below|upper|most|fainter|limiting", said, re.I) is not None
    return "upper" if upper else "lower"


def _reading(quantity: Quantity, text: str, at: int) -> Reading | None:
    if quantity.key in ("ra", "dec"):
        position = _sexagesimal(quantity, text, at)
        if position is not None:
            return position
    match = _VALUE.match(text, at)
    if match is None:
        return None
    digits, end = match["digits"], match.end()
    if quantity.unit != "s" and _COMPOUND.match(text, end):
        return None  # "1-s peak photon flux", "3-sigma": a word, not a value
    marked = _MARK_POINT.match(text, end) if "." not in digits else None
    if marked:  # 0".3 is 0.3 arcsec: the unit's mark before the decimals
        digits, end = f"{digits}.{marked['decimals']}", marked.end()
    errors = _ERRORS.match(text, end)
    if errors:
        end = errors.end()
    if match["open"]:  # "(3.6 +/- 0.1)E-06": the group closes before its power of ten
        closing = re.compile(r"\s*\)").match(text, end)
        if closing is None:  # "(276 +/- 56 Mpc)": the parenthesis holds value and unit
            return _reading(quantity, text, match.start("digits"))
        end = closing.end()
    elif not errors and _RANGE.match(text, end):
        return None
    power = 0
    exponent = _EXPONENT.match(text, end)
    if exponent:
        power = int((exponent["e1"] or exponent["e2"]).replace(" ", ""))
        end = exponent.end()
        if abs(power) > 300:
            return None  # no measured value; "1e999" would overflow
    if marked:
        factor, _, unit_text = _unit(quantity, marked["mark"], 0)
    else:
        factor, end, unit_text = _unit(quantity, text, end)
    if _not_a_value(quantity, text, end, unit_text):
        return None
    if not unit_text:
        factor = quantity.bare
    value = float(digits) * 10.0**power * factor
    if not (math.isfinite(value) and quantity.low <= value <= quantity.high):
        return None
    return Reading(
        quantity=quantity.key,
        value=value,
        text=f"{digits.lstrip('+')} {unit_text}"
        if quantity.as_written and unit_text and not power
        else _written(digits, power, factor, quantity),
        start=at,
        end=end,
        error=_error(errors, power, factor),
        unit_text=unit_text,
    )


def _not_a_value(quantity: Quantity, text: str, end: int, unit_text: str) -> bool:
    """Does what follows a number (and its unit) say it is no value of ``quantity``?"""
    if (quantity.unit_required and not unit_text) or re.compile(r"\s*%").match(text, end):
        return True
    if quantity.not_after is not None and quantity.not_after.match(text, end):
        return True  # "erg/cm2/s" is a flux, not a fluence; "R = 10 arcsec" no magnitude
    if _SIGMA.match(text, end) or _NOT_OBSERVED_AFTER.match(text, end):
        return True  # "11 sigma" a significance; "z = 1.1 would place": a supposition
    if quantity.unit in ("s", "keV") and _REST_FRAME_AFTER.match(text, end):
        return True  # "0.33 s in the rest frame"
    return not unit_text and not quantity.unit and _TIME_AFTER.match(text, end) is not None


def _unit(quantity: Quantity, text: str, at: int) -> tuple[float, int, str]:
    """(factor to the quantity's unit, end, the unit as written or "") for what follows."""
    for spelling, factor in quantity.units:
        match = _compiled(spelling).match(text, at)
        if match:
            return factor, match.end(), match.group().strip()
    return 1.0, at, ""


@functools.cache
def _compiled(spelling: str) -> re.Pattern[str]:
    return re.compile(rf"\s*(?:{spelling})", re.I)


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


def band(text: str) -> tuple[float, float] | None:
    """The first energy band ``text`` names, in keV ("10 keV - 1 MeV" is (10, 1000))."""
    match = _BAND.search(text)
    if match is None:
        return None
    high_unit = _KEV[match["hi_unit"].lower()]
    low_unit = _KEV[match["lo_unit"].lower()] if match["lo_unit"] else high_unit
    return float(match["lo"]) * low_unit, float(match["hi"]) * high_unit
