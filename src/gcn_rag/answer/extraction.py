"""Find asked-for values (redshift, T90) in circular sentences, and weigh the evidence.

Everything here is deterministic pattern work over the circulars' own sentences: a value is
only ever reported together with the sentence it was read from, so an answer can never state
a number that is not in a cited sentence.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from gcn_rag.corpus.chunking import split_sentences

REDSHIFT, T90, GENERAL = "redshift", "t90", "general"

_REDSHIFT_Q = re.compile(
    r"\bredshift|\bz\b|\bdistance\b|\bdistant\b|how far\b|\brecession\b|\bz[- ]value", re.I
)
_T90_Q = re.compile(r"\bT90\b|\bT_?90\b|\bduration\b|how long did", re.I)


def detect_intent(question: str) -> str:
    """Which value, if any, the question asks for."""
    if _T90_Q.search(question):
        return T90
    if _REDSHIFT_Q.search(question):
        return REDSHIFT
    return GENERAL


# Text that may stand between the quantity's name and its value ("redshift of z = ", "z~").
_LINK = r"(?:\s*(?:of|is|was|at|to|be|around|about|approximately|approx\.?|=|~|≈|~=|:|\(|,)\s*)*"
_REDSHIFT_LEFT = re.compile(r"(?:\bredshifts?|(?<![\w'])z)" + _LINK + r"(?:z\s*[=~≈:]\s*)?$", re.I)
_T90_LEFT = re.compile(
    r"\bT_?90\b\s*(?:\([^)]{0,30}\))?\s*(?:duration\s*)?"
    r"(?:(?:is|was|of|=|~|≈|:|about|approximately|estimated\s+(?:at|to\s+be)|,)\s*)*$",
    re.I,
)
_NUMBER = re.compile(r"(?<![\w.+-])\d+(?:\.\d+)?(?![\w.]*\d)")
_NOT_A_VALUE = re.compile(r"\s*(?:[-\u2013]\s*\d|keV|MeV|GeV|TeV|%)", re.I)  # a range or band
_SPECTRO = re.compile(
    r"spectr|absorption|emission line|lines? of|Mg\s*II|Ly-?\s*alpha|Lyman|\bFe\s*II|C\s*IV|"
    r"\[O\s*(?:II|III)\]|H-?alpha|Balmer|X-shooter|GMOS|LRIS|OSIRIS|FORS",
    re.I,
)
_DOUBTFUL = re.compile(
    r"photometric|\bphot-z|if (?:the|this|it)|assum|would|could be|might|candidate host|"
    r"upper limit|lower limit|pseudo|tentative|unlikely|not consistent|rule out|excluded|"
    r"possibl|not correct|incorrect|retract|erroneous|superseded",
    re.I,
)
_REVISED = re.compile(r"\brefined|\brevised|\bcorrected|\bupdated|\bconfirm", re.I)
_BAT = re.compile(r"\bBAT\b|15-350\s*keV", re.I)
_GBM = re.compile(r"\bGBM\b|50-300\s*keV|Fermi", re.I)


@dataclasses.dataclass(frozen=True)
class Evidence:
    """One value read from one sentence of one circular."""

    value: float
    text: str  # the value as written ("0.151")
    sentence: str
    weight: float
    circular_row: int


_MENTIONS = {
    REDSHIFT: re.compile(r"redshift|(?<![\w'])z\s*[=~≈:]", re.I),
    T90: re.compile(r"T_?90", re.I),
}


def mentions(intent: str, text: str) -> bool:
    """Could ``text`` state a value for ``intent``? (a cheap test before sentence splitting)"""
    pattern = _MENTIONS.get(intent)
    return bool(pattern and pattern.search(text))


def sentences(text: str) -> list[str]:
    """Sentences of a chunk, table lines kept as they are."""
    out: list[str] = []
    for paragraph in text.split("\n"):
        out.extend(split_sentences(" ".join(paragraph.split())))
    return [s for s in out if s]


def find_values(
    intent: str, sentence: str, subject: str, circular_row: int, *, prefer_bat: bool = True
) -> list[Evidence]:
    """Every value of ``intent`` stated in ``sentence``, with a plausibility weight."""
    left_pattern = _REDSHIFT_LEFT if intent == REDSHIFT else _T90_LEFT
    found: list[Evidence] = []
    for match in _NUMBER.finditer(sentence):
        left = sentence[max(0, match.start() - 48) : match.start()]
        if not left_pattern.search(left) or _NOT_A_VALUE.match(sentence, match.end()):
            continue
        value = float(match.group())
        if intent == REDSHIFT and not 0.0 < value < 15.0:
            continue  # a z-band magnitude, not a redshift
        if intent == T90 and not 0.0 < value < 100_000:
            continue
        weight = _weight(intent, sentence, subject, prefer_bat)
        found.append(Evidence(value, match.group(), sentence, weight, circular_row))
    return found


def _weight(intent: str, sentence: str, subject: str, prefer_bat: bool) -> float:
    weight = 1.0
    if _DOUBTFUL.search(sentence):
        weight *= 0.3
    if _REVISED.search(sentence) or _REVISED.search(subject):
        weight *= 1.5  # a later, refined measurement supersedes a preliminary one
    if intent == REDSHIFT:
        if _SPECTRO.search(sentence) or re.search(r"redshift|spectr", subject, re.I):
            weight *= 2.0
    elif prefer_bat:
        if _BAT.search(sentence) or _BAT.search(subject):
            weight *= 3.0
        elif _GBM.search(sentence) or _GBM.search(subject):
            weight *= 0.5
    return weight


def tolerance(intent: str, value: float) -> float:
    """How far apart two reports may be and still count as the same value."""
    return 0.10 * value if intent == T90 else max(0.01, 0.01 * value)


@dataclasses.dataclass(frozen=True)
class ValueGroup:
    """Reports that agree (within tolerance), strongest first."""

    text: str  # the most common spelling
    value: float
    support: float
    evidence: tuple[Evidence, ...]

    @property
    def rows(self) -> list[int]:
        seen: list[int] = []
        for e in self.evidence:
            if e.circular_row not in seen:
                seen.append(e.circular_row)
        return seen


def group_values(intent: str, evidence: Iterable[Evidence]) -> list[ValueGroup]:
    """Cluster agreeing values; a circular counts once per group (its best sentence)."""
    groups: list[list[Evidence]] = []
    for item in sorted(evidence, key=lambda e: -e.weight):
        for group in groups:
            if abs(group[0].value - item.value) <= tolerance(intent, group[0].value):
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
        out.append(ValueGroup(text, float(text), support, ordered))
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

    Answers must therefore lead with the value: "The redshift of GRB 221009A is z = 0.151
    (GCN 32648, GCN 32686)."
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
