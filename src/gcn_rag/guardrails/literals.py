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

For the injection rules, which read a *normalized* text (words joined by single spaces),
:func:`required_words` goes further: the whole words one of which every match holds (a word
the pattern closes on both sides by a space or ``\\b``), so a rule is skipped after one set
intersection with the text's words (:class:`WordNeeds`) instead of a probe per literal.
"""

from __future__ import annotations

import importlib
import re
from collections import Counter
from collections.abc import Callable
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


class WordNeeds(NamedTuple):
    """What every match of a pattern over a *normalized* text (words of ``\\w`` characters
    joined by single spaces) contains: one of ``words`` as a whole word, or one of
    ``strings`` anywhere. A text's words are a set, so the first test is one set
    intersection, however many words the pattern could need."""

    words: frozenset[str]
    strings: frozenset[str]

    def hold(self, words: frozenset[str] | set[str], text: str) -> bool:
        """False only when no match can be in ``text`` (whose words are ``words``)."""
        return not self.words.isdisjoint(words) or any(s in text for s in self.strings)

    def ascii(self) -> WordNeeds:
        """Only what an ASCII text can hold (the same test on one)."""
        return WordNeeds(
            frozenset(filter(str.isascii, self.words)), frozenset(filter(str.isascii, self.strings))
        )

    def mapped(self, fn: Callable[[str], str]) -> WordNeeds:
        """The needs as a copy of the text read through ``fn`` (reversed, rot13…) holds them."""
        return WordNeeds(frozenset(map(fn, self.words)), frozenset(map(fn, self.strings)))


_B = "\x01"  # a word boundary (\b) in a spelled run: it delimits a word, as a space does
_MAX_SPELLED = 256
#: Words too common to stand for a rule when the pattern offers rarer ones.
_COMMON = frozenset(
    """a about after all also an and any are as at be been before but by can could did do does
    for from had has have he her his how i if in into is it its may me more my new no not
    of on one only or our out over so such than that the their them then there these they this
    to up upon us was we were what when where which while who will with would you your""".split()
)


def required_words(pattern: str) -> WordNeeds | None:
    """Whole words (or, where the pattern spells none, strings) one of which every match of
    ``pattern`` over a normalized text contains; None when unknown (run the pattern).

    A word is whole when the pattern delimits it on both sides, by a space or ``\\b``: in a
    normalized text a space is between two words and ``\\b`` is next to one, so the spelled
    characters between two delimiters are one of the text's words. ``(?:a|b)``, ``s?`` and
    small classes are spelled out (``instructions?`` is the words ``instruction`` and
    ``instructions``); where an alternative delimits no word, its literal strings stand in."""
    compiled = re.compile(pattern)
    if compiled.flags & re.IGNORECASE:
        return None
    found = _word_sequence(_parser.parse(pattern, compiled.flags))
    if found is None:
        return None
    return WordNeeds(found.words, cover(found.strings, 6) or frozenset())  # fewer probes


#: Needs that every text holds (``""`` is in every text): the pattern always runs.
ALWAYS = WordNeeds(frozenset(), frozenset({""}))


def word_needs(pattern: str) -> WordNeeds:
    """:func:`required_words` of ``pattern``, else its :func:`required` strings (in pieces of
    six characters), else :data:`ALWAYS`."""
    found = required_words(pattern)
    if found is None:
        strings = cover(required(pattern), 6)
        found = ALWAYS if strings is None else WordNeeds(frozenset(), strings)
    return found


def union_needs(needs: list[WordNeeds]) -> WordNeeds:
    """One requirement for a text to match any of several patterns."""
    words: set[str] = set()
    strings: set[str] = set()
    for needed in needs:
        words |= needed.words
        strings |= needed.strings
    return WordNeeds(frozenset(words), minimal(frozenset(strings)) or frozenset())


def _word_sequence(items: Any, run: set[str] | None = None) -> WordNeeds | None:
    """The rarest whole words a sequence delimits (``run``: what the match spelled before
    it), else the literal strings :func:`required` reads, else common words."""
    candidates: list[frozenset[str]] = []
    mixed: list[WordNeeds] = []
    run = run or {""}
    for op, av in items:
        spelled = _spell(op, av)
        if spelled is not None and len(run) * len(spelled) <= _MAX_SPELLED:
            run = {s + t for s in run for t in spelled}
            continue
        candidates += _run_words(run)
        inner = _word_mandatory(op, av, run) if spelled is None else None
        if inner is not None:
            mixed.append(inner)
        run = set(spelled) if spelled is not None else {""}  # what precedes is unknown
    candidates += _run_words(run)
    rare = [WordNeeds(c, frozenset()) for c in candidates if not _common(c)]
    strings = _sequence(items, _Reading(fold=False, few=False))
    if strings is not None:
        mixed.append(WordNeeds(frozenset(), strings))
    ranked = (
        rare
        or [n for n in mixed if not _common(n.words)]
        or [WordNeeds(c, frozenset()) for c in candidates]
    )
    return max(ranked, key=_selectivity, default=None)


def _run_words(run: set[str]) -> list[frozenset[str]]:
    """A spelled run's whole words, when each of its strings delimits one (its rarest)."""
    best: set[str] = set()
    for s in run:
        middle = [t for t in re.split(f"[ {_B}]", s)[1:-1] if t]
        if not middle:
            return []
        best.add(max(middle, key=lambda t: (t not in _COMMON, len(t))))
    return [frozenset(best)]


def _common(words: frozenset[str]) -> bool:
    return any(w in _COMMON or len(w) < 2 for w in words)


def _selectivity(needs: WordNeeds) -> tuple[int, int, int]:
    """The fewest strings (probes; a word is a set test), then the fewest words (fewer ways
    to pass), then the longest shortest."""
    sizes = [len(w) for w in needs.words] + [len(s.strip()) for s in needs.strings]
    return (-len(needs.strings), -len(needs.words), min(sizes, default=0))


def _spell(op: Any, av: Any) -> list[str] | None:
    """Every string an item matches (``\\b`` as a marker), when they are few, else None."""
    if op is _C.LITERAL:
        return [chr(av)]
    if op is _C.AT:
        return [_B] if av is _C.AT_BOUNDARY else None
    if op is _C.IN:
        return _small_class(op, av)
    if op is _C.BRANCH:
        out: list[str] = []
        for branch in av[1]:
            spelled = _spell_sequence(branch)
            if spelled is None:
                return None
            out += spelled
        return out if len(out) <= _MAX_SPELLED else None
    if op is _C.SUBPATTERN:
        _group, add_flags, del_flags, body = av
        return None if add_flags or del_flags else _spell_sequence(body)
    if op in (_C.MAX_REPEAT, _C.MIN_REPEAT) and av[1] <= 1:
        spelled = _spell_sequence(av[2])
        return None if spelled is None else ([""] if av[0] == 0 else []) + spelled
    return None


def _spell_sequence(items: Any) -> list[str] | None:
    out = [""]
    for op, av in items:
        spelled = _spell(op, av)
        if spelled is None or len(out) * len(spelled) > _MAX_SPELLED:
            return None
        out = [s + t for s in out for t in spelled]
    return out


def _word_mandatory(op: Any, av: Any, run: set[str]) -> WordNeeds | None:
    """What a group, an alternation or a repeat of at least one requires, if anything, read
    after ``run`` (the parser moves a ``\b`` that starts every alternative in front)."""
    if op is _C.SUBPATTERN:
        _group, add_flags, del_flags, body = av
        return None if add_flags or del_flags else _word_sequence(body, run)
    if op is _C.BRANCH:
        alternatives = [_word_sequence(branch, run) for branch in av[1]]
        return None if None in alternatives else union_needs(alternatives)  # type: ignore[arg-type]
    if op in (_C.MAX_REPEAT, _C.MIN_REPEAT, _C.POSSESSIVE_REPEAT) and av[0] >= 1:
        return _word_sequence(av[2], run)
    return None
