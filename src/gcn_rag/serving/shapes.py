"""The management API's request bodies, checked at the HTTP edge (pydantic lives here only).

Each route validates its JSON against one of these shapes before the library sees it, so a
wrong type anywhere is a 400 that names the field (``config.traffic_config.routes.0.
traffic_percentage: Input should be a valid integer``), never a 500 from deep inside. Fields
Databricks has and we do not use are let through untouched; what the values mean (versions,
names, percentages adding up) is checked by :mod:`gcn_rag.serving.endpoints`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gcn_rag.errors import BadInputError
from gcn_rag.serving.feedback import MAX_COMMENT, REQUEST_ID


class _Shape(BaseModel):
    model_config = ConfigDict(extra="allow")


class ServedEntity(_Shape):
    name: str | None = None
    entity_name: str
    entity_version: str | int | None = None
    workload_size: str | None = None
    workload_type: str | None = None
    scale_to_zero_enabled: bool | None = None


class Route(_Shape):
    served_model_name: str | None = None
    served_entity_name: str | None = None
    traffic_percentage: int = Field(ge=0, le=100, strict=True)


class ShadowRoute(_Shape):
    served_model_name: str
    shadow_percentage: int = Field(ge=0, le=100, strict=True)


class TrafficConfig(_Shape):
    routes: list[Route] = []
    shadow_routes: list[ShadowRoute] = []


class CaptureConfig(_Shape):
    catalog_name: str | None = None
    schema_name: str | None = None
    table_name_prefix: str | None = None
    enabled: bool | None = None
    sampling_fraction: float | None = None


class EndpointConfig(_Shape):
    served_entities: list[ServedEntity] = Field(min_length=1)
    traffic_config: TrafficConfig | None = None
    auto_capture_config: CaptureConfig | None = None


class RateLimit(_Shape):
    calls: int = Field(strict=True)
    key: str | None = None
    renewal_period: str | None = None


class AiGateway(_Shape):
    guardrails: dict[str, Any] | None = None
    inference_table_config: CaptureConfig | None = None
    rate_limits: list[RateLimit] | None = None
    usage_tracking_config: dict[str, Any] | None = None
    fallback_config: dict[str, Any] | None = None


class CreateEndpoint(_Shape):
    name: str
    config: EndpointConfig
    ai_gateway: AiGateway | None = None


class Feedback(BaseModel):
    """``POST /serving-endpoints/{name}/feedback``; an unknown field is refused (a typo such
    as ``ratng`` would otherwise be dropped without a word)."""

    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(pattern=REQUEST_ID, strict=True)
    rating: Literal["positive", "negative"] | None = None
    comment: str | None = Field(default=None, max_length=MAX_COMMENT, strict=True)


def checked(shape: type[BaseModel], body: Any) -> dict[str, Any]:
    """``body`` as a plain dict once it fits ``shape``, or a 400 naming every wrong field."""
    if not isinstance(body, dict):
        raise BadInputError("The request body must be a JSON object.")
    try:
        return shape.model_validate(body).model_dump(exclude_none=True)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
            for error in exc.errors()[:5]
        )
        raise BadInputError(f"The request body does not fit: {problems}.") from None
