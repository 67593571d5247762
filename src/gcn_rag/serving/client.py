"""HTTP clients of a serving endpoint: the management API (:class:`ServingClient`).

It speaks the Databricks Model Serving REST API, so it works against ``gcn-rag serve`` and a
Databricks workspace alike. Errors come back as the package's own errors (with the server's
message), a server that cannot be reached as :class:`SourceUnavailableError`.
:func:`workspace_server` is where every HTTP command goes by default: the active workspace's
own server. :class:`NASAGCNRagClient` says on the ``gcn_rag.serving.client`` logger (stderr,
unless logging is set up otherwise) when it waits to retry a 429 or 503.
"""

from __future__ import annotations

import builtins
import logging
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import requests

from gcn_rag.errors import (
    AlreadyExistsError,
    BadInputError,
    DeadlineExceededError,
    GcnRagError,
    NotFoundError,
    NotReadyError,
    PermissionDeniedError,
    SourceUnavailableError,
    TooManyRequestsError,
    UnauthenticatedError,
)
from gcn_rag.serving.protocol import query_body
from gcn_rag.serving.store import WORKSPACE_HEADER, recorded_server, workspace_id

if TYPE_CHECKING:
    from gcn_rag.settings import Settings

log = logging.getLogger(__name__)
#: An invocations URL, and the endpoint's URL in it (where ``/feedback`` is).
_INVOCATIONS = re.compile(r"(.*/serving-endpoints/[^/]+)(?:/served-models/[^/]+)?/invocations/?")
_BY_STATUS: dict[int, type[GcnRagError]] = {
    400: BadInputError,
    401: UnauthenticatedError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: AlreadyExistsError,
    429: TooManyRequestsError,
    503: NotReadyError,
    504: DeadlineExceededError,
}


def raise_for_response(response: requests.Response) -> None:
    """The server's ``{"error_code", "message"}`` as the matching :class:`GcnRagError`."""
    if response.ok:
        return
    try:
        body = response.json()
        message = str(body.get("message") or body)
    except ValueError:
        message = response.text[:500] or response.reason
    kind = _BY_STATUS.get(response.status_code, GcnRagError)
    raise kind(f"{message} (HTTP {response.status_code})")


def feedback_body(
    request_id: str, rating: str | None = None, comment: str | None = None
) -> dict[str, str]:
    """The body of ``POST /serving-endpoints/{name}/feedback`` (unset fields left out)."""
    body = {"request_id": request_id, "rating": rating, "comment": comment}
    return {key: value for key, value in body.items() if value is not None}


def workspace_server(
    settings: Settings, url: str | None = None, token: str | None = None
) -> tuple[str, str | None]:
    """(URL, token) an HTTP command talks to: ``url`` (``--url`` / ``DATABRICKS_HOST``) if
    given, else the server the active workspace recorded, once it has said it serves this
    workspace; ``token`` (``--token`` / ``DATABRICKS_TOKEN``) or the workspace's saved one.

    The server answers ``GET /health`` with its workspace's :func:`workspace_id` (the identity
    of the directory: kept by ``mv``, new in a copy), so a copied workspace, whose records name
    the original's server and hold a token valid there, is told so instead of driving it.
    """
    from gcn_rag.serving.auth import saved_token

    token = token if token is not None else saved_token(settings.token_file)
    if url:
        return url.rstrip("/"), token
    home = settings.home
    start = "start one with `gcn-rag up` (or `gcn-rag serve`), or pass --url"
    recorded = recorded_server(settings.serving_state)
    if recorded is None:
        raise SourceUnavailableError(f"No server is running for workspace {home}; {start}.")
    try:
        served = requests.get(f"{recorded}/health", timeout=5).headers.get(WORKSPACE_HEADER)
    except requests.RequestException:
        raise SourceUnavailableError(
            f"No server is running for workspace {home} (its last one, at {recorded}, does "
            f"not answer); {start}."
        ) from None
    if served != workspace_id(home):
        raise SourceUnavailableError(
            f"The server at {recorded} serves another workspace, not {home} (this one is a "
            "copy, or another server took that port); start this one's own with `gcn-rag up "
            "--port <a free port>`, or pass --url."
        )
    return recorded, token


class ServingClient:
    """Create, inspect, update and delete serving endpoints over HTTP."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 30):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = self.session.request(
                method, self.url + path, json=body, timeout=self.timeout
            )
        except requests.ConnectionError:
            raise SourceUnavailableError(
                f"No serving API answers at {self.url}; start one with `gcn-rag serve` "
                "(or `gcn-rag up`), or pass --url."
            ) from None
        except requests.Timeout:
            raise DeadlineExceededError(
                f"{self.url} did not answer within {self.timeout:g} s."
            ) from None
        raise_for_response(response)
        return response.json() if response.content else {}

    def list(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/api/2.0/serving-endpoints").get("endpoints", []))

    def get(self, name: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/api/2.0/serving-endpoints/{name}"))

    def create(
        self, name: str, config: dict[str, Any], ai_gateway: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        body = {"name": name, "config": config}
        if ai_gateway is not None:
            body["ai_gateway"] = ai_gateway
        return dict(self._call("POST", "/api/2.0/serving-endpoints", body))

    def put_ai_gateway(self, name: str, gateway: dict[str, Any]) -> dict[str, Any]:
        """Replace the endpoint's AI gateway config (guardrails, rate limits, inference table)."""
        return dict(self._call("PUT", f"/api/2.0/serving-endpoints/{name}/ai-gateway", gateway))

    def update_config(self, name: str, config: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("PUT", f"/api/2.0/serving-endpoints/{name}/config", config))

    def delete(self, name: str) -> None:
        self._call("DELETE", f"/api/2.0/serving-endpoints/{name}")

    def query(self, name: str, questions: builtins.list[str]) -> builtins.list[dict[str, Any]]:
        body = query_body(questions)
        return list(
            self._call("POST", f"/serving-endpoints/{name}/invocations", body)["predictions"]
        )

    def feedback(
        self, name: str, request_id: str, rating: str | None = None, comment: str | None = None
    ) -> str:
        """Rate an answer of endpoint ``name`` (``positive``/``negative``) and/or comment on it;
        ``request_id`` is the answer's ``x-request-id``. Returns the feedback id."""
        body = feedback_body(request_id, rating, comment)
        return str(self._call("POST", f"/serving-endpoints/{name}/feedback", body)["feedback_id"])

    def wait(
        self,
        name: str,
        timeout: float = 600,
        on_poll: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until the endpoint is READY with no update in progress; raise if it failed."""
        deadline = time.monotonic() + timeout
        while True:
            endpoint = self.get(name)
            if on_poll is not None:
                on_poll(endpoint)
            state = endpoint["state"]
            if state["config_update"] == "UPDATE_FAILED":
                logs = self._call(
                    "GET", f"/api/2.0/serving-endpoints/{name}/served-models/x/logs"
                ).get("logs", "")
                last = logs.strip().splitlines()[-1] if logs.strip() else "no logs"
                raise GcnRagError(f"Endpoint {name} failed to update: {last}")
            if state["ready"] == "READY" and state["config_update"] == "NOT_UPDATING":
                return endpoint
            if time.monotonic() > deadline:
                raise DeadlineExceededError(
                    f"Endpoint {name} was not ready after {timeout:g} s; see its logs."
                )
            time.sleep(0.2)


class NASAGCNRagClient:
    """The lab's client, with timeouts, retries and clear errors.

    ``NASAGCNRagClient(url, token).ask(question)`` posts the lab's ``dataframe_split`` body to
    the invocation URL (``…/serving-endpoints/<name>/invocations``, here or on Databricks)
    and returns the first prediction (``answer``, ``sources``, ``num_docs``, …). A 429 or 503
    is retried up to ``max_retries`` times after the server's ``Retry-After`` (at most
    ``max_retry_wait_s``; 1 s, 2 s, 4 s… without one); other failures raise the matching
    :class:`GcnRagError` with the server's message.
    """

    def __init__(
        self,
        endpoint_url: str,
        token: str,
        *,
        timeout: float = 60.0,
        max_retries: int = 3,
        max_retry_wait_s: float = 30.0,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_retry_wait_s = max_retry_wait_s
        self.session = requests.Session()
        self.retries = 0  # retries made so far, for callers that report them
        #: The ``x-request-id`` of the last answer (of the last batch, for :meth:`ask_many`):
        #: what :meth:`feedback` refers to.
        self.last_request_id: str | None = None

    def ask(self, question: str) -> dict[str, Any]:
        """The answer to one question: the endpoint's first prediction (its request id is
        then :attr:`last_request_id`)."""
        answer = self.ask_many([question])[0]
        return dict(answer) if isinstance(answer, dict) else {"answer": answer}

    def ask_many(self, questions: builtins.list[str], batch_size: int = 16) -> builtins.list[Any]:
        """Answers in order, ``batch_size`` questions per request."""
        answers: builtins.list[Any] = []
        for start in range(0, len(questions), batch_size):
            batch = questions[start : start + batch_size]
            response = self.post(query_body(batch))
            raise_for_response(response)
            self.last_request_id = response.headers.get("x-request-id")
            predictions = response.json().get("predictions")
            if not isinstance(predictions, builtins.list) or len(predictions) != len(batch):
                raise GcnRagError(
                    f"The endpoint answered {len(batch)} question(s) with {predictions!r:.200}."
                )
            answers.extend(predictions)
        return answers

    def feedback(
        self, request_id: str | None = None, rating: str | None = None, comment: str | None = None
    ) -> str:
        """Rate an answer (``positive``/``negative``) and/or comment on it; ``request_id``
        defaults to :attr:`last_request_id`. Returns the feedback id."""
        request_id = request_id or self.last_request_id
        if request_id is None:
            raise BadInputError("No request to give feedback on: ask a question first.")
        match = _INVOCATIONS.fullmatch(self.endpoint_url)
        if match is None:
            raise BadInputError(
                f"{self.endpoint_url} is not an invocations URL (…/serving-endpoints/<name>/"
                "invocations); feedback goes to the endpoint's /feedback beside it."
            )
        body = feedback_body(request_id, rating, comment)
        try:
            response = self.session.post(
                match[1] + "/feedback", headers=self.headers, json=body, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise SourceUnavailableError(f"Cannot send feedback to {match[1]}: {exc}") from None
        raise_for_response(response)
        return str(response.json()["feedback_id"])

    def post(self, body: Any) -> requests.Response:
        """POST ``body``, retrying 429/503 as the server asks; the last response is returned."""
        attempt = 0
        while True:
            try:
                response = self.session.post(
                    self.endpoint_url, headers=self.headers, json=body, timeout=self.timeout
                )
            except requests.Timeout:
                raise DeadlineExceededError(
                    f"{self.endpoint_url} did not answer within {self.timeout:g} s."
                ) from None
            except requests.ConnectionError:
                raise SourceUnavailableError(
                    f"Cannot reach {self.endpoint_url}; is the server running?"
                ) from None
            if response.status_code not in (429, 503) or attempt >= self.max_retries:
                return response
            wait = self._wait(response, attempt)
            attempt += 1
            log.warning(
                "%d from the server (%s), retrying in %g s (attempt %d/%d)",
                response.status_code,
                "too many requests" if response.status_code == 429 else "not ready",
                wait,
                attempt,
                self.max_retries,
            )
            time.sleep(wait)
            self.retries += 1

    def _wait(self, response: requests.Response, attempt: int) -> float:
        try:
            asked = float(response.headers.get("Retry-After", ""))
        except ValueError:
            asked = float(2**attempt)
        return max(0.0, min(asked, self.max_retry_wait_s))
