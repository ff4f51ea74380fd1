"""GenerationService: Generate, StreamGenerate and ListModels.

Thin by design: parse and validate the request, build the chain, call the router, map
the result to protobuf. Errors are raised as ``GatewayError`` and become statuses in the
tracing interceptor.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence

import grpc
from google.protobuf import duration_pb2, struct_pb2
from llmgateway.v1 import generation_pb2 as pb
from llmgateway.v1 import generation_pb2_grpc as pb_grpc

from server.call_context import current_call
from server.config import GatewayConfig
from server.errors import GatewayError, bad_field
from server.fallback.attempts import Attempt, Outcome
from server.fallback.chain import ChainBuilder, Target
from server.fallback.router import Router, StreamFinished, StreamInterrupted, StreamStarted
from server.handlers.generation_billing import CallMeter, GenerationBilling
from server.handlers.generation_config import RequestConfigurator
from server.handlers.generation_requests import GenerationRequest, ParsedRequest, parse
from server.handlers.grounding import Grounded, Grounder
from server.metrics import Metrics
from server.providers.base import FinishReason, TextChunk, Usage

_FINISH = {
    FinishReason.UNSPECIFIED: pb.FINISH_REASON_UNSPECIFIED,
    FinishReason.STOP: pb.FINISH_REASON_STOP,
    FinishReason.LENGTH: pb.FINISH_REASON_LENGTH,
    FinishReason.CONTENT_FILTER: pb.FINISH_REASON_CONTENT_FILTER,
    FinishReason.ERROR: pb.FINISH_REASON_ERROR,
}
_OUTCOME = {
    Outcome.SUCCESS: pb.ATTEMPT_OUTCOME_SUCCESS,
    Outcome.FAILED: pb.ATTEMPT_OUTCOME_FAILED,
    Outcome.SKIPPED_CIRCUIT_OPEN: pb.ATTEMPT_OUTCOME_SKIPPED_CIRCUIT_OPEN,
    Outcome.SKIPPED_DEADLINE: pb.ATTEMPT_OUTCOME_SKIPPED_DEADLINE,
}


def _duration(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromNanoseconds(int(seconds * 1e9))
    return value


def _target(target: Target) -> pb.Target:
    return pb.Target(provider=target.provider, model=target.model, region=target.region)


def _attempts(attempts: list[Attempt]) -> list[pb.Attempt]:
    return [pb.Attempt(target=_target(a.target), outcome=_OUTCOME[a.outcome],
                       error_reason=a.error_kind, error_message=a.error_message,
                       latency=_duration(a.latency_s), retry=a.retry) for a in attempts]


def _usage(usage: Usage) -> pb.Usage:
    return pb.Usage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                    cached_input_tokens=usage.cached_input_tokens,
                    cache_write_tokens=usage.cache_write_tokens)


def _prompt_ref(parsed: ParsedRequest) -> pb.PromptRef | None:
    if not parsed.prompt_key:
        return None
    return pb.PromptRef(key=parsed.prompt_key, version=parsed.prompt_version)


class GenerationService(pb_grpc.GenerationServiceServicer):
    def __init__(self, config: GatewayConfig, chains: ChainBuilder, router: Router,
                 metrics: Metrics, grounder: Grounder | None = None,
                 billing: GenerationBilling | None = None,
                 configurator: RequestConfigurator | None = None) -> None:
        self._config = config
        self._configurator = configurator
        self._billing = billing or GenerationBilling(None, None)
        self._grounder = grounder
        self._chains = chains
        self._router = router
        self._metrics = metrics
        self._max_prompt_bytes = min(config.server.max_message_bytes, 1 << 20)

    async def _prepare(self, request: GenerationRequest, context: grpc.aio.ServicerContext
                       ) -> tuple[ParsedRequest, list[Target], float]:
        parsed = parse(request, self._max_prompt_bytes)
        if self._configurator is not None:  # bot and prompt template sections
            parsed = await self._configurator.apply(request, parsed)
        chain = self._chains.build(parsed.model, parsed.targets, parsed.region)
        remaining = context.time_remaining()
        if remaining is None:
            remaining = self._config.server.default_timeout_s
        return parsed, chain, time.monotonic() + remaining

    async def Generate(self, request: pb.GenerateRequest,
                       context: grpc.aio.ServicerContext) -> pb.GenerateResponse:
        started = time.monotonic()
        parsed, chain, deadline = await self._prepare(request, context)
        grounded = await self._ground(request, parsed)
        parsed = grounded.parsed
        meter = await self._billing.begin("Generate", request, parsed, deadline)  # before vendors
        try:
            routed = await self._router.generate(chain, parsed.provider_request, deadline)
        except BaseException as error:
            await meter.failed(error)
            raise
        call = current_call.get()
        return pb.GenerateResponse(
            text=routed.completion.text,
            finish_reason=_FINISH[routed.completion.finish_reason],
            usage=_usage(routed.completion.usage),
            served_by=_target(routed.served_by),
            attempts=_attempts(routed.attempts),
            trace_id=call.trace_id if call else "",
            latency=_duration(time.monotonic() - started),
            citations=grounded.citations,
            charge=await meter.finish(routed.completion.usage, routed.served_by,
                                      routed.attempts, grounded.chunk_ids),
            prompt=_prompt_ref(parsed),
            bot_config_id=parsed.bot_config_id,
        )

    async def StreamGenerate(self, request: pb.StreamGenerateRequest,
                             context: grpc.aio.ServicerContext) -> AsyncIterator[pb.StreamGenerateResponse]:
        started = time.monotonic()
        parsed, chain, deadline = await self._prepare(request, context)
        grounded = await self._ground(request, parsed)
        parsed = grounded.parsed
        meter: CallMeter = await self._billing.begin("StreamGenerate", request, parsed, deadline)
        call = current_call.get()
        trace_id = call.trace_id if call else ""
        first_token_at: float | None = None
        served: Target | None = None
        events = self._router.stream(chain, parsed.provider_request, deadline)
        try:
            async for event in events:
                if isinstance(event, TextChunk):
                    if first_token_at is None and served is not None:
                        first_token_at = time.monotonic()
                        self._metrics.time_to_first_token.labels(
                            served.provider, served.model).observe(first_token_at - started)
                    meter.saw_text(event.text, served)
                    yield pb.StreamGenerateResponse(delta=pb.TextDelta(text=event.text))
                elif isinstance(event, StreamStarted):
                    served = event.served_by
                    yield pb.StreamGenerateResponse(start=pb.StreamStart(
                        served_by=_target(served), trace_id=trace_id,
                        attempts=_attempts(event.attempts)))
                elif isinstance(event, StreamFinished):
                    charge = await meter.finish(event.usage, event.served_by, event.attempts,
                                                grounded.chunk_ids)
                    yield pb.StreamGenerateResponse(end=self._end(
                        event.finish_reason, event.usage, event.served_by, event.attempts,
                        trace_id, started, first_token_at, grounded.citations, charge,
                        parsed))
        except StreamInterrupted as interrupted:
            # Text already reached the caller: report (and charge) what was used, then fail.
            charge = await meter.finish(interrupted.usage, interrupted.served_by,
                                        interrupted.attempts, grounded.chunk_ids,
                                        status="UPSTREAM_STREAM_FAILED")
            yield pb.StreamGenerateResponse(end=self._end(
                FinishReason.ERROR, interrupted.usage, interrupted.served_by,
                interrupted.attempts, trace_id, started, first_token_at, grounded.citations,
                charge, parsed))
            raise interrupted.to_gateway_error() from None
        except GatewayError as error:
            await meter.failed(error)  # nothing was streamed: release the hold
            raise
        finally:
            await events.aclose()  # type: ignore[attr-defined]
            await meter.close()  # a caller gone mid-stream pays for the text it was sent

    @staticmethod
    def _end(finish: FinishReason, usage: Usage, served_by: Target, attempts: list[Attempt],
             trace_id: str, started: float, first_token_at: float | None,
             citations: Sequence[pb.Citation] = (),
             charge: pb.ChargeSummary | None = None,
             parsed: ParsedRequest | None = None) -> pb.StreamEnd:
        end = pb.StreamEnd(finish_reason=_FINISH[finish], usage=_usage(usage),
                           served_by=_target(served_by), attempts=_attempts(attempts),
                           trace_id=trace_id, latency=_duration(time.monotonic() - started),
                           citations=citations, charge=charge,
                           prompt=_prompt_ref(parsed) if parsed else None,
                           bot_config_id=parsed.bot_config_id if parsed else "")
        if first_token_at is not None:
            end.time_to_first_token.CopyFrom(_duration(first_token_at - started))
        return end

    async def _ground(self, request: GenerationRequest, parsed: ParsedRequest) -> Grounded:
        """Retrieval first, when the request asks for it (server/handlers/grounding.py)."""
        if self._grounder is None or not request.HasField("retrieval"):
            return Grounded(parsed, [])
        return await self._grounder.ground(request, parsed)

    async def ListModels(self, request: pb.ListModelsRequest,
                         context: grpc.aio.ServicerContext) -> pb.ListModelsResponse:
        if request.page_size < 0:
            raise bad_field("page_size", "must not be negative")
        size = min(request.page_size or 100, 1000)
        routes = self._chains.routes  # configured and database routes
        names = sorted(routes)
        start = 0
        if request.page_token:
            if request.page_token not in routes:
                raise bad_field("page_token", "not a token from a previous response")
            start = names.index(request.page_token)
        page = names[start:start + size]
        models = []
        for name in page:
            configured = self._config.models.get(name)
            attributes = struct_pb2.Struct()
            if configured is not None and configured.pricing is not None:
                attributes.update({"pricing": configured.pricing.model_dump()})
            models.append(pb.Model(name=name,
                                   description=configured.description if configured else "",
                                   targets=[_target(t) for t in routes[name]],
                                   attributes=attributes))
        next_token = names[start + size] if start + size < len(names) else ""
        return pb.ListModelsResponse(models=models, next_page_token=next_token)
