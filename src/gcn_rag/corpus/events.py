"""Event names in GCN text: find them, normalize them, and know their aliases.

This is the one place that knows what an event id looks like. A circular's subject names the
event it is about ("GRB 130427A: Redshift from Gemini-North", "LIGO/Virgo S190425z: ...",
"EP240315a: ...", "IceCube-231016A - IceCube observation of ..."); the official JSON archive
carries an ``eventId`` for recent circulars only, so older ones get theirs from the subject.

Canonical forms (what :func:`normalize_event_id` returns):

==========  =========================  ==========================================
kind        canonical                  also recognised
==========  =========================  ==========================================
GRB         ``GRB 130427A``            ``GRB130427A``, ``GRB 130427a``,
                                       ``Swift GRB211001.03`` (-> ``GRB 211001``)
XRF         ``XRF 020903``             ``XRF020903``
GW          ``GW170817``               ``GW 170817``, ``GW190521_030229``
LVK         ``S230518h``, ``G194575``  ``LIGO/Virgo S190425z`` (superevents,
                                       2015-2017 ``G`` candidates)
EP          ``EP240315a``              ``EP240315A``
IceCube     ``IceCube-231016A``        ``IceCube 231016A``, ``IceCube Alert 200620.13``
HAWC        ``HAWC-220702A``
FRB         ``FRB 20200120E``          ``FRB20200120E``, ``FRB 200428``
SGR         ``SGR 1935+2154``          ``SGR J1935+2154``, ``SGR1806-20``
ZTF         ``ZTF23aaoohpy``
AT / SN     ``AT 2017gfo``, ``SN 2023ixf``  ``AT2017gfo``, ``SN2023ixf``
MAXI/Swift  ``MAXI J1820+070``         ``Swift J1644.2+5734``
==========  =========================  ==========================================

Aliases: early circulars often name a burst before its letter was assigned ("GRB 090516") and
later ones use the letter ("GRB 090516A"); :func:`event_aliases` links the two, and
:func:`event_key` gives the spelling-insensitive key used for matching.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_B = r"(?<![A-Za-z0-9])"  # left boundary: not inside a word or number
_E = r"(?![A-Za-z0-9])"  # right boundary


def _grb(m: re.Match[str]) -> str:
    kind = m["kind"].upper()
    digits = m["date"]
    if len(digits) == 8 and digits.startswith(("19", "20")):
        digits = digits[2:]
    return f"{kind} {digits}{(m['letter'] or '').upper()}"


def _ligo(m: re.Match[str]) -> str:
    return f"{m['p']}{m['num']}{m['letters'] or ''}"


def _gw(m: re.Match[str]) -> str:
    return f"GW{m['date']}{('_' + m['time']) if m['time'] else ''}"


def _ep(m: re.Match[str]) -> str:
    return f"EP{m['date']}{m['letter'].lower()}"


def _dated_alert(m: re.Match[str]) -> str:
    kind = {"icecube": "IceCube", "icecube-cascade": "IceCube-Cascade", "ic": "IceCube"}.get(
        m["kind"].lower(), m["kind"]
    )
    return f"{kind}-{m['date'][-6:]}{(m['letter'] or '').upper()}"


def _frb(m: re.Match[str]) -> str:
    return f"FRB {m['date']}{(m['letter'] or '').upper()}"


def _sgr(m: re.Match[str]) -> str:
    return f"SGR {m['coord']}"


def _ztf(m: re.Match[str]) -> str:
    return f"ZTF{m['yy']}{m['letters'].lower()}"


def _iau(m: re.Match[str]) -> str:
    return f"{m['kind'].upper()} {m['year']}{m['letters'].lower()}"


def _jname(m: re.Match[str]) -> str:
    mission = "MAXI" if m["mission"].upper() == "MAXI" else "Swift"
    return f"{mission} J{m['coord']}"


# Order matters only for overlapping matches at the same position; the leftmost match wins.
_PATTERNS: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (
        re.compile(
            _B + r"(?P<kind>GRB|XRF)[ _]?(?P<date>(?:19|20)?\d{6})(?P<letter>[A-Za-z])?"
            r"(?:\.\d{1,3})?" + _E,
            re.I,
        ),
        _grb,
    ),
    (re.compile(_B + r"GW ?(?P<date>\d{6})(?:_(?P<time>\d{6}))?" + _E), _gw),
    (re.compile(r"(?<![A-Za-z0-9/])(?P<p>S)(?P<num>\d{6})(?P<letters>[a-z]{1,3})" + _E), _ligo),
    (
        re.compile(
            r"(?:(?<=LIGO/Virgo/KAGRA )|(?<=LIGO/Virgo )|(?<=LIGO )|(?<=LVK ))"
            r"(?P<p>(?-i:G))(?P<num>\d{5,6})(?P<letters>)" + _E,
            re.I,
        ),
        _ligo,
    ),
    (re.compile(_B + r"EP ?(?P<date>\d{6})(?P<letter>[A-Za-z]{1,2})" + _E), _ep),
    (
        re.compile(
            _B + r"(?P<kind>IceCube(?:-Cascade)?)(?:[- ]|[- ]?Alert )"
            r"(?P<date>(?:20)?\d{6})(?P<letter>[A-Z])?"
            r"(?:\.\d{1,3})?" + _E,
            re.I,
        ),
        _dated_alert,
    ),
    (  # the short form of an IceCube alert: "IC-220425A", "IC220425A" (a date and a letter)
        re.compile(
            _B + r"(?P<kind>(?-i:IC))[- ]?(?P<date>[12]\d[01]\d[0-3]\d)(?P<letter>[A-Z])" + _E
        ),
        _dated_alert,
    ),
    (
        re.compile(_B + r"(?P<kind>HAWC|NuEm)-(?P<date>\d{6})(?P<letter>[A-Z])?" + _E),
        _dated_alert,
    ),
    (re.compile(_B + r"FRB ?(?P<date>(?:20)?\d{6})(?P<letter>[A-Za-z])?" + _E), _frb),
    (
        re.compile(_B + r"SGR ?J?(?P<coord>\d{4}(?:\.\d)?[+-]\d{2,4}(?:\.\d)?)" + _E, re.I),
        _sgr,
    ),
    (re.compile(_B + r"ZTF(?P<yy>\d{2})(?P<letters>[a-z]{7})" + _E, re.I), _ztf),
    (
        re.compile(_B + r"(?P<kind>AT|SN) ?(?P<year>(?:19|20)\d{2})(?P<letters>[a-z]{1,3})" + _E),
        _iau,
    ),
    (
        re.compile(
            _B + r"(?P<mission>MAXI|Swift) J(?P<coord>\d{4}(?:\.\d+)?[+-]\d{2,6}(?:\.\d+)?)" + _E
        ),
        _jname,
    ),
]


def event_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, canonical id) of every event named in ``text``, in reading order."""
    found = [
        (m.start(), m.end(), make(m)) for pattern, make in _PATTERNS for m in pattern.finditer(text)
    ]
    return sorted(found, key=lambda span: span[0])


def find_event_ids(text: str) -> list[str]:
    """Every event named in ``text``, canonical, in order of first mention, without repeats."""
    seen: set[str] = set()
    ordered: list[str] = []
    for _, _, event in event_spans(text):
        if event not in seen:
            seen.add(event)
            ordered.append(event)
    return ordered


# a name a question may write in the wrong case: "s230518h", "ep240315a", "ic-190730a"
_TOKEN = re.compile(_B + r"[A-Za-z]{1,7}[- ]?\d{4,8}[A-Za-z]{0,3}" + _E)


def question_event_ids(question: str) -> list[str]:
    """The events a question names, like :func:`find_event_ids`, and also the case-sensitive
    forms (superevents, EP, IAU names, the IC short form) written in another case."""
    spans = event_spans(question)
    for m in _TOKEN.finditer(question):
        if any(start < m.end() and m.start() < end for start, end, _ in spans):
            continue
        named = find_event_ids(_recase(m.group()))
        if named:
            spans.append((m.start(), m.end(), named[0]))
    return list(dict.fromkeys(event for _, _, event in sorted(spans, key=lambda s: s[0])))


def parse_event_id(subject: str) -> str | None:
    """The event a circular is about: the first event named in its subject, or None."""
    events = find_event_ids(subject)
    return events[0] if events else None


def normalize_event_id(name: str) -> str | None:
    """The canonical spelling of one event name (``"grb130427a"`` -> ``"GRB 130427A"``)."""
    name = " ".join(name.split())
    events = find_event_ids(name)
    if not events:
        # Case-sensitive forms (EP, S-ids, AT/SN) given in the wrong case still deserve a try.
        events = find_event_ids(_recase(name))
    return events[0] if events else None


def _recase(name: str) -> str:
    m = re.fullmatch(r"([A-Za-z]+)([ -]?)(\d+)([A-Za-z]*)", name)
    if not m:
        return name
    prefix, sep, digits, suffix = m.groups()
    prefix = {"icecube": "IceCube", "hawc": "HAWC"}.get(prefix.lower(), prefix.upper())
    suffix = suffix.lower() if prefix in {"S", "EP", "AT", "SN"} else suffix.upper()
    return f"{prefix}{sep}{digits}{suffix}"


def event_key(event_id: str) -> str:
    """Spelling-insensitive key: upper case, no spaces, hyphens or underscores."""
    return re.sub(r"[\s_\-]", "", event_id).upper()


_LETTERED = re.compile(r"^(GRB|XRF|IceCube-|IceCube-Cascade-|HAWC-|NuEm-) ?(\d{6})([A-Z]?)$")
_IAU = re.compile(r"^(AT|SN) (\d{4}[a-z]{1,3})$")


def event_aliases(event_id: str) -> tuple[str, ...]:
    """Names under which the same event appears in the circulars, canonical first.

    ``GRB 090516A`` <-> ``GRB 090516`` (name given before the letter was assigned; ``A`` is the
    first burst of the day), ``XRF 020903`` <-> ``GRB 020903`` (X-ray flashes are GRBs), the
    analogous dated alerts (``IceCube-200620`` <-> ``IceCube-200620A``), and IAU transients
    across classification (``AT 2023ixf`` <-> ``SN 2023ixf``).
    """
    canonical = normalize_event_id(event_id) or event_id
    names = [canonical]
    iau = _IAU.match(canonical)
    if iau:  # a transient keeps its designation when classified: AT 2023ixf = SN 2023ixf
        names.append(f"{'SN' if iau[1] == 'AT' else 'AT'} {iau[2]}")
    m = _LETTERED.match(canonical)
    if m:
        kind, digits, letter = m.groups()
        sep = "" if kind.endswith("-") else " "
        kinds = [kind, "GRB" if kind == "XRF" else "XRF"] if kind in {"GRB", "XRF"} else [kind]
        letters = [letter, ""] if letter == "A" else [letter] if letter else ["", "A"]
        for k in kinds:
            for letter_form in letters:
                name = f"{k}{sep}{digits}{letter_form}"
                if name not in names:
                    names.append(name)
    return tuple(names)
