"""The Generate use case: configure → ground → reserve → route → settle/void → record.

``run`` serves a unary call, ``stream`` a streamed one; both take a validated
``GenerationCall`` and an absolute deadline (time.monotonic) and return domain values
(``Generated``; ``StreamStarted`` / ``TextChunk`` / ``StreamEnded`` events) that the
handler translates. Errors are ``GatewayError``s. The money lifecycle is the meter's one
``async with`` (metering.py): whatever happens inside it — success, a failed chain, a
stream cut mid-way, a caller that goes away — leaves the hold settled or voided and one
usage record.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from server.billing.metering import Charged
from server.kernel.errors import Fault, GatewayError
from server.fallback.attempts import Attempt
from server.fallback.chain import ChainBuilder, Target
from server.fallback.router import Router, StreamFinished, StreamInterrupted, StreamStarted
from server.generation.call import GenerationCall
from server.generation.grounding import Citation, Grounder, Grounding
from server.generation.metering import Metering
from server.generation.presets import Prepared, Presets, prepare
from server.kernel.metrics import Metrics
from server.providers.base import Completion, FinishReason, TextChunk, Usage
from server.providers.content import ToolCall, ToolCallDelta


@dataclass(frozen=True)
class Outcome:
    """What every answer reports besides its text: what served it and what it cost."""

    served_by: Target
    attempts: list[Attempt]
    citations: tuple[Citation, ...]
    charge: Charged | None
    prompt_key: str
    prompt_version: int
    bot_config_id: str
    latency_s: float


@dataclass(frozen=True)
class Generated:
    """A served unary call."""

    completion: Completion
    outcome: Outcome


@dataclass(frozen=True)
class StreamEnded:
    """The last event of a stream (also when it failed after text was sent: then
    ``finish_reason`` is ERROR, ``usage`` what was used, and the error follows)."""

    finish_reason: FinishReason
    usage: Usage
    outcome: Outcome
    time_to_first_token_s: float | None
    tool_calls: tuple[ToolCall, ...] = ()


GenerationEvent = StreamStarted | TextChunk | ToolCallDelta | StreamEnded


class GenerationService:
    def __init__(self, chains: ChainBuilder, router: Router, metering: Metering,
                 metrics: Metrics, presets: Presets | None = None,
                 grounder: Grounder | None = None) -> None:
        self._chains = chains
        self._router = router
        self._metering = metering
        self._metrics = metrics
        self._presets = presets
        self._grounder = grounder

    async def _configure(self, call: GenerationCall) -> tuple[Grounding, list[Target]]:
        """Bot and template, the chain, then retrieval (the one step before the vendor
        that may search: it needs the final messages)."""
        prepared: Prepared = prepare(call)
        if self._presets is not None:
            prepared = await self._presets.apply(call, prepared)
        chain = self._chains.build(prepared.model, prepared.targets, prepared.region,
                                   call.caller.tenant)
        if call.retrieval is None:
            return Grounding(prepared), chain
        if self._grounder is None:
            raise GatewayError(Fault.NOT_SUPPORTED, "NOT_IMPLEMENTED",
                               "retrieval is not configured on this gateway",
                               metadata={"field": "retrieval"})
        return await self._grounder.ground(call.retrieval, prepared), chain

    @staticmethod
    def _outcome(grounding: Grounding, served_by: Target, attempts: list[Attempt],
                 charge: Charged | None, started: float) -> Outcome:
        p = grounding.prepared
        return Outcome(served_by, attempts, grounding.citations, charge, p.prompt_key,
                       p.prompt_version, p.bot_config_id, time.monotonic() - started)

    async def run(self, call: GenerationCall, deadline: float) -> Generated:
        started = time.monotonic()
        grounding, chain = await self._configure(call)
        async with self._metering.meter(call, grounding.prepared, chain, deadline) as meter:
            meter.grounded_by(grounding.chunk_ids)
            routed = await self._router.generate(chain, grounding.prepared.request, deadline)
            charge = await meter.settle(routed.completion.usage, routed.served_by,
                                        routed.attempts)
        return Generated(routed.completion, self._outcome(grounding, routed.served_by,
                                                          routed.attempts, charge, started))

    async def stream(self, call: GenerationCall, deadline: float
                     ) -> AsyncIterator[GenerationEvent]:
        started = time.monotonic()
        grounding, chain = await self._configure(call)
        first_token_at: float | None = None
        served: Target | None = None

        def ttft() -> float | None:
            return None if first_token_at is None else first_token_at - started

        async with self._metering.meter(call, grounding.prepared, chain, deadline) as meter:
            meter.grounded_by(grounding.chunk_ids)
            events = self._router.stream(chain, grounding.prepared.request, deadline)
            try:
                async for event in events:
                    if isinstance(event, (TextChunk, ToolCallDelta)):
                        if first_token_at is None and served is not None:
                            first_token_at = time.monotonic()
                            self._metrics.child(
                                self._metrics.time_to_first_token,
                                *self._metrics.known.provider_model(served.provider, served.model)
                            ).observe(first_token_at - started)
                        meter.saw_text(event.text if isinstance(event, TextChunk)
                                       else event.arguments, served)  # type: ignore[arg-type]
                        yield event
                    elif isinstance(event, StreamStarted):
                        served = event.served_by
                        yield event
                    elif isinstance(event, StreamFinished):
                        charge = await meter.settle(event.usage, event.served_by,
                                                    event.attempts)
                        yield StreamEnded(event.finish_reason, event.usage, self._outcome(
                            grounding, event.served_by, event.attempts, charge, started),
                            ttft(), event.tool_calls)
            except StreamInterrupted as cut:
                if cut.invalid_output:
                    # The answer arrived whole but not in the form asked for: the caller
                    # did not get what it asked for, so the hold is voided (leaving the
                    # meter with the error), not settled.
                    yield StreamEnded(FinishReason.ERROR, cut.usage, self._outcome(
                        grounding, cut.served_by, cut.attempts, None, started), ttft())
                    raise cut.to_gateway_error() from None
                # Text already reached the caller: report (and charge) what was used, then fail.
                usage = meter.billable(cut.usage)
                charge = await meter.settle(usage, cut.served_by, cut.attempts,
                                            status="UPSTREAM_STREAM_FAILED")
                yield StreamEnded(FinishReason.ERROR, usage, self._outcome(
                    grounding, cut.served_by, cut.attempts, charge, started), ttft())
                raise cut.to_gateway_error() from None
            finally:
                await events.aclose()  # type: ignore[attr-defined]
