"""Answering files of questions: predictions for a JSONL file, and an evaluation run.

``gcn-rag predict`` and ``gcn-rag eval`` (and ``gcn-rag model log``, which evaluates before it
logs) are thin over these calls. Prediction files are written in one rename at the end, so an
interrupted run leaves no half file.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gcn_rag.answer.evaluation import (
    BenchItem,
    CategoryScore,
    flat_metrics,
    score,
    write_history,
)
from gcn_rag.errors import BadInputError
from gcn_rag.progress import SILENT, Reporter

if TYPE_CHECKING:
    from gcn_rag.answer.assistant import Assistant
    from gcn_rag.search.retrieval import Mode
    from gcn_rag.settings import Settings

#: The development question set, where the project is checked out next to ``shared/``.
DEFAULT_QUESTIONS = Path("../shared/bench/dev.jsonl")


def read_rows(path: Path) -> list[Any]:
    """The JSON values of a JSONL file; a line that is not JSON becomes ``{"id", "invalid"}``."""
    if not path.exists():
        raise BadInputError(f"{path} does not exist.")
    rows: list[Any] = []
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                rows.append({"id": f"line-{lineno}", "invalid": str(exc)})
    return rows


def write_jsonl(path: Path, records: Iterable[Any]) -> None:
    """One JSON line per record, written to a temporary file and renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    tmp.replace(path)


def predict_rows(
    assistant: Assistant,
    rows: Sequence[Any],
    *,
    k: int = 5,
    mode: Mode = "hybrid",
    event_aware: bool = True,
    on_each: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
    """One prediction record per row (``{"id", "question"}``); a bad row gets its error."""
    records = []
    for row in rows:
        records.append(assistant.predict_row(row, k=k, mode=mode, event_aware=event_aware))
        if on_each is not None:
            on_each()
    return records


def predict_items(
    assistant: Assistant, items: Sequence[BenchItem], **options: Any
) -> dict[str, dict[str, Any]]:
    """The assistant's prediction record for every item, keyed by item id (options as for
    :func:`predict_rows`)."""
    rows = [{"id": item.id, "question": item.question} for item in items]
    records = predict_rows(assistant, rows, **options)
    return {item.id: record for item, record in zip(items, records, strict=True)}


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """One retrieval mode's run over a question set."""

    mode: str
    plain: bool  # the baseline without the event-aware step
    scores: dict[str, CategoryScore]
    predictions: dict[str, dict[str, Any]]

    @property
    def label(self) -> str:
        """``hybrid``, ``lexical (plain)``, ...: how the run is named in tables."""
        return f"{self.mode}{' (plain)' if self.plain else ''}"

    @property
    def key(self) -> str:
        """``hybrid``, ``lexical-plain``, ...: how the run is named in ids and file names."""
        return f"{self.mode}{'-plain' if self.plain else ''}"

    @property
    def metrics(self) -> dict[str, float]:
        """The scores as flat MLflow metric names (``all_accuracy``, ...)."""
        return flat_metrics(self.scores)

    def save(self, path: Path, items: Sequence[BenchItem], *, keyed: bool = False) -> Path:
        """The predictions in the question file's order, as JSONL at ``path`` (``keyed``: at
        ``<stem>.<key><suffix>``, for runs of several modes); returns the file."""
        target = path.with_name(f"{path.stem}.{self.key}{path.suffix}") if keyed else path
        write_jsonl(target, [self.predictions[item.id] for item in items])
        return target


def evaluate(
    assistant: Assistant,
    items: Sequence[BenchItem],
    *,
    k: int = 5,
    mode: Mode = "hybrid",
    plain: bool = False,
    reporter: Reporter = SILENT,
    description: str = "",
) -> Evaluation:
    """Answer every item and score the answers (``plain``: without the event-aware step)."""
    task = reporter.task(description or f"Answering ({mode})", len(items))
    try:
        predictions = predict_items(
            assistant, items, k=k, mode=mode, event_aware=not plain, on_each=task.advance
        )
    finally:
        task.close()
    return Evaluation(mode, plain, score(items, predictions), predictions)


def record(
    settings: Settings,
    evaluation: Evaluation,
    *,
    run_id: str,
    questions_file: Path,
    k: int,
    index: Path,
) -> None:
    """Append an evaluation to ``rag_evaluation_history`` as run ``<run_id>-<key>``."""
    from gcn_rag.corpus.lab_tables import config_rows
    from gcn_rag.tables import Catalog

    config = {**config_rows(settings), "mode": evaluation.label, "k": str(k), "index": str(index)}
    write_history(
        Catalog.from_settings(settings),
        evaluation.scores,
        run_id=f"{run_id}-{evaluation.key}",
        questions_file=str(questions_file),
        config=config,
    )
