"""Prices and the cost of usage, in integer micro-units (never floats).

A price has one part per pricing mode: per message, per million input / cache-read /
cache-write / output tokens (a per-1K price of x is a per-million price of 1000·x, exact
in integers), and per minute of call time. Costs round *up* to the next micro-unit once,
after summing, so splitting a call never changes what it costs by more than one micro-unit.

What is priced is a *target* — a model at a vendor (``provider/model``) — because that is
what the vendor bills and what actually served the call after fallback. Route names are
priced too, for the Charge RPC's ``usage.model`` (a route's own ``pricing``, else the price
of its first target). A target with no entry has no price: it is never silently free
(see ``PriceList.for_target``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

MILLION = 1_000_000


@dataclass(frozen=True)
class Price:
    """``cached_input`` and ``cache_write`` default to the plain input rate (``None``):
    a vendor's cache discount or surcharge only applies when it is configured."""

    currency_code: str = "USD"
    per_message_micros: int = 0
    input_per_million_micros: int = 0
    cached_input_per_million_micros: int | None = None
    cache_write_input_per_million_micros: int | None = None
    output_per_million_micros: int = 0
    per_minute_micros: int = 0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Price:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    @property
    def cache_read_rate(self) -> int:
        return self.input_per_million_micros if self.cached_input_per_million_micros is None \
            else self.cached_input_per_million_micros

    @property
    def cache_write_rate(self) -> int:
        return self.input_per_million_micros if self.cache_write_input_per_million_micros \
            is None else self.cache_write_input_per_million_micros


@dataclass(frozen=True)
class Metered:
    """What one call used. ``input_tokens`` includes the cache-read and cache-written ones."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    duration_ms: int = 0
    messages: int = 1
    cache_write_tokens: int = 0


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def cost_micros(price: Price, used: Metered) -> int:
    """The exact cost of ``used`` at ``price``, rounded up to a whole micro-unit."""
    cached = min(used.cached_input_tokens, used.input_tokens)
    written = min(used.cache_write_tokens, used.input_tokens - cached)
    token_part = ((used.input_tokens - cached - written) * price.input_per_million_micros
                  + cached * price.cache_read_rate
                  + written * price.cache_write_rate
                  + used.output_tokens * price.output_per_million_micros)
    minute_part = used.duration_ms * price.per_minute_micros
    return (used.messages * price.per_message_micros + _ceil_div(token_part, MILLION)
            + _ceil_div(minute_part, 60_000))


def target_key(provider: str, model: str) -> str:
    """How a target is named in price lists and price-locked sessions."""
    return f"{provider}/{model}"


@dataclass(frozen=True)
class TargetPrice:
    """A target's price and the most it writes in one answer (what a hold must cover
    when the caller sets no ``max_output_tokens``; ``None``: the configured default)."""

    price: Price
    max_output_tokens: int | None = None


class PriceList:
    """The current prices (from configuration). Sessions snapshot entries from it, so a
    price change reaches new sessions only. A value: never mutated."""

    def __init__(self, names: Mapping[str, Price],
                 targets: Mapping[str, TargetPrice] | None = None) -> None:
        self._names = dict(names)
        self._targets = dict(targets or {})

    @classmethod
    def from_config(cls, config: Any) -> PriceList:
        """Build from a ``GatewayConfig``: ``prices`` (provider → model → pricing) first,
        then each route's ``pricing`` for the route's own targets not listed there
        (``GatewayConfig`` has already refused routes that price one target differently)."""
        targets: dict[str, TargetPrice] = {}
        for provider, models in config.prices.items():
            for model, pricing in models.items():
                targets[target_key(provider, model)] = _target_price(pricing)
        names: dict[str, Price] = {}
        for name, route in config.models.items():
            if route.pricing is not None:
                entry = _target_price(route.pricing)
                names[name] = entry.price
                for t in route.targets:
                    targets.setdefault(target_key(t.provider, t.model), entry)
        for name, route in config.models.items():
            first = targets.get(target_key(route.targets[0].provider, route.targets[0].model))
            if name not in names and first is not None:
                names[name] = first.price
        return cls(names, targets)

    def get(self, name: str) -> Price | None:
        """The price of a route name or a ``provider/model`` target key."""
        found = self._names.get(name)
        if found is None and (entry := self._targets.get(name)) is not None:
            found = entry.price
        return found

    def for_target(self, provider: str, model: str) -> TargetPrice | None:
        return self._targets.get(target_key(provider, model))

    def unpriced(self, targets: Iterable[tuple[str, str]]) -> list[str]:
        """The ``provider/model`` keys among ``targets`` that have no price, in order."""
        missing: list[str] = []
        for provider, model in targets:
            key = target_key(provider, model)
            if key not in self._targets and key not in missing:
                missing.append(key)
        return missing

    def with_price(self, name: str, price: Price) -> PriceList:
        """A new list with ``name`` (a route or a target key) repriced."""
        targets = dict(self._targets)
        if name in targets:
            targets[name] = TargetPrice(price, targets[name].max_output_tokens)
        return PriceList({**self._names, name: price}, targets)


def _target_price(pricing: Any) -> TargetPrice:
    data = pricing.model_dump()
    return TargetPrice(Price.from_json(data), data.get("max_output_tokens"))
