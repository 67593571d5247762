"""An endpoint's guardrails on the invocations path: its questions, its answers, its rows.

:class:`EndpointGuards` wraps the endpoint's :class:`~gcn_rag.guardrails.policy.Guardrails`
for the shapes the serving protocol carries:

- **input**: every string value of the request's rows, in any of the four input formats
  (the ``question`` column, or the only column, and anything sent beside it), so a question
  cannot slip past under another column name. MASK rewrites the rows the model gets; BLOCK
  (or ``safety``, a keyword, an off-topic question) refuses the whole request.
- **output**: every free-text value of each prediction (``answer``, any text column of
  another model) and the ``quote`` of each citation in ``citations``. Structured columns
  (``sources``, ``num_docs``, ``measurements``, ``generator_fallback``, ``withheld``) are left
  as they are.
- **stored request**: when input PII rules are on, the request written to the inference table
  is the body as the model got it with every remaining finding masked (params, request ids,
  bodies that could not be read), whatever the request's outcome: the table never holds the
  raw value.

**withheld passages**: the model itself keeps a retrieved passage that carries instructions
from its LLM generator, whatever the endpoint's rules, and names it in its ``withheld`` column;
:func:`withheld_hits` turns those into decisions (``GUARDRAIL_PASSAGE_WITHHELD:safety.<rule>``
in the row, ``stage="passage"`` in ``/metrics``).

Circular author e-mail addresses in quoted citations: ``cited_emails="mask"`` (the default)
treats them like any e-mail address; ``"keep"`` leaves an address alone, in the answer and in
the quotes, when it occurs in one of the answer's citation quotes (it was quoted from a public
circular); any other address is masked or blocked as configured.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from gcn_rag.errors import BadInputError
from gcn_rag.guardrails.pii import find_pii
from gcn_rag.guardrails.policy import Guardrails, Hit, StageRules, Verdict
from gcn_rag.serving.protocol import Inputs

CITED_EMAILS = ("mask", "keep")
#: Prediction columns that hold no free text (ids, counts, values, our own reasons).
STRUCTURED = frozenset({"sources", "num_docs", "measurements", "generator_fallback", "withheld"})
WITHHELD = "withheld"  # the prediction column naming the passages kept from the LLM
_KEEP = "\ue000{}\ue001"  # a private-use stand-in for a kept address while the rules run
#: Citation quotes whose verdicts are kept (see :meth:`EndpointGuards._check_output`).
QUOTE_VERDICTS = 4096


@dataclasses.dataclass
class Screened:
    """What one side's rules made of a request or its predictions."""

    value: Any
    hits: list[Hit] = dataclasses.field(default_factory=list)
    blocked: str | None = None  # the message for the caller, if refused

    def add(self, hits: tuple[Hit, ...], blocked: str | None) -> None:
        self.hits.extend(hit for hit in hits if hit not in self.hits)
        if blocked is not None and self.blocked is None:
            self.blocked = blocked


class EndpointGuards:
    """One endpoint's guardrails, applied to the request shapes of the serving protocol."""

    def __init__(self, rules: Guardrails, cited_emails: str = "mask") -> None:
        self.rules = rules
        self.cited_emails = cited_emails
        self.input = rules.rules["input"].active
        self.output = rules.rules["output"].active
        self._quotes: dict[str, Verdict] = {}
        self._redactor: Guardrails | None = None
        if rules.rules["input"].pii != "NONE":  # the table never keeps what the caller's rules
            self._redactor = Guardrails(StageRules(pii="MASK"), StageRules(), rules.is_token)

    @classmethod
    def build(
        cls,
        config: dict[str, Any] | None,
        is_token: Callable[[str], bool] | None = None,
        cited_emails: str = "mask",
    ) -> EndpointGuards | None:
        """The guards of a normalized ``ai_gateway.guardrails``, or None when no rule is on."""
        rules = Guardrails.from_config(config, is_token)
        return None if rules is None else cls(rules, cited_emails)

    def screen_inputs(self, inputs: Inputs) -> Screened:
        """The rows after the input rules (as the model gets them) and what was found."""
        screened = Screened(inputs)
        if not self.input:
            return screened

        def check(text: str) -> str:
            verdict = self.rules.check("input", text)
            screened.add(verdict.hits, verdict.blocked)
            return verdict.text

        try:
            if inputs.format == "dataframe_split":  # column names are not the caller's text
                data = dict(inputs.data)
                if "data" in data:
                    data["data"] = _map_strings(data["data"], check)
            else:
                data = _map_strings(inputs.data, check)
        except RecursionError:
            raise BadInputError("The inputs are nested too deeply to read.") from None
        screened.value = Inputs(inputs.format, data)
        return screened

    def screen_predictions(self, rows: list[dict[str, Any]]) -> Screened:
        """The prediction rows after the output rules and what was found."""
        screened = Screened(rows)
        if not self.output:
            return screened
        screened.value = [self._screen_row(row, screened) for row in rows]
        return screened

    def redact(self, text: str) -> str:
        """``text`` with every finding masked, when input PII rules are on (for storage)."""
        return text if self._redactor is None else self._redactor.check("input", text).text

    @property
    def redacts(self) -> bool:
        return self._redactor is not None

    def _screen_row(self, row: dict[str, Any], screened: Screened) -> dict[str, Any]:
        citations = _json_array(row.get("citations"))
        kept = self._kept_emails(citations)
        out = dict(row)
        for key, value in row.items():
            if key in STRUCTURED or key == "citations" or not isinstance(value, str):
                continue
            out[key] = self._check_output(value, kept, screened)
        changed = False
        for citation in citations:
            if isinstance(citation, dict) and isinstance(citation.get("quote"), str):
                quote = self._check_output(citation["quote"], kept, screened, quote=True)
                changed, citation["quote"] = changed or quote != citation["quote"], quote
        if changed:  # else the column stays as the model wrote it
            as_list = isinstance(row.get("citations"), list)
            out["citations"] = citations if as_list else json.dumps(citations, ensure_ascii=False)
        return out

    def _check_output(
        self, text: str, kept: list[str], screened: Screened, quote: bool = False
    ) -> str:
        """``text`` after the output rules. A quote is a passage of the corpus, and the same
        passages recur across answers: its verdict, a function of the text and these rules
        alone, is kept (at most ``QUOTE_VERDICTS``, then forgotten all at once)."""
        for i, address in enumerate(kept):
            text = text.replace(address, _KEEP.format(i))
        verdict = self._quotes.get(text) if quote else None
        if verdict is None:
            verdict = self.rules.check("output", text)
            if quote:
                if len(self._quotes) >= QUOTE_VERDICTS:
                    self._quotes.clear()
                self._quotes[text] = verdict
        screened.add(verdict.hits, verdict.blocked)
        text = verdict.text
        for i, address in enumerate(kept):
            text = text.replace(_KEEP.format(i), address)
        return text

    def _kept_emails(self, citations: list[Any]) -> list[str]:
        """The e-mail addresses quoted from circulars, when ``cited_emails`` keeps them."""
        if self.cited_emails != "keep" or self.rules.rules["output"].pii == "NONE":
            return []
        found: dict[str, None] = {}
        for citation in citations:
            quote = citation.get("quote") if isinstance(citation, dict) else None
            if isinstance(quote, str):
                for span in find_pii(quote):
                    if span.kind == "email":
                        found[quote[span.start : span.end]] = None
        return sorted(found, key=len, reverse=True)  # longest first: no partial stand-ins


def withheld_hits(rows: list[dict[str, Any]]) -> list[Hit]:
    """One decision per injection rule of the passages the model kept from its LLM (its
    ``withheld`` column); [] for a model without the column or when it withheld nothing."""
    found = [value for row in rows if (value := row.get(WITHHELD)) and value != "[]"]
    if not found:  # the usual case: one look per row, nothing parsed
        return []
    hits: dict[Hit, None] = {}
    for value in found:
        for passage in _json_array(value):
            rules = passage.get("rules") if isinstance(passage, dict) else None
            for rule in rules if isinstance(rules, list) else ():
                hits[Hit("passage", f"safety.{rule}", "WITHHELD")] = None
    return list(hits)


def _json_array(value: Any) -> list[Any]:
    """A prediction's JSON array column (``citations``, ``withheld``) as a list, else []."""
    if isinstance(value, list):
        return [dict(c) if isinstance(c, dict) else c for c in value]
    if not isinstance(value, str) or not value.startswith("["):
        return []
    try:
        parsed = json.loads(value)
    except ValueError:
        return []
    return parsed if isinstance(parsed, list) else []


def _map_strings(value: Any, fn: Callable[[str], str]) -> Any:
    """``value`` with ``fn`` applied to every string in it (dict keys left as they are)."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, list):
        return [_map_strings(item, fn) for item in value]
    if isinstance(value, dict):
        return {key: _map_strings(item, fn) for key, item in value.items()}
    return value
