"""Turn a request into an ordered chain of targets.

A chain is the explicit targets of the request, or the named route's targets, then the
configured universal fallback, with consecutive duplicates removed (so a route ending in
the universal fallback does not try it twice in a row).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from server.config import GatewayConfig
from server.errors import Code, FieldViolation, GatewayError, invalid_argument


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


class ChainBuilder:
    """Resolves model names and explicit targets against the configuration."""

    def __init__(self, config: GatewayConfig, providers: Mapping[str, object]) -> None:
        self._routes = {
            name: [Target(t.provider, t.model, t.region) for t in model.targets]
            for name, model in config.models.items()
        }
        fallback = config.universal_fallback
        self._universal = Target(fallback.provider, fallback.model, fallback.region) \
            if fallback else None
        self._providers = providers

    @property
    def routes(self) -> Mapping[str, list[Target]]:
        return self._routes

    def build(self, model: str, explicit: Sequence[Target] = (),
              region: str = "") -> list[Target]:
        """The chain for a request; raises INVALID_ARGUMENT naming the bad field."""
        if explicit:
            bad = [FieldViolation(f"targets[{i}].provider", f"unknown provider {t.provider!r}")
                   for i, t in enumerate(explicit) if t.provider not in self._providers]
            bad += [FieldViolation(f"targets[{i}].model", "must not be empty")
                    for i, t in enumerate(explicit) if not t.model]
            if bad:
                raise invalid_argument(bad)
            chain = list(explicit)
        elif model in self._routes:
            chain = list(self._routes[model])
        elif not model:
            raise invalid_argument([FieldViolation("model", "required (or set targets)")])
        else:
            raise GatewayError(Code.INVALID_ARGUMENT, "UNKNOWN_MODEL",
                               f"model {model!r} is not served; ListModels lists the names",
                               violations=[FieldViolation("model", f"unknown model {model!r}")],
                               metadata={"model": model})
        if region:
            chain = [Target(t.provider, t.model, t.region or region) for t in chain]
        if self._universal is not None:
            chain.append(self._universal)
        return dedupe_consecutive(chain)
