"""The ledger's semantics (DESIGN.md §3 "Ledger"), on a real Postgres."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from server.billing.checker import check_ledger
from server.billing.ledger import Ledger
from server.billing.pricing import Metered, Price
from server.billing.runtime import BillingRuntime
from server.kernel.errors import Fault, GatewayError
from tests.billing.conftest import unique


async def assert_books_balance(billing: BillingRuntime) -> None:
    async with billing.pool.acquire() as conn:
        assert await check_ledger(conn) == []


async def test_credit_then_charge_moves_exact_amounts(scope, ledger, funded_wallet, billing):
    wallet = await funded_wallet(1_000)
    charged = await ledger.charge(scope, wallet, "c1", amount=300, description="lunch")
    assert (charged.amount, charged.balance_after, charged.replayed) == (-300, 700, False)
    w = await ledger.wallet(wallet)
    assert (w.balance, w.held, w.available) == (700, 0, 700)
    await assert_books_balance(billing)


async def test_replay_returns_the_first_result_and_moves_no_money(scope, ledger, funded_wallet):
    wallet = await funded_wallet(1_000)
    first = await ledger.charge(scope, wallet, "same-key", amount=100)
    again = await ledger.charge(scope, wallet, "same-key", amount=100)
    assert again.replayed and not first.replayed
    assert (again.transaction_id, again.amount, again.balance_after) == \
        (first.transaction_id, first.amount, first.balance_after)
    assert (await ledger.wallet(wallet)).balance == 900


async def test_same_key_with_a_different_body_is_rejected(scope, ledger, funded_wallet):
    wallet = await funded_wallet(1_000)
    await ledger.charge(scope, wallet, "k", amount=100)
    with pytest.raises(GatewayError) as err:
        await ledger.charge(scope, wallet, "k", amount=101)
    assert err.value.code is Fault.CONFLICT
    assert err.value.reason == "IDEMPOTENCY_KEY_REUSED"
    assert err.value.violations[0].field == "idempotency_key"
    assert (await ledger.wallet(wallet)).balance == 900


async def test_idempotency_keys_are_scoped_to_the_caller(scope, ledger, funded_wallet):
    wallet = await funded_wallet(1_000)
    await ledger.charge(scope + "-a", wallet, "k", amount=100)
    other = await ledger.charge(scope + "-b", wallet, "k", amount=100)
    assert not other.replayed
    assert (await ledger.wallet(wallet)).balance == 800


async def test_no_overdraft_without_a_limit(scope, ledger, funded_wallet):
    wallet = await funded_wallet(100)
    with pytest.raises(GatewayError) as err:
        await ledger.charge(scope, wallet, unique("k"), amount=101)
    assert (err.value.code, err.value.reason) == (Fault.REFUSED, "INSUFFICIENT_FUNDS")
    assert (await ledger.charge(scope, wallet, unique("k"), amount=100)).balance_after == 0


async def test_overdraft_limit_is_the_floor(scope, ledger, funded_wallet):
    wallet = await funded_wallet(100, overdraft=50)
    assert (await ledger.charge(scope, wallet, unique("k"), amount=150)).balance_after == -50
    with pytest.raises(GatewayError, match="INSUFFICIENT_FUNDS"):
        await ledger.charge(scope, wallet, unique("k"), amount=1)


async def test_failed_charge_can_be_retried_with_its_key_after_a_top_up(scope, ledger,
                                                                        funded_wallet):
    wallet = await funded_wallet(10)
    with pytest.raises(GatewayError, match="INSUFFICIENT_FUNDS"):
        await ledger.charge(scope, wallet, "retry-me", amount=50)
    await ledger.credit(scope, wallet, unique("top"), 100)
    assert (await ledger.charge(scope, wallet, "retry-me", amount=50)).balance_after == 60


async def test_hold_settle_posts_actual_and_releases_the_rest(scope, ledger, funded_wallet,
                                                              billing):
    wallet = await funded_wallet(1_000)
    hold = await ledger.hold(scope, wallet, "h", 600, ttl_s=60)
    w = await ledger.wallet(wallet)
    assert (w.balance, w.held, w.available) == (1_000, 600, 400)
    with pytest.raises(GatewayError, match="INSUFFICIENT_FUNDS"):
        await ledger.charge(scope, wallet, unique("k"), amount=401)  # the hold is reserved
    settled = await ledger.settle(scope, hold.transaction_id, "s", 250)
    assert (settled.amount, settled.balance_after) == (-250, 750)
    w = await ledger.wallet(wallet)
    assert (w.balance, w.held) == (750, 0)
    await assert_books_balance(billing)


async def test_a_settle_beyond_its_hold_takes_what_the_wallet_can_pay(scope, ledger,
                                                                      funded_wallet):
    wallet = await funded_wallet(1_000)
    hold = await ledger.hold(scope, wallet, "h", 100, ttl_s=60)
    over = await ledger.settle(scope, hold.transaction_id, "s", 101)
    assert (over.amount, over.balance_after) == (-101, 899)  # the excess, in one operation
    hold = await ledger.hold(scope, wallet, "h2", 100, ttl_s=60)
    capped = await ledger.settle(scope, hold.transaction_id, "s2", 5_000)
    assert (capped.amount, capped.balance_after) == (-899, 0)  # no further than it can pay
    assert (await ledger.wallet(wallet)).held == 0


async def test_a_hold_finishes_once(scope, ledger, funded_wallet):
    wallet = await funded_wallet(1_000)
    hold = await ledger.hold(scope, wallet, "h", 100, ttl_s=60)
    await ledger.void(scope, hold.transaction_id, "v")
    with pytest.raises(GatewayError, match="HOLD_CLOSED"):
        await ledger.settle(scope, hold.transaction_id, "s", 50)
    assert (await ledger.wallet(wallet)).balance == 1_000


async def test_expired_holds_are_released_by_the_sweeper(scope, ledger, funded_wallet, billing):
    wallet = await funded_wallet(1_000)
    await ledger.hold(scope, wallet, unique("h"), 700, ttl_s=0.05)
    for _ in range(100):  # the fixture's sweeper runs every 0.2 s
        if (await ledger.wallet(wallet)).held == 0:
            break
        await asyncio.sleep(0.1)
    w = await ledger.wallet(wallet)
    assert (w.balance, w.held) == (1_000, 0)
    page = await ledger.transactions(wallet, kind="hold")
    assert [t.kind for t in page.transactions] == ["expire", "hold"]
    await assert_books_balance(billing)


async def test_refund_reverses_a_charge_once(scope, ledger, funded_wallet):
    wallet = await funded_wallet(1_000)
    charge = await ledger.charge(scope, wallet, "c", amount=400)
    refund = await ledger.refund(scope, charge.transaction_id, "r1", "wrong model")
    assert (refund.amount, refund.balance_after) == (400, 1_000)
    assert (await ledger.refund(scope, charge.transaction_id, "r1", "wrong model")).replayed
    with pytest.raises(GatewayError) as err:
        await ledger.refund(scope, charge.transaction_id, "r2")
    assert err.value.reason == "ALREADY_REFUNDED"
    assert (await ledger.wallet(wallet)).balance == 1_000


async def test_refund_of_a_credit_is_not_found(scope, ledger, funded_wallet):
    wallet = await funded_wallet(0)
    credit = await ledger.credit(scope, wallet, "c", 5)
    with pytest.raises(GatewayError) as err:
        await ledger.refund(scope, credit.transaction_id, "r")
    assert (err.value.code, err.value.reason) == (Fault.NOT_FOUND, "NOT_FOUND")


async def test_usage_is_priced_exactly_in_integers(scope, ledger, funded_wallet):
    wallet = await funded_wallet(1_000_000)
    # 1,000 input (400 cached) at 2/0.5 per token-million-micros, 500 output at 8:
    # (600·2,000,000 + 400·500,000 + 500·8,000,000) / 1e6 = 1,200 + 200 + 4,000 micros
    posted = await ledger.charge(scope, wallet, "u", model="tok-model",
                                 usage=Metered(input_tokens=1_000, output_tokens=500,
                                               cached_input_tokens=400))
    assert posted.amount == -5_400
    one = await ledger.charge(scope, wallet, "u1", model="tok-model",
                              usage=Metered(input_tokens=1))
    assert one.amount == -2  # a fraction of a micro-unit rounds up, once


async def test_session_keeps_the_price_it_started_with(scope, ledger, funded_wallet):
    wallet = await funded_wallet(1_000_000)
    session = unique("sess")
    first = await ledger.charge(scope, wallet, unique("k"), model="msg-model",
                                usage=Metered(), session_id=session)
    assert first.amount == -1_500
    old_prices = ledger.prices
    ledger.prices = old_prices.with_price("msg-model", Price(per_message_micros=9_999))
    try:
        again = await ledger.charge(scope, wallet, unique("k"), model="msg-model",
                                    usage=Metered(), session_id=session)
        fresh = await ledger.charge(scope, wallet, unique("k"), model="msg-model",
                                    usage=Metered(), session_id=unique("sess"))
    finally:
        ledger.prices = old_prices
    assert again.amount == -1_500   # locked
    assert fresh.amount == -9_999   # a new session sees the new price


async def test_currency_mismatch_names_the_field(scope, ledger, funded_wallet):
    wallet = await funded_wallet(1_000)
    with pytest.raises(GatewayError) as err:
        await ledger.charge(scope, wallet, unique("k"), amount=1, currency_code="EUR")
    assert (err.value.code, err.value.reason) == (Fault.REFUSED, "CURRENCY_MISMATCH")
    assert err.value.violations[0].field == "currency_code"
    with pytest.raises(GatewayError, match="CURRENCY_MISMATCH"):
        await ledger.charge(scope, wallet, unique("k"), model="eur-model", usage=Metered())


@pytest.mark.parametrize("kwargs, field", [
    ({"key": "", "amount": 1}, "idempotency_key"),
    ({"key": "x" * 129, "amount": 1}, "idempotency_key"),
    ({"key": "k", "amount": 0}, "amount_micros"),
    ({"key": "k", "amount": -5}, "amount_micros"),
    ({"key": "k", "amount": 1, "currency_code": "usd"}, "currency_code"),
    ({"key": "k", "amount": 1, "wallet": "bad wallet!"}, "wallet_id"),
    ({"key": "k", "amount": 1, "wallet": ""}, "wallet_id"),
    ({"key": "k"}, "amount"),
])
async def test_bad_input_names_the_field(scope, ledger: Ledger, funded_wallet, kwargs, field):
    wallet = kwargs.pop("wallet", None)
    if wallet is None:
        wallet = await funded_wallet(100)
    key = kwargs.pop("key")
    with pytest.raises(GatewayError) as err:
        await ledger.charge(scope, wallet, key, **kwargs)
    assert err.value.code is Fault.INVALID_INPUT
    assert err.value.violations[0].field == field


async def test_unknown_wallet_is_not_found(scope, ledger):
    with pytest.raises(GatewayError) as err:
        await ledger.charge(scope, unique("nobody"), "k", amount=1)
    assert (err.value.code, err.value.reason) == (Fault.NOT_FOUND, "WALLET_NOT_FOUND")


async def test_history_is_append_only(billing):
    async with billing.pool.acquire() as conn:
        with pytest.raises(Exception, match="append-only"):
            await conn.execute("UPDATE ledger_entries SET amount = amount + 1")
        with pytest.raises(Exception, match="append-only"):
            await conn.execute("DELETE FROM ledger_transactions")


async def test_the_database_refuses_a_balance_below_the_floor(billing, funded_wallet):
    wallet = await funded_wallet(10)
    async with billing.pool.acquire() as conn:
        with pytest.raises(Exception, match="wallet_floor"):
            await conn.execute("UPDATE ledger_accounts SET balance = -1 WHERE id = $1", wallet)


async def test_transactions_page_newest_first(scope, ledger, funded_wallet):
    wallet = await funded_wallet(1_000)
    for i in range(5):
        await ledger.charge(scope, wallet, f"c{i}", amount=i + 1, description=f"#{i}")
    first = await ledger.transactions(wallet, page_size=3)
    second = await ledger.transactions(wallet, page_size=3, page_token=first.next_page_token)
    amounts = [t.amount for t in first.transactions + second.transactions]
    assert amounts == [-5, -4, -3, -2, -1, 1_000]
    assert second.next_page_token == ""
    charges = await ledger.transactions(wallet, kind="charge")
    assert len(charges.transactions) == 5


async def test_a_broken_operation_fails_alone_not_its_batch(billing, ledger, funded_wallet, scope):
    """The stored function refuses a negative amount outright (money is never created);
    the writer then retries the batch one by one so the other callers are unaffected."""
    from server.billing.operations import Kind, Operation

    wallet = await funded_wallet(1_000)
    bad = Operation(Kind.CHARGE, scope, "bad", "h", wallet, amount=-500)
    results = await asyncio.gather(
        ledger.charge(scope, wallet, "good-1", amount=10),
        billing.writer.submit(bad),
        ledger.charge(scope, wallet, "good-2", amount=20),
        return_exceptions=True)
    assert isinstance(results[1], GatewayError) and results[1].code is Fault.BUG
    assert [r.amount for r in (results[0], results[2])] == [-10, -20]
    assert (await ledger.wallet(wallet)).balance == 970
    await assert_books_balance(billing)


async def test_transactions_filter_by_time(scope, ledger, funded_wallet):
    wallet = await funded_wallet(1_000)
    await ledger.charge(scope, wallet, "early", amount=1)
    first_at = (await ledger.transactions(wallet)).transactions[0].created_at
    await asyncio.sleep(0.01)
    await ledger.charge(scope, wallet, "late", amount=2)
    since_first = await ledger.transactions(wallet, kind="charge", start=first_at)
    assert [t.amount for t in since_first.transactions] == [-2, -1]
    after_first = await ledger.transactions(wallet, kind="charge",
                                            start=first_at + timedelta(microseconds=1))
    assert [t.amount for t in after_first.transactions] == [-2]
    before_first = await ledger.transactions(wallet, kind="charge", end=first_at)
    assert before_first.transactions == []
    with pytest.raises(GatewayError) as err:
        await ledger.transactions(wallet, start=first_at, end=first_at)
    assert err.value.violations[0].field == "end_time"
