"""Literal prefilters: the strings one of which a text must contain for a pattern to match.

A rule that cannot match a text need not be run on it. :func:`required` reads a pattern's
parse tree (the ``re`` module's own parser) and returns a set of literal strings such that
every match of the pattern contains one of them, so ``any(s in text for s in needed)`` is a
proof obligation, never a guess: when it is false the pattern finds nothing, and when the
tree holds nothing literal enough to say so, :func:`required` returns None (always run).
Case-insensitive parts are not read (a literal test would be case-sensitive), unless
``fold=True``: then the strings are lower case and hold for ``text.lower()`` of an ASCII text
(:func:`folded` gives that copy, or None for a text the proof does not cover: Unicode case
folding matches the long s, U+017F, to ``s`` and the Kelvin sign to ``k``).
"""

from __future__ import annotations

import importlib
import re
from collections import Counter
from typing import Any, NamedTuple

_parser: Any = importlib.import_module("re._parser")  # typeshed has no stub for it
_C: Any = importlib.import_module("re._constants")
_SMALL_CLASS = 8  # a class of at most this many characters is spelled out ([ae]r -> ar, er)
_MAX_STRINGS = 64


def required(pattern: str, fold: bool = False, few: bool = False) -> frozenset[str] | None:
    """Strings one of which every match of ``pattern`` contains, or None when unknown.

    Where the pattern offers a choice, the strings are the longest (the rarest), or with
    ``few`` the fewest of at least four letters (for texts the pattern seldom matches, where
    the number of strings to look for is the cost). With ``fold``, lower-case strings one of
    which :func:`folded` of every text the pattern matches contains (case-insensitive parts
    included)."""
    compiled = re.compile(pattern)
    if compiled.flags & re.IGNORECASE and not fold:
        return None
    found = _sequence(_parser.parse(pattern, compiled.flags), _Reading(fold, few))
    return None if found is None else frozenset(s.lower() for s in found) if fold else found


def folded(text: str) -> str | None:
    """The copy of ``text`` that ``required(..., fold=True)`` strings are tested on: lower
    case, for an ASCII text only (else None: run the pattern)."""
    return text.lower() if text.isascii() else None


def minimal(needed: frozenset[str] | None) -> frozenset[str] | None:
    """``needed`` without the strings that contain another of its strings (the same test,
    fewer probes)."""
    if needed is None:
        return None
    return frozenset(s for s in needed if not any(o != s and o in s for o in needed))


class _Reading(NamedTuple):
    fold: bool  # case-insensitive parts read as lower case
    few: bool  # the fewest strings of at least four letters, not the longest


def cover(needed: frozenset[str] | None, size: int) -> frozenset[str] | None:
    """Fewer strings to look for: each string of ``needed`` longer than ``size`` replaced by
    its ``size``-character piece that the most others share (``content filters`` and
    ``content rules`` -> ``conten``). A text that holds a string of ``needed`` holds one of
    these (a few more texts do too: the rule then runs on them)."""
    if needed is None:
        return None
    shared = Counter(p for s in needed for p in set(_pieces(s, size)))
    keys = {
        max(_pieces(s, size), key=lambda p: (shared[p], len(p.strip()), p)) if len(s) > size else s
        for s in needed
    }
    return minimal(frozenset(keys))


def ascii_only(needed: frozenset[str] | None) -> frozenset[str] | None:
    """The strings of ``needed`` that an ASCII text can hold (the same test on one)."""
    return None if needed is None else frozenset(s for s in needed if s.isascii())


def union(needs: list[frozenset[str] | None], size: int) -> frozenset[str] | None:
    """One requirement for an ASCII text to match any of several patterns (see
    :func:`cover`), or None when one of them has none."""
    strings: set[str] = set()
    for needed in needs:
        if needed is None:
            return None
        strings |= needed
    return cover(ascii_only(frozenset(strings)), size)


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(len(text) - size + 1)]


def _sequence(items: Any, how: _Reading) -> frozenset[str] | None:
    """The most selective requirement among a sequence's literal runs and mandatory parts."""
    candidates: list[frozenset[str]] = []
    run: set[str] = {""}
    for op, av in items:
        if op is _C.AT:  # zero width: \b, ^, $ do not split a run
            continue
        if op is _C.LITERAL:
            run = {s + chr(av) for s in run}
            continue
        spelled = _small_class(op, av)
        if spelled is not None and len(run) * len(spelled) <= _MAX_STRINGS:
            run = {s + ch for s in run for ch in spelled}
            continue
        candidates.append(frozenset(run))
        run = {""}
        needed = _mandatory(op, av, how)
        if needed is not None:
            candidates.append(needed)
    candidates.append(frozenset(run))
    useful = [c for c in candidates if "" not in c]
    if not useful:
        return None
    # the longest shortest string, spaces not counted (" to " is in most texts), then the fewest
    longest = 4 if how.few else _MAX_STRINGS
    return max(useful, key=lambda c: (min(longest, *(len(s.strip()) for s in c)), -len(c)))


def _small_class(op: Any, av: Any) -> list[str] | None:
    """The strings of a class such as ``[eè]``, when it is a few plain literals, or of an
    alternation of plain words such as ``(?:to|for)``."""
    if op is _C.BRANCH:
        words = [_spelled(branch) for branch in av[1]]
        return None if any(w is None for w in words) else [w for w in words if w is not None]
    if op is not _C.IN or len(av) > _SMALL_CLASS:
        return None
    if not all(kind is _C.LITERAL for kind, _ in av):
        return None
    return [chr(code) for _, code in av]


def _spelled(items: Any) -> str | None:
    """The one string a sequence of plain literals matches, else None."""
    if not all(op is _C.LITERAL for op, _ in items):
        return None
    return "".join(chr(av) for _, av in items)


def _mandatory(op: Any, av: Any, how: _Reading) -> frozenset[str] | None:
    """What a group, an alternation or a repeat of at least one requires, if anything."""
    if op is _C.SUBPATTERN:
        _group, add_flags, _del_flags, body = av
        return None if add_flags & re.IGNORECASE and not how.fold else _sequence(body, how)
    if op is _C.BRANCH:
        union: set[str] = set()
        for branch in av[1]:
            needed = _sequence(branch, how)
            if needed is None:
                return None
            union |= needed
        return frozenset(union)
    if op in (_C.MAX_REPEAT, _C.MIN_REPEAT, _C.POSSESSIVE_REPEAT):
        low, _high, body = av
        return _sequence(body, how) if low >= 1 else None
    return None


def may_match(needed: frozenset[str] | None, text: str) -> bool:
    """False only when ``text`` lacks every string of ``needed`` (see :func:`required`)."""
    return needed is None or any(s in text for s in needed)
