"""When after the trigger a value was observed: ``time_after_s`` of a ``gcn_measurements`` row.

A circular says it in the value's own sentence ("T0+3.2 h", "T-T0 = 78 s", "~15 min after the
BAT trigger", "starting 93 s after the trigger", "(5.4 hrs post-burst)") or in a column of the
value's table ("T-T0 (s)", "Tmid-T0 (hr)", "t-t0,hours", "Time since burst" with "14.7 hours"
cells). :data:`UNITS` turns each unit into seconds. Nothing is guessed: a time with no unit, an
interval ("from T0+175 to T0+1458 s"), a list ("at 1.17 and 1.52 hr ..., respectively"), a
bound ("up to 17.2 minutes after") or a clock time gives no time, and so does a sentence whose
times cannot be paired with its values one by one (see :func:`pair`).
"""

from __future__ import annotations

import dataclasses
import itertools
import re

# a unit as circulars write it -> seconds (the first spelling that fits, with no letter or
# digit right after it: "21h20m" is a clock time, "hrs" is hours)
UNITS: tuple[tuple[str, float], ...] = (
    (r"ks(?:ec)?", 1000.0),
    (r"s|secs?|seconds?", 1.0),
    (r"m|mins?|minutes?", 60.0),
    (r"h|hrs?|hours?", 3600.0),
    (r"d|days?", 86400.0),
)
_UNIT = "|".join(f"(?:{spelling})" for spelling, _ in UNITS)
_N = r"(?P<n>\d+(?:\.\d+)?)"
_AFTER = (  # "after the (Swift/BAT) trigger", "post-burst", "since the GRB T0"
    r"\s*(?:(?:after|since|past|from|following)\s+|post[- ]?)(?:the\s+)?"
    r"(?:(?!end\b|last\b|peak\b|previous\b|start\b|non)[\w/.'-]+\s+){0,3}?"
    r"(?:trigger|burst|GRB|T_?0|event|alert|merger|explosion|onset)\b"
)
# a time in a sentence: after the trigger ("after", "t0"), or at a time it does not tie to
# the trigger ("lead": "at 1.14 hours", "t = 1.36 hr", "~3.5 minutes"); no plain duration
_MENTION = re.compile(
    rf"(?<![\w.])[Tt](?:_?(?:mid|mean))?\s*-\s*[Tt]_?\{{?0\}}?\s*(?:=|~|≈|:|of)?\s*~?\s*"
    rf"{_N}\s*(?P<unit>{_UNIT})(?![a-z\d])"  # "T-T0 = 78s", "t-t0 ~ 2.65 hours after ..."
    rf"|(?<![\w.])(?P<t0>[Tt](?:_?0|_\{{0\}})?\s*(?P<sign>[+-])\s*~?\s*)(?P<n2>\d+(?:\.\d+)?)"
    rf"(?:\s*(?P<unit2>{_UNIT})(?![a-z\d]))?"  # "T0+3.2 h", "T+450 s" ("T+23": no unit)
    rf"|(?P<lead>(?:\bat\s|@|\b[Tt]\s*[=~≈]|~|\b(?:about|around|approximately|roughly)\s)\s*"
    r"(?:(?:~|about|approximately|roughly)\s*)?)?"
    rf"(?<![\w.:])(?P<n3>\d+(?:\.\d+)?)\s*(?P<unit3>{_UNIT})(?![a-z\d])(?P<after>{_AFTER})?",
    re.I,
)
# before a time: it is one of a list or the end of a range ("1.17 and 1.52 hr", "2-10 days",
# "T0+175 to T0+1458 s"), or a bound of an interval ("up to 17.2 minutes after")
_LISTED = re.compile(
    rf"(?:\d\s*(?:(?:{_UNIT})(?![a-z\d]))?\s*(?:,\s*(?:and|or)\b|\band\b|\bor\b|\bto\b|-|\u2013|&)"
    r"|\b(?:up to|until|till|within|by|before|between|from|during|over|for|first|in the))\s*~?\s*$",
    re.I,
)
_FOLLOWED = re.compile(  # after a "T0+" time: the other end of its interval
    r"\s*(?:(?:-|\u2013|\bto\b|\buntil\b|\band\b)\s*(?:[Tt]_?0?\s*[+-]\s*)?|,\s*[Tt]_?0?\s*[+-]\s*)\d",
    re.I,
)
_RESPECTIVELY = re.compile(r"\brespectively\b", re.I)
# where a clause ends: a semicolon outside parentheses, a sentence's end, a relative clause
# ("..., for which the mid time was 4.6 hr": another observation's time)
_CLAUSE = re.compile(
    r";(?![^()]*\))|(?<!\bvs)(?<!\bal)(?<!\bcf)(?<!\be\.g)(?<!\bi\.e)\.\s+(?=[A-Z])"
    r"|,\s+(?:for|in) which\b"
)
# a table's column of times after the trigger, with its unit when the header gives one
_COLUMN = re.compile(
    r"(?:(?:mean|mid)[ _-]?)?(?:[Tt](?:[ _]?(?:mid|mean|obs))?\s*-\s*[Tt]_?\{?0\}?|d[tT]|"
    r"delta[ _]?[tT]|\u0394[tT]|"
    r"[Tt]ime\s+(?:since|after|from)(?:\s+(?:the\s+)?(?:burst|trigger|GRB|T0|event))?)"
    r"(?:\s*\((?:burst|trigger|GRB)\))?(?:\s*\*)?"
    rf"(?:\s*(?:,\s*|\(\s*|\[\s*)(?P<unit>{_UNIT})\s*[)\]]?)?(?![\w-])",
    re.I,
)
_CELLS = re.compile(r"\S+(?: \S+)*")  # a table's cells: apart by two spaces or more
_CELL = re.compile(rf"~?\s*{_N}\s*(?:(?P<unit>{_UNIT})(?![a-z\d]))?", re.I)
_GAP = re.compile(r"(?:^\s*|\s{2,})$")  # what stands before a column's header
_GAP_AFTER = re.compile(r"\s{2,}|\s*$")  # ... and after it
_NUMBER = re.compile(r"(?<![\w(-])\d")  # a number standing alone ("(3-sigma)" is a name)
_BREAK = re.compile(r"\n[ \t]*\n")  # a paragraph ends


def written(seconds: float) -> str:
    """A time after the trigger as a table shows it: "+93 s", "+15 min", "+3.2 h", "+1.4 d"
    ("-2 d": before it)."""
    sign, size = ("-" if seconds < 0 else "+"), abs(seconds)
    if size < 100:
        return f"{sign}{size:.0f} s"
    if size < 3600:
        return f"{sign}{size / 60:.0f} min"
    if size < 2 * 86400:
        return f"{sign}{size / 3600:.3g} h"
    return f"{sign}{size / 86400:.3g} d"


def seconds(number: str, unit: str | None) -> float | None:
    """``number`` ``unit`` in seconds; None without a unit."""
    if not unit:
        return None
    factor = next(f for spelling, f in UNITS if re.fullmatch(spelling, unit, re.I))
    return float(number) * factor


@dataclasses.dataclass(frozen=True)
class Mention:
    """A time in a sentence: its span, and its seconds after the trigger when it says so."""

    start: int
    end: int
    seconds: float | None  # None: a time the sentence does not tie to the trigger
    listed: bool  # one of a list, an end of a range, or a bound: no value's time


def mentions(sentence: str) -> list[Mention]:
    """The times after a trigger ``sentence`` states, in order (a plain duration is none)."""
    found = []
    for match in _MENTION.finditer(sentence):
        if match["n"]:
            value = seconds(match["n"], match["unit"])
        elif match["n2"]:
            value = seconds(match["n2"], match["unit2"])
            value = None if value is None else -value if match["sign"] == "-" else value
        elif match["after"]:
            value = seconds(match["n3"], match["unit3"])
        elif match["lead"]:
            value = None  # "at 1.14 hours": a time, but after what the sentence does not say
        else:
            continue  # "a 120 s exposure": a duration
        listed = bool(
            _LISTED.search(sentence[max(0, match.start() - 40) : match.start()])
            or (match["n2"] and _FOLLOWED.match(sentence, match.end()))
        )
        found.append(Mention(match.start(), match.end(), value, listed))
    return found


def pair(times: list[Mention], spans: list[tuple[int, int]]) -> list[float | None]:
    """The time of each value (``spans``, in order) from the times of its sentence.

    One time before all values or after all of them is every value's ("At 5 h after the
    burst, R = 18 and I = 17"). Times between values go with one value each when there are as
    many times as values, each right after its value ("R = 18 at 1 h and I = 17 at 2 h") or
    each right before it ("at 1 h R = 18, at 2 h I = 17"). Anything else (one time between two
    values: the one before or the one after?) or a listed time leaves every value without."""
    none: list[float | None] = [None] * len(spans)
    times = [t for t in times if not any(t.start < end and start < t.end for start, end in spans)]
    if not times or not spans or any(t.listed for t in times):
        return none
    if all(t.start >= spans[-1][1] for t in times) or all(t.end <= spans[0][0] for t in times):
        return [times[0].seconds] * len(spans) if len(times) == 1 else none
    if times[0].start >= spans[0][1]:  # none before the first value: each follows its value
        ends = [s for s, _ in spans[1:]] + [2**62]
        gaps = [_within(times, end, bound) for (_, end), bound in zip(spans, ends, strict=True)]
    elif times[-1].end <= spans[-1][0]:  # none after the last: each precedes its value
        starts = [0] + [end for _, end in spans[:-1]]
        gaps = [
            _within(times, after, start) for after, (start, _) in zip(starts, spans, strict=True)
        ]
    else:
        return none
    if any(len(gap) != 1 for gap in gaps):
        return none
    return [gap[0].seconds for gap in gaps]


def _within(times: list[Mention], start: int, end: int) -> list[Mention]:
    return [t for t in times if start <= t.start < end]


def in_clauses(
    sentence: str, times: list[Mention], spans: list[tuple[int, int]]
) -> list[float | None]:
    """:func:`pair` clause by clause: a time goes with the values of its own clause."""
    found: list[float | None] = [None] * len(spans)
    bounds = [0, *(m.end() for m in _CLAUSE.finditer(sentence)), len(sentence) + 1]
    for start, end in itertools.pairwise(bounds):
        inside = [i for i, (at, _) in enumerate(spans) if start <= at < end]
        if inside and not _RESPECTIVELY.search(sentence, start, end):
            clause = [t for t in times if start <= t.start < end]
            for i, value in zip(inside, pair(clause, [spans[i] for i in inside]), strict=True):
                found[i] = value
    return found


@dataclasses.dataclass(frozen=True)
class Column:
    """A table's column of times after the trigger: where its header stands, its unit."""

    index: int
    start: int
    end: int
    count: int  # the header's cells
    unit: str | None


def column(line: str) -> Column | None:
    """The times column a header line names ("UT   T-T0 (hr)   Filter   Mag"), else None."""
    line = _spread(line)
    cells = list(_CELLS.finditer(line))
    if any(_NUMBER.search(c.group()) for c in cells):
        return None  # a row of numbers, not a header
    for match in _COLUMN.finditer(line):
        if not (_GAP.search(line[: match.start()]) and _GAP_AFTER.match(line, match.end())):
            continue  # a word in a sentence ("the time since ...")
        index = next(i for i, c in enumerate(cells) if c.start() <= match.start() < c.end())
        return Column(index, match.start(), match.end(), len(cells), match["unit"])
    return None


def cell_time(line: str, header: Column) -> float | None:
    """Seconds in the row ``line`` under ``header``: the cell at its index when the row has as
    many cells, else the one cell under it; a number, with its own unit or the header's."""
    line = _spread(line)
    cells = list(_CELLS.finditer(line))
    if len(cells) == header.count:
        under = [cells[header.index]]
    else:
        under = [c for c in cells if c.start() < header.end and header.start < c.end()]
    value = _CELL.fullmatch(under[0].group()) if len(under) == 1 else None
    return None if value is None else seconds(value["n"], value["unit"] or header.unit)


def _spread(line: str) -> str:
    """A table line with its tabs and bars as spaces, each character where it was shown."""
    return line.expandtabs().replace("|", " ")


class Clock:
    """The times of a circular's values, read unit by unit in order; a table's header holds
    for its rows until the paragraph ends."""

    def __init__(self, body: str) -> None:
        self.body = body
        self.header: Column | None = None
        self.last = 0  # offset of the unit read last

    def read(self, offset: int, sentence: str) -> None:
        """Note a unit (every one, in order): a header line starts a times column."""
        if offset < 0:
            return
        if _BREAK.search(self.body, self.last, offset):
            self.header = None
        self.last = offset
        if _COLUMN.search(sentence) and self._is_line(offset, sentence):
            self.header = column(self._line(offset)) or self.header

    def times(self, offset: int, sentence: str, spans: list[tuple[int, int]]) -> list[float | None]:
        """Seconds after the trigger of the values at ``spans`` in the unit at ``offset``."""
        said = mentions(sentence) if spans else []
        if said or self.header is None or offset < 0 or not self._is_line(offset, sentence):
            return in_clauses(sentence, said, spans)
        return [cell_time(self._line(offset), self.header)] * len(spans)

    def _is_line(self, offset: int, sentence: str) -> bool:
        """Is the unit at ``offset`` a whole table line (not a sentence)?"""
        return self._line(offset).strip() == sentence

    def _line(self, offset: int) -> str:
        start = self.body.rfind("\n", 0, offset) + 1
        end = self.body.find("\n", offset)
        return self.body[start : end if end >= 0 else len(self.body)]
