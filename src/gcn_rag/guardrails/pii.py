"""Personal data and secrets in a text, each match validated before it counts.

Kinds: ``email``, ``phone``, ``card``, ``iban``, ``ip``, ``ssn``, ``secret``. Questions and
circulars are full of digits (circular and trigger numbers, dates, times, sexagesimal
coordinates, magnitudes, energies, MJDs, GPS times), so a number is personal data only when
its shape *and* its rules say so:

- a card number passes Luhn and has an issuer prefix with a length that issuer uses;
- an IBAN has its country's length and passes mod 97 (:mod:`.checksums`);
- a US SSN has hyphens (or the words "SSN"/"social security" before it) and an issuable
  area, group and serial;
- a phone number is international (``+`` and 9-15 digits), North American (``(NXX) NXX-XXXX``
  with separators), European national (a leading ``0``, 10-11 digits in groups), or any
  7-15 digits right after a word such as "phone", "call" or "WhatsApp"; separators are
  consistent, and a dot is never mixed with another separator (``+12 34 56.78`` is a
  declination, not a phone);
- an IPv4 address has four octets 0-255 without leading zeros and is not a version number;
  an IPv6 address parses as one (``ipaddress``), so times such as ``12:34:56`` do not;
- secrets are in :mod:`.credentials`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable, Iterator

from gcn_rag.guardrails.checksums import IBAN_LENGTHS, card_ok, iban_ok, ssn_ok
from gcn_rag.guardrails.credentials import find_secrets
from gcn_rag.guardrails.literals import folded, may_match, minimal, required

#: Kinds in the order they win an overlap (a secret contains digits that look like a phone).
KINDS = ("secret", "iban", "card", "ssn", "email", "phone", "ip")


@dataclasses.dataclass(frozen=True)
class Span:
    """One finding: its kind (``email``, ``phone``, ``card``, ``iban``, ``ip``, ``ssn``,
    ``secret``) and where it is in the text."""

    kind: str
    start: int
    end: int


_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][\w.%+-]{0,63}"
    r"(?:@|\s?[\[(]at[\])]\s?)"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.|\s?[\[(]dot[\])]\s?))+"
    r"[A-Za-z]{2,24}(?![\w-]|@)"
)
_PHONE_INTL = re.compile(r"(?<![\w+.])\+\d{1,3}(?:[ .\-/]?\(?\d{1,5}\)?){2,7}(?![\w]|[.\-/]\d)")
_PHONE_NANP = re.compile(
    r"(?<![\w.+\-/])(?:1[ .\-]?)?(?:\((\d{3})\) ?|(\d{3})([ .\-]))(\d{3})([ .\-])(\d{4})"
    r"(?![\w]|[.\-/]\d)"
)
_PHONE_NATIONAL = re.compile(r"(?<![\w.+\-/])0\d{1,4}(?:[ .\-/]\d{2,8}){1,5}(?![\w]|[.\-/]\d)")
_PHONE_CUE = re.compile(
    r"(?i:\b(?:phone|telephone|tel|mobile|cell|cellphone|call|fax|whats ?app|sms|text me|"
    r"ring me|rufnummer|telefon|t[ée]l[ée]phone|tel[ée]fono|portable|handy)\b)"
    r"[^\w+]{0,4}(?:(?:number|no|nr|num|is|at|on|me|us)\b[^\w+]{0,3}){0,3}"
    r"(?P<number>\+?\d[\d ().\-/]{5,20}\d)(?![\w]|[.\-/]\d)"
)
_CARD = re.compile(r"(?<![\w.\-])(?:\d{3,6}(?:[ \-]\d{2,6}){1,5}|\d{12,19})(?![\w]|[.\-]\d)")
# compact (``GB82WEST12345698765432``) or printed in groups of four (``DE89 3704 0044 …``)
_IBAN = re.compile(
    r"(?<![A-Za-z0-9])([A-Z]{2})\d{2}(?:[A-Za-z0-9]{11,30}|(?: [A-Za-z0-9]{4}){2,7}"
    r"(?: [A-Za-z0-9]{1,4})?)(?![A-Za-z0-9])"
)
# the groups of four of an IBAN-like code run up to here (``NL92 ABNA 0417 1643 00``)
_IBAN_BEFORE = re.compile(r"[A-Z]{2}\d{2}(?: [A-Za-z0-9]{4})+ $")
_SSN = re.compile(r"(?<![\w\-./])(\d{3})-(\d{2})-(\d{4})(?![\w\-]|[./]\d)")
_SSN_CUE = re.compile(
    r"(?i:\b(?:ssn|social security(?: number| no)?)\b)\W{0,12}"
    r"(?P<number>(\d{3})[ ]?(\d{2})[ ]?(\d{4}))(?!\w)"
)
_IPV4 = re.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
    r"(?!\w|\.\d)"
)
_VERSION_CUE = re.compile(
    r"(?i:\b(?:v|version|release|rev|build|firmware|ver\.?|pipeline|software|package)\s?)$"
)
_IPV6 = re.compile(r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:%\w+)?(?![\w:])")


# every IBAN, card, SSN, phone and IPv4 pattern needs a digit; an e-mail address and an
# IPv6 address need the literals below: a text without them is not scanned for those kinds
_DIGIT = re.compile(r"\d")
_EMAIL_NEEDS = required(_EMAIL.pattern)
_IPV6_NEEDS = required(_IPV6.pattern)
# what each pattern's every match contains, found faster than the pattern (whose look-behind
# makes the engine try it at every character): a short pattern that starts with a character
# class or a literal, or the lower-case words of an ASCII text (``folded``)
_IBAN_HINT = re.compile(r"[A-Z]{2}\d\d")
_CARD_HINT = re.compile(r"\d(?:\d\d[ \-]\d\d|\d{11})")
_SSN_HINT = re.compile(r"\d{3}-\d\d-\d{4}")
_NANP_HINT = re.compile(r"\d{3}[ .\-]\d{4}")
_NATIONAL_HINT = re.compile(r"0\d{1,4}[ .\-/]\d\d")
_IPV4_HINT = re.compile(r"\d\.\d{1,3}\.\d{1,3}\.\d")
# an address we report has a group of 3-4 hex digits, next to one of its colons
_IPV6_HINT = re.compile(r":[0-9A-Fa-f]{0,4}:")
_IPV6_GROUP = re.compile(r"[0-9A-Fa-f]{3}:|:[0-9A-Fa-f]{3}")
# in an ASCII text read as shapes (_SHAPES), each hint above is one of a few strings:
# looked for with ``in``, not a pattern tried at every digit
_SHAPES = str.maketrans(
    {c: "A" if c.isupper() else "d" if c.isdigit() else c if c in " .-" else "_"
     for c in map(chr, range(128))}
)  # fmt: skip
_CARD_SHAPES = ("ddd dd", "ddd-dd", "d" * 12)
_IBAN_SHAPES = ("AAdd",)
_SSN_SHAPES = ("ddd-dd-dddd",)
_NANP_SHAPES = ("ddd dddd", "ddd.dddd", "ddd-dddd")
_SSN_CUE_NEEDS = minimal(required(_SSN_CUE.pattern, fold=True))
_PHONE_CUE_NEEDS = minimal(required(_PHONE_CUE.pattern, fold=True))


def find_pii(text: str, is_token: Callable[[str], bool] | None = None) -> list[Span]:
    """Every piece of personal data or secret in ``text``, in order, not overlapping.

    ``is_token`` says whether a token-shaped string is a bearer token of this server."""
    found = [Span("secret", a, b) for a, b in find_secrets(text, is_token)]
    digits = _DIGIT.search(text) is not None
    lowered = folded(text)
    shape = text.translate(_SHAPES) if digits and lowered is not None else None
    if digits:
        found += _ibans(text, shape)
        found += _cards(text, shape)
        found += _ssns(text, lowered, shape)
    if may_match(_EMAIL_NEEDS, text):
        found += [Span("email", *m.span()) for m in _EMAIL.finditer(text) if ".." not in m.group()]
    if digits:
        found += _phones(text, lowered, shape)
    found += _ips(text, digits)
    rank = {kind: i for i, kind in enumerate(KINDS)}
    kept: list[Span] = []
    for span in sorted(found, key=lambda s: (rank[s.kind], s.start, s.start - s.end)):
        if all(span.end <= k.start or span.start >= k.end for k in kept):
            kept.append(span)
    return sorted(kept, key=lambda s: s.start)


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _is_card(raw: str) -> bool:
    if len(set(re.findall(r"\D", raw))) > 1:
        return False
    return card_ok(_digits(raw))


def _cued(needed: frozenset[str] | None, lowered: str | None) -> bool:
    """Whether a case-insensitive cue (``phone``, ``SSN``) may be in the text."""
    return lowered is None or may_match(needed, lowered)


def _hinted(hint: re.Pattern[str], shapes: tuple[str, ...], text: str, shape: str | None) -> bool:
    """Whether ``hint`` is in ``text``, read off the text's shape when it has one."""
    return hint.search(text) is not None if shape is None else any(s in shape for s in shapes)


def _cards(text: str, shape: str | None) -> Iterator[Span]:
    for match in _CARD.finditer(text) if _hinted(_CARD_HINT, _CARD_SHAPES, text, shape) else ():
        if _is_card(match.group()):
            yield Span("card", *match.span())


def _ibans(text: str, shape: str | None) -> Iterator[Span]:
    for match in _IBAN.finditer(text) if _hinted(_IBAN_HINT, _IBAN_SHAPES, text, shape) else ():
        need = IBAN_LENGTHS.get(match.group(1))
        groups = match.group().split(" ")
        taken = 0  # as printed, the groups of four may be followed by other words
        while taken < len(groups) and len("".join(groups[:taken])) < (need or 0):
            taken += 1
        compact = "".join(groups[:taken]).upper()
        if need == len(compact) and iban_ok(compact):
            yield Span("iban", match.start(), match.start() + len(" ".join(groups[:taken])))


def _ssns(text: str, lowered: str | None, shape: str | None) -> Iterator[Span]:
    for match in _SSN.finditer(text) if _hinted(_SSN_HINT, _SSN_SHAPES, text, shape) else ():
        if ssn_ok(*match.groups()):
            yield Span("ssn", *match.span())
    for match in _SSN_CUE.finditer(text) if _cued(_SSN_CUE_NEEDS, lowered) else ():
        if ssn_ok(match.group(2), match.group(3), match.group(4)):
            yield Span("ssn", *match.span("number"))


def _phones(text: str, lowered: str | None, shape: str | None) -> Iterator[Span]:
    for match in _PHONE_INTL.finditer(text) if "+" in text else ():
        raw = match.group()
        decimal = raw.count(".") == 1 and not re.search(r"[^\d.+]", raw)  # +08.5812604
        if 9 <= len(_digits(raw)) <= 15 and _separators_ok(raw) and not decimal:
            yield Span("phone", *match.span())
    nanp = _hinted(_NANP_HINT, _NANP_SHAPES, text, shape)
    for match in _PHONE_NANP.finditer(text) if nanp else ():
        area, exchange = match.group(1) or match.group(2), match.group(4)
        same = match.group(3) in (None, match.group(5)) or match.group(1) is not None
        if area[0] in "23456789" and exchange[0] in "23456789" and same:
            yield Span("phone", *match.span())
    for match in _PHONE_NATIONAL.finditer(text) if _NATIONAL_HINT.search(text) else ():
        raw, seps = match.group(), set(re.findall(r"\D", match.group()))
        # two groups joined by "." or "-" are a decimal (058.6439041) or a catalogue star
        # (USNO-B1 0709-0091487, GSC 00984-01465), not a phone
        paired = len(re.findall(r"\D", raw)) == 1 and seps <= {".", "-"}
        in_iban = _IBAN_BEFORE.search(text, max(0, match.start() - 40), match.start())
        if 10 <= len(_digits(raw)) <= 11 and len(seps) == 1 and not paired and not in_iban:
            yield Span("phone", *match.span())
    for match in _PHONE_CUE.finditer(text) if _cued(_PHONE_CUE_NEEDS, lowered) else ():
        raw = match.group("number")
        if 7 <= len(_digits(raw)) <= 15 and _separators_ok(raw):
            yield Span("phone", *match.span("number"))


def _separators_ok(raw: str) -> bool:
    """A dot is never mixed with another separator (``+12 34 56.78`` is a declination)."""
    used = set(re.findall(r"[^\d+()]", raw))
    return not ("." in used and len(used) > 1)


def _ips(text: str, digits: bool) -> Iterator[Span]:
    for match in _IPV4.finditer(text) if digits and _IPV4_HINT.search(text) else ():
        before = text[max(0, match.start() - 12) : match.start()]
        # a host in a URL is a server, not a person; -54.42.40.49 is a declination
        if not _VERSION_CUE.search(before) and not before.endswith(("://", "-", "+")):
            yield Span("ip", *match.span())
    ipv6 = may_match(_IPV6_NEEDS, text) and _IPV6_HINT.search(text) and _IPV6_GROUP.search(text)
    for match in _IPV6.finditer(text) if ipv6 else ():
        candidate = match.group().split("%", 1)[0]
        # one group of 3-4 hex digits at least: ``12:34::`` is not worth calling an address
        if not re.search(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{3,4}(?![0-9A-Fa-f])", candidate):
            continue
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        yield Span("ip", *match.span())
