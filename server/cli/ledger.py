"""``llmgw ledger check``: run the ledger's invariant checker against the database.

Exit status 0 when every invariant holds and 1 otherwise, so it can gate a deploy or run
from cron; the violations are printed one a line, naming the invariant and the account.
"""

from __future__ import annotations

import argparse
import asyncio

from server.cli.options import database_url, load, with_config


def register(commands: argparse._SubParsersAction) -> None:
    ledger = commands.add_parser("ledger", help="wallet ledger tools")
    tools = ledger.add_subparsers(dest="ledger_command", required=True)
    check = with_config(tools.add_parser(
        "check", help="verify every ledger invariant; exit 1 on any violation"))
    check.set_defaults(func=run_check)


def run_check(ns: argparse.Namespace) -> int:
    return asyncio.run(_check(database_url(load(ns))))


async def _check(url: str) -> int:
    import asyncpg

    from server.billing.checker import check_ledger, ledger_totals
    from server.billing.runtime import asyncpg_url

    conn = await asyncpg.connect(asyncpg_url(url))
    try:
        violations = await check_ledger(conn)
        totals = await ledger_totals(conn)
    finally:
        await conn.close()
    summary = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in totals.items())
    if not violations:
        print(f"ledger OK: {summary}")
        return 0
    print(f"ledger BROKEN: {len(violations)} violation(s) ({summary})")
    for v in violations:
        print(f"  {v.check}: {v.subject}: {v.detail}")
    return 1
