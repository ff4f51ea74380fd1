"""``llmgw ledger check``: run the invariant checker against a database and report."""

from __future__ import annotations

import asyncio

import asyncpg

from server.billing.checker import check_ledger, ledger_totals
from server.billing.runtime import asyncpg_url


async def _check(url: str) -> int:
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


def run_check(url: str) -> int:
    """Exit status: 0 when every invariant holds, 1 otherwise."""
    return asyncio.run(_check(url))
