"""A real server with the web console mounted, over the fixture champion (for the console tests).

Its own workspace directory (endpoints, tokens, inference table), the fixture workspace's MLflow
registry: the shared fixture workspace's endpoints are left alone.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, NamedTuple

import requests

from conftest import capturing_manager
from gcn_rag.console import console_for
from gcn_rag.model import registry
from gcn_rag.serving.app import create_app
from gcn_rag.serving.auth import TokenStore
from gcn_rag.serving.manager import EndpointManager
from gcn_rag.settings import Settings

ENDPOINT = "nasa-gcn-rag-assistant"
QUESTION = "What is the redshift of GRB 221009A?"
LEVELS = ("CAN_VIEW", "CAN_QUERY", "CAN_MANAGE")
Serve = Callable[[Any], AbstractContextManager[str]]


class Console(NamedTuple):
    url: str  # the server's base URL; the console is at url + "/console"
    tokens: dict[str, str]  # permission level -> an API token with it
    manager: EndpointManager
    home: Path


@contextlib.contextmanager
def running_console(
    home: Path,
    workspace: Settings,
    version: str,
    serve_app: Serve,
    *,
    auth: bool = True,
    pages_over: Settings | None = None,
) -> Iterator[Console]:
    """A server on a free loopback port with ``nasa-gcn-rag-assistant`` READY (and captured);
    the console's Models and Ask pages read ``pages_over`` (default: ``workspace``)."""
    store = TokenStore(home / "serving.db")
    tokens = {level: store.create(level, f"{level.lower()}-user") for level in LEVELS}
    manager = capturing_manager(home, workspace)
    app = create_app(manager, store if auth else None, console=console_for(pages_over or workspace))
    try:
        with serve_app(app) as url:
            _deploy(manager, version)
            yield Console(url, tokens, manager, home)
    finally:
        manager.close()


def _deploy(manager: EndpointManager, version: str) -> None:
    entity = {
        "entity_name": registry.MODEL_NAME,
        "entity_version": version,
        "workload_size": "Small",
        "scale_to_zero_enabled": True,
    }
    capture = {"catalog_name": "sandbox", "schema_name": "nasa_gcn_dev"}
    capture["table_name_prefix"] = "rag_inference"
    config = {"served_entities": [entity], "auto_capture_config": capture}
    manager.create({"name": ENDPOINT, "config": config})
    wait_ready(manager)


@contextlib.contextmanager
def another_version(workspace: Settings, champion: dict[str, Any]) -> Iterator[str]:
    """Another version of the champion's model; afterwards champion is back where it was
    (set automatically, so not pinned) and the version is gone."""
    from mlflow.tracking import MlflowClient

    version = registry.register(workspace, champion["logged"].model_uri)
    try:
        yield version
    finally:
        registry.set_alias(workspace, "champion", champion["version"])
        client: Any = MlflowClient(registry.tracking_uri(workspace))
        client.delete_model_version(registry.MODEL_NAME, version)


def entity_name(version: str) -> str:
    """The default name of the served entity serving ``version`` of the assistant."""
    return f"{registry.MODEL_NAME.rsplit('.', 1)[-1]}-{version}"


def wait_ready(manager: EndpointManager, name: str = ENDPOINT) -> dict[str, Any]:
    """The endpoint ``name`` once READY with no update in progress."""
    deadline = time.monotonic() + 120
    while True:
        got = manager.get(name)
        if (got["state"]["ready"], got["state"]["config_update"]) == ("READY", "NOT_UPDATING"):
            return got
        assert time.monotonic() < deadline, f"{name} never READY: {manager.logs(name)}"
        time.sleep(0.05)


def csrf(html: str) -> str:
    """The CSRF value of a console page's forms."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, "no CSRF field on the page"
    return found.group(1)


def signed_in(console: Console, level: str) -> requests.Session:
    """A browser-like client signed in to the console with a ``level`` token."""
    client = requests.Session()
    response = client.post(
        f"{console.url}/console/signin",
        data={"token": console.tokens[level]},
        allow_redirects=False,
        timeout=30,
    )
    assert response.status_code == 303, response.text
    return client


def get_page(client: requests.Session, console: Console, path: str) -> requests.Response:
    """GET a console page as ``client`` (redirects are answers, not followed)."""
    return client.get(f"{console.url}/console{path}", allow_redirects=False, timeout=60)


def post_form(
    client: requests.Session, console: Console, path: str, data: dict[str, str], **kw: Any
) -> requests.Response:
    """POST a console form as ``client``."""
    url = f"{console.url}/console{path}"
    return client.post(url, data=data, allow_redirects=False, timeout=120, **kw)
