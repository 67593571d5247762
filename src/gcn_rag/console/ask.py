"""The Ask page, for astronomers: one search box answered by the champion through the default
endpoint (the Query page's in-process invocation, so it is counted and captured like an API
call), and, when the question names an event, the event's dossier and measurements table
(``gcn_rag.answer.dossier.build`` over the workspace's index, as ``gcn-rag event NAME``).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from gcn_rag.answer.dossier import Dossier, build
from gcn_rag.console.guard import Visit
from gcn_rag.console.pages import render
from gcn_rag.console.query import CIRCULAR_URL, ask, request_body
from gcn_rag.corpus.events import find_event_ids
from gcn_rag.errors import BadInputError
from gcn_rag.search.index import SearchIndex
from gcn_rag.serving.deploy import ENDPOINT
from gcn_rag.serving.invocations import Invocations
from gcn_rag.settings import Settings

MAX_QUESTION = 2000


class Indexes:
    """The workspace's index, loaded once and again only when the index directory changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: tuple[Path, int, SearchIndex] | None = None

    def get(self, path: Path) -> SearchIndex | None:
        """The index at ``path``, or None when there is none yet."""
        if not path.is_dir():
            return None
        stamp = path.stat().st_mtime_ns
        with self._lock:
            if self._loaded is None or self._loaded[:2] != (path, stamp):
                self._loaded = (path, stamp, SearchIndex.load(path))
            return self._loaded[2]


def dossier_view(dossier: Dossier) -> dict[str, Any]:
    """``Dossier.to_dict()`` (whose timeline links are built from circular ids) with each
    measurement's readable text and the links of measurements and status changes."""
    view = dossier.to_dict()
    for row, value in zip(view["measurements"], dossier.measurements, strict=True):
        row["text"] = value.text
        row["url"] = CIRCULAR_URL.format(row["circular_id"])
    for change in view["status"]:
        change["url"] = CIRCULAR_URL.format(change["circular_id"])
    return view


class AskPage:
    """``GET /ask`` (the box) and ``POST /ask`` (the answer, and a dossier for a named event)."""

    def __init__(self, invocations: Invocations, settings: Settings | None) -> None:
        self.invocations = invocations
        self.settings = settings
        self.indexes = Indexes()

    async def form(self, visit: Visit) -> Response:
        return render(
            visit.request, "ask.html", visit.session, question="", result=None, dossier=None
        )

    async def answer(self, visit: Visit) -> Response:
        question = " ".join(visit.form.get("question", "").split())
        if not question:
            raise BadInputError("Type a question first.")
        if len(question) > MAX_QUESTION:
            raise BadInputError(f"Questions are at most {MAX_QUESTION} characters.")
        body = request_body(question, "")
        result = await ask(self.invocations, visit.session, ENDPOINT, body)
        dossier = await run_in_threadpool(self.dossier, question)
        return render(
            visit.request,
            "ask.html",
            visit.session,
            question=question,
            result=result,
            dossier=dossier,
            endpoint=ENDPOINT,
        )

    def dossier(self, question: str) -> dict[str, Any] | None:
        """The dossier of the first event the question names, if the workspace has one."""
        events = find_event_ids(question)
        if not events or self.settings is None:
            return None
        index = self.indexes.get(self.settings.index)
        found = build(index, events[0]) if index is not None else None
        return dossier_view(found) if found is not None else None
