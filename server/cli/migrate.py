"""``llmgw migrate``: apply the Alembic migrations (and load the canonical prompts)."""

from __future__ import annotations

import argparse

from server.cli.options import load, with_config


def register(commands: argparse._SubParsersAction) -> None:
    migrate = with_config(commands.add_parser("migrate", help="apply database migrations"))
    migrate.set_defaults(func=run)


def run(ns: argparse.Namespace) -> int:
    from server.serve import prepare_database

    config = load(ns)
    config = config.model_copy(update={
        "database": config.database.model_copy(update={"migrate_on_start": True})})
    url = prepare_database(config)
    print(f"migrated {'embedded database' if not config.database.url else 'DATABASE_URL'}"
          f" to head ({url.split('?')[0].rsplit('@', 1)[-1] or 'unix socket'})")
    if config.prompts.load_defaults:
        import asyncio

        from server.prompts.store import load_default_prompts

        added = asyncio.run(load_default_prompts(url))
        print(f"prompt templates: {added} canonical version(s) added")
    return 0
