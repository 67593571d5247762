"""Facilities in circular subjects: who observed an event, and whether they detected it.

A circular's subject usually names its facility and outcome ("GRB 160625B: Swift-XRT afterglow
detection", "IceCube-221224A: BOOTES-4/MET Optical Upper Limit"); when it does not say the
outcome, the body's first statement of one decides. Used by :mod:`gcn_rag.answer.dossier`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from gcn_rag.corpus.instruments import named_instrument

DETECTED, LIMITS, OBSERVED, RETRACTED = "detected", "limits only", "observed", "retracted"

# what the words after "EVENT:" in a subject say about the outcome
_LIMITS = re.compile(
    r"upper limits?|non-?detection|\bno (?:\w+ ){0,3}(?:counterpart|candidate|source|detection|"
    r"emission|afterglow|neutrino|transient|signal|evidence|events?)s?\b|not detected|"
    r"\blimits\b",
    re.I,
)
_DETECTED = re.compile(
    r"detect|afterglow|counterpart|candidate|redshift|discover|identif|localization|"
    r"position|spectroscop|light ?curve|rebrightening|flare|confirm|observations? of the "
    r"(?:afterglow|source|transient)|\bfound\b|kilonova",
    re.I,
)
_NOT_A_DETECTION = re.compile(  # catalogs and coverage: observations, no detection
    r"galax(?:y|ies) in|galaxy (?:catalog|list)|localization volume|coverage|not observable|"
    r"occult|unrelated|not related|ruled out|not associated",
    re.I,
)
# ... and in a body, when the subject says neither
_BODY_DETECTED = re.compile(
    r"\b(?:we |is |was |are |were )?(?:detect(?:ed)?|find|found|identif\w+|see|saw|observe[ds]?)"
    r" (?:a|an|the|one|two|several|\d+) (?:\w+ ){0,3}(?:source|counterpart|candidate|afterglow|"
    r"object|transient|emission|signal)|\btriggered\b|(?:was|were) (?:clearly |also )?"
    r"(?:detected|seen)\b",
    re.I,
)
_BODY_LIMITS = re.compile(
    r"\bno (?:\w+ ){0,3}(?:source|counterpart|candidate|afterglow|transient|emission|signal|"
    r"detection)s?\b|not detected|upper limits?|non-?detection",
    re.I,
)
# what is left of "SGR 1935+2154" or "IceCube Alert 200530.33" once the event is not a name
_NOT_A_NAME = re.compile(
    r"\S*\d{4,}\S*|\b(?:GRB|SGR|FRB|XRF|AT|SN|EP|ZTF|Alert|Event|Trigger|IceCube(?:-Cascade)?)\b",
    re.I,
)
# generic words that end a facility's name in a subject ("Fermi GBM Final Real-time ...")
_GENERIC = frozenset(
    "final refined updated update preliminary optical observations observation observed "
    "detection detections upper limit limits identification follow-up followup and of the a "
    "an on for in x-ray radio nir near-infrared infrared uv ultraviolet gamma-ray spectroscopic "
    "spectroscopy photometric photometry redshift afterglow candidate candidates counterpart "
    "localization analysis search searches real-time ground-based further continued late-time "
    "early possible no new imaging monitoring trigger triggered burst grb detected emission "
    "source sources position refined improved revised correction erratum retraction "
    "triangulation spectrum spectral light curve lightcurve confirmation confirmed evidence "
    "with from by at mm sub-mm millimeter tev gev high-energy event alert neutrino track "
    "cascade gold bronze gravitational-wave gravitational wave classification circular "
    "report reports results result discovery detects detect observe observes prompt "
    "transient transients counterparts field galaxy galaxies host tiled coverage another "
    "pre-discovery ghz mhz gw frb ned potential".split()
)


def facility_of(subject: str) -> str:
    """The instrument or telescope a circular's subject names ("GRB X: Swift-XRT afterglow
    detection" -> "Swift-XRT"), or ""."""
    head, _, rest = subject.partition(":")
    event = re.search(r"\S*\d{4,}\S*", subject)
    if not rest and event:  # "LIGO/Virgo S190822c Global MASTER-Net observations report"
        head, rest = subject[: event.end()], subject[event.end() :]
    name = _leading_name(rest) if rest else ""
    if not name and rest:  # "Upper limits from IceCube neutrino searches"
        name = named_instrument(rest) or _leading_name(_first_name_on(rest))
    if not name:  # "LIGO/Virgo S190425z: Identification ...": the facility precedes the event
        name = _leading_name(_NOT_A_NAME.sub(" ", head))
    if not name:
        return ""
    return named_instrument(name) or name


def _first_name_on(text: str) -> str:
    """``text`` from its first capitalized word that is not a generic one."""
    for match in re.finditer(r"[A-Z][\w/-]*", _NOT_A_NAME.sub(" ", text)):
        if match.group().lower() not in _GENERIC:
            return _NOT_A_NAME.sub(" ", text)[match.start() :]
    return ""


_ALONE_GENERIC = frozenset({"telescope", "telescopes", "observatory", "array", "network", "team"})


def _leading_name(text: str) -> str:
    tokens = []
    for token in text.replace(",", " ").split():
        word = token.strip("()[].;")
        if not word or word.lower() in _GENERIC or not (word[0].isupper() or word[0].isdigit()):
            break
        tokens.append(word)
        if len(tokens) == 4:
            break
    while tokens and tokens[-1].isdigit():
        tokens.pop()  # "AMI 15 GHz"
    name = " ".join(tokens)
    # a name has a word of three letters or an acronym ("VLA", "NOT", "Swope"), not "Pi"
    if name.lower() in _ALONE_GENERIC:
        return ""  # "Telescope", "Observatory": a kind of facility, not one
    return name if re.search(r"[A-Za-z]{3}|\b[A-Z]{2}\b", name) else ""


def outcome(subject: str, body: Callable[[], str]) -> str:
    head = subject.partition(":")[2] or subject
    if _NOT_A_DETECTION.search(head):
        return OBSERVED
    if _LIMITS.search(head):
        return LIMITS
    if _DETECTED.search(head):
        return DETECTED
    text = body()  # whichever the body says first
    detected, limits = _BODY_DETECTED.search(text), _BODY_LIMITS.search(text)
    if detected and (limits is None or detected.start() < limits.start()):
        return DETECTED
    return LIMITS if limits else OBSERVED
