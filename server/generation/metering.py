"""Where money meets generation: one ``Meter`` per Generate / StreamGenerate call.

Billing knows no vendor and routing knows no money (DESIGN.md §1); they meet here. The
use case opens the meter before any vendor call and the whole money lifecycle is that one
``async with``:

- entering prices every target of the chain and, when the call is billed, reserves the
  worst case over them (an unpriced target or no funds → the call fails before a token is
  bought);
- ``settle`` charges the actual usage at the price of the target that served and returns
  the domain ``Charged``;
- leaving with an error voids the hold; leaving because the caller went away (cancelled
  or closed stream) charges the prompt and the text that was sent, estimated with the
  one token policy (server/kernel/tokens.py), since the vendor's usage never arrives — and
  nothing when no text was sent. A stream the vendor cut is charged the same way where
  the vendor reported nothing (``billable``).

Every call, billed or not, leaves exactly one usage record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from types import TracebackType

from server.billing.metering import CallBilling, Charged, Reservation, price_unknown
from server.billing.pricing import Metered, PriceList, TargetPrice, cost_micros, target_key
from server.billing.usage import UsageRecord, UsageRecorder
from server.kernel.errors import Fault, GatewayError
from server.fallback.attempts import Attempt
from server.fallback.chain import Target
from server.generation.call import GenerationCall
from server.generation.presets import Prepared
from server.providers.base import Usage
from server.kernel.tokens import estimate_tokens_of_chars


log = logging.getLogger("llmgw.billing")


class Meter:
    """One call's reservation (when billed) and usage record."""

    def __init__(self, call: GenerationCall, prepared: Prepared, chain: Sequence[Target],
                 billing: CallBilling | None, recorder: UsageRecorder | None,
                 prices: PriceList | None, deadline: float) -> None:
        self._call = call
        self._prepared = prepared
        self._chain = chain
        self._billing = billing
        self._recorder = recorder
        self._prices = prices
        self._deadline = deadline
        self._reservation: Reservation | None = None
        self._started = time.monotonic()
        self._streamed_chars = 0
        self._served_by: Target | None = None
        self._chunk_ids: Sequence[str] = ()
        self._done = False

    async def __aenter__(self) -> Meter:
        billing = self._call.billing
        if billing is not None:
            if self._billing is None:
                raise GatewayError(Fault.NOT_SUPPORTED, "NOT_IMPLEMENTED",
                                   "billing: the ledger is disabled on this gateway",
                                   metadata={"field": "billing"})
            self._reservation = await self._billing.reserve(
                self._call.caller.scope, billing, self._chain_prices(),
                self._prepared.prompt_bytes, self._prepared.request.params.max_output_tokens,
                self._call.end_user_id, self._deadline - time.monotonic())
        return self

    def _chain_prices(self) -> dict[str, TargetPrice]:
        """Every target the chain may reach, priced; PRICE_UNKNOWN names the first that
        is not (a billed call never reaches a vendor it cannot price)."""
        found: dict[str, TargetPrice] = {}
        for target in self._chain:
            key = target_key(target.provider, target.model)
            entry = self._prices.for_target(target.provider, target.model) \
                if self._prices else None
            if entry is None:
                raise price_unknown(key)
            found[key] = entry
        return found

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        if self._done:
            return
        if error is None or isinstance(error, (asyncio.CancelledError, GeneratorExit)):
            await asyncio.shield(self._abandoned())
        else:
            await asyncio.shield(self._failed(error))

    def grounded_by(self, chunk_ids: Sequence[str]) -> None:
        self._chunk_ids = chunk_ids

    def saw_text(self, text: str, served_by: Target) -> None:
        """Stream text sent to the caller: what an abandoned stream is charged for."""
        self._streamed_chars += len(text)
        self._served_by = served_by

    def billable(self, reported: Usage) -> Usage:
        """What an incomplete call (a cut or abandoned stream) is charged for: the vendor's
        counts where it reported them, else the prompt and the text sent, estimated."""
        return Usage(
            input_tokens=reported.input_tokens
            or estimate_tokens_of_chars(self._prepared.prompt_bytes),
            output_tokens=reported.output_tokens
            or estimate_tokens_of_chars(self._streamed_chars),
            cached_input_tokens=reported.cached_input_tokens,
            cache_write_tokens=reported.cache_write_tokens)

    async def settle(self, usage: Usage, served_by: Target, attempts: Sequence[Attempt],
                     status: str = "OK") -> Charged | None:
        """Charge ``usage`` at the price of the target that served; the charge for the
        response (None: unbilled)."""
        if self._done:
            return None
        self._done = True
        charged = None
        if self._reservation is not None:
            try:
                charged = await self._reservation.settle(
                    target_key(served_by.provider, served_by.model), self._metered(usage))
            except GatewayError:
                self._done = False  # leaving the meter with this error voids the hold
                raise
        self._record(status, usage, served_by, attempts, charged)
        return charged

    def _metered(self, usage: Usage) -> Metered:
        return Metered(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                       cached_input_tokens=usage.cached_input_tokens,
                       cache_write_tokens=usage.cache_write_tokens,
                       duration_ms=int((time.monotonic() - self._started) * 1000))

    async def _failed(self, error: BaseException) -> None:
        """The call failed before any usage: void the hold, record the failure."""
        self._done = True
        if self._reservation is not None:
            try:
                await self._reservation.void()
            except GatewayError as lost:  # the ledger is away: the sweeper releases it
                log.warning("hold %s left to expire: %s", self._reservation.hold, lost.reason)
        status = error.reason if isinstance(error, GatewayError) else type(error).__name__
        self._record(status, Usage(), None, getattr(error, "attempts", ()), None)

    async def _abandoned(self) -> None:
        """The caller went away: charge the prompt and the text it was sent, if any."""
        if not self._streamed_chars or self._served_by is None:
            await self._failed(asyncio.CancelledError())
            return
        try:
            await self.settle(self.billable(Usage()), self._served_by, (), status="CANCELLED")
        except GatewayError as error:  # the ledger failed: release the hold instead
            await self._failed(error)

    def _record(self, status: str, usage: Usage, served_by: Target | None,
                attempts: Sequence[Attempt], charged: Charged | None) -> None:
        if self._recorder is None:
            return
        call, prepared, billing = self._call, self._prepared, self._call.billing
        cost, currency = (charged.amount, charged.currency_code) if charged \
            else self._list_cost(usage, served_by)
        self._recorder.record(UsageRecord(
            trace_id=call.caller.trace_id, method=call.method, service=call.caller.subject,
            status=status, latency_ms=(time.monotonic() - self._started) * 1000,
            end_user_id=call.end_user_id, requested_model=prepared.model,
            provider=served_by.provider if served_by else "",
            model=served_by.model if served_by else "",
            region=served_by.region if served_by else "",
            input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
            cached_input_tokens=usage.cached_input_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            attempts=[{"provider": a.target.provider, "model": a.target.model,
                       "region": a.target.region, "outcome": a.outcome.value,
                       "error": a.error_kind, "retry": a.retry} for a in attempts],
            metadata=dict(call.metadata),
            wallet_id=billing.wallet_id if billing else "",
            session_id=billing.session_id if billing else "",
            cost_micros=cost, currency_code=currency,
            uncollected_micros=charged.uncollected if charged else 0,
            transaction_id=charged.transaction_id if charged else None,
            prompt_key=prepared.prompt_key, prompt_version=prepared.prompt_version,
            bot_config_id=prepared.bot_config_id, chunk_ids=tuple(self._chunk_ids)))

    def _list_cost(self, usage: Usage, served_by: Target | None) -> tuple[int, str]:
        """An unbilled call's cost at the price of the target that served it, so every
        usage record says what the call cost (0 when unserved or unpriced)."""
        entry = self._prices.for_target(served_by.provider, served_by.model) \
            if self._prices and served_by else None
        if entry is None:
            return 0, ""
        return cost_micros(entry.price, self._metered(usage)), entry.price.currency_code


class Metering:
    """Opens a ``Meter`` for each generation call."""

    def __init__(self, billing: CallBilling | None, recorder: UsageRecorder | None,
                 prices: PriceList | None = None) -> None:
        self._billing = billing
        self._recorder = recorder
        self._prices = prices

    def meter(self, call: GenerationCall, prepared: Prepared, chain: Sequence[Target],
              deadline: float) -> Meter:
        """``chain``: every target that may serve (priced before any is called);
        ``deadline`` (time.monotonic) bounds the call, and so its hold (size and life)."""
        return Meter(call, prepared, chain, self._billing, self._recorder, self._prices,
                     deadline)
