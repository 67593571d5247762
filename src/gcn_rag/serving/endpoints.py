"""Endpoint records and their configs, in the Databricks Model Serving shapes.

An endpoint serves one or more *served entities* (a registered model name + version); its
traffic config splits requests between them by percentage. :func:`normalize_config` checks a
config as the REST API receives it and fills Databricks' defaults; :class:`Endpoint` is what
the store keeps and :meth:`Endpoint.to_api` the JSON the API returns.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Any

from gcn_rag.errors import BadInputError, GcnRagError
from gcn_rag.guardrails.policy import normalize_guardrails
from gcn_rag.serving.capture import normalize_capture_config

if TYPE_CHECKING:
    from gcn_rag.model.registry import Resolver

WORKLOAD_SIZES = {"Small": 4, "Medium": 16, "Large": 64}
MAX_NAME = 63
_NAME = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_NAME}}}")
READY, NOT_READY = "READY", "NOT_READY"
NOT_UPDATING, IN_PROGRESS, UPDATE_FAILED = "NOT_UPDATING", "IN_PROGRESS", "UPDATE_FAILED"


@dataclasses.dataclass
class Endpoint:
    """One endpoint as stored; :meth:`to_api` gives the Databricks JSON shape."""

    name: str
    id: str
    creator: str
    creation_timestamp: int
    config: dict[str, Any]
    ready: str = NOT_READY
    config_update: str = IN_PROGRESS
    last_updated_timestamp: int = 0
    logs: list[str] = dataclasses.field(default_factory=list)
    pending_config: dict[str, Any] | None = None
    ai_gateway: dict[str, Any] | None = None

    def to_api(self, states: dict[str, tuple[str, str]]) -> dict[str, Any]:
        """``states``: entity name -> (deployment state, message) for the loaded entities."""
        entities = []
        for entity in self.config["served_entities"]:
            last_log = self.logs[-1] if self.logs else ""
            state, message = states.get(entity["name"], ("DEPLOYMENT_CREATING", last_log))
            entities.append(
                {**entity, "state": {"deployment": state, "deployment_state_message": message}}
            )
        api = {
            "name": self.name,
            "id": self.id,
            "creator": self.creator,
            "creation_timestamp": self.creation_timestamp,
            "last_updated_timestamp": self.last_updated_timestamp or self.creation_timestamp,
            "state": {"ready": self.ready, "config_update": self.config_update},
            "config": {**self.config, "served_entities": entities},
        }
        if self.pending_config is not None:
            api["pending_config"] = self.pending_config
        if self.ai_gateway is not None:
            api["ai_gateway"] = self.ai_gateway
        return api


def check_name(name: Any) -> str:
    """An endpoint name as Databricks takes them: ASCII letters, digits, '-' and '_'."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise BadInputError(
            f"Endpoint name {name!r}: use 1 to {MAX_NAME} ASCII letters, digits, '-' and '_'."
        )
    return name


def normalize_config(raw: Any, resolve: Resolver | None = None) -> dict[str, Any]:
    """Validate a create request's ``config`` and fill Databricks' defaults.

    With ``resolve``, an ``entity_version`` that names an alias (``champion``) is pinned to
    the version it points at now.
    """
    if not isinstance(raw, dict) or not raw.get("served_entities"):
        raise BadInputError("config.served_entities must list at least one served entity.")
    entities = []
    for item in raw["served_entities"]:
        if not isinstance(item, dict) or not item.get("entity_name"):
            raise BadInputError("Each served entity needs an entity_name.")
        version = str(item.get("entity_version") or "")
        alias = item.get("entity_alias") if version.isdigit() else version
        if version and resolve is not None:  # an alias is resolved; a missing version is 404
            version = resolve(str(item["entity_name"]), version)
            alias = _followed(resolve, str(item["entity_name"]), alias, version)
        if not version.isdigit():
            raise BadInputError(
                "entity_version must be a version number (or an alias such as champion), "
                f"got {item.get('entity_version')!r}."
            )
        size = item.get("workload_size") or "Small"
        if size not in WORKLOAD_SIZES:
            raise BadInputError(f"workload_size must be one of {', '.join(WORKLOAD_SIZES)}.")
        entities.append(
            {
                "name": item.get("name") or default_entity_name(item["entity_name"], version),
                "entity_name": item["entity_name"],
                "entity_version": version,
                "workload_size": size,
                "workload_type": item.get("workload_type") or "CPU",
                "scale_to_zero_enabled": bool(item.get("scale_to_zero_enabled", False)),
                **({"entity_alias": str(alias)} if alias and resolve is not None else {}),
            }
        )
    names = [e["name"] for e in entities]
    if len(set(names)) < len(names):
        raise BadInputError(f"Served entity names must differ; got {names}.")
    config = {
        "served_entities": entities,
        "traffic_config": _traffic(raw.get("traffic_config"), names),
        "config_version": 1,
    }
    if raw.get("auto_capture_config"):
        config["auto_capture_config"] = normalize_capture_config(raw["auto_capture_config"])
    return config


def _followed(resolve: Resolver, model: str, alias: Any, version: str) -> str | None:
    """The alias an entity follows: the one it was asked as, or the ``entity_alias`` sent
    with a version number that is the alias's version now (a config sent back as GET gave
    it); another number pins the entity (the alias is dropped)."""
    if not alias or not isinstance(alias, str):
        return None
    try:
        return alias if resolve(model, alias) == version else None
    except GcnRagError:  # the alias is gone
        return None


#: fields GET returns that a config sent back must not carry
OUTPUT_ONLY = ("state", "creator", "creation_timestamp", "foundation_model")


def resent(entity: dict[str, Any], as_alias: bool = True) -> dict[str, Any]:
    """A served entity as GET (or the store) gives it, as a config sends it back: without
    the output-only fields, and, if it follows an alias (and ``as_alias``), asked as that
    alias, so it follows whatever the alias names by the time the update is read."""
    sent = {k: v for k, v in entity.items() if k not in OUTPUT_ONLY}
    if as_alias and sent.get("entity_alias"):
        sent["entity_version"] = sent["entity_alias"]
    return sent


def default_entity_name(model: str, version: str) -> str:
    """``<model's last name part>-<version>``, a served entity's name when none is given."""
    return f"{str(model).rsplit('.', 1)[-1]}-{version}"


def followed_config(config: dict[str, Any], versions: dict[str, str]) -> dict[str, Any]:
    """The update that moves served entities (by name) to the versions their aliases now
    name: each is sent with its alias (resolved again by :func:`normalize_config`); one named
    after its old version is renamed after the new one, its routes with it. An entity that
    would then serve the same version as another (a challenger just promoted to champion) is
    dropped, its live share given to the one that stays."""
    renamed: dict[str, str] = {}
    kept: list[tuple[int, dict[str, Any]]] = []  # (place in the config, entity)
    shares = {
        r["served_model_name"]: r["traffic_percentage"] for r in config["traffic_config"]["routes"]
    }
    places = sorted(
        enumerate(config["served_entities"]), key=lambda p: -shares.get(p[1]["name"], 0)
    )
    serving: dict[tuple[str, str], str] = {}  # (model, version) -> the entity that keeps it
    for place, original in places:
        name, model = original["name"], original["entity_name"]
        version = versions.get(name, original["entity_version"])
        if (model, version) in serving:
            renamed[name] = serving[(model, version)]
            continue
        entity = resent(original, as_alias=name in versions)
        if name in versions and name == default_entity_name(model, original["entity_version"]):
            entity["name"] = renamed[name] = default_entity_name(model, version)
        serving[(model, version)] = entity["name"]
        kept.append((place, entity))
    entities = [entity for _, entity in sorted(kept, key=lambda p: p[0])]
    names = [e["name"] for e in entities]
    return {"served_entities": entities, "traffic_config": _renamed(config, renamed, names)}


def _renamed(config: dict[str, Any], renamed: dict[str, str], kept: list[str]) -> dict[str, Any]:
    """``config``'s traffic with entities renamed (or merged into the one kept)."""
    routes: dict[str, int] = {}
    for route in config["traffic_config"]["routes"]:
        target = renamed.get(route["served_model_name"], route["served_model_name"])
        routes[target] = routes.get(target, 0) + int(route["traffic_percentage"])
    traffic: dict[str, Any] = {
        "routes": [{"served_model_name": n, "traffic_percentage": p} for n, p in routes.items()]
    }
    shadows = [
        {**r, "served_model_name": renamed.get(r["served_model_name"], r["served_model_name"])}
        for r in config["traffic_config"].get("shadow_routes", [])
    ]
    shadows = [
        r
        for r in shadows
        if r["served_model_name"] in kept and routes.get(r["served_model_name"], 0) == 0
    ]
    if shadows:
        traffic["shadow_routes"] = shadows
    return traffic


def _traffic(raw: Any, names: list[str]) -> dict[str, Any]:
    """The traffic config: live routes and, if any, shadow routes (mirrored copies)."""
    routes = _routes(raw, names)
    shadows = _shadow_routes(raw, names, routes)
    return {"routes": routes, "shadow_routes": shadows} if shadows else {"routes": routes}


def _shadow_routes(
    raw: Any, names: list[str], routes: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Shadow routes: each a served entity that takes no live traffic, mirrored 0-100%."""
    live = {r["served_model_name"] for r in routes if r.get("traffic_percentage", 0)}
    shadows, seen = [], set()
    for route in (raw or {}).get("shadow_routes") or []:
        target = route.get("served_model_name")
        if target not in names:
            raise BadInputError(f"Shadow route names unknown served entity {target!r}.")
        if target in live:
            raise BadInputError(
                f"Served entity {target!r} takes live traffic; a shadow entity must not "
                "(set its traffic_percentage to 0 or drop its route)."
            )
        if target in seen:
            raise BadInputError(f"Served entity {target!r} has more than one shadow route.")
        seen.add(target)
        share = route.get("shadow_percentage", 0)
        if isinstance(share, bool) or not isinstance(share, int) or not 0 <= share <= 100:
            raise BadInputError(f"shadow_percentage of {target!r} must be 0 to 100; got {share!r}.")
        shadows.append({"served_model_name": target, "shadow_percentage": share})
    return shadows


def _routes(raw: Any, names: list[str]) -> list[dict[str, Any]]:
    """The traffic routes: each a served entity once, 0 to 100 percent, 100 in all."""
    routes = (raw or {}).get("routes") or [
        {"served_model_name": names[0], "traffic_percentage": 100}
    ]
    seen: set[str] = set()
    for route in routes:
        target = route.get("served_model_name") or route.get("served_entity_name")
        if target not in names:
            raise BadInputError(f"Traffic route names unknown served entity {target!r}.")
        if target in seen:
            raise BadInputError(f"Served entity {target!r} has more than one traffic route.")
        seen.add(target)
        share = route.get("traffic_percentage", 0)
        if isinstance(share, bool) or not isinstance(share, int) or not 0 <= share <= 100:
            raise BadInputError(
                f"traffic_percentage of {target!r} must be 0 to 100; got {share!r}."
            )
        route["served_model_name"] = target
    if sum(int(r.get("traffic_percentage", 0)) for r in routes) != 100:
        raise BadInputError("Traffic percentages must add up to 100.")
    return list(routes)


AI_GATEWAY_FIELDS = (
    "guardrails",
    "inference_table_config",
    "rate_limits",
    "usage_tracking_config",
    "fallback_config",
)


def normalize_ai_gateway(raw: Any) -> dict[str, Any]:
    """Validate a ``PUT …/ai-gateway`` body: guardrails, inference table and rate limits are
    checked (400 naming the field), the rest is stored."""
    if not isinstance(raw, dict):
        raise BadInputError("The AI gateway config must be a JSON object.")
    unknown = sorted(set(raw) - set(AI_GATEWAY_FIELDS))
    if unknown:
        raise BadInputError(
            f"Unknown AI gateway field(s) {unknown}; known: {', '.join(AI_GATEWAY_FIELDS)}."
        )
    if raw.get("inference_table_config"):
        raw["inference_table_config"] = normalize_capture_config(
            raw["inference_table_config"], "inference_table_config"
        )
    if raw.get("guardrails") is not None:
        raw["guardrails"] = normalize_guardrails(raw["guardrails"])
    limits = raw.get("rate_limits") or []
    if not isinstance(limits, list):
        raise BadInputError("rate_limits must be a list.")
    for limit in limits:
        calls = limit.get("calls") if isinstance(limit, dict) else None
        if not isinstance(calls, int) or isinstance(calls, bool) or calls < 1:
            raise BadInputError("Each rate limit needs 'calls', a positive integer.")
        limit.setdefault("key", "endpoint")
        limit.setdefault("renewal_period", "minute")
        if limit["key"] not in ("endpoint", "user"):
            raise BadInputError("A rate limit's key must be 'endpoint' or 'user'.")
        if limit["renewal_period"] != "minute":
            raise BadInputError("A rate limit's renewal_period must be 'minute'.")
    return {k: v for k, v in raw.items() if v is not None}


def summary_row(endpoint: dict[str, Any]) -> dict[str, str]:
    """An endpoint as the API returns it, as one row: state, served entities, traffic."""
    config, state = endpoint["config"], endpoint["state"]
    entities = "\n".join(
        f"{e['name']}: {e['entity_name']} v{e['entity_version']} {e['workload_size']}"
        f"{' scale-to-zero' if e.get('scale_to_zero_enabled') else ''}"
        f" ({e['state']['deployment']})"
        for e in config["served_entities"]
    )
    routes = ", ".join(
        [
            *(
                f"{r['served_model_name']} {r['traffic_percentage']}%"
                for r in config["traffic_config"]["routes"]
            ),
            *(
                f"{r['served_model_name']} shadow {r['shadow_percentage']}%"
                for r in config["traffic_config"].get("shadow_routes", [])
            ),
        ]
    )
    return {
        "name": endpoint["name"],
        "ready": state["ready"],
        "config update": state["config_update"],
        "served entities": entities,
        "traffic": routes,
    }


def guardrail_rows(guardrails: dict[str, Any] | None) -> list[dict[str, str]]:
    """An endpoint's guardrails (``ai_gateway.guardrails``), one row per side."""
    rows = []
    for stage in ("input", "output"):
        side = (guardrails or {}).get(stage) or {}
        rows.append(
            {
                "side": stage,
                "pii": (side.get("pii") or {}).get("behavior", "NONE"),
                "safety": "BLOCK" if side.get("safety") else "off",
                "invalid keywords": ", ".join(side.get("invalid_keywords") or []) or "-",
                "valid topics": "; ".join(side.get("valid_topics") or []) or "-",
            }
        )
    return rows
