"""Named routes (model alias → targets, strategy, fallbacks) from the config and the database.

Why two sources: the config file is reviewed and deployed with the code; the database lets
an operator reroute a model during an incident without a deploy (``llmgw routes set``).
A database route with the same name overrides the config's. ``RouteCache`` holds the
current merged view; the gateway refreshes it from the database periodically, so every
process picks a change up without a restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from server.kernel.config import GatewayConfig, ModelConfig


@dataclass(frozen=True)
class RouteTarget:
    provider: str
    model: str
    region: str = ""
    pin_region: bool = False
    weight: int = 1


@dataclass(frozen=True)
class Route:
    """A model alias: its primary targets and how to order them, then its fallbacks."""

    name: str
    targets: tuple[RouteTarget, ...]
    strategy: str = "ordered"  # "ordered" | "weighted"
    fallbacks: tuple[str, ...] = ()
    description: str = ""


def route_from_model(name: str, model: ModelConfig) -> Route:
    return Route(
        name=name,
        targets=tuple(RouteTarget(t.provider, t.model, t.region, t.pin_region, t.weight)
                      for t in model.targets),
        strategy=model.strategy, fallbacks=tuple(model.fallbacks),
        description=model.description)


def route_from_spec(name: str, spec: Mapping[str, Any]) -> Route:
    """Validate a stored/CLI route spec (the config's ``models.<name>`` shape);
    raises pydantic.ValidationError naming the bad key."""
    return route_from_model(name, ModelConfig.model_validate(dict(spec)))


def route_to_spec(route: Route) -> dict[str, Any]:
    """The stored form of a route (the config's ``models.<name>`` shape, no pricing)."""
    return {
        "description": route.description,
        "strategy": route.strategy,
        "fallbacks": list(route.fallbacks),
        "targets": [{"provider": t.provider, "model": t.model, "region": t.region,
                     "pin_region": t.pin_region, "weight": t.weight} for t in route.targets],
    }


def routes_from_config(config: GatewayConfig) -> dict[str, Route]:
    return {name: route_from_model(name, model) for name, model in config.models.items()}


def configured_targets(config: GatewayConfig) -> list[tuple[str, str]]:
    """Every (provider, model) a configured route or the universal fallback can reach:
    what must be priced (``llmgw check-config`` lists the ones that are not)."""
    pairs = [(t.provider, t.model) for model in config.models.values() for t in model.targets]
    if config.universal_fallback is not None:
        pairs.append((config.universal_fallback.provider, config.universal_fallback.model))
    return pairs


class RouteCache:
    """The routes in force: the config's, overridden by the database's latest snapshot."""

    def __init__(self, configured: Mapping[str, Route]) -> None:
        self._configured = dict(configured)
        self._current = dict(configured)

    def replace_overrides(self, stored: Mapping[str, Route]) -> None:
        """Swap in a new database snapshot (one assignment: readers never see a mix)."""
        self._current = {**self._configured, **stored}

    def get(self, name: str) -> Route | None:
        return self._current.get(name)

    def all(self) -> Mapping[str, Route]:
        return self._current
