"""The PyFunc model's interface, described once: its input, its params, its output columns.

The MLflow signature (:func:`gcn_rag.model.packaging.signature`), the model's defaults
(:mod:`gcn_rag.pyfunc`) and a serving endpoint's OpenAPI document
(:func:`gcn_rag.serving.app.openapi_spec`) are all made from these tuples, so they cannot
drift apart. Output columns are the fields of :meth:`gcn_rag.answer.assistant.Answer.prediction`.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Field:
    name: str
    type: str  # MLflow's type name: string, long, double, boolean
    description: str
    default: Any = None


INPUT = Field("question", "string", "A question about GCN Circulars.")

PARAMS = (
    Field("k", "long", "Circulars to answer from (1-100).", 5),
    Field(
        "event_filter",
        "string",
        "Only circulars about this event (GRB 130427A, any alias) or with this prefix (GRB%).",
        "",
    ),
    Field("since", "string", "Only circulars from this ISO date on (UTC).", ""),
    Field("until", "string", "Only circulars up to this ISO date (UTC).", ""),
    Field("mode", "string", "Retrieval: hybrid, lexical or dense.", "hybrid"),
    Field(
        "generator",
        "string",
        "'' for the model's own generator; 'extractive' skips its LLM for this request.",
        "",
    ),
)

OUTPUTS = (
    Field("answer", "string", "Cited answer, or an abstention."),
    Field("sources", "string", "JSON array of the cited event ids."),
    Field("num_docs", "long", "Circulars retrieved."),
    Field("citations", "string", "JSON array of citations (circular, event, url, quote)."),
    Field(
        "generator_fallback",
        "string",
        "Why an LLM answer was replaced by the extractive one ('' if not).",
    ),
    Field(
        "measurements",
        "string",
        "JSON array of the values a value answer states (quantity, value, unit, circular_id); "
        "[] otherwise.",
    ),
    Field(
        "withheld",
        "string",
        "JSON array of the retrieved passages kept from the LLM because they carry "
        "instructions (circular_id, rules); [] otherwise.",
    ),
)

#: JSON Schema types of MLflow's type names.
JSON_TYPES = {"string": "string", "long": "integer", "double": "number", "boolean": "boolean"}


def default_params() -> dict[str, Any]:
    """Every param with its default."""
    return {param.name: param.default for param in PARAMS}


def output_columns() -> tuple[str, ...]:
    return tuple(column.name for column in OUTPUTS)


def questions_in(data: Any) -> list[Any] | None:
    """The questions of an input that is not a DataFrame: a string, a list of strings or of
    ``{"question": ...}`` records, or ``{"question": value or list}``; None for other shapes.
    """
    if isinstance(data, str):
        return [data]
    if isinstance(data, dict):
        value = data.get(INPUT.name)
        return list(value) if isinstance(value, list | tuple) else [value]
    if isinstance(data, list | tuple):
        return [q.get(INPUT.name) if isinstance(q, dict) else q for q in data]
    return None
