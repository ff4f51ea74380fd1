"""Turn a request into an ordered chain of targets.

A chain is the explicit targets of the request, or the named route's targets (drawn by
weight when the route is ``weighted``), then the route's fallback models — those at the
primary's provider first, then the cross-provider ones — then the configured universal
fallback. Every target at a regional provider expands into its region chain (the
caller's preferred region first). Consecutive duplicates are removed (so a route ending
in the universal fallback does not try it twice in a row).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from server.kernel.config import GatewayConfig
from server.kernel.errors import Fault, FieldViolation, GatewayError, invalid_argument
from server.kernel.tenancy import SEPARATOR, Tenant
from server.fallback.balance import weighted_order
from server.fallback.regions import RegionPolicy, region_chain
from server.fallback.routes import Route, RouteCache, RouteTarget, routes_from_config

MAX_FALLBACK_DEPTH = 4


@dataclass(frozen=True)
class Target:
    """A model at a vendor, optionally in a region."""

    provider: str
    model: str
    region: str = ""

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}" + (f"@{self.region}" if self.region else "")


def dedupe_consecutive(targets: Sequence[Target]) -> list[Target]:
    out: list[Target] = []
    for target in targets:
        if not out or out[-1] != target:
            out.append(target)
    return out


def region_policies(config: GatewayConfig) -> dict[str, RegionPolicy]:
    return {name: RegionPolicy(p.region, tuple(p.failover_regions))
            for name, p in config.providers.items()}


class ChainBuilder:
    """Resolves model names and explicit targets against the routes in force."""

    def __init__(self, config: GatewayConfig, providers: Mapping[str, object], *,
                 routes: RouteCache | None = None,
                 rng: Callable[[], float] = random.random) -> None:
        self._cache = routes or RouteCache(routes_from_config(config))
        fallback = config.universal_fallback
        self._universal = RouteTarget(fallback.provider, fallback.model, fallback.region,
                                      fallback.pin_region) if fallback else None
        self._providers = providers
        self._regions = region_policies(config)
        self._rng = rng

    def routes(self, tenant: Tenant = Tenant()) -> Mapping[str, list[Target]]:
        """The routes ``tenant`` may call, by the names it calls them (shared ones, its own
        shadowing them), with each one's primary targets (for ListModels)."""
        found: dict[str, list[Target]] = {}
        for stored, route in sorted(self._cache.all().items(),
                                    key=lambda item: SEPARATOR in item[0]):
            if SEPARATOR in stored and not (tenant.owns(stored) and not tenant.is_default):
                continue
            found[tenant.shown(stored)] = [Target(t.provider, t.model, t.region)
                                           for t in route.targets]
        return found

    def build(self, model: str, explicit: Sequence[Target] = (),
              region: str = "", tenant: Tenant = Tenant()) -> list[Target]:
        """The chain for a request; raises INVALID_ARGUMENT naming the bad field. A
        tenant's own route (``llmgw routes set --tenant``) shadows a shared one of the same
        name; other tenants' routes do not exist for it."""
        if explicit:
            bad = [FieldViolation(f"targets[{i}].provider", f"unknown provider {t.provider!r}")
                   for i, t in enumerate(explicit) if t.provider not in self._providers]
            bad += [FieldViolation(f"targets[{i}].model", "must not be empty")
                    for i, t in enumerate(explicit) if not t.model]
            if bad:
                raise invalid_argument(bad)
            # An explicit region is the caller's pin.
            planned = [RouteTarget(t.provider, t.model, t.region, pin_region=bool(t.region))
                       for t in explicit]
        elif (route := self._route(model, tenant)) is not None:
            planned = self._route_targets(route, tenant)
        elif not model:
            raise invalid_argument([FieldViolation("model", "required (or set targets)")])
        else:
            raise GatewayError(Fault.INVALID_INPUT, "UNKNOWN_MODEL",
                               f"model {model!r} is not served; ListModels lists the names",
                               violations=[FieldViolation("model", f"unknown model {model!r}")],
                               metadata={"model": model})
        if self._universal is not None:
            planned.append(self._universal)
        chain = [target for planned_target in planned
                 for target in self._expand(planned_target, region)]
        return dedupe_consecutive(chain)

    def _primary(self, route: Route) -> list[RouteTarget]:
        if route.strategy == "weighted":
            return weighted_order(route.targets, [t.weight for t in route.targets], self._rng)
        return list(route.targets)

    def _route(self, name: str, tenant: Tenant) -> Route | None:
        own = tenant.own(name, "model")  # refuses the separator: no reaching others' routes
        found = self._cache.get(own)
        if found is None and own != name:
            found = self._cache.get(name)
        return found

    def _route_targets(self, route: Route, tenant: Tenant) -> list[RouteTarget]:
        primary = self._primary(route)
        home = primary[0].provider if primary else ""
        fallbacks: list[RouteTarget] = []
        seen = {route.name}
        pending = [(name, 1) for name in route.fallbacks]
        while pending:
            name, depth = pending.pop(0)
            other = self._route(name, tenant) if SEPARATOR not in name else None
            if other is None or name in seen or depth > MAX_FALLBACK_DEPTH:
                continue
            seen.add(name)
            fallbacks.extend(self._primary(other))
            pending.extend((n, depth + 1) for n in other.fallbacks)
        # Provider-specific fallbacks first (stable), then cross-provider ones.
        fallbacks.sort(key=lambda t: t.provider != home)
        return primary + fallbacks

    def _expand(self, target: RouteTarget, preferred: str) -> list[Target]:
        policy = self._regions.get(target.provider, RegionPolicy())
        if not policy.regional:
            # A vendor without regions: the request's region is only a label.
            return [Target(target.provider, target.model, target.region or preferred)]
        return [Target(target.provider, target.model, r)
                for r in region_chain(policy, target.region, preferred, target.pin_region)]
