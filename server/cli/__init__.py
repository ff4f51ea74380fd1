"""``llmgw``: the command line of the gateway, one module per command group.

The CLI is app shell, like ``server/serve.py``: it parses arguments, builds the domain
objects a command needs, prints and chooses the exit code. The domain packages it calls
(``server/billing``, ``server/rag``, ``server/fallback``) know nothing of it.

Each command module exposes ``register(commands)``, which adds its sub-parser and sets
``func`` to a function returning the exit code. Command modules import their domain
lazily, inside the command, so ``llmgw token`` or ``llmgw --help`` do not load the
embedding model or the database drivers.
"""

from __future__ import annotations

import argparse

from server.cli import audit, check_config, ingest, ledger, migrate, routes, serve, token

COMMAND_GROUPS = (serve, migrate, token, ledger, ingest, routes, audit, check_config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmgw", description="LLM gateway")
    commands = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command (``argv`` defaults to ``sys.argv[1:]``); returns its exit code."""
    ns = build_parser().parse_args(argv)
    return ns.func(ns) or 0
