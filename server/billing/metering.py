"""Billing one generation call: reserve the worst case, then settle what was used.

The generation use case calls ``CallBilling.reserve`` before any vendor call (no funds →
the call fails before a token is bought), then ``Reservation.settle`` with the vendor's
usage, or ``Reservation.void`` when the call failed. A crash in between leaves a hold that the
sweeper expires, so reserved money is never lost.

Idempotency: the charge of a call is keyed by the caller's key (``gen:<key>``) and
fingerprinted by wallet and key only, so a retried call (even one that used a different
number of tokens) replays the first charge instead of charging twice. Each call's hold
gets its own key: a retry whose first attempt was voided can still reserve, and a retry
that finds the charge already made voids its own hold.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from server.billing.budgets import Budget, Budgets
from server.billing.ledger import HoldClosed, Ledger, Posted
from server.billing.pricing import Metered, Price, cost_micros
from server.billing.validation import Checks
from server.kernel.errors import FieldViolation, invalid_argument
from server.kernel.tokens import upper_bound_tokens


MAX_SESSION_ID = 128


@dataclass(frozen=True)
class BillingRequest:
    """Which wallet pays for a call (BillingOptions in the contract)."""

    wallet_id: str
    session_id: str
    idempotency_key: str

    def violations(self, prefix: str = "billing.") -> list[FieldViolation]:
        """Every bad field (the generation request checks them with its other fields)."""
        checks = Checks()
        checks.wallet_id(self.wallet_id, prefix + "wallet_id")
        checks.idempotency_key(self.idempotency_key, prefix + "idempotency_key")
        if len(self.session_id) > MAX_SESSION_ID:
            checks.fail(prefix + "session_id", f"at most {MAX_SESSION_ID} characters")
        return checks.violations

    def validate(self, prefix: str = "billing.") -> None:
        if bad := self.violations(prefix):
            raise invalid_argument(bad)


@dataclass(frozen=True)
class Charged:
    """What a call cost (the ChargeSummary of the response)."""

    transaction_id: int
    amount: int
    currency_code: str
    balance_after: int
    replayed: bool


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
        """Charge ``used`` at the reserved price; the rest of the hold goes back to the wallet."""
        self.finished = True
        cost = cost_micros(self.price, used)
        fingerprint = {"wallet_id": self._request.wallet_id, "key": self._charge_key}
        try:
            posted = await self._ledger.settle(self._scope, self.hold.transaction_id,
                                               self._charge_key, min(cost, self.held),
                                               description="generation", fingerprint=fingerprint)
        except HoldClosed:
            if cost == 0:
                raise
            # The call outlived its hold (the sweeper expired it): charge directly, under
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
            await self._void_hold()
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

    async def void(self) -> None:
        """The call failed: nothing is charged, the hold is voided."""
        if not self.finished:
            self.finished = True
            await self._void_hold()

    async def _void_hold(self) -> None:
        try:
            await self._ledger.void(self._scope, self.hold.transaction_id,
                                    f"gen:void:{self.hold.transaction_id}")
        except HoldClosed:  # already closed (e.g. expired and swept): nothing to void
            pass


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
            input_tokens=upper_bound_tokens(prompt_bytes),
            output_tokens=max_output_tokens or self._default_output_tokens))
        hold = await self._ledger.hold(
            scope, request.wallet_id, f"gen-hold:{uuid.uuid4().hex}", worst,
            max(call_time_s, 0.0) + self._hold_ttl_s,
            currency_code=price.currency_code, description=f"generation {model}")
        return Reservation(self._ledger, scope, request, price, hold, self.budgets, governing)
