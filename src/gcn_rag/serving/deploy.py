"""Deploying a version: endpoint configs, create-or-update over the API, ``rag_endpoint_info``.

``gcn-rag up`` and ``gcn-rag endpoints create|update`` are thin over these calls. Everything
goes through :class:`~gcn_rag.serving.client.ServingClient`, so it works the same against a
server in this process, another process, or Databricks.
"""

from __future__ import annotations

import json
import shlex
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gcn_rag.errors import BadInputError, NotFoundError
from gcn_rag.progress import SILENT, Reporter
from gcn_rag.serving.protocol import query_body

if TYPE_CHECKING:
    from gcn_rag.serving.app import Server
    from gcn_rag.serving.client import ServingClient
    from gcn_rag.settings import Settings
    from gcn_rag.tables import Catalog

ENDPOINT = "nasa-gcn-rag-assistant"
CAPTURE_PREFIX = "rag_inference"  # -> <catalog>.<schema>.rag_inference_payload
ENDPOINT_INFO = "rag_endpoint_info"
_SERVED = ("entity_name", "entity_version", "workload_size", "scale_to_zero_enabled")


def endpoint_config(
    settings: Settings,
    model: str,
    version: str,
    *,
    workload_size: str = "Small",
    scale_to_zero: bool = True,
    capture_prefix: str | None = CAPTURE_PREFIX,
) -> dict[str, Any]:
    """A config serving one version, capturing into the workspace's schema unless no prefix."""
    entity = {
        "entity_name": model,
        "entity_version": version,
        "workload_size": workload_size,
        "scale_to_zero_enabled": scale_to_zero,
    }
    config: dict[str, Any] = {"served_entities": [entity]}
    if capture_prefix:
        config["auto_capture_config"] = {
            "catalog_name": settings.catalog,
            "schema_name": settings.schema,
            "table_name_prefix": capture_prefix,
            "enabled": True,
        }
    return config


def read_config(path: Path) -> dict[str, Any]:
    """An endpoint config from a JSON file (``served_entities``, ``traffic_config``, ...)."""
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BadInputError(f"Cannot read {path} as JSON ({exc}).") from exc
    if not isinstance(loaded, dict):
        raise BadInputError(f"{path} must hold a JSON object (an endpoint config).")
    return dict(loaded)


def deploy(
    client: ServingClient, name: str, config: dict[str, Any], reporter: Reporter = SILENT
) -> dict[str, Any]:
    """Create the endpoint, or update it if it serves something else; wait until READY."""
    (entity,) = config["served_entities"]
    version = entity["entity_version"]
    try:
        existing = client.get(name)
    except NotFoundError:
        reporter.note(f"Endpoint: creating {name} (version {version}).")
        client.create(name, config)
    else:
        if _serves(existing["config"], config):
            reporter.note(f"Endpoint: {name} already serves version {version}.")
        else:
            reporter.note(f"Endpoint: updating {name} to version {version}.")
            client.update_config(name, config)
    return client.wait(name)


def _serves(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether an endpoint's config already serves (and captures) as ``wanted`` asks."""
    served = [tuple(e[k] for k in _SERVED) for e in current["served_entities"]]
    (entity,) = wanted["served_entities"]
    capture = current.get("auto_capture_config") or {}
    same_capture = all(
        capture.get(k) == v for k, v in (wanted.get("auto_capture_config") or {}).items()
    )
    return served == [tuple(entity[k] for k in _SERVED)] and same_capture


def write_endpoint_info(catalog: Catalog, url: str, endpoint: dict[str, Any]) -> None:
    """The lab's ``rag_endpoint_info (key, value)`` table for the deployed endpoint."""
    import pyarrow as pa

    (entity,) = endpoint["config"]["served_entities"]
    capture = endpoint["config"].get("auto_capture_config") or {}
    table = capture.get("state", {}).get("payload_table", {}).get("name", "")
    rows = {
        "endpoint_name": endpoint["name"],
        "endpoint_url": f"{url}/serving-endpoints/{endpoint['name']}/invocations",
        "model_name": entity["entity_name"],
        "model_version": entity["entity_version"],
        "workload_size": entity["workload_size"],
        "scale_to_zero_enabled": str(entity["scale_to_zero_enabled"]).lower(),
        "inference_table": f"{capture['catalog_name']}.{capture['schema_name']}.{table}"
        if table
        else "",
        "host": socket.gethostname(),
        "created_by": "gcn-rag up",
    }
    catalog.overwrite(
        ENDPOINT_INFO,
        pa.table({"key": list(rows), "value": list(rows.values())}),
        description="the deployed serving endpoint (key, value)",
    )


def bring_up(
    server: Server,
    name: str,
    config: dict[str, Any],
    token: str,
    catalog: Catalog,
    question: str,
    reporter: Reporter = SILENT,
) -> dict[str, Any] | None:
    """Once ``server`` listens: deploy ``name``, record it, and answer ``question`` over HTTP.

    Returns the first prediction, or None when the server stopped before it listened.
    """
    from gcn_rag.serving.client import ServingClient

    if not server.wait_started():
        return None
    client = ServingClient(server.url, token, timeout=120)
    write_endpoint_info(catalog, server.url, deploy(client, name, config, reporter))
    return client.query(name, [question])[0]


def curl_example(url: str, endpoint: str, token: str, question: str = "What is a GRB?") -> str:
    """The lab's ``curl`` for a question to ``endpoint``, ready to paste."""
    body = json.dumps(query_body([question]))
    return (
        f'curl -X POST "{url}/serving-endpoints/{endpoint}/invocations" \\\n'
        f'  -H "Authorization: Bearer {token}" \\\n'
        f'  -H "Content-Type: application/json" \\\n'
        f"  -d {shlex.quote(body)}"
    )
