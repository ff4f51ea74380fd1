"""GenerationService: Generate, StreamGenerate and ListModels.

Thin by design, two jobs only: turn the protobuf request into one validated
``GenerationCall`` (every bad field of the whole request in one INVALID_ARGUMENT, before
any I/O), and turn the use case's domain results and events back into protobuf. The use
case itself is ``server/generation/``. Errors are ``GatewayError``s and become statuses in
the tracing interceptor.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

import grpc
from google.protobuf import struct_pb2
from llmgateway.v1 import generation_pb2 as pb
from llmgateway.v1 import generation_pb2_grpc as pb_grpc

from server import wire
from server.billing.metering import BillingRequest, Charged
from server.billing.pricing import PriceList, target_key
from server.kernel.call_context import current_call
from server.kernel.config import GatewayConfig
from server.kernel.errors import Fault, FieldViolation, GatewayError, bad_field, invalid_argument
from server.kernel.tenancy import Tenant, TenantClaims
from server.fallback.attempts import Attempt, Outcome
from server.fallback.capabilities import Capabilities
from server.fallback.chain import ChainBuilder, Target
from server.fallback.router import StreamStarted
from server.generation.call import (
    Caller,
    GenerationCall,
    PromptSelection,
    RetrievalRequest,
)
from server.generation.embed import EmbedCall, EmbeddingService
from server.generation.service import GenerationService, Outcome as Served, StreamEnded
from server.generation.validation import CallLimits, call_violations, image_violations
from server.providers.base import ChatMessage, FinishReason, GenerationParams, TextChunk, Usage
from server.providers.content import (
    FormatKind,
    Image,
    ResponseFormat,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolChoiceMode,
)

GenerationRequest = pb.GenerateRequest | pb.StreamGenerateRequest

_FINISH = {
    FinishReason.UNSPECIFIED: pb.FINISH_REASON_UNSPECIFIED,
    FinishReason.STOP: pb.FINISH_REASON_STOP,
    FinishReason.LENGTH: pb.FINISH_REASON_LENGTH,
    FinishReason.CONTENT_FILTER: pb.FINISH_REASON_CONTENT_FILTER,
    FinishReason.ERROR: pb.FINISH_REASON_ERROR,
    FinishReason.TOOL_CALLS: pb.FINISH_REASON_TOOL_CALLS,
}
_OUTCOME = {
    Outcome.SUCCESS: pb.ATTEMPT_OUTCOME_SUCCESS,
    Outcome.FAILED: pb.ATTEMPT_OUTCOME_FAILED,
    Outcome.SKIPPED_CIRCUIT_OPEN: pb.ATTEMPT_OUTCOME_SKIPPED_CIRCUIT_OPEN,
    Outcome.SKIPPED_DEADLINE: pb.ATTEMPT_OUTCOME_SKIPPED_DEADLINE,
    Outcome.SKIPPED_UNSUPPORTED: pb.ATTEMPT_OUTCOME_SKIPPED_UNSUPPORTED,
}
_TOOL_CHOICE = {
    pb.TOOL_CHOICE_MODE_UNSPECIFIED: ToolChoiceMode.AUTO,
    pb.TOOL_CHOICE_MODE_AUTO: ToolChoiceMode.AUTO,
    pb.TOOL_CHOICE_MODE_NONE: ToolChoiceMode.NONE,
    pb.TOOL_CHOICE_MODE_REQUIRED: ToolChoiceMode.REQUIRED,
    pb.TOOL_CHOICE_MODE_TOOL: ToolChoiceMode.TOOL,
}
_FORMAT = {
    pb.RESPONSE_FORMAT_TYPE_UNSPECIFIED: FormatKind.TEXT,
    pb.RESPONSE_FORMAT_TYPE_TEXT: FormatKind.TEXT,
    pb.RESPONSE_FORMAT_TYPE_JSON_OBJECT: FormatKind.JSON_OBJECT,
    pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA: FormatKind.JSON_SCHEMA,
}


# -- protobuf → domain ----------------------------------------------------------------

def _message(message: pb.Message, at: str, bad: list[FieldViolation]) -> ChatMessage:
    """One message; its image parts are checked here, where their proto path is known."""
    if not (message.parts or message.tool_calls or message.tool_call_id):
        return ChatMessage(message.role, message.content)
    text, images = message.content, []
    for j, part in enumerate(message.parts):
        if part.HasField("image"):
            image = Image(part.image.mime_type, part.image.data, part.image.url)
            bad += image_violations(image, f"{at}.parts[{j}].image")
            images.append(image)
        else:
            text += part.text
    calls = tuple(ToolCall(c.id, c.name, c.arguments) for c in message.tool_calls)
    return ChatMessage(message.role, text, tuple(images), calls, message.tool_call_id)


def _tool(message: pb.Tool) -> Tool:
    return Tool(message.name, message.description,
                wire.struct_dict(message.parameters) if message.HasField("parameters")
                else {"type": "object"})


@dataclass(frozen=True)
class Converters:
    """How tool declarations and schemas become domain values. The servicer remembers
    them (``remembered``): callers repeat the same declarations call after call, and a
    Struct → dict walk costs more than the rest of the parse (see ``wire.Conversions``)."""

    tool: Callable[[pb.Tool], Tool] = _tool
    schema: Callable[[struct_pb2.Struct], dict[str, Any]] = wire.struct_dict

    @classmethod
    def remembered(cls) -> Converters:
        return cls(wire.Conversions(_tool), wire.Conversions(wire.struct_dict))


def _tools(request: GenerationRequest, convert: Converters) -> tuple[Tool, ...]:
    return tuple(convert.tool(t) for t in request.tools)


def _tool_choice(request: GenerationRequest, bad: list[FieldViolation]) -> ToolChoice | None:
    if not request.HasField("tool_choice"):
        return None
    choice = request.tool_choice
    mode = _TOOL_CHOICE.get(choice.mode)
    if mode is None:
        bad.append(FieldViolation("tool_choice.mode", "not a ToolChoiceMode"))
        return None
    if choice.name and choice.mode == pb.TOOL_CHOICE_MODE_UNSPECIFIED:
        mode = ToolChoiceMode.TOOL  # a name alone means "this tool"
    return ToolChoice(mode, choice.name)


def _response_format(request: GenerationRequest, bad: list[FieldViolation],
                     convert: Converters) -> ResponseFormat | None:
    if not request.HasField("response_format"):
        return None
    fmt = request.response_format
    kind = _FORMAT.get(fmt.type)
    if kind is None:
        bad.append(FieldViolation("response_format.type", "not a ResponseFormatType"))
        return None
    return ResponseFormat(kind, convert.schema(fmt.schema) if fmt.HasField("schema") else None,
                          fmt.name or "response", fmt.strict)


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
    bot = tenant.own(call.bot, "bot")
    if bot == call.bot and call.billing is None and call.retrieval is None and \
            call.prompt is None:
        return call  # nothing else to qualify (the common call): no copy of the call
    billing = call.billing and replace(
        call.billing, wallet_id=tenant.own(call.billing.wallet_id, "billing.wallet_id"),
        session_id=tenant.own(call.billing.session_id, "billing.session_id"))
    retrieval = call.retrieval and replace(call.retrieval, search=replace(
        call.retrieval.search,
        namespace=tenant.own(call.retrieval.search.namespace, "retrieval.namespace")))
    prompt = call.prompt and replace(call.prompt,
                                     key=tenant.own(call.prompt.key, "prompt.key"))
    return replace(call, bot=bot, prompt=prompt,
                   retrieval=retrieval, billing=billing)


def parse(method: str, request: GenerationRequest, limits: CallLimits,
          tenants: TenantClaims = TenantClaims(),
          convert: Converters = Converters()) -> GenerationCall:
    """The request as a validated call; INVALID_ARGUMENT listing every bad field."""
    running = current_call.get()
    principal = running.principal if running else None
    bad: list[FieldViolation] = []
    messages = tuple(_message(m, f"messages[{i}]", bad) for i, m in enumerate(request.messages))
    call = GenerationCall(
        method=method, messages=messages,
        system_instruction=request.system_instruction, params=_params(request.config),
        model=request.model,
        targets=tuple(Target(t.provider, t.model, t.region) for t in request.targets),
        region=request.region, bot=request.bot, prompt=_prompt(request),
        retrieval=_retrieval(request), billing=_billing(request),
        end_user_id=request.end_user_id, metadata=dict(request.metadata),
        caller=Caller(principal, running.trace_id if running else "",
                      wire.current_tenant(tenants)),
        tools=_tools(request, convert), tool_choice=_tool_choice(request, bad),
        parallel_tool_calls=request.parallel_tool_calls
        if request.HasField("parallel_tool_calls") else None,
        response_format=_response_format(request, bad, convert))
    bad += call_violations(call, limits)
    if bad:
        raise invalid_argument(bad)
    return _owned(call)


# -- domain → protobuf ----------------------------------------------------------------

def _attempts(attempts: list[Attempt]) -> list[pb.Attempt]:
    return [pb.Attempt(target=wire.target(a.target), outcome=_OUTCOME[a.outcome],
                       error_reason=a.error_kind, error_message=a.error_message,
                       latency=wire.duration(a.latency_s), retry=a.retry) for a in attempts]


def _tool_calls(calls: tuple[ToolCall, ...]) -> list[pb.ToolCall]:
    return [pb.ToolCall(id=c.id, name=c.name, arguments=c.arguments) for c in calls]


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
                       trace_id=trace_id, tool_calls=_tool_calls(ended.tool_calls),
                       **_served(ended.outcome, tenant))  # type: ignore[arg-type]
    if ended.time_to_first_token_s is not None:
        end.time_to_first_token.CopyFrom(wire.duration(ended.time_to_first_token_s))
    return end


class GenerationServicer(pb_grpc.GenerationServiceServicer):
    def __init__(self, config: GatewayConfig, chains: ChainBuilder,
                 generation: GenerationService,
                 embedding: EmbeddingService | None = None) -> None:
        self._config = config
        self._chains = chains
        self._generation = generation
        self._embedding = embedding
        self._limits = CallLimits(max_prompt_bytes=min(config.server.max_message_bytes, 1 << 20),
                                  rag=config.rag)
        self._tenants = TenantClaims.from_config(config.tenancy)
        self._prices = PriceList.from_config(config)
        self._capabilities = Capabilities(config.capabilities)
        self._convert = Converters.remembered()

    def _deadline(self, context: grpc.aio.ServicerContext) -> float:
        remaining = context.time_remaining()
        if remaining is None:
            remaining = self._config.server.default_timeout_s
        return time.monotonic() + remaining

    async def Generate(self, request: pb.GenerateRequest,
                       context: grpc.aio.ServicerContext) -> pb.GenerateResponse:
        call = parse("Generate", request, self._limits, self._tenants, self._convert)
        generated = await self._generation.run(call, self._deadline(context))
        completion = generated.completion
        return pb.GenerateResponse(
            text=completion.text, finish_reason=_FINISH[completion.finish_reason],
            usage=_usage(completion.usage), trace_id=call.caller.trace_id,
            tool_calls=_tool_calls(completion.tool_calls),
            **_served(generated.outcome, call.caller.tenant))  # type: ignore[arg-type]

    async def StreamGenerate(self, request: pb.StreamGenerateRequest,
                             context: grpc.aio.ServicerContext
                             ) -> AsyncIterator[pb.StreamGenerateResponse]:
        call = parse("StreamGenerate", request, self._limits, self._tenants,
                     self._convert)
        trace_id = call.caller.trace_id
        events = self._generation.stream(call, self._deadline(context))
        try:
            async for event in events:
                if isinstance(event, TextChunk):
                    message = pb.StreamGenerateResponse()
                    message.delta.text = event.text  # in place: half the cost of a copy
                    yield message
                elif isinstance(event, ToolCallDelta):
                    yield pb.StreamGenerateResponse(tool_call=pb.ToolCallDelta(
                        index=event.index, id=event.id, name=event.name,
                        arguments_delta=event.arguments))
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
        embedding = self._embedding.routes if self._embedding is not None else {}
        names = sorted({*routes, *embedding})
        start = 0
        if request.page_token:
            if request.page_token not in names:
                raise bad_field("page_token", "not a token from a previous response")
            start = names.index(request.page_token)
        page = names[start:start + size]
        models = []
        for name in page:
            if name not in routes:
                models.append(self._embedding_model(name, embedding[name]))
                continue
            configured = self._config.models.get(name)
            attributes = struct_pb2.Struct()
            prices = {key: entry.price.as_json() for t in routes[name]
                      if (entry := self._prices.for_target(t.provider, t.model)) is not None
                      and (key := target_key(t.provider, t.model))}
            if prices:  # what a call costs when served by each primary target
                attributes.update({"prices": prices})
            can = sorted(set().union(*(self._capabilities.of(t.provider, t.model)
                                       for t in routes[name])))
            models.append(pb.Model(name=name,
                                   description=configured.description if configured else "",
                                   targets=[wire.target(t) for t in routes[name]],
                                   attributes=attributes, capabilities=can))
        next_token = names[start + size] if start + size < len(names) else ""
        return pb.ListModelsResponse(models=models, next_page_token=next_token)

    def _embedding_model(self, name: str, targets: tuple[Target, ...]) -> pb.Model:
        assert self._embedding is not None
        route = self._config.embedding_routes.get(name)
        attributes = struct_pb2.Struct()
        attributes.update({"dimensions": self._embedding.dimension(name)})
        return pb.Model(name=name, description=route.description if route else "",
                        targets=[wire.target(t) for t in targets], attributes=attributes,
                        capabilities=["embeddings"])

    async def Embed(self, request: pb.EmbedRequest,
                    context: grpc.aio.ServicerContext) -> pb.EmbedResponse:
        if self._embedding is None:
            raise GatewayError(Fault.NOT_SUPPORTED, "NOT_IMPLEMENTED",
                               "Embed is not configured on this gateway")
        running = current_call.get()
        tenant = wire.current_tenant(self._tenants)
        b = request.billing
        billing = BillingRequest(b.wallet_id, b.session_id, b.idempotency_key) \
            if request.HasField("billing") and (b.wallet_id or b.idempotency_key) else None
        call = EmbedCall(
            model=request.model, inputs=tuple(request.inputs),
            dimensions=request.dimensions if request.HasField("dimensions") else None,
            billing=billing, end_user_id=request.end_user_id, metadata=dict(request.metadata),
            caller=Caller(running.principal if running else None,
                          running.trace_id if running else "", tenant))
        if bad := call.violations():
            raise invalid_argument(bad)
        if billing is not None:
            call = replace(call, billing=replace(
                billing, wallet_id=tenant.own(billing.wallet_id, "billing.wallet_id"),
                session_id=tenant.own(billing.session_id, "billing.session_id")))
        embedded = await self._embedding.embed(call, self._deadline(context))
        return pb.EmbedResponse(
            embeddings=[pb.Embedding(index=i, values=row.tolist())
                        for i, row in enumerate(embedded.vectors)],
            usage=_usage(embedded.usage), served_by=wire.target(embedded.served_by),
            attempts=_attempts(embedded.attempts), charge=_charge(embedded.charge),
            trace_id=call.caller.trace_id, dimensions=int(embedded.vectors.shape[1]))
