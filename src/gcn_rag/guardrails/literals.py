"""Literal prefilters: the strings one of which a text must contain for a pattern to match.

A rule that cannot match a text need not be run on it. :func:`required` reads a pattern's
parse tree (the ``re`` module's own parser) and returns a set of literal strings such that
every match of the pattern contains one of them, so ``any(s in text for s in needed)`` is a
proof obligation, never a guess: when it is false the pattern finds nothing, and when the
tree holds nothing literal enough to say so, :func:`required` returns None (always run).
Case-insensitive parts are not read (a literal test would be case-sensitive).
"""

from __future__ import annotations

import importlib
import re
from typing import Any

_parser: Any = importlib.import_module("re._parser")  # typeshed has no stub for it
_C: Any = importlib.import_module("re._constants")
_SMALL_CLASS = 4  # a class of at most this many characters is spelled out ([ae]r -> ar, er)
_MAX_STRINGS = 64


def required(pattern: str) -> frozenset[str] | None:
    """Strings one of which every match of ``pattern`` contains, or None when unknown."""
    compiled = re.compile(pattern)
    if compiled.flags & re.IGNORECASE:
        return None
    return _sequence(_parser.parse(pattern, compiled.flags))


def _sequence(items: Any) -> frozenset[str] | None:
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
        needed = _mandatory(op, av)
        if needed is not None:
            candidates.append(needed)
    candidates.append(frozenset(run))
    useful = [c for c in candidates if "" not in c]
    if not useful:
        return None
    return max(useful, key=lambda c: (min(map(len, c)), -len(c)))


def _small_class(op: Any, av: Any) -> list[str] | None:
    """The characters of a class such as ``[eè]``, when it is a few plain literals."""
    if op is not _C.IN or len(av) > _SMALL_CLASS:
        return None
    if not all(kind is _C.LITERAL for kind, _ in av):
        return None
    return [chr(code) for _, code in av]


def _mandatory(op: Any, av: Any) -> frozenset[str] | None:
    """What a group, an alternation or a repeat of at least one requires, if anything."""
    if op is _C.SUBPATTERN:
        _group, add_flags, _del_flags, body = av
        return None if add_flags & re.IGNORECASE else _sequence(body)
    if op is _C.BRANCH:
        union: set[str] = set()
        for branch in av[1]:
            needed = _sequence(branch)
            if needed is None:
                return None
            union |= needed
        return frozenset(union)
    if op in (_C.MAX_REPEAT, _C.MIN_REPEAT, _C.POSSESSIVE_REPEAT):
        low, _high, body = av
        return _sequence(body) if low >= 1 else None
    return None


def may_match(needed: frozenset[str] | None, text: str) -> bool:
    """False only when ``text`` lacks every string of ``needed`` (see :func:`required`)."""
    return needed is None or any(s in text for s in needed)
