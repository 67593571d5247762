"""Prompt injection and jailbreak attempts in a question or a passage: a documented rule set.

**Why rules, not a packaged model.** The issue asks for a maintained detector that runs
offline on CPU if one installs from a package registry *with its model inside*. The
maintained ones do not: ``llm-guard`` (Protect AI) ships 137 kB of code and fetches its
DeBERTa classifier from a model hub at first use, which this project never does at run time;
the rest on PyPI are either API clients (``rebuff``, ``lakera``), need an LLM, or are
unmaintained one-author packages with no track record. So this module is a rule set, each
rule named (the name is what a :class:`~gcn_rag.guardrails.policy.Hit` records as
``safety.<rule>``), measured by ``benchmarks/guardrails.py`` on the labeled set in
``benchmarks/data/guardrails_eval.jsonl``.

**How a text is read.** Rules over words run on a *normalized* copy: NFKC, zero-width
characters dropped, Cyrillic/Greek look-alikes mapped to Latin, lower case, leetspeak
undone inside words (``1gn0re``), spaced-out letters joined (``i g n o r e``), and every
run of punctuation made one space, so an instruction split across sentences or lines
(``Ignore. All. Previous. Instructions.``) reads as one phrase. Rules over markup (chat
template tokens, fake ``system`` headers, exfiltration links) run on the raw text. Encoded
payloads are decoded (base64, hex, ``%xx``, ``\\xNN``, rot13, reversed text) and the
decoded text is scanned again: a hit there is rule ``encoded``.

**Rules** (first hit names the decision):

- ``override`` — ignore / disregard / forget / bypass + the instructions, rules, guidelines,
  system prompt or "everything above";
- ``new_instructions`` — "from now on you…", "your new task is", "instead, reply…",
  "respond only with…";
- ``roleplay`` — personas and modes that shed the rules (DAN, "developer mode", "pretend
  you are…", "act as an unrestricted…", "no ethical guidelines", "stay in character");
- ``extraction`` — asking for the system prompt or hidden instructions, or for the text
  above to be repeated;
- ``addressing_ai`` — a passage speaking to the model ("note to the AI", "if you are a
  language model…", "tell the user that…");
- ``delimiter`` — chat-template tokens and fake role headers (``<|im_start|>``,
  ``[INST]``, ``<<SYS>>``, ``### System:``, ``</context>``);
- ``exfiltration`` — markdown images or links that carry data out, "send … to http…";
- ``multilingual`` — the override and extraction phrases in French, German, Spanish,
  Italian, Portuguese, Dutch, Polish, Russian, Chinese and Japanese;
- ``encoded`` — any of the above inside a decoded payload.

**What is not flagged.** Astronomy uses "ignore", "previous", "system" and "prompt"
(``prompt emission``) all the time, and circulars correct each other ("please disregard the
position given in GCN 12345"): the object of an override must be instructions, rules or a
*system* prompt, never a position, a circular or the prompt emission.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
import urllib.parse

from gcn_rag.guardrails.literals import (
    folded,
    may_match,
    minimal,
    required,
    union_needs,
    word_needs,
)

_I = (
    "instructions?|directions|directives?|guidelines?|rules?|commands?|orders?|programming|"
    "restrictions?"
)
_NOUN = (
    rf"(?:{_I}|constraints?|guardrails?|polic(?:y|ies)|safeguards?|filters?|training|"
    r"system (?:prompt|message)s?|(?:your|the|my|initial|original|previous|prior|hidden|above) "
    r"prompts?\b(?! (?:emission|phase|gamma|optical|x ?ray|radio|flash|pulse|peak|light|spike|"
    r"episode|component|duration|spectrum|counterpart))|everything (?:above|before|else|you)|"
    r"all (?:of )?(?:the )?above|what you (?:were|have been) (?:told|given)|your (?:role|persona))"
)
_VERB = r"(?:ignore|ignoring|disregard|forget|bypass|override|overrule|skip|drop|abandon|discard)"
_WORD_RULES: tuple[tuple[str, str], ...] = (
    ("override", rf"\b{_VERB}\b(?: \w+){{0,5}}? {_NOUN}"),
    ("override", rf"\b(?:do not|don t|never) (?:follow|obey|apply|respect) (?:\w+ ){{0,3}}{_NOUN}"),
    ("override", r"\b(?:stop|quit) (?:following|obeying) (?:\w+ ){0,3}(?:" + _I + ")"),
    (
        "new_instructions",
        r"\bfrom now on\b(?: \w+){0,2} (?:you|your|respond|reply|answer|act|only|always)\b|"
        r"\byour (?:new|real|actual|true) (?:task|role|goal|job|instructions?|purpose|"
        r"mission)\b|"
        r"\bnew (?:instructions?|rules|task|directive) (?:are|is|follow|below)\b|"
        r"\binstead (?:\w+ ){0,2}(?:say|reply|respond|answer|output|print|write) "
        r"(?:only|with|that)\b|\b(?:respond|reply|answer) (?:only )?with (?:only )?"
        r"(?:the word|yes|no|ok|pwned|hacked)\b|\b(?:say|print|output|write) (?:only )?"
        r"(?:the (?:word|phrase) )?(?:pwned|hacked|i have been)",
    ),
    (
        "roleplay",
        r"\b(?:dan|stan|dude|aim)\b (?:\w+ ){0,4}(?:mode|anything now|prompt|jailbreak)|"
        r"\bdo anything now\b|\bjailbr(?:eak|oken)|\b(?:developer|god|debug|sudo|admin|"
        r"unrestricted|evil|opposite|chaos|unfiltered) mode\b|"
        r"\bpretend (?:that )?(?:you are|you re|to be)\b|"
        r"\b(?:act|behave|respond|roleplay|role play) as (?:if you (?:are|were) )?(?:an? |my )?"
        r"(?:\w+ ){0,2}(?:unrestricted|unfiltered|uncensored|evil|rogue|jailbroken|amoral|"
        r"unethical|different|new|hacker|ai without|assistant without|grandma|deceased)|"
        r"\byou are (?:now|no longer)\b (?:\w+ ){0,3}(?:free|unrestricted|unfiltered|uncensored|"
        r"bound|limited|restricted|an? (?:ai|assistant|model|chatbot) (?:without|that|with no)|"
        r"dan|evil|jailbroken|developer)|\b(?:without|no|free of|free from) (?:any )?"
        r"(?:ethical|moral|safety|content) (?:guidelines|constraints|restrictions|limits|"
        r"filters|rules)|"
        r"\bstay in character\b|\bhypothetical (?:ai|model|assistant) (?:with no|without)\b|"
        r"\b(?:without|no|ignore all) (?:any )?(?:restrictions|limitations|censorship)\b",
    ),
    (
        "extraction",
        r"\b(?:reveal|show|print|repeat|output|display|dump|leak|expose|disclose|share|tell me|"
        r"give me|recite|spell out|copy|translate|summari[sz]e|paste|list|what (?:is|are|were)|"
        r"write out)"
        r" (?:\w+ ){0,4}(?:your|the|its|this) (?:\w+ ){0,2}(?:system|initial|original|hidden|"
        r"secret|internal|developer|pre ?prompt|confidential) ?(?:prompts?|instructions|message|"
        r"rules|guidelines|configuration)|\b(?:repeat|print|output|return) (?:\w+ ){0,3}"
        r"(?:text|words|everything|all) (?:\w+ ){0,2}(?:above|before this|preceding)|"
        r"\bwhat (?:were|are) your (?:instructions|rules|guidelines)\b|"
        r"\bwhat (?:were|have) you (?:been )?told\b|"
        r"\bbeginning of (?:the|this|your) (?:conversation|prompt|context)\b",
    ),
    (
        "addressing_ai",
        r"\b(?:note|message|instructions?|attention|reminder) (?:to|for) (?:the |any |all )?"
        r"(?:ai|llm|language model|assistant|chatbot|model|gpt|agent)s?\b|\bif you are an? (?:ai|"
        r"llm|language model|large language model|assistant|chatbot|gpt|agent)\b|"
        r"\b(?:ai|llm|language model|assistant|chatbot)s? (?:\w+ ){0,2}(?:must|should|shall|are "
        r"instructed to|need to) (?:now )?(?:ignore|say|tell|answer|reply|respond|output|report|"
        r"state|claim|include|add|insert)\b|\b(?:tell|inform|convince|remind) the (?:user|reader|"
        r"human|person)s? (?:that|to)\b|\bwhen (?:summari[sz]ing|answering|asked)\b (?:\w+ ){0,6}"
        r"(?:always|instead|must) (?:say|state|claim|answer|reply|report|include)\b",
    ),
    (
        "multilingual",
        r"\b(?:ignore[zrs]?|oublie[zr]?|ne tiens pas compte)\b(?: \w+){0,3}? (?:les|tes|vos|"
        r"des|toutes|tous|ces)(?: \w+)? (?:instructions?|consignes|r[eè]gles|directives)\b|"
        r"\bignorier(?:e|en)?\b(?: \w+){0,4} (?:anweisungen|"
        r"anordnungen|regeln|befehle|vorgaben|instruktionen)\b|\bvergiss\b(?: \w+){0,4} "
        r"(?:anweisungen|regeln|befehle|vorgaben)|\b(?:ignora|olvida|olvídate de|ignore|esque[cç]a)"
        r"\b(?: \w+){0,4} (?:instrucciones|instru[cç][oõ]es|istruzioni|reglas|regras|regole|"
        r"indicaciones)\b|\bdimentica\b(?: \w+){0,4} (?:istruzioni|regole)|\bnegeer\b(?: \w+){0,4}"
        r" (?:instructies|regels|aanwijzingen)|\b(?:zignoruj|ignoruj|zapomnij)\b(?: \w+){0,4} "
        r"(?:instrukcje|polecenia|zasady|regu[lł]y)|(?:игнорируй|проигнорируй|забудь|не обращай "
        r"внимания на)(?: \w+){0,4} (?:инструкции|указания|правила|команды)|"
        r"(?:忽略|无视|忘记|忘掉|不要理会)\s?(?:之前|以上|前面|上面|先前|所有|你的)?"
        r"\s?(?:的)?\s?(?:所有)?\s?(?:指令|指示|说明|规则|提示)|"
        r"(?:以前|前|上記|これまで)の(?:指示|命令|ルール)を(?:無視|忘れ)|"
        r"(?:r[ée]v[èe]le|montre|affiche|zeige|verrate|muestra|revela|mostra|mostre)\b"
        r"(?: \w+){0,3} "
        r"(?:prompt syst[èe]me|systemprompt|system prompt|prompt del sistema|prompt do sistema)",
    ),
)
_RAW_RULES: tuple[tuple[str, str], ...] = (
    (
        "delimiter",
        r"<\|(?:im_start|im_end|system|user|assistant|endoftext|eot_id|start_header_id)\|>|"
        r"\[/?INST\]|<</?SYS>>|(?im:^\s*#{2,}\s*(?:system|instruction|new instructions?)\b)|"
        r"(?i:</?(?:system|instructions?|context|documents?)>)|(?im:^\s*system\s*(?:prompt)?:\s)|"
        r"(?i:\bend of (?:context|document|passage|input)\b)",
    ),
    (
        "exfiltration",
        r"!\[[^\]]*\]\(https?://[^)\s]*[?&][^)\s]*=|(?i:\b(?:send|post|forward|upload|exfiltrate|"
        r"email|leak|append)\b (?:\w+ ){0,3}(?:conversation|chat|history|answers?|passages|"
        r"documents|context|prompt|password|credentials|keys?|tokens?|secrets?|data)\b"
        r"[^.\n]{0,40}\b(?:to|at)\s+(?:https?://|\S+@\S+\.\w+))",
    ),
)
# each word rule with the whole words (or strings) one of which a text needs before the rule
# can match, and the ASCII ones (all an ASCII text holds)
_WORDS = [(name, re.compile(rule), word_needs(rule)) for name, rule in _WORD_RULES]
_ASCII_NEEDS = [needed.ascii() for _, _, needed in _WORDS]
_ALL_NEEDS = [needed for _, _, needed in _WORDS]
# a decoded copy seldom trips a rule: one gate for all rules (ASCII: so are the copies), read
# reversed (_encoded) and as the rot13 gate reads them (_rot13_gate)
_COPY_NEEDS = union_needs(_ASCII_NEEDS)
_BACKWARDS_NEEDS = _COPY_NEEDS.mapped(lambda s: s[::-1])
_LEET_PAIRS = str.maketrans("bvrnfgy", "oieastl")  # rot13 partners of the leet letters
_ROT13_NEEDS = _COPY_NEEDS.mapped(lambda s: s.translate(_LEET_PAIRS))
_ROT13_GATE = str.maketrans(
    "abcdefghijklmnopqrstuvwxyz",
    codecs.encode("abcdefghijklmnopqrstuvwxyz", "rot13").translate(_LEET_PAIRS),
)
# raw rules with the lower-case literals one of which an ASCII text's lower case needs
_RAW = [(name, re.compile(rule), minimal(required(rule, fold=True))) for name, rule in _RAW_RULES]
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u200e\u200f\u2060\u00ad\ufeff"))
_LOOKALIKE = str.maketrans("аеорсхуіјѕԁɡοαεικνρτυχ", "aeopcxyijsdgoaeiknptux")
_LOOKALIKES = re.compile("[аеорсхуіјѕԁɡοαεικνρτυχ]")
_WORD = re.compile(r"\w+")
_LEET = str.maketrans("013457@$!|", "oieastasil")
_LEET_WORD = re.compile(r"\b(?=[\w@$!|]*[a-z])(?=[\w@$!|]*[0-9@$!|])[\w@$!|]+")
_LEET_CHAR = re.compile(r"[0-9@$!|]")  # a leet word has one: without it, nothing to undo
_LEET_SYMBOL = re.compile(r"[@$!|]")
_SPACED = re.compile(r"\b(?:\w[ .\-_*]){3,}\w\b")
# _SPACED from its first separator on, for a text without "_" (see _normalize_ascii)
_SPACED_AFTER = re.compile(r"[ .\-*](?<=(?<!\w)\w[ .\-*])(?:\w[ .\-*]){2,}\w\b")
_SPACED_HINT = re.compile(r"[ .\-_*]\w[ .\-_*]\w[ .\-_*]")  # in every _SPACED match
_ASCII = [chr(i) for i in range(128)]
_ASCII_BREAKS = str.maketrans({c: " " for c in _ASCII if not re.match(r"\w", c)})
_SHAPES = str.maketrans(
    {c: "a" if c.islower() else "1" if c in "0123456789@$!|" else " " for c in _ASCII}
)
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
_HEX = re.compile(r"(?:(?:\\x|0x)?[0-9a-fA-F]{2}[\s:,]?){8,}")
_HEX_RUN = re.compile(r"[0-9a-fA-Fx\\\s:,]{16,}")  # what every _HEX match is made of
# an ASCII text's characters read as in (x) or out of (.) the class of the _BASE64 and
# _HEX_RUN runs: both need 16 in a row (see _run)
_BASE64_RUN = str.maketrans({c: "x" if re.match(r"[A-Za-z0-9+/_-]", c) else "." for c in _ASCII})
_HEX_RUN_CHARS = str.maketrans(
    {c: "x" if re.match(r"[0-9a-fA-Fx\\\s:,]", c) else "." for c in _ASCII}
)


def find_injection(text: str) -> list[str]:
    """The names of the rules ``text`` trips (empty when it looks like an ordinary text)."""
    lowered = folded(text)
    found = [
        name
        for name, rule, needed in _RAW
        if (lowered is None or may_match(needed, lowered)) and rule.search(text)
    ]
    words = normalize(text)
    vocabulary = _vocabulary(words)
    found += _scan(words, vocabulary)
    if not found and _encoded(text, words, vocabulary):
        found.append("encoded")
    return list(dict.fromkeys(found))


def _encoded(text: str, words: str, vocabulary: set[str]) -> bool:
    """Whether a decoded copy of ``text`` (see :func:`_decodings`) trips a word rule.

    For an ASCII text, the rot13 and reversed copies are not normalized again unless they
    could trip one: normalizing an ASCII text commutes with reversing it when it holds no
    leet symbol (``@$!|``: a word boundary then depends on the reading direction), so its
    reversed copy reads ``words[::-1]``, whose words are ``vocabulary``'s reversed (the
    gate reads them as they are, its needs reversed); and see :func:`_rot13_gate`."""
    if not text.isascii():
        return any(_scan(normalize(decoded)) for decoded in _decodings(text))
    if _LEET_SYMBOL.search(text):
        backwards = normalize(text[::-1])
        if _COPY_NEEDS.hold(_vocabulary(backwards), backwards) and _scan(backwards):
            return True
    elif _BACKWARDS_NEEDS.hold(vocabulary, words) and _scan(words[::-1]):
        return True
    if _rot13_gate(words) and _scan(normalize(codecs.encode(text, "rot13"))):
        return True
    return any(_scan(normalize(decoded)) for decoded in _decodings(text, whole=False))


def _rot13_gate(words: str) -> bool:
    """False only when no word rule can match the normalized rot13 copy of an ASCII text
    whose normalized copy is ``words``.

    Normalizing an ASCII text and its rot13 copy keep the same characters at the same places
    (lower case, leet words, spaced letters and word breaks do not depend on which letter a
    letter is), except that a letter undone from leet (``0`` -> ``o``) is the same in both
    where any other letter is its rot13: so ``words`` rot13'd, with each leet letter and its
    rot13 partner read as one (``_ROT13_GATE``), holds every word and string the rot13 copy
    holds, read the same way (``_ROT13_NEEDS``)."""
    gate = words.translate(_ROT13_GATE)
    return _ROT13_NEEDS.hold(_vocabulary(gate), gate)


def _vocabulary(words: str) -> set[str]:
    """The words of a normalized text (what :class:`WordNeeds` tests first)."""
    return set(words.split(" "))


def normalize(text: str) -> str:
    """The copy word rules read: see the module docstring."""
    return _normalize_ascii(text.lower()) if text.isascii() else _normalize_any(text)


def _normalize_any(text: str) -> str:
    """:func:`normalize` step by step, for any text."""
    text = unicodedata.normalize("NFKC", text).translate(_ZERO_WIDTH).lower()
    if _LOOKALIKES.search(text):
        text = _WORD.sub(_unmix, text)
    if _LEET_CHAR.search(text):
        text = _LEET_WORD.sub(_unleet_word, text)
    text = _SPACED.sub(_unspace, text)
    return " ".join(re.findall(r"\w+", text))


def _normalize_ascii(text: str) -> str:
    """:func:`normalize` of a lower-case ASCII text, the same steps faster: NFKC, zero-width
    characters and look-alikes leave ASCII as it is; leet words are undone run by run
    (:func:`_unleet`); letters are joined only where two single characters stand between
    separators (``_SPACED_HINT``, in every match), and without ``_`` (then no separator is a
    word character) by ``_SPACED_AFTER``, which finds the same runs less its first letter,
    starting at a separator (the engine skips to one); and an ASCII non-word character is a
    word break, so the words are ``split`` after one ``translate``."""
    if "_" in text:  # a word character and a separator: the general path
        text = _LEET_WORD.sub(_unleet_word, text) if _LEET_CHAR.search(text) else text
        text = _SPACED.sub(_unspace, text) if _SPACED_HINT.search(text) else text
    else:
        text = _unleet(text)
        text = _SPACED_AFTER.sub(_unspace, text) if _SPACED_HINT.search(text) else text
    return " ".join(text.translate(_ASCII_BREAKS).split())


def _unleet(text: str) -> str:
    """``_LEET_WORD`` undone in a lower-case ASCII text without ``_``.

    A leet word lies in a maximal run of ``[\\w@$!|]`` holding a letter and one of
    ``0-9@$!|``; without ``_``, such a run has the two side by side (``_SHAPES``: a letter
    reads ``a``, the others ``1``, anything else a space). Only those runs are searched,
    each alone: a run is bounded by non-word characters, so ``\b`` reads the same there."""
    shape = text.translate(_SHAPES)
    starts = sorted({*_finds(shape, "a1"), *_finds(shape, "1a")})
    if not starts:
        return text
    pieces, done = [], 0
    for at in starts:
        if at < done:
            continue
        start, end = shape.rfind(" ", 0, at) + 1, shape.find(" ", at)
        end = len(text) if end < 0 else end
        pieces += [text[done:start], _LEET_WORD.sub(_unleet_word, text[start:end])]
        done = end
    return "".join([*pieces, text[done:]])


def _finds(text: str, part: str) -> list[int]:
    found, at = [], text.find(part)
    while at >= 0:
        found.append(at)
        at = text.find(part, at + 1)
    return found


def _unleet_word(match: re.Match[str]) -> str:
    return match.group().translate(_LEET)


def _unspace(match: re.Match[str]) -> str:
    return re.sub(r"[ .\-_*]", "", match.group())


def _unmix(match: re.Match[str]) -> str:
    """A word that mixes Latin letters with Cyrillic or Greek look-alikes ("ignore" spelled
    with a Cyrillic i, o and e) in Latin letters; a Russian or Greek word as it is."""
    word = match.group()
    if re.search("[a-z]", word) and _LOOKALIKES.search(word):
        return word.translate(_LOOKALIKE)
    return word


def _scan(words: str, vocabulary: set[str] | None = None) -> list[str]:
    """The word rules a normalized text trips (``vocabulary``: its words, if known)."""
    needs = _ASCII_NEEDS if words.isascii() else _ALL_NEEDS
    vocabulary = _vocabulary(words) if vocabulary is None else vocabulary
    return [
        name
        for (name, rule, _), needed in zip(_WORDS, needs, strict=True)
        if needed.hold(vocabulary, words) and rule.search(words)
    ]


def _decodings(text: str, whole: bool = True) -> list[str]:
    """What ``text`` may hide: base64 and hex runs decoded, %xx unquoted, and (``whole``)
    rot13 and reversed."""
    out = [codecs.encode(text, "rot13"), text[::-1]] if whole else []
    if "%" in text:
        out.append(urllib.parse.unquote(text))
    ascii = text.isascii()
    for match in _BASE64.finditer(text) if not ascii or _run(text, _BASE64_RUN) else ():
        raw = match.group()
        try:
            out.append(_printable(base64.b64decode(raw + "=" * (-len(raw) % 4), altchars=b"-_")))
        except (binascii.Error, ValueError):
            continue
    hex_run = _run(text, _HEX_RUN_CHARS) if ascii else _HEX_RUN.search(text)
    for match in _HEX.finditer(text) if hex_run else ():
        digits = re.sub(r"\\x|0x|[\s:,]", "", match.group())
        try:
            out.append(_printable(bytes.fromhex(digits)))
        except ValueError:
            continue
    return [t for t in out if t]


def _run(text: str, table: dict[int, str]) -> bool:
    """Whether an ASCII text has 16 characters of a class in a row (``table`` reads each of
    them ``x``, anything else ``.``): one ``translate`` and one ``in``, not a pattern tried
    at every character."""
    return "x" * 16 in text.translate(table)


def _printable(data: bytes) -> str:
    """``data`` as text when it reads as text (UTF-8, few control characters), else ''."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return ""
    readable = sum(ch.isprintable() or ch.isspace() for ch in text)
    return text if text and readable >= 0.95 * len(text) else ""
