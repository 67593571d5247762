"""The literal prefilters that let the detectors skip rules a text cannot trip: derived from
each pattern's parse tree, and never skipping a rule that would have matched."""

from __future__ import annotations

import codecs
import json
from pathlib import Path

import pytest

from gcn_rag.guardrails import credentials, injection, pii
from gcn_rag.guardrails.literals import may_match, required

EVAL = Path(__file__).parents[1] / "benchmarks" / "data" / "guardrails_eval.jsonl"


@pytest.mark.parametrize(
    ("pattern", "needed"),
    [
        (r"\b(?:ignore|forget)\b(?: \w+){0,3} rules", {" rules"}),
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
    assert all(needed for _, _, needed in injection._WORDS)
    assert all(credentials._NEEDS.values())
    assert pii._EMAIL_NEEDS and pii._IPV6_NEEDS


def _texts() -> list[str]:
    rows = [json.loads(line)["text"] for line in EVAL.read_text().splitlines() if line.strip()]
    return rows + [codecs.encode(t, "rot13") for t in rows] + [t[::-1] for t in rows]


def test_a_prefilter_never_hides_a_match() -> None:
    """Every text a rule matches holds one of that rule's literals (the eval set and its
    rot13 and reversed copies, normalized as the rules read them)."""
    hits = 0
    for text in _texts():
        words = injection.normalize(text)
        for _, rule, needed in injection._WORDS:
            if rule.search(words):
                hits += 1
                assert may_match(needed, words), (rule.pattern[:40], text)
        for pattern, needed in credentials._NEEDS.items():
            assert not pattern.search(text) or may_match(needed, text)
        assert not pii._EMAIL.search(text) or may_match(pii._EMAIL_NEEDS, text)
    assert hits > 100


def test_a_text_without_digits_is_not_scanned_for_numbers_yet_keeps_its_other_kinds() -> None:
    text = "mail jane.doe@example.org, key AKIAABCDEFGHIJKLMNOP, host fe80::1ff:fe23:4567:890a"
    assert [s.kind for s in pii.find_pii(text)] == ["email", "secret", "ip"]
    assert pii.find_pii("no digits, no at sign, nothing to find here") == []
