"""Asking an endpoint from the console, through the API's own invocations handler.

The console does not call the model itself: it hands the request to an
:class:`~gcn_rag.serving.invocations.Invocations` that shares the API's manager and
:class:`~gcn_rag.serving.metrics.Metrics`, with the console's sessions as its authority. So a
question asked on the page is routed, rate limited, timed, counted and captured in the
inference table exactly like one sent to ``POST /serving-endpoints/{name}/invocations``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from gcn_rag.console.sessions import SESSION_SCHEME, Session
from gcn_rag.serving.invocations import Invocations, Message
from gcn_rag.serving.protocol import decode_json

CIRCULAR_URL = "https://gcn.nasa.gov/circulars/{}"
_CIRCULAR_ID = re.compile(r"\d{1,7}(\.5)?")


@dataclasses.dataclass(frozen=True)
class Link:
    """One citation as the page shows it: a link to the circular and the quoted sentence."""

    circular: str
    url: str
    subject: str
    quote: str


@dataclasses.dataclass(frozen=True)
class Measured:
    """One value the answer states (its ``measurements`` column), with its circular's link."""

    quantity: str
    value: str
    unit: str
    circular: str
    url: str


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one question returned: the HTTP outcome and, on success, the first prediction."""

    status: int
    request_id: str
    served_entity: str
    total_ms: float
    answer: str = ""
    sources: tuple[str, ...] = ()
    num_docs: int = 0
    citations: tuple[Link, ...] = ()
    measurements: tuple[Measured, ...] = ()
    error: str = ""
    raw: str = ""  # the whole response body, pretty-printed


def request_body(question: str, raw: str) -> bytes:
    """The invocation body: ``raw`` JSON as typed (any of the four formats), else the
    question in ``dataframe_split``, the lab's format."""
    if raw.strip():
        return raw.encode("utf-8")
    return json.dumps({"dataframe_split": {"columns": ["question"], "data": [[question]]}}).encode()


async def ask(invocations: Invocations, session: Session, name: str, body: bytes) -> Outcome:
    """Send ``body`` to endpoint ``name`` as ``session``'s caller; the outcome, whatever it is."""
    path = f"/serving-endpoints/{name}/invocations"
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(b"authorization", f"{SESSION_SCHEME} {session.id}".encode())],
    }
    sent = False
    messages: list[Message] = []

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        messages.append(message)

    await invocations(scope, receive, send, name, None)
    start, content = messages[0], messages[1]["body"]
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return outcome(int(start["status"]), headers, content)


def outcome(status: int, headers: dict[str, str], content: bytes) -> Outcome:
    """The page's view of one invocations response."""
    document = decode_json(content)
    base = Outcome(
        status=status,
        request_id=headers.get("x-request-id", ""),
        served_entity=headers.get("served-model-name", ""),
        total_ms=_total_ms(headers.get("server-timing", "")),
        raw=json.dumps(document, indent=2, ensure_ascii=False),
    )
    if status != 200:
        return dataclasses.replace(base, error=str(document.get("message", "")))
    first = (document.get("predictions") or [{}])[0]
    return dataclasses.replace(
        base,
        answer=str(first.get("answer", "")),
        sources=tuple(str(s) for s in _json_list(first.get("sources"))),
        num_docs=int(first.get("num_docs") or 0),
        citations=tuple(_link(c) for c in _json_list(first.get("citations"))),
        measurements=tuple(_measured(m) for m in _json_list(first.get("measurements"))),
    )


def _json_list(value: Any) -> list[Any]:
    """A prediction's JSON-array column (a string in the response), as a list."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    return value if isinstance(value, list) else []


def _link(citation: Any) -> Link:
    """A citation with its link built from the circular id (never a URL taken from data)."""
    citation = citation if isinstance(citation, dict) else {}
    circular = str(citation.get("circular_id", ""))
    url = CIRCULAR_URL.format(circular) if _CIRCULAR_ID.fullmatch(circular) else ""
    return Link(circular, url, str(citation.get("subject", "")), str(citation.get("quote", "")))


def _measured(value: Any) -> Measured:
    """A ``measurements`` entry (quantity, value, unit, circular_id) as the page shows it."""
    value = value if isinstance(value, dict) else {}
    link = _link({"circular_id": _circular_text(value.get("circular_id"))})
    return Measured(
        quantity=str(value.get("quantity", "")),
        value=str(value.get("value", "")),
        unit=str(value.get("unit") or ""),
        circular=link.circular,
        url=link.url,
    )


def _circular_text(circular: Any) -> str:
    """A circular id as its page is named: ``12345`` (a JSON number may say ``12345.0``)."""
    if isinstance(circular, float) and circular.is_integer():
        return str(int(circular))
    return "" if circular is None else str(circular)


def _total_ms(timing: str) -> float:
    """``total;dur=…`` of a ``server-timing`` header (0 when absent)."""
    for part in timing.split(","):
        label, _, duration = part.strip().partition(";dur=")
        if label == "total":
            try:
                return float(duration)
            except ValueError:
                return 0.0
    return 0.0
