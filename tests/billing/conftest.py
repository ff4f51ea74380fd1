"""Billing fixtures: a ledger on the shared test Postgres, and fresh wallets per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from server.billing.ledger import Ledger
from server.billing.pricing import Price, PriceList
from server.billing.runtime import BillingRuntime, BillingSettings

PRICES = PriceList({
    "tok-model": Price(input_per_million_micros=2_000_000, output_per_million_micros=8_000_000,
                       cached_input_per_million_micros=500_000),
    "msg-model": Price(per_message_micros=1_500),
    "eur-model": Price(currency_code="EUR", per_message_micros=10),
})


@pytest.fixture(scope="session")
async def billing(pg_url: str) -> AsyncIterator[BillingRuntime]:
    runtime = BillingRuntime(pg_url, PRICES, BillingSettings(pool_size=6, sweep_interval_s=0.2))
    await runtime.start()
    yield runtime
    await runtime.stop()


@pytest.fixture
def ledger(billing: BillingRuntime) -> Ledger:
    return billing.ledger


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def funded_wallet(ledger: Ledger) -> Callable[..., Awaitable[str]]:
    """Make a new wallet holding ``balance`` micro-units; returns its id."""

    async def make(balance: int = 0, currency: str = "USD", overdraft: int = 0) -> str:
        wallet_id = unique("w")
        await ledger.create_wallet(wallet_id, currency, overdraft)
        if balance:
            await ledger.credit("tests", wallet_id, unique("seed"), balance)
        return wallet_id

    return make


@pytest.fixture
def scope() -> str:
    """A fresh idempotency scope (caller), so tests never share keys."""
    return unique("svc")
