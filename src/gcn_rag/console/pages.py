"""Rendering: the Jinja2 environment (escaping on, for every template) and the view records
the templates read, each made from the API's own dicts by one named function."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse

from gcn_rag.console.sessions import Session
from gcn_rag.errors import BadInputError

#: Every console page forbids scripts, styles and frames from anywhere but the server itself.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
WORKLOAD_SIZES = ("Small", "Medium", "Large")


@functools.cache
def environment() -> Any:
    """The templates of ``gcn_rag.console`` with autoescaping on for all of them."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("gcn_rag.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


def render(
    request: Request, template: str, session: Session | None, status: int = 200, **values: Any
) -> HTMLResponse:
    """``template`` rendered for ``session`` (None before sign-in), as an HTML response;
    ``root`` is where the console is mounted."""
    root = request.scope.get("root_path", "")
    html = environment().get_template(template).render(session=session, root=root, **values)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


@dataclasses.dataclass(frozen=True)
class EntityView:
    """One served entity: what it serves, its size, state and share of the traffic."""

    name: str
    entity_name: str
    version: str
    workload_size: str
    scale_to_zero: bool
    state: str
    message: str
    traffic: int


@dataclasses.dataclass(frozen=True)
class EndpointView:
    """One endpoint as the list and its page show it."""

    name: str
    ready: str
    config_update: str
    config_version: str
    entities: tuple[EntityView, ...]
    pending: tuple[EntityView, ...]
    creator: str
    capture_table: str

    @property
    def traffic_split(self) -> str:
        return ", ".join(f"{e.name} {e.traffic}%" for e in self.entities)


@dataclasses.dataclass(frozen=True)
class GuardrailSide:
    """One side (input or output) of an endpoint's ``ai_gateway.guardrails``."""

    stage: str
    pii: str
    safety: bool
    invalid_keywords: tuple[str, ...]
    valid_topics: tuple[str, ...]


def guardrail_sides(api: dict[str, Any]) -> tuple[GuardrailSide, ...]:
    """The guardrails set on an endpoint (the API's shape), one row per side that has any."""
    config = (api.get("ai_gateway") or {}).get("guardrails") or {}
    return tuple(
        GuardrailSide(
            stage=stage,
            pii=str((side.get("pii") or {}).get("behavior", "NONE")),
            safety=bool(side.get("safety")),
            invalid_keywords=tuple(side.get("invalid_keywords") or ()),
            valid_topics=tuple(side.get("valid_topics") or ()),
        )
        for stage in ("input", "output")
        if (side := config.get(stage))
    )


def endpoint_view(api: dict[str, Any]) -> EndpointView:
    """An endpoint of ``EndpointManager.get`` (the API's shape) as the pages show it."""
    config = api.get("config", {})
    pending = api.get("pending_config") or {}
    capture = (config.get("auto_capture_config") or {}).get("state", {})
    return EndpointView(
        name=str(api["name"]),
        ready=str(api["state"]["ready"]),
        config_update=str(api["state"]["config_update"]),
        config_version=str(config.get("config_version", 1)),
        entities=_entities(config),
        pending=_entities(pending) if pending else (),
        creator=str(api.get("creator", "")),
        capture_table=str(capture.get("payload_table", {}).get("name", "")),
    )


def _entities(config: dict[str, Any]) -> tuple[EntityView, ...]:
    routes = (config.get("traffic_config") or {}).get("routes", [])
    traffic = {
        r.get("served_model_name") or r.get("served_entity_name"): r["traffic_percentage"]
        for r in routes
    }
    return tuple(
        EntityView(
            name=str(e["name"]),
            entity_name=str(e["entity_name"]),
            version=str(e.get("entity_version", "")),
            workload_size=str(e.get("workload_size", "")),
            scale_to_zero=bool(e.get("scale_to_zero_enabled")),
            state=str(e.get("state", {}).get("deployment", "")),
            message=str(e.get("state", {}).get("deployment_state_message", "")),
            traffic=int(traffic.get(e["name"], 0)),
        )
        for e in config.get("served_entities", [])
    )


def config_change(api: dict[str, Any], form: dict[str, str]) -> dict[str, Any]:
    """The ``PUT …/config`` body the endpoint form asks for: per served entity, its model
    version, workload size, scale-to-zero and traffic percentage (fields
    ``<field>:<entity name>``)."""
    entities, routes = [], []
    current = {e.name: e.traffic for e in _entities(api["config"])}
    for entity in api["config"]["served_entities"]:
        name = entity["name"]
        kept = {k: v for k, v in entity.items() if k != "state"}
        size = form.get(f"workload_size:{name}", kept.get("workload_size", "Small"))
        kept["workload_size"] = size
        kept["entity_version"] = _version(form.get(f"entity_version:{name}"), kept)
        kept["name"] = _renamed(entity, kept["entity_version"])
        kept["scale_to_zero_enabled"] = form.get(f"scale_to_zero:{name}") == "on"
        entities.append(kept)
        share = _percent(form.get(f"traffic:{name}", str(current[name])))
        routes.append({"served_model_name": kept["name"], "traffic_percentage": share})
    names = {
        e["name"]: kept["name"]
        for e, kept in zip(api["config"]["served_entities"], entities, strict=True)
    }
    traffic: dict[str, Any] = {"routes": routes}
    shadows = (api["config"].get("traffic_config") or {}).get("shadow_routes") or []
    if shadows:  # kept as they are (renamed with their entity)
        traffic["shadow_routes"] = [
            {**r, "served_model_name": names.get(r["served_model_name"], r["served_model_name"])}
            for r in shadows
        ]
    return {"served_entities": entities, "traffic_config": traffic}


def _version(chosen: str | None, entity: dict[str, Any]) -> str:
    """The version the form chose for ``entity`` (its current one when the form has none)."""
    if chosen is None:
        return str(entity.get("entity_version", ""))
    if not chosen.strip().isdigit():
        raise BadInputError(f"Choose a version number for {entity['name']}, not {chosen!r}.")
    return chosen.strip()


def _renamed(entity: dict[str, Any], version: str) -> str:
    """An entity named by default (``<model>-<version>``) follows its new version, as a new
    config without names would be; a name someone chose stays."""
    short = str(entity["entity_name"]).rsplit(".", 1)[-1]
    if entity["name"] == f"{short}-{entity['entity_version']}":
        return f"{short}-{version}"
    return str(entity["name"])


def _percent(text: str) -> Any:
    """A percentage as an int when it is one (else as typed: the shape check names it)."""
    text = text.strip()
    return int(text) if text.isdigit() else text
