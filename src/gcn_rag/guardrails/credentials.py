"""Secrets in a text: bearer tokens of this server, cloud and forge access keys, private-key
blocks and JSON Web Tokens.

Each shape is the issuer's documented prefix and alphabet, so an astronomer's text (event
names, coordinates, hashes in a URL) does not look like one; a JWT counts only when its
header decodes to a JSON object naming an ``alg``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterator

from gcn_rag.guardrails.literals import folded, may_match, required

#: (name, pattern) of access keys whose prefix says who issued them.
_KEYS = (
    ("databricks", r"dapi[0-9a-f]{32}(?:-\d{1,2})?"),
    ("aws", r"(?:AKIA|ASIA|ABIA|ACCA|AIDA|AROA)[0-9A-Z]{16}"),
    ("github", r"gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{60,255}"),
    ("gitlab", r"glpat-[A-Za-z0-9_-]{20,}"),
    ("slack", r"xox[abposr]-[A-Za-z0-9-]{10,}"),
    ("stripe", r"(?:sk|rk)_live_[0-9A-Za-z]{16,}"),
    ("google", r"AIza[0-9A-Za-z_-]{35}"),
    ("openai", r"sk-(?:proj-|svcacct-|ant-api03-)?[A-Za-z0-9_-]{32,}"),
    ("huggingface", r"hf_[A-Za-z]{34}"),
)
_KEY = re.compile(
    "|".join(f"(?P<{name}>(?<![A-Za-z0-9_]){p}(?![A-Za-z0-9_]))" for name, p in _KEYS)
)
# an AWS secret key is 40 base64 characters: only next to the words that name it
_AWS_SECRET = re.compile(
    r"(?i:aws_?secret(?:_?access)?_?key|secret access key)\W{0,5}"
    r"(?P<key>(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=]))"
)
_PRIVATE_KEY = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
    r"(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|.*\Z)",
    re.S,
)
_JWT = re.compile(r"(?<![\w.-])eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*(?![\w.-])")
# another token shape that only this server can confirm (``is_token``)
_TOKEN_LIKE = re.compile(r"(?<![A-Za-z0-9_])dapi[0-9A-Za-z_-]{8,}(?![A-Za-z0-9_])")
# what a text must contain for each shape to match (most texts hold none of them)
_NEEDS = {p: required(p.pattern) for p in (_KEY, _PRIVATE_KEY, _JWT, _TOKEN_LIKE)}
_AWS_SECRET_NEEDS = required(_AWS_SECRET.pattern, fold=True)  # in an ASCII text's lower case


def find_secrets(
    text: str, is_token: Callable[[str], bool] | None = None
) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of each secret in ``text`` (they may overlap; the caller resolves).

    Any ``dapi`` + 32 hex is a secret whether or not this server issued it; another
    ``dapi…`` word is one when ``is_token`` says it is a bearer token of this server."""
    if may_match(_NEEDS[_KEY], text):
        yield from (match.span() for match in _KEY.finditer(text))
    lowered = folded(text)
    aws = lowered is None or may_match(_AWS_SECRET_NEEDS, lowered)
    for match in _AWS_SECRET.finditer(text) if aws else ():
        yield match.span("key")
    if may_match(_NEEDS[_PRIVATE_KEY], text):
        yield from (match.span() for match in _PRIVATE_KEY.finditer(text))
    for match in _JWT.finditer(text) if may_match(_NEEDS[_JWT], text) else ():
        if jwt_header_ok(match.group().split(".", 1)[0]):
            yield match.span()
    if is_token is not None and may_match(_NEEDS[_TOKEN_LIKE], text):
        for match in _TOKEN_LIKE.finditer(text):
            if is_token(match.group()):
                yield match.span()


def jwt_header_ok(part: str) -> bool:
    """Whether a JWT's first part is base64url of a JSON object that names its ``alg``."""
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        header = json.loads(raw)
    except (binascii.Error, ValueError):
        return False
    return isinstance(header, dict) and isinstance(header.get("alg"), str)
