"""Answers from any OpenAI-compatible chat endpoint (Databricks Foundation Model APIs, vLLM,
Ollama, a llama.cpp server), with retries, backoff and errors that say what to fix."""

from __future__ import annotations

import email.utils
import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from gcn_rag.answer.generators.base import Context
from gcn_rag.answer.generators.prompt import build_messages
from gcn_rag.errors import (
    BadInputError,
    DeadlineExceededError,
    GcnRagError,
    NotFoundError,
    PermissionDeniedError,
    SourceUnavailableError,
    TooManyRequestsError,
    UnauthenticatedError,
)
from gcn_rag.progress import SILENT, Reporter

if TYPE_CHECKING:
    import requests

_MAX_DELAY_S = 30.0
_CLIENT_ERRORS: dict[int, type[GcnRagError]] = {
    401: UnauthenticatedError,
    403: PermissionDeniedError,
    404: NotFoundError,
}


class OpenAIGenerator:
    """Answers through any OpenAI-compatible ``/chat/completions`` endpoint.

    ``base_url`` ends where ``/chat/completions`` starts: ``http://127.0.0.1:8081/v1`` for a
    llama.cpp server or vLLM, ``https://<workspace>/serving-endpoints`` for Databricks. The
    key is ``api_key``, else ``$api_key_env``, else ``$DATABRICKS_TOKEN``, else none (local
    servers need none). 429, 5xx and refused connections are retried ``max_retries`` times
    with exponential backoff from ``backoff_s`` (or the server's ``Retry-After``).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        temperature: float = 0.1,
        max_tokens: int = 256,
        timeout_s: float = 60,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        max_context_tokens: int = 1500,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if not re.match(r"https?://[^/\s]+", base_url or ""):
            raise BadInputError(
                f"base_url {base_url!r} is not an http(s) URL; give the part before "
                "/chat/completions, such as http://127.0.0.1:8081/v1."
            )
        if max_retries < 0 or max_tokens < 1 or timeout_s <= 0:
            raise BadInputError("max_retries must be >= 0, max_tokens >= 1 and timeout_s > 0.")
        env = os.environ if environ is None else environ
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.name = f"openai:{model}"  # for logs and Answer.generator
        self.reporter: Reporter = SILENT
        self.api_key_env = api_key_env
        self._api_key = api_key or env.get(api_key_env) or env.get("DATABRICKS_TOKEN") or None
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_context_tokens = max_context_tokens
        self._session: requests.Session | None = None

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIGenerator({self.url!r}, model={self.model!r})"

    def generate(self, question: str, contexts: Sequence[Context]) -> str:
        """The assistant's reply to ``question`` over ``contexts``, stripped."""
        messages = build_messages(question, contexts, max_context_tokens=self.max_context_tokens)
        payload = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "stream": False,
        }
        task = self.reporter.task(f"Waiting for {self.model} to write the answer")
        try:
            return _reply_text(self._post(payload), self.url)
        finally:
            task.close()

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def __enter__(self) -> OpenAIGenerator:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _post(self, payload: dict[str, Any]) -> Any:
        import requests

        if self._session is None:
            self._session = requests.Session()
        headers = {"User-Agent": "gcn-rag"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        failure: GcnRagError = SourceUnavailableError(f"{self.url} was not tried.")
        for attempt in range(self.max_retries + 1):
            delay = min(self.backoff_s * 2**attempt, _MAX_DELAY_S)
            try:
                response = self._session.post(
                    self.url, json=payload, headers=headers, timeout=(10, self.timeout_s)
                )
            except requests.ConnectionError as exc:  # refused, reset, DNS, connect timeout
                failure = SourceUnavailableError(
                    f"Cannot reach the chat endpoint {self.url} ({type(exc).__name__}) after "
                    f"{attempt + 1} attempt(s); check that the server runs and base_url is right."
                )
            except requests.Timeout as exc:
                raise DeadlineExceededError(
                    f"The chat endpoint {self.url} did not answer within {self.timeout_s:g} s; "
                    "raise timeout_s or lower max_tokens."
                ) from exc
            except requests.RequestException as exc:  # a broken reply: not worth a retry
                raise SourceUnavailableError(
                    f"The chat endpoint {self.url} sent a broken reply ({exc})."
                ) from exc
            else:
                if response.ok:
                    return _json(response, self.url)
                failure = self._http_error(response)
                if response.status_code != 429 and response.status_code < 500:
                    raise failure
                delay = _retry_after(response) or delay
            if attempt < self.max_retries:
                time.sleep(delay)
        raise failure

    def _http_error(self, response: requests.Response) -> GcnRagError:
        status = response.status_code
        said = f"the chat endpoint {self.url} answered {status}: {_server_message(response)}"
        if status == 429:
            wait = math.ceil(_retry_after(response) or 1)
            return TooManyRequestsError(f"Rate limited: {said}. Retry later.", retry_after=wait)
        if status in (408, 504):
            return DeadlineExceededError(f"Timed out: {said}. Lower max_tokens or retry.")
        if status >= 500:
            return SourceUnavailableError(f"Server error: {said}. Retry later.")
        hint = {
            401: f"Set a valid key in ${self.api_key_env} (or $DATABRICKS_TOKEN).",
            403: "The key lacks permission to query this model or endpoint.",
            404: "Check base_url (it usually ends in /v1; for Databricks, "
            "https://<workspace>/serving-endpoints) and the model name.",
        }.get(status, "Check the model name, max_tokens and the context size.")
        return _CLIENT_ERRORS.get(status, BadInputError)(f"Refused: {said}. {hint}")


def _json(response: requests.Response, url: str) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise SourceUnavailableError(f"{url} answered with something that is not JSON.") from exc


def _reply_text(data: Any, url: str) -> str:
    try:
        content = data["choices"][0]["message"].get("content")
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise SourceUnavailableError(
            f"{url} answered without choices[0].message; is it an OpenAI-compatible endpoint?"
        ) from exc
    return content.strip() if isinstance(content, str) else ""


def _server_message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason
    error = body.get("error", body) if isinstance(body, dict) else body
    message = error.get("message") if isinstance(error, dict) else error
    return str(message or body)[:300]


def _retry_after(response: requests.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:  # the other form: an HTTP date
            seconds = email.utils.parsedate_to_datetime(raw).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), _MAX_DELAY_S)
