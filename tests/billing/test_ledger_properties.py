"""Property-based (stateful) test of the ledger against a simple model.

Hypothesis drives random sequences of credit / charge / hold / settle / void / refund and
replays of earlier calls (same key, same body; and same key, different body) against the
real ledger on Postgres. After every step: each wallet's balance and held amount equal
the model's, and the invariant checker finds nothing (entries sum to zero per
transaction, balances equal the sum of entries, no wallet below its floor, holds
finished at most once, money conserved).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from server.billing.checker import check_ledger
from server.billing.runtime import BillingRuntime, BillingSettings
from server.kernel.errors import GatewayError
from tests.billing.conftest import PRICES, unique

amounts = st.integers(min_value=1, max_value=2_000)


@dataclass
class WalletModel:
    wallet_id: str
    overdraft: int
    balance: int = 0
    held: int = 0

    @property
    def available(self) -> int:
        return self.balance - self.held + self.overdraft


@dataclass
class Call:
    """A call already made, kept so it can be replayed."""

    method: str
    args: dict[str, Any]
    result: Any = None
    error: str | None = None


@dataclass
class World:
    runner: asyncio.Runner
    runtime: BillingRuntime
    holds: dict[int, tuple[int, int]] = field(default_factory=dict)  # id → (wallet, amount)


class LedgerMachine(RuleBasedStateMachine):
    world: World  # set by the test before the machine runs

    def __init__(self) -> None:
        super().__init__()
        self.ledger = self.world.runtime.ledger
        self.scope = unique("prop")
        self.wallets = [WalletModel(unique("pw"), 0), WalletModel(unique("pw"), 500)]
        for w in self.wallets:
            self.run(self.ledger.create_wallet(w.wallet_id, "USD", w.overdraft))
        self.open_holds: dict[int, tuple[int, int]] = {}
        self.charges: dict[int, tuple[int, int]] = {}
        self.refunded: set[int] = set()
        self.calls: list[Call] = []
        self.n = 0

    def run(self, coro: Any) -> Any:
        return self.world.runner.run(coro)

    def key(self) -> str:
        self.n += 1
        return f"k{self.n}"

    def call(self, method: str, **args: Any) -> Call:
        record = Call(method, args)
        try:
            record.result = self.run(getattr(self.ledger, method)(self.scope, **args))
        except GatewayError as exc:
            record.error = exc.reason
        self.calls.append(record)
        return record

    @rule(w=st.integers(0, 1), amount=amounts)
    def credit(self, w: int, amount: int) -> None:
        wallet = self.wallets[w]
        c = self.call("credit", wallet_id=wallet.wallet_id, key=self.key(), amount=amount)
        assert c.error is None
        wallet.balance += amount
        assert c.result.balance_after == wallet.balance

    @rule(w=st.integers(0, 1), amount=amounts)
    def charge(self, w: int, amount: int) -> None:
        wallet = self.wallets[w]
        c = self.call("charge", wallet_id=wallet.wallet_id, key=self.key(), amount=amount)
        if amount <= wallet.available:
            assert c.error is None, c.error
            wallet.balance -= amount
            self.charges[c.result.transaction_id] = (w, amount)
        else:
            assert c.error == "INSUFFICIENT_FUNDS"

    @rule(w=st.integers(0, 1), amount=amounts)
    def hold(self, w: int, amount: int) -> None:
        wallet = self.wallets[w]
        c = self.call("hold", wallet_id=wallet.wallet_id, key=self.key(), amount=amount,
                      ttl_s=3600)
        if amount <= wallet.available:
            assert c.error is None, c.error
            wallet.held += amount
            self.open_holds[c.result.transaction_id] = (w, amount)
        else:
            assert c.error == "INSUFFICIENT_FUNDS"

    @precondition(lambda self: self.open_holds)
    @rule(data=st.data())
    def settle(self, data: st.DataObject) -> None:
        hold_id = data.draw(st.sampled_from(sorted(self.open_holds)))
        w, held = self.open_holds[hold_id]
        amount = data.draw(st.integers(0, held + 10))
        c = self.call("settle", hold_id=hold_id, key=self.key(), amount=amount)
        assert c.error is None, c.error
        # Beyond the hold, a settle takes what the wallet can still pay, and no more.
        payable = held + max(self.wallets[w].available, 0)
        amount = min(amount, payable)
        assert -c.result.amount == amount
        del self.open_holds[hold_id]
        self.wallets[w].held -= held
        self.wallets[w].balance -= amount
        if amount:
            self.charges[c.result.transaction_id] = (w, amount)

    @precondition(lambda self: self.open_holds)
    @rule(data=st.data())
    def void(self, data: st.DataObject) -> None:
        hold_id = data.draw(st.sampled_from(sorted(self.open_holds)))
        w, held = self.open_holds.pop(hold_id)
        c = self.call("void", hold_id=hold_id, key=self.key())
        assert c.error is None, c.error
        self.wallets[w].held -= held

    @precondition(lambda self: self.charges)
    @rule(data=st.data())
    def refund(self, data: st.DataObject) -> None:
        txn = data.draw(st.sampled_from(sorted(self.charges)))
        w, amount = self.charges[txn]
        c = self.call("refund", transaction_id=txn, key=self.key())
        if txn in self.refunded:
            assert c.error == "ALREADY_REFUNDED"
            return
        assert c.error is None, c.error
        self.refunded.add(txn)
        self.wallets[w].balance += amount

    @precondition(lambda self: any(c.error is None for c in self.calls))
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        """The same call again: the first result, flagged as a replay, no money moved."""
        done = [c for c in self.calls if c.error is None]
        original = data.draw(st.sampled_from(done))
        before = [(w.balance, w.held) for w in self.wallets]
        again = self.run(getattr(self.ledger, original.method)(self.scope, **original.args))
        assert again.replayed
        assert (again.transaction_id, again.amount, again.balance_after) == (
            original.result.transaction_id, original.result.amount,
            original.result.balance_after)
        assert [(w.balance, w.held) for w in self.wallets] == before

    @precondition(lambda self: any(c.method in ("credit", "charge") and c.error is None
                                   for c in self.calls))
    @rule(data=st.data(), bump=st.integers(1, 5))
    def reuse_key_with_another_body(self, data: st.DataObject, bump: int) -> None:
        done = [c for c in self.calls if c.method in ("credit", "charge") and c.error is None]
        original = data.draw(st.sampled_from(done))
        args = {**original.args, "amount": original.args["amount"] + bump}
        try:
            self.run(getattr(self.ledger, original.method)(self.scope, **args))
        except GatewayError as exc:
            assert exc.reason == "IDEMPOTENCY_KEY_REUSED"
        else:
            raise AssertionError("a reused key with a different body was accepted")

    @invariant()
    def wallets_match_the_model(self) -> None:
        for model in self.wallets:
            wallet = self.run(self.ledger.wallet(model.wallet_id))
            assert (wallet.balance, wallet.held) == (model.balance, model.held)
            assert wallet.available + model.overdraft >= 0

    @invariant()
    def books_balance(self) -> None:
        async def check() -> list[Any]:
            async with self.world.runtime.pool.acquire() as conn:
                return await check_ledger(conn)

        assert self.run(check()) == []


def test_ledger_matches_its_model_under_random_operations(pg_url: str) -> None:
    with asyncio.Runner() as runner:
        runtime = BillingRuntime(pg_url, PRICES, BillingSettings(pool_size=2, writers=1))
        runner.run(runtime.start(sweep=False))
        LedgerMachine.world = World(runner, runtime)
        try:
            run_state_machine_as_test(
                LedgerMachine, settings=settings(max_examples=30, stateful_step_count=30,
                                                 deadline=None,
                                                 suppress_health_check=list(HealthCheck)))
        finally:
            runner.run(runtime.stop())


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
