"""More than one version on an endpoint: the champion and a challenger side by side.

``gcn-rag up --challenger`` and ``gcn-rag endpoints challenger`` serve the version aliased
``challenger`` beside the endpoint's main entity (the one taking the most traffic), as a share
of live traffic or as a shadow (:mod:`gcn_rag.serving.shadow`); both follow their aliases
(:meth:`gcn_rag.serving.manager.EndpointManager.follow_aliases`), and after a promotion or
rollback :func:`await_followers` waits for the endpoints to have followed.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

from gcn_rag.errors import BadInputError, DeadlineExceededError, GcnRagError, NotFoundError
from gcn_rag.progress import SILENT, Reporter
from gcn_rag.serving.endpoints import default_entity_name, resent

if TYPE_CHECKING:
    from gcn_rag.serving.client import ServingClient
    from gcn_rag.settings import Settings


def main_entity(config: dict[str, Any]) -> dict[str, Any]:
    """The served entity that takes the most traffic (the only one, usually)."""
    shares = {
        route.get("served_model_name") or route.get("served_entity_name"): route.get(
            "traffic_percentage", 0
        )
        for route in (config.get("traffic_config") or {}).get("routes", [])
    }
    return max(config["served_entities"], key=lambda e: shares.get(e.get("name"), 0))


@dataclasses.dataclass(frozen=True)
class Challenger:
    """A second served entity beside the champion: ``alias``'s version (``version``, as it
    names now), ``percent`` of live traffic, or with ``shadow`` a mirrored copy of that share
    of the requests (answers captured, never returned)."""

    version: str
    alias: str = "challenger"
    percent: int = 10
    shadow: bool = False

    def config(self, current: dict[str, Any]) -> dict[str, Any]:
        """``current`` (as GET returns it) with its main entity and the challenger only."""
        main = resent(main_entity(current))
        name = default_entity_name(main["entity_name"], self.version)
        if name == main["name"]:
            raise BadInputError(
                f"The {self.alias} is version {self.version}, the version the endpoint already "
                f"serves as {main['name']}; log another: `gcn-rag model log --alias {self.alias}`."
            )
        entity = {**main, "name": name, "entity_version": self.alias, "entity_alias": self.alias}
        entity["scale_to_zero_enabled"] = False  # an arm of a comparison stays warm
        live = 0 if self.shadow else self.percent
        traffic: dict[str, Any] = {
            "routes": [
                {"served_model_name": main["name"], "traffic_percentage": 100 - live},
                {"served_model_name": name, "traffic_percentage": live},
            ]
        }
        if self.shadow:
            traffic["shadow_routes"] = [
                {"served_model_name": name, "shadow_percentage": self.percent}
            ]
        return {"served_entities": [main, entity], "traffic_config": traffic}

    def serves(self, current: dict[str, Any]) -> bool:
        """Whether ``current`` already serves the champion and this challenger as asked."""
        asked = self.config(current)
        versions = {e["name"]: str(e["entity_version"]) for e in current["served_entities"]}
        challenger = asked["served_entities"][1]["name"]
        return (
            set(versions) == {e["name"] for e in asked["served_entities"]}
            and versions[challenger] == self.version
            and _shares(current, "routes") == _shares(asked, "routes")
            and _shares(current, "shadow_routes") == _shares(asked, "shadow_routes")
        )


def _shares(config: dict[str, Any], kind: str) -> set[tuple[str, int]]:
    """A config's routes (or shadow routes) as (entity, percent) pairs."""
    field = "shadow_percentage" if kind == "shadow_routes" else "traffic_percentage"
    routes = (config.get("traffic_config") or {}).get(kind, [])
    return {(r["served_model_name"], int(r[field])) for r in routes}


def challenger_for(
    settings: Settings, percent: int | None, shadow: bool, alias: str = "challenger"
) -> Challenger:
    """The :class:`Challenger` the registry's ``alias`` names now (default share: 10% of live
    traffic, or 50% of requests mirrored); a clear error when no version has the alias."""
    from gcn_rag.model import registry

    try:
        version = registry.resolve(settings, alias).version
    except NotFoundError:
        raise NotFoundError(
            f"No version is aliased {alias}: log one with `gcn-rag model log --alias {alias}` "
            f"(or `gcn-rag model alias set {alias} N`)."
        ) from None
    share = percent if percent is not None else (50 if shadow else 10)
    if not shadow and share >= 100:
        raise BadInputError(f"{share}% of live traffic leaves the champion none; use < 100.")
    if not 0 < share <= 100:
        raise BadInputError(f"The challenger's share must be 1 to 100 %; got {share}.")
    return Challenger(version, alias, share, shadow)


def serve_alone(client: ServingClient, name: str, reporter: Reporter = SILENT) -> dict[str, Any]:
    """Serve only ``name``'s main entity again (the challenger and any shadow removed)."""
    current = client.get(name)["config"]
    if len(current["served_entities"]) == 1:
        reporter.note(f"Endpoint: {name} serves one entity already.")
        return client.wait(name)
    main = resent(main_entity(current))
    route = {"served_model_name": main["name"], "traffic_percentage": 100}
    client.update_config(name, {"served_entities": [main], "traffic_config": {"routes": [route]}})
    reporter.note(f"Endpoint: {name} serves {main['name']} alone again.")
    return client.wait(name)


def await_followers(
    client: ServingClient, alias: str, version: str, timeout_s: float = 600
) -> list[str]:
    """Wait until every endpoint with an entity following ``alias`` serves ``version`` with
    no update in progress (the server follows within seconds); their names. Raises if one
    failed to load it, or did not follow within ``timeout_s``."""
    deadline, followers = time.monotonic() + timeout_s, []
    for endpoint in client.list():
        if not any(e.get("entity_alias") == alias for e in endpoint["config"]["served_entities"]):
            continue
        while True:
            got = client.get(endpoint["name"])
            entities = got["config"]["served_entities"]
            served = {str(e["entity_version"]) for e in entities if e.get("entity_alias") == alias}
            if served == {version} and got["state"]["config_update"] == "NOT_UPDATING":
                break
            if got["state"]["config_update"] == "UPDATE_FAILED":
                raise GcnRagError(
                    f"Endpoint {endpoint['name']} could not follow {alias} to version {version}; "
                    f"see `gcn-rag endpoints get {endpoint['name']}` and its logs."
                )
            if time.monotonic() > deadline:
                raise DeadlineExceededError(
                    f"Endpoint {endpoint['name']} did not follow {alias} to version {version} "
                    f"within {timeout_s:g} s."
                )
            time.sleep(0.2)
        followers.append(endpoint["name"])
    return followers


def serve_challenger(
    client: ServingClient, name: str, challenger: Challenger, reporter: Reporter = SILENT
) -> dict[str, Any]:
    """Serve ``challenger`` beside the champion on ``name`` (an update, zero downtime)."""
    current = client.get(name)["config"]
    how = "shadow copies of" if challenger.shadow else "live traffic:"
    said = f"{challenger.alias} (version {challenger.version}), {how} {challenger.percent}%"
    if challenger.serves(current):
        reporter.note(f"Endpoint: {name} already serves the {said}.")
    else:
        reporter.note(f"Endpoint: serving the {said} on {name}.")
        client.update_config(name, challenger.config(current))
    return client.wait(name)
