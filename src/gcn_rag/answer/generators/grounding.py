"""The grounding check: what an answer states that the retrieved passages do not.

Small models invent details, so :func:`grounding_problems` lists every number, event id and
circular number of an answer that the retrieved text does not contain; the caller decides
what to do with an answer that has problems (typically: fall back to the extractive one).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence

from gcn_rag.answer.generators.base import Context
from gcn_rag.corpus.circulars import CIRCULAR_REFERENCE
from gcn_rag.corpus.events import event_aliases, event_key, find_event_ids

_SUPERSCRIPTS = "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻"
_SUPER_RUN = re.compile(f"[{_SUPERSCRIPTS}]+")
_SUPER_TABLE = str.maketrans(_SUPERSCRIPTS, "0123456789+-")
_EXP = r"\s*(?:\^|\*\*)\s*[{(]?(?P<NAME>[-+]?\d+)[})]?"
# A sign counts only where it cannot be a hyphen or range dash ("15-350 keV", "T0-5 s") or
# the minus of "+/-"; a unit exponent ("cm^-2", "s-1") is not a value (see _UNIT_EXPONENT).
_NUMBER = re.compile(
    r"(?:(?<![\w)/±.])(?P<sign>[-+])|(?<![\w.]))"
    r"(?:(?P<pow>10)" + _EXP.replace("NAME", "pe") + r"|"
    r"(?P<mant>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
    r"(?:[eE](?P<e1>[-+]?\d+)|\s*(?:[x\u00d7*]|\\times)\s*10" + _EXP.replace("NAME", "e2") + r")?)"
    r"(?!\d|\.\d)"
)
_DIGIT_RUN = re.compile(r"\d+(?:\.\d+)?")
_GROUP_EXPONENT = re.compile(  # "(2.12 +/- 0.05)E-05", "(1.2 +/- 0.3) x 10^-7"
    r"\)\s*(?:[eE](?P<e1>[-+]?\d+)|(?:[x\u00d7*]|\\times)\s*10" + _EXP.replace("NAME", "e") + r")"
)
_UNIT_EXPONENT = re.compile(r"[A-Za-z]\^?\{?[-+]?$")
_ENUMERATOR = re.compile(r"^[ \t]*\d{1,2}[.)](?=\s)", re.M)


@dataclasses.dataclass(frozen=True)
class _Number:
    text: str
    value: float
    mantissa: float | None  # for "1.2 x 10^-7": 1.2 and -7
    exponent: int | None
    start: int
    end: int


@dataclasses.dataclass
class _Facts:
    """What the retrieved passages state: values, powers of ten, events, circulars."""

    values: set[float] = dataclasses.field(default_factory=set)
    exponents: set[int] = dataclasses.field(default_factory=set)
    event_keys: set[str] = dataclasses.field(default_factory=set)
    circulars: set[float] = dataclasses.field(default_factory=set)


def grounding_problems(answer: str, contexts: Sequence[Context]) -> list[str]:
    """Why ``answer`` is not supported by ``contexts``, one sentence per problem; [] if none.

    Every number (signed integers, decimals, ``1.2e-7``, ``1.2 x 10^-7``), every event id
    (alias-aware: ``GRB 090516`` = ``GRB 090516A``) and every cited circular (``GCN 32686``)
    of the answer must appear in a passage's text, subject or metadata. Numbers compare by
    value (``0.15`` = ``0.150``; ``1.2 x 10^-7`` = ``1.2e-07``) but are not rounded: ``0.15``
    does not ground in ``0.151``. Digits inside event names and list enumerators are not values.
    """
    text = _normalize(answer)
    facts = _facts(contexts)
    problems: list[str] = []
    skip: list[tuple[int, int]] = [m.span() for m in _ENUMERATOR.finditer(text)]
    for ref in CIRCULAR_REFERENCE.finditer(text):
        skip.append(ref.span())
        cited = float(ref["id"])
        if _key(cited) not in facts.circulars and _key(cited) not in facts.values:
            problems.append(f"{ref[0].strip()} is not among the retrieved circulars.")
    for event in find_event_ids(text):
        if not {event_key(alias) for alias in event_aliases(event)} & facts.event_keys:
            problems.append(f"The event {event} is not named in the retrieved circulars.")
    for number in _numbers(text):
        if any(a < number.end and number.start < b for a, b in skip):
            continue
        if _in_event_name(text, number) or _grounded(number, facts):
            continue
        problems.append(f"The number {number.text} is not in the retrieved circulars.")
    return list(dict.fromkeys(problems))


def _facts(contexts: Sequence[Context]) -> _Facts:
    facts = _Facts()
    for ctx in contexts:
        blob = _normalize(f"{ctx.subject}\n{ctx.text}")
        facts.circulars.add(_key(ctx.circular_id))
        facts.values.add(_key(ctx.circular_id))
        facts.circulars.update(_key(float(m["id"])) for m in CIRCULAR_REFERENCE.finditer(blob))
        numbers = _numbers(blob)
        for number in numbers:
            facts.values.add(_key(number.value))
            if number.mantissa is not None and number.exponent is not None:
                facts.values.add(_key(number.mantissa))
                facts.exponents.add(number.exponent)
        facts.exponents.update(int(m["e"] or m["e1"]) for m in _GROUP_EXPONENT.finditer(blob))
        # Generous on this side: digits inside words count too ("2x900s" states 900).
        spans = {n.start for n in numbers} | {n.end for n in numbers}
        for run in _DIGIT_RUN.finditer(blob):
            if run.start() not in spans and run.end() not in spans:
                facts.values.add(_key(float(run[0])))
        events = find_event_ids(blob) + ([ctx.event_id] if ctx.event_id else [])
        for event in events:
            facts.event_keys.update(event_key(alias) for alias in event_aliases(event))
    return facts


def _normalize(text: str) -> str:
    """Unicode minus and superscript exponents ("10⁻⁷") in the ASCII forms the regexes read."""
    text = text.replace("\u2212", "-")
    return _SUPER_RUN.sub(lambda m: "^" + m[0].translate(_SUPER_TABLE), text)


def _numbers(text: str) -> list[_Number]:
    found = []
    for m in _NUMBER.finditer(text):
        if _UNIT_EXPONENT.search(text, max(0, m.start() - 4), m.start()):
            continue  # "cm^-2", "s-1": part of a unit
        sign = -1.0 if m["sign"] == "-" else 1.0
        digits = "1" if m["pow"] else m["mant"].replace(",", "")
        exponent = int(m["pe"] or m["e1"] or m["e2"] or 0)
        mantissa = sign * float(digits)
        value = sign * float(f"{digits}e{exponent}")  # inf, not OverflowError, for "1e999"
        scientific = bool(m["pow"] or m["e1"] or m["e2"])
        found.append(
            _Number(
                text=m[0],
                value=value,
                mantissa=mantissa if scientific else None,
                exponent=exponent if scientific else None,
                start=m.start(),
                end=m.end(),
            )
        )
    return found


def _in_event_name(text: str, number: _Number) -> bool:
    """Whether the number is the date part of an event name ("GRB 090516", "SGR 1935+2154")."""
    start = number.start
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    while start > 0 and text[start - 1].isspace():
        start -= 1
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    end = number.end
    while end < len(text) and not text[end].isspace():
        end += 1
    digits = number.text.lstrip("+-").replace(",", "")
    return any(digits in event for event in find_event_ids(text[start:end]))


def _grounded(number: _Number, facts: _Facts) -> bool:
    if _key(number.value) in facts.values:
        return True
    return (
        number.mantissa is not None
        and number.exponent in facts.exponents
        and _key(number.mantissa) in facts.values
    )


def _key(value: float) -> float:
    """Values equal to 9 significant digits compare equal (1.20 = 1.2, 1.2e-7 = 1.2 x 10^-7)."""
    return float(f"{value:.9g}") if math.isfinite(value) else value
