"""GenerationService: Generate, StreamGenerate and ListModels.

Thin by design, two jobs only: turn the protobuf request into one validated
``GenerationCall`` (every bad field of the whole request in one INVALID_ARGUMENT, before
any I/O), and turn the use case's domain results and events back into protobuf. The use
case itself is ``server/generation/``. Errors are ``GatewayError``s and become statuses in
the tracing interceptor.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace

import grpc
from google.protobuf import struct_pb2
from llmgateway.v1 import generation_pb2 as pb
from llmgateway.v1 import generation_pb2_grpc as pb_grpc

from server import wire
from server.billing.metering import BillingRequest, Charged
from server.billing.pricing import PriceList, target_key
from server.kernel.call_context import current_call
from server.kernel.config import GatewayConfig
from server.kernel.errors import bad_field, invalid_argument
from server.kernel.tenancy import Tenant, TenantClaims
from server.fallback.attempts import Attempt, Outcome
from server.fallback.chain import ChainBuilder, Target
from server.fallback.router import StreamStarted
from server.generation.call import (
    Caller,
    GenerationCall,
    PromptSelection,
    RetrievalRequest,
)
from server.generation.service import GenerationService, Outcome as Served, StreamEnded
from server.generation.validation import CallLimits, call_violations
from server.providers.base import ChatMessage, FinishReason, GenerationParams, TextChunk, Usage

GenerationRequest = pb.GenerateRequest | pb.StreamGenerateRequest

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


# -- protobuf → domain ----------------------------------------------------------------

def _message(message: pb.Message) -> ChatMessage:
    text = message.content + "".join(part.text for part in message.parts) \
        if message.parts else message.content
    return ChatMessage(message.role, text)


def _params(config: pb.GenerationConfig) -> GenerationParams:
    """Floats arrive as float32 (0.7 → 0.699999988): rounded back to what was meant."""
    return GenerationParams(
        max_output_tokens=config.max_output_tokens if config.HasField("max_output_tokens") else None,
        temperature=round(config.temperature, 4) if config.HasField("temperature") else None,
        top_p=round(config.top_p, 4) if config.HasField("top_p") else None,
        top_k=config.top_k if config.HasField("top_k") else None,
        stop=tuple(config.stop_sequences))


def _billing(request: GenerationRequest) -> BillingRequest | None:
    """A billing section counts when it names a wallet or a key (an empty one is unbilled)."""
    b = request.billing
    if not request.HasField("billing") or not (b.wallet_id or b.idempotency_key):
        return None
    return BillingRequest(b.wallet_id, b.session_id, b.idempotency_key)


def _retrieval(request: GenerationRequest) -> RetrievalRequest | None:
    if not request.HasField("retrieval"):
        return None
    r = request.retrieval
    return RetrievalRequest(wire.search_options(
        namespace=r.namespace, top_k=r.top_k, min_score=r.min_score, filters=r.filters,
        document_ids=r.document_ids, mode=r.mode), max_context_tokens=r.max_context_tokens)


def _prompt(request: GenerationRequest) -> PromptSelection | None:
    if not request.HasField("prompt"):
        return None
    p = request.prompt
    return PromptSelection(p.key, p.version, dict(p.variables), p.lenient)


def _owned(call: GenerationCall) -> GenerationCall:
    """The call with every name it looks up qualified by the caller's tenant (wallet,
    session, bot, template, namespace): another tenant's objects are never found."""
    tenant = call.caller.tenant
    billing = call.billing and replace(
        call.billing, wallet_id=tenant.own(call.billing.wallet_id, "billing.wallet_id"),
        session_id=tenant.own(call.billing.session_id, "billing.session_id"))
    retrieval = call.retrieval and replace(call.retrieval, search=replace(
        call.retrieval.search,
        namespace=tenant.own(call.retrieval.search.namespace, "retrieval.namespace")))
    prompt = call.prompt and replace(call.prompt,
                                     key=tenant.own(call.prompt.key, "prompt.key"))
    return replace(call, bot=tenant.own(call.bot, "bot"), prompt=prompt,
                   retrieval=retrieval, billing=billing)


def parse(method: str, request: GenerationRequest, limits: CallLimits,
          tenants: TenantClaims = TenantClaims()) -> GenerationCall:
    """The request as a validated call; INVALID_ARGUMENT listing every bad field."""
    running = current_call.get()
    principal = running.principal if running else None
    call = GenerationCall(
        method=method, messages=tuple(_message(m) for m in request.messages),
        system_instruction=request.system_instruction, params=_params(request.config),
        model=request.model,
        targets=tuple(Target(t.provider, t.model, t.region) for t in request.targets),
        region=request.region, bot=request.bot, prompt=_prompt(request),
        retrieval=_retrieval(request), billing=_billing(request),
        end_user_id=request.end_user_id, metadata=dict(request.metadata),
        caller=Caller(principal, running.trace_id if running else "",
                      wire.current_tenant(tenants)))
    if bad := call_violations(call, limits):
        raise invalid_argument(bad)
    return _owned(call)


# -- domain → protobuf ----------------------------------------------------------------

def _attempts(attempts: list[Attempt]) -> list[pb.Attempt]:
    return [pb.Attempt(target=wire.target(a.target), outcome=_OUTCOME[a.outcome],
                       error_reason=a.error_kind, error_message=a.error_message,
                       latency=wire.duration(a.latency_s), retry=a.retry) for a in attempts]


def _usage(usage: Usage) -> pb.Usage:
    return pb.Usage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                    cached_input_tokens=usage.cached_input_tokens,
                    cache_write_tokens=usage.cache_write_tokens)


def _charge(charged: Charged | None) -> pb.ChargeSummary | None:
    if charged is None:
        return None
    return pb.ChargeSummary(transaction_id=str(charged.transaction_id),
                            amount_micros=charged.amount, currency_code=charged.currency_code,
                            balance_after_micros=charged.balance_after,
                            replayed=charged.replayed)


def _served(served: Served, tenant: Tenant) -> dict[str, object]:
    """The fields GenerateResponse and StreamEnd share."""
    return dict(
        served_by=wire.target(served.served_by), attempts=_attempts(served.attempts),
        latency=wire.duration(served.latency_s),
        citations=[pb.Citation(chunk_id=c.chunk_id, document_id=c.document_id, title=c.title,
                               label=c.label, score=c.score) for c in served.citations],
        charge=_charge(served.charge),
        prompt=pb.PromptRef(key=tenant.shown(served.prompt_key), version=served.prompt_version)
        if served.prompt_key else None,
        bot_config_id=served.bot_config_id)


def _end(ended: StreamEnded, trace_id: str, tenant: Tenant) -> pb.StreamEnd:
    end = pb.StreamEnd(finish_reason=_FINISH[ended.finish_reason], usage=_usage(ended.usage),
                       trace_id=trace_id,
                       **_served(ended.outcome, tenant))  # type: ignore[arg-type]
    if ended.time_to_first_token_s is not None:
        end.time_to_first_token.CopyFrom(wire.duration(ended.time_to_first_token_s))
    return end


class GenerationServicer(pb_grpc.GenerationServiceServicer):
    def __init__(self, config: GatewayConfig, chains: ChainBuilder,
                 generation: GenerationService) -> None:
        self._config = config
        self._chains = chains
        self._generation = generation
        self._limits = CallLimits(max_prompt_bytes=min(config.server.max_message_bytes, 1 << 20),
                                  rag=config.rag)
        self._tenants = TenantClaims.from_config(config.tenancy)
        self._prices = PriceList.from_config(config)

    def _deadline(self, context: grpc.aio.ServicerContext) -> float:
        remaining = context.time_remaining()
        if remaining is None:
            remaining = self._config.server.default_timeout_s
        return time.monotonic() + remaining

    async def Generate(self, request: pb.GenerateRequest,
                       context: grpc.aio.ServicerContext) -> pb.GenerateResponse:
        call = parse("Generate", request, self._limits, self._tenants)
        generated = await self._generation.run(call, self._deadline(context))
        completion = generated.completion
        return pb.GenerateResponse(
            text=completion.text, finish_reason=_FINISH[completion.finish_reason],
            usage=_usage(completion.usage), trace_id=call.caller.trace_id,
            **_served(generated.outcome, call.caller.tenant))  # type: ignore[arg-type]

    async def StreamGenerate(self, request: pb.StreamGenerateRequest,
                             context: grpc.aio.ServicerContext
                             ) -> AsyncIterator[pb.StreamGenerateResponse]:
        call = parse("StreamGenerate", request, self._limits, self._tenants)
        trace_id = call.caller.trace_id
        events = self._generation.stream(call, self._deadline(context))
        try:
            async for event in events:
                if isinstance(event, TextChunk):
                    yield pb.StreamGenerateResponse(delta=pb.TextDelta(text=event.text))
                elif isinstance(event, StreamStarted):
                    yield pb.StreamGenerateResponse(start=pb.StreamStart(
                        served_by=wire.target(event.served_by), trace_id=trace_id,
                        attempts=_attempts(event.attempts)))
                else:
                    yield pb.StreamGenerateResponse(end=_end(event, trace_id,
                                                             call.caller.tenant))
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    async def ListModels(self, request: pb.ListModelsRequest,
                         context: grpc.aio.ServicerContext) -> pb.ListModelsResponse:
        if request.page_size < 0:
            raise bad_field("page_size", "must not be negative")
        size = min(request.page_size or 100, 1000)
        routes = self._chains.routes(wire.current_tenant(self._tenants))  # shared + own
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
            prices = {key: entry.price.as_json() for t in routes[name]
                      if (entry := self._prices.for_target(t.provider, t.model)) is not None
                      and (key := target_key(t.provider, t.model))}
            if prices:  # what a call costs when served by each primary target
                attributes.update({"prices": prices})
            models.append(pb.Model(name=name,
                                   description=configured.description if configured else "",
                                   targets=[wire.target(t) for t in routes[name]],
                                   attributes=attributes))
        next_token = names[start + size] if start + size < len(names) else ""
        return pb.ListModelsResponse(models=models, next_page_token=next_token)
