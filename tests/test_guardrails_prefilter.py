"""The literal prefilters that let the detectors skip rules a text cannot trip: derived from
each pattern's parse tree, and never skipping a rule that would have matched."""

from __future__ import annotations

import codecs
import json
import random
import re
from pathlib import Path

import pytest

from gcn_rag.guardrails import credentials, injection, pii
from gcn_rag.guardrails.literals import (
    ALWAYS,
    cover,
    folded,
    may_match,
    required,
    required_words,
)

EVAL = Path(__file__).parents[1] / "benchmarks" / "data" / "guardrails_eval.jsonl"


@pytest.mark.parametrize(
    ("pattern", "needed"),
    [
        # spaces are in most texts: "rules" is the shorter word
        (r"\b(?:ignore|forget)\b(?: \w+){0,3} rules", {"ignore", "forget"}),
        (
            r"\b(?:tell|inform) the (?:user|reader)s?",
            {f"{a} the {b}" for a in ("tell", "inform") for b in ("user", "reader")},
        ),
        (r"\b(?:ignore|forget)\b(?: \w+){0,3}", {"ignore", "forget"}),
        (r"from now on|your new task", {"from now on", "your new task"}),
        (r"r[eè]gles", {"regles", "règles"}),
        (r"(?:ab)+c|x{2,}yz", {"ab", "yz"}),
        (r"\d+-\d+", {"-"}),
    ],
)
def test_required_literals_of_a_pattern(pattern: str, needed: set[str]) -> None:
    assert required(pattern) == frozenset(needed)


@pytest.mark.parametrize("pattern", [r"(?i:ignore)|x", r"\w+\s\d", r"a?b*", "(?i)abc"])
def test_no_prefilter_when_nothing_literal_is_certain(pattern: str) -> None:
    assert required(pattern) is None
    assert may_match(None, "")


def test_every_word_rule_and_secret_shape_has_a_prefilter() -> None:
    assert all(needed.words and needed != ALWAYS for _, _, needed in injection._WORDS)
    assert all(credentials._NEEDS.values())
    assert pii._EMAIL_NEEDS and pii._IPV6_NEEDS


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        (r"\b(?:ignore|forget)\b(?: \w+){0,3} rules", {"ignore", "forget"}),
        (r"(?: \w+){0,3} instructions?\b", {"instruction", "instructions"}),
        # the parser moves a \b that starts every alternative in front of the alternation
        (r"\bfoo bar|\bbaz qux", {"foo", "baz"}),
        (r"\bdo anything now\b", {"anything"}),  # the rarest word, not "do" or "now"
        (r"\bsay (?:yes|no) please", {"say"}),
    ],
)
def test_required_whole_words_of_a_pattern(pattern: str, words: set[str]) -> None:
    needed = required_words(pattern)
    assert needed is not None and needed.words == frozenset(words) and not needed.strings


@pytest.mark.parametrize(
    ("pattern", "text"),
    [
        # a word the pattern does not close on both sides is not a whole word of the text
        (r"\bjailbr(?:eak|oken)", "jailbreaking"),
        (r"\bignore", "ignored all"),
        (r"ignore\b", "reignore x"),
        (r"\bignore\w* rules", "ignorefoo rules"),
        (r"\b(?:ai|llm)s?\b (?:\w+ ){0,2}must say", "ais really must say"),
        (r"\bwhat (?:is|are) your (?:system|hidden)", "what is your systematic"),
    ],
)
def test_a_word_requirement_holds_for_every_text_the_pattern_matches(
    pattern: str, text: str
) -> None:
    needed = required_words(pattern)
    assert re.search(pattern, text) and needed is not None
    assert needed.hold(set(text.split(" ")), text)


def _texts() -> list[str]:
    rows = [json.loads(line)["text"] for line in EVAL.read_text().splitlines() if line.strip()]
    return rows + [codecs.encode(t, "rot13") for t in rows] + [t[::-1] for t in rows]


def test_a_prefilter_never_hides_a_match() -> None:
    """Every text a rule matches holds one of that rule's literals (the eval set and its
    rot13 and reversed copies, normalized as the rules read them)."""
    hits = 0
    for text in _texts():
        words = injection.normalize(text)
        for _, rule, gate in injection._WORDS:
            if rule.search(words):
                hits += 1
                assert gate.hold(injection._vocabulary(words), words), (rule.pattern[:40], text)
        for pattern, needed in credentials._NEEDS.items():
            assert not pattern.search(text) or may_match(needed, text)
        assert not pii._EMAIL.search(text) or may_match(pii._EMAIL_NEEDS, text)
    assert hits > 100


def test_a_text_without_digits_is_not_scanned_for_numbers_yet_keeps_its_other_kinds() -> None:
    text = "mail jane.doe@example.org, key AKIAABCDEFGHIJKLMNOP, host fe80::1ff:fe23:4567:890a"
    assert [s.kind for s in pii.find_pii(text)] == ["email", "secret", "ip"]
    assert pii.find_pii("no digits, no at sign, nothing to find here") == []


def test_case_insensitive_parts_are_read_in_lower_case_for_an_ascii_text() -> None:
    assert required(r"(?i:\bssn\b)|SSN no") is None
    assert required(r"(?i:\bssn\b)|SSN no", fold=True) == frozenset({"ssn", "ssn no"})
    assert folded("SSN 078-05-1120") == "ssn 078-05-1120"
    assert folded("\u017fsn") is None  # (?i) matches the long s to "s": no literal test then


def test_fewer_strings_to_look_for_still_cover_every_one() -> None:
    needed = frozenset({"content filters", "content rules", "moral rules", "jailbreak"})
    keys = cover(needed, 6)
    assert keys is not None and len(keys) < len(needed)
    assert all(any(k in s for k in keys) for s in needed)
    pattern = r"(?:alpha|bravo|charlie) \d+ note"
    assert required(pattern) == frozenset({"alpha ", "bravo ", "charlie "})  # the longest
    assert required(pattern, few=True) == frozenset({" note"})  # the fewest


def _copies() -> list[str]:
    rows = [json.loads(line)["text"] for line in EVAL.read_text().splitlines() if line.strip()]
    rng = random.Random(18)
    noise = ["".join(rng.choice("aAbnz0137x_ .-*@$!|,:\n") for _ in range(12)) for _ in range(3000)]
    return rows + [t.replace("o", "0").replace("e", "3") for t in rows] + noise


def test_a_reversed_ascii_text_normalizes_to_its_normalized_copy_reversed() -> None:
    """What lets the reversed copy skip normalizing (injection._encoded)."""
    checked = 0
    for text in _copies():
        if text.isascii() and not injection._LEET_SYMBOL.search(text):
            checked += 1
            assert injection.normalize(text[::-1]) == injection.normalize(text)[::-1], text
    assert checked > 800


def test_the_rot13_gate_reads_the_rot13_copy_as_it_normalizes() -> None:
    """The rot13 gate's string is the normalized rot13 copy with each leet letter and its
    rot13 partner read as one, so a literal of the copy is always found there."""
    checked = 0
    for text in _copies():
        if text.isascii():
            checked += 1
            copy = injection.normalize(codecs.encode(text, "rot13"))
            gate = injection.normalize(text).translate(injection._ROT13_GATE)
            assert gate == copy.translate(injection._LEET_PAIRS), text
    assert checked > 2000


def test_the_copies_gate_never_hides_a_match() -> None:
    """Every rot13 or reversed copy of an ASCII text that a word rule matches passes its gate
    (other texts' copies are normalized and scanned as they are)."""
    hits = 0
    for text in filter(str.isascii, _texts()):
        for rot13, copy in ((True, codecs.encode(text, "rot13")), (False, text[::-1])):
            words = injection.normalize(copy)
            if injection._scan(words):
                hits += 1
                assert injection._COPY_NEEDS.hold(injection._vocabulary(words), words), copy
                if rot13:
                    assert injection._rot13_gate(injection.normalize(text)), copy
                elif not injection._LEET_SYMBOL.search(text):  # read off the text's own words
                    forward = injection.normalize(text)
                    vocabulary = injection._vocabulary(forward)
                    assert injection._BACKWARDS_NEEDS.hold(vocabulary, forward), copy
    assert hits > 20


def test_the_raw_rules_and_number_hints_never_hide_a_match() -> None:
    """A case-insensitive rule's lower-case literals, and the short patterns that stand in
    front of the PII patterns, hold for every text the pattern matches."""
    hints = [
        (pii._IBAN, pii._IBAN_HINT),
        (pii._CARD, pii._CARD_HINT),
        (pii._SSN, pii._SSN_HINT),
        (pii._PHONE_NANP, pii._NANP_HINT),
        (pii._PHONE_NATIONAL, pii._NATIONAL_HINT),
        (pii._IPV4, pii._IPV4_HINT),
        (pii._IPV6, pii._IPV6_HINT),
    ]
    folds = [(rule, needed) for _, rule, needed in injection._RAW] + [
        (pii._SSN_CUE, pii._SSN_CUE_NEEDS),
        (pii._PHONE_CUE, pii._PHONE_CUE_NEEDS),
        (credentials._AWS_SECRET, credentials._AWS_SECRET_NEEDS),
    ]
    hits = 0
    for text in _texts():
        for pattern, hint in hints:
            if pattern.search(text):
                hits += 1
                assert hint.search(text), (pattern.pattern[:30], text)
        lowered = folded(text)
        for pattern, needed in folds:
            if lowered is not None and pattern.search(text):
                hits += 1
                assert may_match(needed, lowered), (pattern.pattern[:30], text)
    assert hits > 100


def test_an_ascii_text_normalizes_as_the_general_path_does() -> None:
    """The ASCII path (one translate for word breaks, leet undone only in runs that mix a
    letter with a digit or symbol, letters joined only where two single characters stand
    between separators) reads every text as the step-by-step path does."""
    rng = random.Random(18)
    alphabet = "aAbnoZz0134579x_ .-*@$!|,:\n\t"
    noise = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))) for _ in range(20000)]
    for text in [*filter(str.isascii, _copies()), *noise]:
        assert injection.normalize(text) == injection._normalize_any(text), text


def test_the_run_gates_say_what_the_run_patterns_find() -> None:
    """A base64 or hex run is looked for with one translate and one ``in`` in an ASCII text:
    the answer is the pattern's, for every text."""
    rng = random.Random(18)
    alphabet = "aFgx09+/_-=\\ :,.\t\x1c\x0b!"
    noise = [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(10, 40))) for _ in range(20000)
    ]
    for text in noise + _copies():
        if text.isascii():
            base64_run = injection._run(text, injection._BASE64_RUN)
            assert base64_run == bool(injection._BASE64.search(text)), text
            hex_run = injection._run(text, injection._HEX_RUN_CHARS)
            assert hex_run == bool(injection._HEX_RUN.search(text)), text


def test_the_number_hints_read_off_a_texts_shape_say_what_the_patterns_find() -> None:
    """In an ASCII text the card, IBAN, SSN and phone hints are a few strings of its shape
    (digits ``d``, capitals ``A``): the same answer as the hint patterns, for every text."""
    rng = random.Random(18)
    alphabet = "0123456789AZaz -./:+_"
    noise = ["".join(rng.choice(alphabet) for _ in range(rng.randint(4, 30))) for _ in range(30000)]
    hints = [
        (pii._CARD_HINT, pii._CARD_SHAPES),
        (pii._IBAN_HINT, pii._IBAN_SHAPES),
        (pii._SSN_HINT, pii._SSN_SHAPES),
        (pii._NANP_HINT, pii._NANP_SHAPES),
    ]
    for text in noise + _texts():
        if text.isascii():
            shape = text.translate(pii._SHAPES)
            for hint, shapes in hints:
                assert pii._hinted(hint, shapes, text, shape) == bool(hint.search(text)), text


def test_an_ipv6_address_found_has_a_group_of_three_hex_digits_by_a_colon() -> None:
    """What lets the IPv6 pattern wait for ``_IPV6_GROUP``."""
    found = 0
    for text in [*_texts(), "fe80::1ff:fe23:4567:890a", "at 12:34:56 and ::1", "2001:db8::1"]:
        for span in pii.find_pii(text):
            if span.kind == "ip" and ":" in text[span.start : span.end]:
                found += 1
                assert pii._IPV6_GROUP.search(text[span.start : span.end]), text
    assert found >= 2
