"""Billing one generation call: reserve the worst case, then settle what was used.

The handler calls ``CallBilling.reserve`` before any vendor call (no funds → the call
fails before a token is bought), then ``Reservation.settle`` with the vendor's usage, or
``Reservation.release`` when the call failed. A crash in between leaves a hold that the
sweeper releases when it expires, so reserved money is never lost.

Idempotency: the charge of a call is keyed by the caller's key (``gen:<key>``) and
fingerprinted by wallet and key only, so a retried call (even one that used a different
number of tokens) replays the first charge instead of charging twice. Each call's hold
gets its own key: a retry whose first attempt was voided can still reserve, and a retry
that finds the charge already made releases its own hold.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from server.billing.budgets import Budget, Budgets
from server.billing.ledger import Ledger, Posted
from server.billing.pricing import Metered, Price, cost_micros
from server.billing.validation import Checks
from server.errors import GatewayError


@dataclass(frozen=True)
class BillingRequest:
    """Which wallet pays for a call (BillingOptions in the contract)."""

    wallet_id: str
    session_id: str
    idempotency_key: str

    def validate(self, prefix: str = "billing.") -> None:
        checks = Checks()
        checks.wallet_id(self.wallet_id, prefix + "wallet_id")
        checks.idempotency_key(self.idempotency_key, prefix + "idempotency_key")
        if len(self.session_id) > 128:
            checks.fail(prefix + "session_id", "at most 128 characters")
        checks.raise_if_any()


@dataclass(frozen=True)
class Charged:
    """What a call cost (the ChargeSummary of the response)."""

    transaction_id: int
    amount: int
    currency_code: str
    balance_after: int
    replayed: bool


def estimate_input_tokens(prompt_bytes: int) -> int:
    """An upper estimate of the prompt's tokens: real tokenisers average 3-4 bytes per
    token on text; 2 keeps the hold on the safe side without knowing the vendor."""
    return prompt_bytes // 2 + 16


class Reservation:
    def __init__(self, ledger: Ledger, scope: str, request: BillingRequest, price: Price,
                 hold: Posted, budgets: Budgets, governing: list[Budget]) -> None:
        self._ledger = ledger
        self._budgets = budgets
        self._governing = governing
        self._scope = scope
        self._request = request
        self.price = price
        self.hold = hold
        self.held = -hold.held
        self.finished = False

    @property
    def _charge_key(self) -> str:
        return f"gen:{self._request.idempotency_key}"

    async def settle(self, used: Metered) -> Charged:
        """Charge ``used`` at the reserved price; release the rest of the hold."""
        self.finished = True
        cost = cost_micros(self.price, used)
        fingerprint = {"wallet_id": self._request.wallet_id, "key": self._charge_key}
        try:
            posted = await self._ledger.settle(self._scope, self.hold.transaction_id,
                                               self._charge_key, min(cost, self.held),
                                               description="generation", fingerprint=fingerprint)
        except GatewayError as error:
            if error.reason != "HOLD_CLOSED" or cost == 0:
                raise
            # The call outlived its hold (the sweeper released it): charge directly, under
            # the same key and fingerprint, so a retry still replays this one charge.
            posted = await self._ledger.charge(self._scope, self._request.wallet_id,
                                               self._charge_key, amount=cost,
                                               description="generation (hold expired)",
                                               fingerprint=fingerprint)
            await self._count(used, -posted.amount, posted.replayed)
            return Charged(posted.transaction_id, -posted.amount, self.price.currency_code,
                           posted.balance_after, posted.replayed)
        if posted.replayed:
            # Charged already by an earlier attempt of this request: free our own hold.
            await self._void()
            return Charged(posted.transaction_id, -posted.amount, self.price.currency_code,
                           posted.balance_after, True)
        amount, balance = -posted.amount, posted.balance_after
        if cost > self.held:
            # The vendor used more than the worst case we could foresee (e.g. a tokenizer
            # denser than estimated): charge the excess on its own, under the same key.
            extra = await self._ledger.charge(self._scope, self._request.wallet_id,
                                              f"{self._charge_key}:extra", amount=cost - self.held,
                                              description="generation (beyond the hold)")
            amount, balance = amount - extra.amount, extra.balance_after
        await self._count(used, amount, False)
        return Charged(posted.transaction_id, amount, self.price.currency_code, balance, False)

    async def _count(self, used: Metered, amount: int, replayed: bool) -> None:
        if self._governing and not replayed:
            await self._budgets.add(self._governing, used.input_tokens + used.output_tokens,
                                    amount)

    async def release(self) -> None:
        """The call failed: nothing is charged."""
        if not self.finished:
            self.finished = True
            await self._void()

    async def _void(self) -> None:
        try:
            await self._ledger.void(self._scope, self.hold.transaction_id,
                                    f"gen:void:{self.hold.transaction_id}")
        except GatewayError as error:
            if error.reason != "HOLD_CLOSED":  # already released (e.g. expired): fine
                raise


class CallBilling:
    """Prices and reserves generation calls against wallets."""

    def __init__(self, ledger: Ledger, budgets: Budgets, hold_ttl_s: float,
                 default_output_tokens: int) -> None:
        self._ledger = ledger
        self.budgets = budgets
        self._hold_ttl_s = hold_ttl_s
        self._default_output_tokens = default_output_tokens

    async def reserve(self, scope: str, request: BillingRequest, model: str, prompt_bytes: int,
                      max_output_tokens: int | None, end_user_id: str = "",
                      call_time_s: float = 0.0) -> Reservation:
        """Check the budgets (RESOURCE_EXHAUSTED when one is used up), then hold the
        worst-case cost of the call (FAILED_PRECONDITION when it cannot be covered).
        The hold lives ``call_time_s`` (what is left of the call's deadline) plus the
        configured grace, so only holds of calls that can no longer finish expire.
        Models without a price are free (the hold is zero)."""
        request.validate()
        governing = await self.budgets.check(request.wallet_id, end_user_id)
        price = await self._ledger.price_for(model, request.wallet_id, request.session_id,
                                             field="model", default=Price())
        worst = cost_micros(price, Metered(
            input_tokens=estimate_input_tokens(prompt_bytes),
            output_tokens=max_output_tokens or self._default_output_tokens))
        hold = await self._ledger.hold(
            scope, request.wallet_id, f"gen-hold:{uuid.uuid4().hex}", worst,
            max(call_time_s, 0.0) + self._hold_ttl_s,
            currency_code=price.currency_code, description=f"generation {model}")
        return Reservation(self._ledger, scope, request, price, hold, self.budgets, governing)
