"""An endpoint's guardrails config, validated, and the one call the serving path makes.

The config is Databricks' ``ai_gateway.guardrails`` shape::

    {"input":  {"pii": {"behavior": "MASK"}, "safety": true,
                "invalid_keywords": ["..."], "valid_topics": ["..."]},
     "output": {"pii": {"behavior": "BLOCK"}}}

``pii.behavior`` is ``NONE`` (off), ``MASK`` (each finding replaced by a typed placeholder
such as ``[EMAIL]``) or ``BLOCK`` (the request answered 400). ``safety``, a keyword or an
off-topic question always block. Every decision is a :class:`Hit` (stage, rule, behavior,
never the matched text), which the inference table and ``/metrics`` record.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from gcn_rag.errors import BadInputError
from gcn_rag.guardrails.injection import find_injection
from gcn_rag.guardrails.pii import find_pii
from gcn_rag.guardrails.topics import find_keywords, on_topic

STAGES = ("input", "output")
BEHAVIORS = ("NONE", "BLOCK", "MASK")
_FIELDS = ("pii", "safety", "invalid_keywords", "valid_topics")


class GuardrailError(BadInputError):
    """A guardrail refused a request (400, with which rule and on which side)."""

    error_code = "GUARDRAIL_TRIGGERED"


@dataclasses.dataclass(frozen=True)
class Hit:
    """One guardrail decision: ``stage`` (input/output), ``rule`` (``pii.email``,
    ``safety.override``, ``invalid_keywords``, ``valid_topics``…) and ``behavior`` (MASK or
    BLOCK); or a retrieved passage kept from the LLM, ``("passage", "safety.<rule>",
    "WITHHELD")`` (see :func:`gcn_rag.serving.guarding.withheld_hits`)."""

    stage: str
    rule: str
    behavior: str

    @property
    def code(self) -> str:
        """``GUARDRAIL_<STAGE>_<BEHAVIOR>:<rule>``, as the inference table records it."""
        return f"GUARDRAIL_{self.stage.upper()}_{self.behavior}:{self.rule}"


@dataclasses.dataclass(frozen=True)
class Verdict:
    """A text after its guardrails: masked if asked, what was found, why it is blocked."""

    text: str
    hits: tuple[Hit, ...] = ()
    blocked: str | None = None  # the message for the caller, if refused


@dataclasses.dataclass(frozen=True)
class StageRules:
    """The rules of one side (input or output)."""

    pii: str = "NONE"
    safety: bool = False
    invalid_keywords: tuple[str, ...] = ()
    valid_topics: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return self.pii != "NONE" or self.safety or bool(self.invalid_keywords or self.valid_topics)


def normalize_guardrails(raw: Any) -> dict[str, Any]:
    """Validate ``ai_gateway.guardrails`` and fill what was left out; 400 naming the field."""
    if not isinstance(raw, dict):
        raise BadInputError("guardrails must be a JSON object with 'input' and/or 'output'.")
    unknown = sorted(set(raw) - set(STAGES))
    if unknown:
        raise BadInputError(f"Unknown guardrails side(s) {unknown}; known: input, output.")
    return {stage: _stage(stage, raw[stage]) for stage in STAGES if raw.get(stage) is not None}


def _stage(stage: str, raw: Any) -> dict[str, Any]:
    where = f"guardrails.{stage}"
    if not isinstance(raw, dict):
        raise BadInputError(f"{where} must be a JSON object.")
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise BadInputError(f"Unknown field(s) {unknown} in {where}; known: {', '.join(_FIELDS)}.")
    out: dict[str, Any] = {}
    pii = raw.get("pii")
    if pii is not None:
        behavior = pii.get("behavior", "NONE") if isinstance(pii, dict) else None
        if not isinstance(behavior, str) or behavior.upper() not in BEHAVIORS:
            raise BadInputError(f"{where}.pii.behavior must be one of {', '.join(BEHAVIORS)}.")
        out["pii"] = {"behavior": behavior.upper()}
    if raw.get("safety") is not None:
        if not isinstance(raw["safety"], bool):
            raise BadInputError(f"{where}.safety must be true or false.")
        out["safety"] = raw["safety"]
    for field in ("invalid_keywords", "valid_topics"):
        values = raw.get(field)
        if values is None:
            continue
        if not isinstance(values, list) or not all(
            isinstance(v, str) and v.strip() for v in values
        ):
            raise BadInputError(f"{where}.{field} must be a list of non-empty strings.")
        out[field] = [v.strip() for v in values]
    return out


class Guardrails:
    """The rules of one endpoint, applied to a question (input) or an answer (output)."""

    def __init__(
        self,
        input: StageRules,
        output: StageRules,
        is_token: Callable[[str], bool] | None = None,
    ) -> None:
        self.rules = {"input": input, "output": output}
        self.is_token = is_token

    @classmethod
    def from_config(
        cls, config: dict[str, Any] | None, is_token: Callable[[str], bool] | None = None
    ) -> Guardrails | None:
        """The guardrails of a normalized config, or None when no rule is on."""
        sides = {}
        for stage in STAGES:
            raw = (config or {}).get(stage) or {}
            sides[stage] = StageRules(
                pii=(raw.get("pii") or {}).get("behavior", "NONE"),
                safety=bool(raw.get("safety", False)),
                invalid_keywords=tuple(raw.get("invalid_keywords") or ()),
                valid_topics=tuple(raw.get("valid_topics") or ()),
            )
        if not any(side.active for side in sides.values()):
            return None
        return cls(sides["input"], sides["output"], is_token)

    def check(self, stage: str, text: str) -> Verdict:
        """``text`` after the ``stage`` rules (see the module docstring)."""
        rules = self.rules[stage]
        hits: list[Hit] = []
        if rules.pii != "NONE":
            spans = find_pii(text, self.is_token)
            hits += [Hit(stage, f"pii.{kind}", rules.pii) for kind in _kinds(spans)]
            if spans and rules.pii == "BLOCK":
                kinds = ", ".join(_kinds(spans))
                return Verdict(text, tuple(hits), f"The {stage} contains personal data ({kinds}).")
            for span in reversed(spans):
                text = f"{text[: span.start]}[{span.kind.upper()}]{text[span.end :]}"
        blocked = self._blocking(stage, rules, text)
        if blocked is not None:
            hit, message = blocked
            return Verdict(text, (*hits, hit), message)
        return Verdict(text, tuple(hits))

    def _blocking(self, stage: str, rules: StageRules, text: str) -> tuple[Hit, str] | None:
        if rules.safety and (found := find_injection(text)):
            return Hit(stage, f"safety.{found[0]}", "BLOCK"), (
                f"The {stage} looks like an attempt to override the assistant's instructions."
            )
        if found := find_keywords(text, list(rules.invalid_keywords)):
            return Hit(stage, "invalid_keywords", "BLOCK"), (
                f"The {stage} contains a blocked keyword ({found[0]})."
            )
        if stage == "input" and not on_topic(text, list(rules.valid_topics)):
            return Hit(stage, "valid_topics", "BLOCK"), (
                "The question is not about this endpoint's topics: "
                + "; ".join(rules.valid_topics)
                + "."
            )
        return None


def _kinds(spans: list[Any]) -> list[str]:
    return list(dict.fromkeys(span.kind for span in spans))
