"""HTTP clients of a serving endpoint: the management API (:class:`ServingClient`).

It speaks the Databricks Model Serving REST API, so it works against ``gcn-rag serve`` and a
Databricks workspace alike. Errors come back as the package's own errors (with the server's
message), a server that cannot be reached as :class:`SourceUnavailableError`.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable
from typing import Any

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

DEFAULT_URL = "http://127.0.0.1:8080"
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


class ServingClient:
    """Create, inspect, update and delete serving endpoints over HTTP."""

    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, timeout: float = 30):
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

    def create(self, name: str, config: dict[str, Any]) -> dict[str, Any]:
        body = {"name": name, "config": config}
        return dict(self._call("POST", "/api/2.0/serving-endpoints", body))

    def update_config(self, name: str, config: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("PUT", f"/api/2.0/serving-endpoints/{name}/config", config))

    def delete(self, name: str) -> None:
        self._call("DELETE", f"/api/2.0/serving-endpoints/{name}")

    def query(self, name: str, questions: builtins.list[str]) -> builtins.list[dict[str, Any]]:
        body = {"dataframe_split": {"columns": ["question"], "data": [[q] for q in questions]}}
        return list(
            self._call("POST", f"/serving-endpoints/{name}/invocations", body)["predictions"]
        )

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
