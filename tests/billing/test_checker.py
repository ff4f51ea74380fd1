"""`llmgw ledger check` passes on sound books and exits 1, naming the broken invariant,
when they are tampered with (on a database of its own, so other tests are unaffected)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from server.billing.pricing import PriceList
from server.billing.runtime import BillingRuntime, BillingSettings, asyncpg_url
from server.kernel.db.migrate import upgrade
from tests.billing.test_multiprocess import ledger_check


@pytest.fixture(scope="module")
def scratch_url(pg_url: str) -> Iterator[str]:
    name = f"ledger_check_{uuid.uuid4().hex[:8]}"
    admin = asyncpg_url(pg_url)

    async def sql(statement: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(sql(f"CREATE DATABASE {name}"))
    url = urlunsplit(urlsplit(admin)._replace(path=f"/{name}"))
    upgrade(url)
    yield url
    asyncio.run(sql(f"DROP DATABASE {name} WITH (FORCE)"))


async def test_the_checker_passes_sound_books_and_names_what_breaks(scratch_url):
    runtime = BillingRuntime(scratch_url, PriceList({}), BillingSettings(pool_size=2))
    ledger = await runtime.start(sweep=False)
    try:
        await ledger.create_wallet("w", "USD")
        await ledger.credit("t", "w", "c", 1_000)
        charge = await ledger.charge("t", "w", "x", amount=300)
        await ledger.hold("t", "w", "h", 200, ttl_s=60)
        await ledger.refund("t", charge.transaction_id, "r")
    finally:
        await runtime.stop()
    ok = await asyncio.to_thread(ledger_check, scratch_url)
    assert ok.returncode == 0, ok.stdout
    assert "ledger OK" in ok.stdout

    conn = await asyncpg.connect(scratch_url)
    try:  # money out of nowhere: a balance that no entries explain
        await conn.execute("UPDATE ledger_accounts SET balance = balance + 5 WHERE id = 'w'")
    finally:
        await conn.close()
    broken = await asyncio.to_thread(ledger_check, scratch_url)
    assert broken.returncode == 1
    assert "account balance equals the sum of its posted entries: w: 1005 <> 1000" in broken.stdout
    assert "money is conserved per currency" in broken.stdout
