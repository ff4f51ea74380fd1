"""Prices and the cost of usage, in integer micro-units (never floats).

A price has one part per pricing mode: per message, per million input / cached input /
output tokens (a per-1K price of x is a per-million price of 1000·x, exact in integers),
and per minute of call time. Costs round *up* to the next micro-unit once, after summing,
so splitting a call never changes what it costs by more than one micro-unit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

MILLION = 1_000_000


@dataclass(frozen=True)
class Price:
    currency_code: str = "USD"
    per_message_micros: int = 0
    input_per_million_micros: int = 0
    cached_input_per_million_micros: int = 0
    output_per_million_micros: int = 0
    per_minute_micros: int = 0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Price:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Metered:
    """What one call used. ``input_tokens`` includes the cached ones."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    duration_ms: int = 0
    messages: int = 1


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def cost_micros(price: Price, used: Metered) -> int:
    """The exact cost of ``used`` at ``price``, rounded up to a whole micro-unit."""
    cached = min(used.cached_input_tokens, used.input_tokens)
    token_part = ((used.input_tokens - cached) * price.input_per_million_micros
                  + cached * price.cached_input_per_million_micros
                  + used.output_tokens * price.output_per_million_micros)
    minute_part = used.duration_ms * price.per_minute_micros
    return (used.messages * price.per_message_micros + _ceil_div(token_part, MILLION)
            + _ceil_div(minute_part, 60_000))


class PriceList:
    """The current price of each model (from configuration). Sessions snapshot entries
    from it, so a price change reaches new sessions only."""

    def __init__(self, prices: Mapping[str, Price]) -> None:
        self._prices = dict(prices)

    @classmethod
    def from_config(cls, models: Mapping[str, Any]) -> PriceList:
        """Build from ``GatewayConfig.models`` (models without pricing are free)."""
        prices = {}
        for name, model in models.items():
            pricing = getattr(model, "pricing", None)
            if pricing is not None:
                prices[name] = Price.from_json(pricing.model_dump())
        return cls(prices)

    def get(self, model: str) -> Price | None:
        return self._prices.get(model)

    def with_price(self, model: str, price: Price) -> PriceList:
        """A new list with ``model`` repriced (price lists are values, never mutated)."""
        return PriceList({**self._prices, model: price})
