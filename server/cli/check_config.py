"""``llmgw check-config``: load and validate the configuration, then summarise it."""

from __future__ import annotations

import argparse

from server.cli.options import load, with_config


def register(commands: argparse._SubParsersAction) -> None:
    check = with_config(commands.add_parser("check-config", help="validate the configuration"))
    check.set_defaults(func=run)


def run(ns: argparse.Namespace) -> int:
    config = load(ns)  # every bad key is reported here, before anything starts
    print(f"configuration OK: {len(config.providers)} providers, {len(config.models)} models,"
          f" auth {'on' if config.auth.enabled else 'OFF'},"
          f" database {'external' if config.database.url else 'embedded'},"
          f" rate limits {'redis' if config.rate_limits.redis_url else 'in-process'}")
    return 0
