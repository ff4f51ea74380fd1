"""Where money meets generation: a ``CallMeter`` per Generate / StreamGenerate call.

Billing knows no vendor and routing knows no money (DESIGN.md §1); this module is the
handler-side glue, kept out of ``generation.py`` so that handler only says *when*:
``GenerationBilling.begin`` before any vendor call (validates ``billing``, reserves the
worst case: no funds → FAILED_PRECONDITION before a token is bought), ``finish`` with the
vendor's usage (settles, returns the ChargeSummary), ``failed`` when the call failed
(releases the hold), and ``close`` in the stream's ``finally`` (a caller that went away
mid-stream is charged for the text it was sent, estimated; nothing else). Every call,
billed or not, leaves a usage record.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from llmgateway.v1 import generation_pb2 as pb

from server.billing.metering import BillingRequest, CallBilling, Charged, Reservation
from server.billing.pricing import Metered, PriceList, cost_micros
from server.billing.usage import UsageRecord, UsageRecorder
from server.call_context import current_call
from server.errors import Code, GatewayError
from server.fallback.attempts import Attempt
from server.fallback.chain import Target
from server.handlers.generation_requests import GenerationRequest, ParsedRequest
from server.providers.base import Usage


def _prompt_bytes(parsed: ParsedRequest) -> int:
    request = parsed.provider_request
    return len(request.system.encode()) + sum(len(m.content.encode()) for m in request.messages)


def _summary(charged: Charged | None) -> pb.ChargeSummary | None:
    if charged is None:
        return None
    return pb.ChargeSummary(transaction_id=str(charged.transaction_id),
                            amount_micros=charged.amount, currency_code=charged.currency_code,
                            balance_after_micros=charged.balance_after,
                            replayed=charged.replayed)


class CallMeter:
    """One call's reservation (when billed) and usage record."""

    def __init__(self, recorder: UsageRecorder | None, reservation: Reservation | None,
                 method: str, request: GenerationRequest, parsed: ParsedRequest,
                 prices: PriceList | None = None) -> None:
        self._recorder = recorder
        self._prices = prices
        self._reservation = reservation
        self._method = method
        self._request = request
        self._parsed = parsed
        self._started = time.monotonic()
        self._streamed_chars = 0
        self._served_by: Target | None = None
        self._done = False

    def saw_text(self, text: str, served_by: Target | None = None) -> None:
        """Stream text sent to the caller: what an abandoned stream is charged for."""
        self._streamed_chars += len(text)
        self._served_by = served_by or self._served_by

    async def finish(self, usage: Usage, served_by: Target | None, attempts: Sequence[Attempt],
                     chunk_ids: Sequence[str] = (), status: str = "OK") -> pb.ChargeSummary | None:
        """Settle the actual usage; returns the charge for the response (None: unbilled)."""
        if self._done:
            return None
        self._done = True
        charged = None
        if self._reservation is not None:
            charged = await self._reservation.settle(Metered(
                input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                cached_input_tokens=usage.cached_input_tokens,
                duration_ms=int((time.monotonic() - self._started) * 1000)))
        self._record(status, usage, served_by, attempts, chunk_ids, charged)
        return _summary(charged)

    async def failed(self, error: BaseException) -> None:
        """The call failed before any usage: release the hold, record the failure."""
        if self._done:
            return
        self._done = True
        if self._reservation is not None:
            await asyncio.shield(self._reservation.release())
        status = error.reason if isinstance(error, GatewayError) else type(error).__name__
        self._record(status, Usage(), None, getattr(error, "attempts", ()), (), None)

    async def close(self) -> None:
        """End of a stream: if it was never finished (the caller went away), charge the
        prompt and the text that was sent, estimated at 4 characters per token (the vendor's
        usage never arrives); shielded because the handler task is being cancelled."""
        if self._done:
            return
        if not self._streamed_chars:
            await self.failed(asyncio.CancelledError())
            return
        estimate = Usage(input_tokens=-(-_prompt_bytes(self._parsed) // 4),
                         output_tokens=-(-self._streamed_chars // 4))
        await asyncio.shield(self.finish(estimate, self._served_by, (), status="CANCELLED"))

    def _record(self, status: str, usage: Usage, served_by: Target | None,
                attempts: Sequence[Attempt], chunk_ids: Sequence[str],
                charged: Charged | None) -> None:
        if self._recorder is None:
            return
        call = current_call.get()
        billing = self._request.billing if self._request.HasField("billing") else None
        cost, currency = (charged.amount, charged.currency_code) if charged \
            else self._list_cost(usage)
        self._recorder.record(UsageRecord(
            trace_id=call.trace_id if call else "", method=self._method,
            service=call.subject if call else "anonymous", status=status,
            latency_ms=(time.monotonic() - self._started) * 1000,
            end_user_id=self._request.end_user_id, requested_model=self._parsed.model,
            provider=served_by.provider if served_by else "",
            model=served_by.model if served_by else "",
            region=served_by.region if served_by else "",
            input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
            cached_input_tokens=usage.cached_input_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            attempts=[{"provider": a.target.provider, "model": a.target.model,
                       "region": a.target.region, "outcome": a.outcome.value,
                       "error": a.error_kind, "retry": a.retry} for a in attempts],
            metadata=dict(self._request.metadata),
            wallet_id=billing.wallet_id if billing else "",
            session_id=billing.session_id if billing else "",
            cost_micros=cost, currency_code=currency,
            transaction_id=charged.transaction_id if charged else None,
            prompt_key=self._parsed.prompt_key,
            prompt_version=self._parsed.prompt_version,
            bot_config_id=self._parsed.bot_config_id,
            chunk_ids=tuple(chunk_ids)))


    def _list_cost(self, usage: Usage) -> tuple[int, str]:
        """An unbilled call's cost at the configured price of the requested model, so
        every usage record says what the call cost (0 when the model has no price)."""
        price = self._prices.get(self._parsed.model) if self._prices else None
        if price is None:
            return 0, ""
        return cost_micros(price, Metered(
            input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
            cached_input_tokens=usage.cached_input_tokens,
            duration_ms=int((time.monotonic() - self._started) * 1000))), price.currency_code


class GenerationBilling:
    """Starts a ``CallMeter`` for each generation call."""

    def __init__(self, billing: CallBilling | None, recorder: UsageRecorder | None,
                 prices: PriceList | None = None) -> None:
        self._billing = billing
        self._recorder = recorder
        self._prices = prices

    async def begin(self, method: str, request: GenerationRequest, parsed: ParsedRequest,
                    deadline: float | None = None) -> CallMeter:
        """``deadline`` (time.monotonic) bounds the call, and so how long its hold lives."""
        reservation = None
        if request.HasField("billing") and (request.billing.wallet_id
                                            or request.billing.idempotency_key):
            options = request.billing
            if self._billing is None:
                raise GatewayError(Code.UNIMPLEMENTED, "NOT_IMPLEMENTED",
                                   "billing: the ledger is disabled on this gateway",
                                   metadata={"field": "billing"})
            call = current_call.get()
            reservation = await self._billing.reserve(
                call.subject if call else "anonymous",
                BillingRequest(options.wallet_id, options.session_id, options.idempotency_key),
                parsed.model, _prompt_bytes(parsed),
                parsed.provider_request.params.max_output_tokens, request.end_user_id,
                deadline - time.monotonic() if deadline is not None else 0.0)
        return CallMeter(self._recorder, reservation, method, request, parsed, self._prices)
