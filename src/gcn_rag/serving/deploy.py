"""Deploying a version: endpoint configs, create-or-update over the API, ``rag_endpoint_info``.

``gcn-rag up`` and ``gcn-rag endpoints create|update`` are thin over these calls. Everything
goes through :class:`~gcn_rag.serving.client.ServingClient`, so it works the same against a
server in this process, another process, or Databricks.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gcn_rag.errors import BadInputError, NotFoundError
from gcn_rag.progress import SILENT, Reporter
from gcn_rag.serving.arms import Challenger, main_entity, serve_challenger
from gcn_rag.serving.endpoints import resent
from gcn_rag.serving.protocol import query_body

if TYPE_CHECKING:
    from gcn_rag.serving.app import Server
    from gcn_rag.serving.client import ServingClient
    from gcn_rag.settings import Settings
    from gcn_rag.tables import Catalog

ENDPOINT = "nasa-gcn-rag-assistant"
CAPTURE_PREFIX = "rag_inference"  # -> <catalog>.<schema>.rag_inference_payload
ENDPOINT_INFO = "rag_endpoint_info"
#: What `gcn-rag up` turns on for an endpoint that has no guardrails config yet.
UP_GUARDRAILS: dict[str, Any] = {"input": {"pii": {"behavior": "MASK"}, "safety": True}}


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
        config["auto_capture_config"] = _capture(settings, capture_prefix)
    return config


@dataclasses.dataclass(frozen=True)
class EndpointSpec:
    """What a command asks of an endpoint; updates are patches.

    A field left None takes its default when the endpoint is created (the registered model,
    ``champion``, Small, scale-to-zero, capture into ``rag_inference_payload``) and stays as
    the endpoint has it when the endpoint is updated. ``capture_prefix=""`` turns capture off;
    ``entity`` names the served entity an update changes when the endpoint serves several.
    ``guardrails`` are given to an endpoint that has no guardrails config at all (one set
    by hand, even to nothing, stays). With ``alias``, the entity is sent as that alias
    (``version`` is what it names now): the server keeps it following the alias.
    """

    model: str | None = None
    version: str | None = None
    workload_size: str | None = None
    scale_to_zero: bool | None = None
    capture_prefix: str | None = None
    entity: str | None = None
    guardrails: dict[str, Any] | None = None
    alias: str | None = None  # served as this alias (followed when it moves), now ``version``

    def is_empty(self) -> bool:
        """Whether the spec changes nothing (``entity`` only chooses where a change goes)."""
        fields = (self.model, self.version, self.workload_size, self.scale_to_zero)
        return all(value is None for value in fields) and self.capture_prefix is None

    def create_config(self, settings: Settings) -> dict[str, Any]:
        """A new endpoint's config: what the spec names, defaults for the rest."""
        from gcn_rag.model.registry import MODEL_NAME

        prefix = CAPTURE_PREFIX if self.capture_prefix is None else self.capture_prefix
        return endpoint_config(
            settings,
            self.model or MODEL_NAME,
            self.alias or self.version or "champion",
            workload_size=self.workload_size or "Small",
            scale_to_zero=self.scale_to_zero is not False,
            capture_prefix=prefix or None,
        )

    def update_config(self, current: dict[str, Any], settings: Settings) -> dict[str, Any]:
        """The config to PUT: ``current`` (as GET returns it) with only what the spec names.

        ``update_config`` replaces the served entities it is sent (Databricks' semantics), so
        every entity is sent back as it is, bar the changed fields. An entity named after its
        version (``<model>-<version>``) is renamed by the server when its version changes
        (its route with it, when it is the only one). Capture is sent only when the spec
        names it: an omitted ``auto_capture_config`` keeps the endpoint's (as on Databricks).
        """
        entities = [resent(entity, as_alias=False) for entity in current["served_entities"]]
        entity = entities[_target(entities, self.entity)]
        named_by_version = entity.get("name") == _default_name(entity)
        changes = self._entity_fields()
        if self.alias:  # sent as the alias: the endpoint follows it from now on
            changes["entity_version"] = self.alias
        moved = any(entity.get(k) != v for k, v in changes.items() if k in _MODEL)
        entity.update(changes)
        config: dict[str, Any] = {"served_entities": entities}
        if moved and named_by_version and len(entities) == 1:
            del entity["name"]  # the server names it after the new version; 100% goes to it
        elif current.get("traffic_config"):
            config["traffic_config"] = current["traffic_config"]
        if self.capture_prefix is not None:
            config["auto_capture_config"] = _capture(settings, self.capture_prefix)
        return config

    def serves(self, current: dict[str, Any], settings: Settings) -> bool:
        """Whether ``current`` (a config as GET returns it) already is what the spec asks."""
        entities = current["served_entities"]
        entity = entities[_target(entities, self.entity)]
        same = all(entity.get(k) == v for k, v in self._entity_fields().items())
        same = same and (self.alias is None or entity.get("entity_alias") == self.alias)
        if self.capture_prefix is None:
            return same
        capture = dict(current.get("auto_capture_config") or {})
        capture["enabled"] = bool(capture.get("enabled", bool(capture)))
        asked = _capture(settings, self.capture_prefix)
        return same and all(capture.get(k) == v for k, v in asked.items())

    def _entity_fields(self) -> dict[str, Any]:
        """The served-entity fields the spec sets, as the API names them."""
        fields = {
            "entity_name": self.model,
            "entity_version": self.version,
            "workload_size": self.workload_size,
            "scale_to_zero_enabled": self.scale_to_zero,
        }
        return {k: v for k, v in fields.items() if v is not None}


def _capture(settings: Settings, prefix: str) -> dict[str, Any]:
    """The ``auto_capture_config`` that captures into ``<prefix>_payload`` ('' : off)."""
    if not prefix:
        return {"enabled": False}
    return {
        "catalog_name": settings.catalog,
        "schema_name": settings.schema,
        "table_name_prefix": prefix,
        "enabled": True,
    }


_MODEL = ("entity_name", "entity_version")


def _target(entities: list[dict[str, Any]], name: str | None) -> int:
    """The index of the served entity called ``name`` (None: the only one)."""
    names = [str(entity.get("name")) for entity in entities]
    if name is None and len(names) == 1:
        return 0
    if name is None:
        raise BadInputError(
            f"The endpoint serves {len(names)} entities ({', '.join(names)}); name the one to "
            "change with --entity, or send a whole config with --config."
        )
    if name not in names:
        raise NotFoundError(f"The endpoint serves no entity {name!r}; it serves {names}.")
    return names.index(name)


def _default_name(entity: dict[str, Any]) -> str:
    """The name Databricks gives a served entity that is not named: ``<model>-<version>``."""
    return f"{str(entity.get('entity_name')).rsplit('.', 1)[-1]}-{entity.get('entity_version')}"


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
    client: ServingClient,
    name: str,
    spec: EndpointSpec,
    settings: Settings,
    reporter: Reporter = SILENT,
) -> dict[str, Any]:
    """Create the endpoint, or patch it if it does not serve as ``spec`` asks; wait until READY.

    An update changes only what ``spec`` names: a workload size, scale-to-zero or capture
    setting someone chose for the endpoint stays unless ``spec`` sets it. An endpoint that
    serves several entities (a traffic split) is left alone unless ``spec`` names one.
    """
    try:
        existing = client.get(name)
    except NotFoundError:
        reporter.note(f"Endpoint: creating {name} (version {spec.version or 'champion'}).")
        gateway = {"guardrails": spec.guardrails} if spec.guardrails else None
        client.create(name, spec.create_config(settings), gateway)
        return client.wait(name)
    entities = existing["config"]["served_entities"]
    if spec.entity is None and len(entities) > 1:
        reporter.note(
            f"Endpoint: {name} serves {len(entities)} entities (a traffic split); left as it is "
            "(change it with `gcn-rag endpoints update --entity`)."
        )
    elif spec.serves(existing["config"], settings):
        reporter.note(f"Endpoint: {name} already serves version {spec.version}.")
    else:
        reporter.note(f"Endpoint: updating {name} to version {spec.version}.")
        client.update_config(name, spec.update_config(existing["config"], settings))
    _default_guardrails(client, existing, spec.guardrails, reporter)
    return client.wait(name)


def _default_guardrails(
    client: ServingClient,
    endpoint: dict[str, Any],
    guardrails: dict[str, Any] | None,
    reporter: Reporter,
) -> None:
    """Give ``endpoint`` ``guardrails`` if it has no guardrails config; its other AI gateway
    settings (rate limits, inference table) are sent back as they are."""
    gateway = dict(endpoint.get("ai_gateway") or {})
    if not guardrails or "guardrails" in gateway:
        return
    client.put_ai_gateway(endpoint["name"], {**gateway, "guardrails": guardrails})
    reporter.note(
        f"Guardrails: turned on for {endpoint['name']} (see or change them with "
        "`gcn-rag endpoints guardrails`)."
    )


@dataclasses.dataclass(frozen=True)
class GuardrailSpec:
    """What `gcn-rag endpoints guardrails` asks; a field left None stays as it is.

    ``invalid_keywords`` apply to questions and answers, ``valid_topics`` to questions; an
    empty tuple clears them. ``off`` starts from no guardrails before the rest applies.
    """

    input_pii: str | None = None
    output_pii: str | None = None
    input_safety: bool | None = None
    output_safety: bool | None = None
    invalid_keywords: tuple[str, ...] | None = None
    valid_topics: tuple[str, ...] | None = None
    off: bool = False

    def is_empty(self) -> bool:
        return not self.off and all(v is None for v in dataclasses.astuple(self)[:-1])

    def apply(self, current: dict[str, Any] | None) -> dict[str, Any]:
        """``current`` (a normalized guardrails config) with what the spec names changed."""
        from gcn_rag.guardrails.policy import normalize_guardrails

        base = {} if self.off else current or {}
        sides = {stage: dict(base.get(stage) or {}) for stage in ("input", "output")}
        changes = {
            "input": (self.input_pii, self.input_safety, self.invalid_keywords, self.valid_topics),
            "output": (self.output_pii, self.output_safety, self.invalid_keywords, None),
        }
        for stage, (pii, safety, keywords, topics) in changes.items():
            side = sides[stage]
            if pii is not None:
                side["pii"] = {"behavior": pii.upper()}
            for field, value in (("safety", safety), ("invalid_keywords", keywords)):
                if value is not None:
                    side[field] = list(value) if isinstance(value, tuple) else value
            if topics is not None:
                side["valid_topics"] = list(topics)
        kept = {
            stage: {k: v for k, v in side.items() if v not in ([], None)}
            for stage, side in sides.items()
        }
        return normalize_guardrails({stage: side for stage, side in kept.items() if side})


def write_endpoint_info(catalog: Catalog, url: str, endpoint: dict[str, Any]) -> None:
    """The lab's ``rag_endpoint_info (key, value)`` table for the deployed endpoint."""
    import pyarrow as pa

    entity = main_entity(endpoint["config"])
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
    spec: EndpointSpec,
    token: str,
    catalog: Catalog,
    question: str,
    reporter: Reporter = SILENT,
    challenger: Challenger | None = None,
) -> dict[str, Any] | None:
    """Once ``server`` listens: deploy ``name`` (with ``challenger`` beside the champion, if
    given), record it, and answer ``question`` over HTTP.

    Returns the first prediction, or None when the server stopped before it listened.
    """
    from gcn_rag.serving.client import ServingClient

    if not server.wait_started():
        return None
    client = ServingClient(server.url, token, timeout=120)
    endpoint = deploy(client, name, spec, server.settings, reporter)
    if challenger is not None:
        endpoint = serve_challenger(client, name, challenger, reporter)
    write_endpoint_info(catalog, server.url, endpoint)
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
