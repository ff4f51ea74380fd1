"""What a served call cost at the vendor, from per-model prices in the configuration.

Prices are integers: micro-units of the currency per million tokens (input, output,
cached input), as in ``models.<name>.pricing``. A route's price applies to each of its
targets, so a call served by a fallback is priced at the model that served it. Costs are
computed in integers and rounded up once to a whole micro-unit. (Billing charges the
customer with its own price list and session price locks, in ``server/billing``; this
is the vendor-side cost, for usage records and cost metrics.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from server.config import GatewayConfig
from server.providers.base import Usage

MILLION = 1_000_000


@dataclass(frozen=True)
class TokenPrice:
    """Micro-units per million tokens. ``cached_input`` 0 means "no discount": the input
    price applies; cache writes are priced as input."""

    input: int = 0
    output: int = 0
    cached_input: int = 0
    currency: str = "USD"


def call_cost_micros(price: TokenPrice, usage: Usage) -> int:
    """The cost of one call; ``usage.input_tokens`` includes the cached ones."""
    cached = min(usage.cached_input_tokens, usage.input_tokens)
    cached_rate = price.cached_input or price.input
    total = ((usage.input_tokens - cached) * price.input + cached * cached_rate
             + usage.output_tokens * price.output)
    return -(-total // MILLION)


class PriceTable:
    """Prices by model alias and by served target (provider, vendor model)."""

    def __init__(self, by_model: Mapping[str, TokenPrice],
                 by_target: Mapping[tuple[str, str], TokenPrice]) -> None:
        self._by_model = dict(by_model)
        self._by_target = dict(by_target)

    @classmethod
    def from_config(cls, config: GatewayConfig) -> PriceTable:
        by_model: dict[str, TokenPrice] = {}
        by_target: dict[tuple[str, str], TokenPrice] = {}
        for name, model in config.models.items():
            if model.pricing is None:
                continue
            p = model.pricing
            price = TokenPrice(p.input_per_million_micros, p.output_per_million_micros,
                               p.cached_input_per_million_micros, p.currency_code)
            by_model[name] = price
            for target in model.targets:
                # The first route that prices a target wins: a fallback target listed
                # in several routes keeps one price.
                by_target.setdefault((target.provider, target.model), price)
        return cls(by_model, by_target)

    def for_model(self, name: str) -> TokenPrice | None:
        return self._by_model.get(name)

    def for_target(self, provider: str, model: str) -> TokenPrice | None:
        return self._by_target.get((provider, model))

    def cost_micros(self, provider: str, model: str, usage: Usage) -> int | None:
        """The served target's cost, or None when it has no configured price."""
        price = self.for_target(provider, model)
        return None if price is None else call_cost_micros(price, usage)
