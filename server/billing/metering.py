"""Billing one generation call: reserve the worst case, then settle what was used.

The generation use case calls ``CallBilling.reserve`` before any vendor call (no funds →
the call fails before a token is bought), then ``Reservation.settle`` with the target that
served and its usage, or ``Reservation.void`` when the call failed. A crash in between
leaves a hold that the sweeper expires, so reserved money is never lost.

The hold is the worst case over the whole chain: the most expensive target, at the
caller's ``max_output_tokens`` or else the target's own output limit, for as long as the
deadline allows (time-priced models). The settle charges the actual cost in one ledger
operation; an overrun beyond the hold is taken from what the wallet can still pay and
what it cannot is recorded as uncollected — never an error after the vendor answered
(the overrun policy in the README).

Idempotency: the charge of a call is keyed by the caller's key (``gen:<key>``) and
fingerprinted by wallet and key only, so a retried call (even one that used a different
number of tokens) replays the first charge instead of charging twice. The key is checked
when reserving, before the vendor is called: taken by another request → ALREADY_EXISTS;
already charged by this one → no hold, and the answer reports the first charge. Each
call's hold gets its own key: a retry whose first attempt was voided can still reserve,
and a retry that finds the charge made meanwhile voids its own hold.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from server.billing.budgets import Budget, Budgets
from server.billing.ledger import HoldClosed, InsufficientFunds, KeyReused, Ledger, Posted
from server.billing.pricing import Metered, Price, TargetPrice, cost_micros
from server.billing.validation import Checks
from server.kernel.db.faults import dependency_fault
from server.kernel.errors import Fault, FieldViolation, GatewayError, invalid_argument
from server.kernel.tokens import upper_bound_tokens


MAX_SESSION_ID = 128
log = logging.getLogger("llmgw.billing")


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
    """What a call cost (the ChargeSummary of the response). ``uncollected``: the part of
    the cost the wallet could not pay (the overrun policy); ``amount`` is what was taken."""

    transaction_id: int
    amount: int
    currency_code: str
    balance_after: int
    replayed: bool
    uncollected: int = 0


class Reservation:
    """One billed call between reserve and settle/void."""

    def __init__(self, ledger: Ledger, scope: str, request: BillingRequest,
                 prices: Mapping[str, Price], currency_code: str, hold: Posted | None,
                 budgets: Budgets, governing: list[Budget], prior: Posted | None = None) -> None:
        self._ledger = ledger
        self._budgets = budgets
        self._governing = governing
        self._scope = scope
        self._request = request
        self.prices = prices
        self.currency_code = currency_code
        self.hold = hold
        self.held = -hold.held if hold else 0
        self._prior = prior
        self.finished = False

    @property
    def _fingerprint(self) -> dict[str, str]:
        return {"wallet_id": self._request.wallet_id, "key": charge_key(self._request)}

    async def settle(self, served: str, used: Metered) -> Charged:
        """Charge ``used`` at the reserved price of ``served`` (a target key) in one ledger
        operation; the rest of the hold goes back to the wallet. If the ledger fails, the
        reservation stays open so ``void`` can still release the hold (a void after a settle
        that did commit finds the hold closed and does nothing)."""
        if self._prior is not None:  # charged by an earlier call with this key
            self.finished = True
            return self._replayed(self._prior)
        assert self.hold is not None
        cost = cost_micros(self.prices[served], used)
        try:
            posted = await self._ledger.settle(self._scope, self.hold.transaction_id,
                                               charge_key(self._request), cost,
                                               description=f"generation {served}",
                                               fingerprint=self._fingerprint)
        except HoldClosed:
            self.finished = True
            return await self._charge_after_expiry(cost, used)
        self.finished = True
        if posted.replayed:
            # Charged already by a concurrent call with this key: free our own hold.
            await self._void_hold()
            return self._replayed(posted)
        await self._count(used, -posted.amount)
        return Charged(posted.transaction_id, -posted.amount, self.currency_code,
                       posted.balance_after, False, uncollected=cost + posted.amount)

    def _replayed(self, posted: Posted) -> Charged:
        return Charged(posted.transaction_id, -posted.amount, self.currency_code,
                       posted.balance_after, True)

    async def _charge_after_expiry(self, cost: int, used: Metered) -> Charged:
        """The call outlived its hold (the sweeper expired it): charge directly, under the
        same key and fingerprint, so a retry still replays this one charge. A wallet that
        can no longer pay leaves the cost uncollected; the answer is still delivered."""
        try:
            posted = await self._ledger.charge(self._scope, self._request.wallet_id,
                                               charge_key(self._request), amount=cost,
                                               description="generation (hold expired)",
                                               fingerprint=self._fingerprint)
        except InsufficientFunds:
            return Charged(0, 0, self.currency_code, 0, False, uncollected=cost)
        if not posted.replayed:
            await self._count(used, -posted.amount)
        return Charged(posted.transaction_id, -posted.amount, self.currency_code,
                       posted.balance_after, posted.replayed)

    async def _count(self, used: Metered, amount: int) -> None:
        """Count the call against its budgets. The money is taken by now, so a database
        that went away must not turn the answer into an error: the count is lost
        (logged), never the answer."""
        if not self._governing:
            return
        try:
            await self._budgets.add(self._governing, used.input_tokens + used.output_tokens,
                                    amount)
        except Exception as exc:
            if dependency_fault(exc) is None:
                raise
            log.warning("budget usage of a settled call not counted: database unavailable")

    async def void(self) -> None:
        """The call failed: nothing is charged, the hold is voided."""
        if not self.finished:
            self.finished = True
            await self._void_hold()

    async def _void_hold(self) -> None:
        if self.hold is None:
            return
        try:
            await self._ledger.void(self._scope, self.hold.transaction_id,
                                    f"gen:void:{self.hold.transaction_id}")
        except HoldClosed:  # already closed (e.g. expired and swept): nothing to void
            pass


def charge_key(request: BillingRequest) -> str:
    """The ledger key of a call's charge: in the gateway's own key space ("gen:"), which
    client Charge/Credit/Refund keys may not use (RESERVED_KEY_PREFIXES)."""
    return f"gen:{request.idempotency_key}"


def price_unknown(target: str) -> GatewayError:
    return GatewayError(Fault.REFUSED, "PRICE_UNKNOWN",
                        f"{target} has no configured price, so a billed call cannot be "
                        "served by it; nothing was reserved or sent to a vendor",
                        metadata={"target": target})


class CallBilling:
    """Prices and reserves generation calls against wallets."""

    def __init__(self, ledger: Ledger, budgets: Budgets, hold_ttl_s: float,
                 default_output_tokens: int) -> None:
        self._ledger = ledger
        self.budgets = budgets
        self._hold_ttl_s = hold_ttl_s
        self._default_output_tokens = default_output_tokens

    async def reserve(self, scope: str, request: BillingRequest,
                      targets: Mapping[str, TargetPrice], prompt_bytes: int,
                      max_output_tokens: int | None, end_user_id: str = "",
                      call_time_s: float = 0.0) -> Reservation:
        """Before any vendor call: check the key (ALREADY_EXISTS when another request
        used it), the budgets (RESOURCE_EXHAUSTED when one is used up), then hold the
        worst-case cost over every target the call may reach (``targets``: target key →
        current price; FAILED_PRECONDITION when the wallet cannot cover it). The hold
        lives ``call_time_s`` (what is left of the deadline) plus the configured grace,
        so only holds of calls that can no longer finish expire."""
        request.validate()
        key = charge_key(request)
        try:
            prior = await self._ledger.replay_of(scope, key, {"wallet_id": request.wallet_id,
                                                              "key": key})
        except KeyReused as reused:
            raise GatewayError(
                Fault.CONFLICT, "IDEMPOTENCY_KEY_REUSED",
                "billing.idempotency_key was already used by a call billed to another wallet",
                violations=[FieldViolation("billing.idempotency_key",
                                           "already used by another request")],
                metadata={"idempotency_key": request.idempotency_key,
                          "transaction_id": reused.metadata.get("transaction_id", "")}
            ) from None
        prices = {k: t.price for k, t in targets.items()}
        currencies = {p.currency_code for p in prices.values()}
        if len(currencies) > 1:
            raise GatewayError(Fault.REFUSED, "CURRENCY_MISMATCH",
                               "the call's fallback chain is priced in several currencies "
                               f"({', '.join(sorted(currencies))}); a wallet pays in one",
                               metadata={"field": "billing.wallet_id"})
        currency = currencies.pop() if currencies else ""
        if prior is not None:
            return Reservation(self._ledger, scope, request, prices, currency, None,
                               self.budgets, [], prior)
        governing = await self.budgets.check(request.wallet_id, end_user_id)
        prices = await self._ledger.session_prices(request.session_id, request.wallet_id,
                                                   prices)
        worst = max(cost_micros(prices[k], Metered(
            input_tokens=upper_bound_tokens(prompt_bytes),
            output_tokens=max_output_tokens if max_output_tokens is not None
            else t.max_output_tokens or self._default_output_tokens,
            duration_ms=int(max(call_time_s, 0.0) * 1000))) for k, t in targets.items())
        hold = await self._ledger.hold(
            scope, request.wallet_id, f"gen-hold:{uuid.uuid4().hex}", worst,
            max(call_time_s, 0.0) + self._hold_ttl_s,
            currency_code=currency, description="generation")
        return Reservation(self._ledger, scope, request, prices, currency, hold, self.budgets,
                           governing)
