"""``llmgw check-config``: load and validate the configuration, then summarise it."""

from __future__ import annotations

import argparse

from server.billing.pricing import PriceList
from server.cli.options import load, with_config
from server.fallback.routes import configured_targets


def register(commands: argparse._SubParsersAction) -> None:
    check = with_config(commands.add_parser("check-config", help="validate the configuration"))
    check.set_defaults(func=run)


def run(ns: argparse.Namespace) -> int:
    config = load(ns)  # every bad key is reported here, before anything starts
    unpriced = PriceList.from_config(config).unpriced(configured_targets(config))
    if unpriced:
        # Not fatal to `serve` (unbilled calls work), but billed calls reaching these fail
        # closed, so a deployment check must see them.
        for key in unpriced:
            print(f"error: target {key} has no price: set prices.{key.replace('/', '.', 1)}"
                  " (or its route's pricing)")
        return 1
    print(f"configuration OK: {len(config.providers)} providers, {len(config.models)} models,"
          f" auth {'on' if config.auth.enabled else 'OFF'},"
          f" database {'external' if config.database.url else 'embedded'},"
          f" rate limits {'redis' if config.rate_limits.redis_url else 'in-process'}")
    return 0
