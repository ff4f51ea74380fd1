"""Build protobuf requests from friendly Python arguments.

Shared by the async and the sync client so that both send exactly the same bytes. Every
`None` means "not set": the field is left at its proto default and the server applies
its documented default. Validation of values is the server's job (it names the bad field
in a BadRequest); this module only rejects what cannot be expressed in the proto at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypedDict, TypeVar, Unpack, cast

from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.message import Message as ProtoMessage
from llmgateway.v1 import billing_pb2, generation_pb2, retrieval_pb2

from .types import (
    Billing,
    ChatMessage,
    Document,
    DocumentLike,
    Image,
    MessagesLike,
    PromptTemplate,
    ResponseFormat,
    ResponseFormatLike,
    RetrievalConfig,
    SearchMode,
    Target,
    TargetLike,
    Tool,
    ToolCall,
    ToolChoiceLike,
    ToolLike,
    UsageAmount,
)

__all__ = [
    "GenerateOptions",
    "build_charge_request",
    "build_create_wallet_request",
    "build_credit_wallet_request",
    "build_delete_documents_request",
    "build_embed_request",
    "build_generate_request",
    "build_get_balance_request",
    "build_ingest_documents_request",
    "build_list_models_request",
    "build_list_transactions_request",
    "build_refund_request",
    "build_retrieve_request",
    "build_stream_generate_request",
    "to_messages",
    "to_target",
    "to_tool",
    "to_tool_call",
]

_SEARCH_MODES: dict[str, generation_pb2.SearchMode.ValueType] = {
    "vector": generation_pb2.SEARCH_MODE_VECTOR,
    "keyword": generation_pb2.SEARCH_MODE_KEYWORD,
    "hybrid": generation_pb2.SEARCH_MODE_HYBRID,
}

_TOOL_CHOICE_MODES: dict[str, generation_pb2.ToolChoiceMode.ValueType] = {
    "auto": generation_pb2.TOOL_CHOICE_MODE_AUTO,
    "none": generation_pb2.TOOL_CHOICE_MODE_NONE,
    "required": generation_pb2.TOOL_CHOICE_MODE_REQUIRED,
}

_RESPONSE_FORMAT_TYPES: dict[str, generation_pb2.ResponseFormatType.ValueType] = {
    "text": generation_pb2.RESPONSE_FORMAT_TYPE_TEXT,
    "json_object": generation_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT,
}

_MESSAGE_KEYS = frozenset({"role", "content", "tool_calls", "tool_call_id", "images"})

_TRANSACTION_KINDS: dict[str, billing_pb2.TransactionKind.ValueType] = {
    "charge": billing_pb2.TRANSACTION_KIND_CHARGE,
    "credit": billing_pb2.TRANSACTION_KIND_CREDIT,
    "refund": billing_pb2.TRANSACTION_KIND_REFUND,
    "hold": billing_pb2.TRANSACTION_KIND_HOLD,
}


class GenerateOptions(TypedDict, total=False):
    """Keyword options of `generate` / `stream_generate` (see `_fill_generate_fields`)."""

    system: str | None
    max_output_tokens: int | None
    temperature: float | None
    top_p: float | None
    top_k: int | None
    stop: str | Sequence[str] | None
    targets: Sequence[TargetLike] | None
    end_user_id: str | None
    billing: Billing | Mapping[str, str] | generation_pb2.BillingOptions | None
    retrieval: RetrievalConfig | Mapping[str, Any] | generation_pb2.RetrievalOptions | None
    prompt: PromptTemplate | Mapping[str, Any] | generation_pb2.PromptOptions | None
    metadata: Mapping[str, str] | None
    bot: str | None
    region: str | None
    tools: Sequence[ToolLike] | None
    tool_choice: ToolChoiceLike | None
    parallel_tool_calls: bool | None
    response_format: ResponseFormatLike | None


# --- generation -----------------------------------------------------------------------


_GenerateRequestT = TypeVar(
    "_GenerateRequestT", generation_pb2.GenerateRequest, generation_pb2.StreamGenerateRequest
)


def build_generate_request(
    model: str, messages: MessagesLike, **options: Unpack[GenerateOptions]
) -> generation_pb2.GenerateRequest:
    """A GenerateRequest; see `_fill_generate_fields` for the arguments."""
    return _fill_generate_fields(generation_pb2.GenerateRequest(), model, messages, **options)


def build_stream_generate_request(
    model: str, messages: MessagesLike, **options: Unpack[GenerateOptions]
) -> generation_pb2.StreamGenerateRequest:
    """A StreamGenerateRequest: by contract the same fields as a GenerateRequest."""
    return _fill_generate_fields(generation_pb2.StreamGenerateRequest(), model, messages, **options)


def _fill_generate_fields(
    request: _GenerateRequestT,
    model: str,
    messages: MessagesLike,
    *,
    system: str | None = None,
    max_output_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    top_k: int | None = None,
    stop: str | Sequence[str] | None = None,
    targets: Sequence[TargetLike] | None = None,
    end_user_id: str | None = None,
    billing: Billing | Mapping[str, str] | generation_pb2.BillingOptions | None = None,
    retrieval: RetrievalConfig | Mapping[str, Any] | generation_pb2.RetrievalOptions | None = None,
    prompt: PromptTemplate | Mapping[str, Any] | generation_pb2.PromptOptions | None = None,
    metadata: Mapping[str, str] | None = None,
    bot: str | None = None,
    region: str | None = None,
    tools: Sequence[ToolLike] | None = None,
    tool_choice: ToolChoiceLike | None = None,
    parallel_tool_calls: bool | None = None,
    response_format: ResponseFormatLike | None = None,
) -> _GenerateRequestT:
    """Map the generate arguments onto a (Stream)GenerateRequest, one argument per field.

    `model` may be "" when `bot` or `targets` choose the model. `messages` is a str (one
    user message) or a sequence of `ChatMessage`, dicts `{"role": ..., "content": ...}`
    (optionally with "tool_calls", "tool_call_id" and "images"), `(role, content)` tuples
    or protobuf Messages. `stop` is one stop sequence or several. `system` becomes
    `system_instruction`; the sampling arguments become `config`.

    `tools` are `Tool`s or dicts `{"name", "description", "parameters"}`; `tool_choice`
    is "auto", "none", "required" or the name of the tool the model must call.
    `response_format` is "text", "json_object", or a schema (`ResponseFormat` or a dict
    `{"schema", "name", "strict"}`) for JSON matching it.
    """
    request.model = model or ""
    request.messages.extend(to_messages(messages))
    if system:
        request.system_instruction = system
    config = _generation_config(max_output_tokens, temperature, top_p, top_k, stop)
    if config is not None:
        request.config.CopyFrom(config)
    if targets:
        request.targets.extend(to_target(target) for target in targets)
    if end_user_id:
        request.end_user_id = end_user_id
    if billing is not None:
        request.billing.CopyFrom(_billing_options(billing))
    if retrieval is not None:
        request.retrieval.CopyFrom(_retrieval_options(retrieval))
    if prompt is not None:
        request.prompt.CopyFrom(_prompt_options(prompt))
    if metadata:
        request.metadata.update({str(key): str(value) for key, value in metadata.items()})
    if bot:
        request.bot = bot
    if region:
        request.region = region
    if tools:
        request.tools.extend(to_tool(tool) for tool in tools)
    if tool_choice is not None:
        request.tool_choice.CopyFrom(_tool_choice(tool_choice))
    if parallel_tool_calls is not None:
        request.parallel_tool_calls = bool(parallel_tool_calls)
    if response_format is not None:
        request.response_format.CopyFrom(_response_format(response_format))
    return request


def build_embed_request(
    model: str,
    inputs: str | Sequence[str],
    *,
    dimensions: int | None = None,
    billing: Billing | Mapping[str, str] | generation_pb2.BillingOptions | None = None,
    end_user_id: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> generation_pb2.EmbedRequest:
    """An EmbedRequest; one str is one input. `dimensions` is proto3 `optional`: only an
    explicit value is sent (it must then equal the route's dimension)."""
    request = generation_pb2.EmbedRequest(
        model=model, inputs=_string_list(inputs), end_user_id=end_user_id or ""
    )
    if dimensions is not None:
        request.dimensions = dimensions
    if billing is not None:
        request.billing.CopyFrom(_billing_options(billing))
    if metadata:
        request.metadata.update({str(key): str(value) for key, value in metadata.items()})
    return request


def build_list_models_request(
    page_size: int | None = None, page_token: str | None = None
) -> generation_pb2.ListModelsRequest:
    return generation_pb2.ListModelsRequest(page_size=page_size or 0, page_token=page_token or "")


def to_messages(messages: MessagesLike) -> list[generation_pb2.Message]:
    """Normalise the accepted message shapes into protobuf Messages."""
    if isinstance(messages, str):
        return [generation_pb2.Message(role="user", content=messages)]
    if isinstance(messages, Mapping):
        raise TypeError("messages must be a list of messages; wrap a single dict in a list")
    return [_to_message(item) for item in messages]


def _to_message(item: object) -> generation_pb2.Message:
    if isinstance(item, generation_pb2.Message):
        return item
    if isinstance(item, ChatMessage):
        return _message(item.role, item.content, item.tool_calls, item.tool_call_id, item.images)
    if isinstance(item, Mapping):
        unknown = set(item) - _MESSAGE_KEYS
        if unknown or "role" not in item:
            raise ValueError(
                f"a message dict needs 'role' and may have {sorted(_MESSAGE_KEYS - {'role'})}, "
                f"got keys {sorted(item)}"
            )
        return _message(
            item["role"],
            item.get("content") or "",
            item.get("tool_calls") or (),
            item.get("tool_call_id") or "",
            item.get("images") or (),
        )
    if isinstance(item, tuple) and len(item) == 2:
        role, content = item
        return generation_pb2.Message(role=role, content=content)
    raise TypeError(f"cannot use {type(item).__name__} as a message")


def _message(
    role: str,
    content: str,
    tool_calls: Iterable[ToolCall | Mapping[str, Any] | generation_pb2.ToolCall],
    tool_call_id: str,
    images: Iterable[Image | Mapping[str, Any] | generation_pb2.ImagePart],
) -> generation_pb2.Message:
    """Images become `image` content parts after `content`, the only place the proto has."""
    single = Mapping | str | bytes | ToolCall | Image | ProtoMessage
    if isinstance(tool_calls, single) or isinstance(images, single):
        raise TypeError("'tool_calls' and 'images' are lists; wrap a single one in a list")
    return generation_pb2.Message(
        role=role,
        content=content,
        tool_calls=[to_tool_call(call) for call in tool_calls],
        tool_call_id=tool_call_id,
        parts=[generation_pb2.ContentPart(image=_image_part(image)) for image in images],
    )


def to_tool_call(
    call: ToolCall | Mapping[str, Any] | generation_pb2.ToolCall,
) -> generation_pb2.ToolCall:
    """A ToolCall from a `ToolCall` (as results return them), a dict or a protobuf ToolCall.

    Dict arguments may be a value rather than JSON text; they are sent as its JSON text.
    """
    if isinstance(call, generation_pb2.ToolCall):
        return call
    if isinstance(call, Mapping):
        arguments = call.get("arguments", "{}")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        call = ToolCall(id=call.get("id", ""), name=call.get("name", ""), arguments=arguments)
    if isinstance(call, ToolCall):
        return generation_pb2.ToolCall(id=call.id, name=call.name, arguments=call.arguments)
    raise TypeError(f"cannot use {type(call).__name__} as a tool call")


def _image_part(
    image: Image | Mapping[str, Any] | generation_pb2.ImagePart,
) -> generation_pb2.ImagePart:
    if isinstance(image, generation_pb2.ImagePart):
        return image
    if isinstance(image, Mapping):
        image = Image(**image)
    if isinstance(image, Image):
        return generation_pb2.ImagePart(data=image.data, mime_type=image.mime_type, url=image.url)
    raise TypeError(f"cannot use {type(image).__name__} as an image; use Image(data=, mime_type=)")


def to_tool(tool: ToolLike) -> generation_pb2.Tool:
    """A Tool from a `Tool`, a dict `{"name", "description", "parameters"}` or a protobuf Tool."""
    if isinstance(tool, generation_pb2.Tool):
        return tool
    if isinstance(tool, Mapping):
        tool = Tool(**tool)
    if not isinstance(tool, Tool):
        raise TypeError(f"cannot use {type(tool).__name__} as a tool")
    message = generation_pb2.Tool(name=tool.name, description=tool.description)
    if tool.parameters is not None:
        message.parameters.CopyFrom(_struct(tool.parameters))
    return message


def _tool_choice(choice: ToolChoiceLike) -> generation_pb2.ToolChoice:
    """ "auto" / "none" / "required" are modes; any other string names the tool to call."""
    if isinstance(choice, generation_pb2.ToolChoice):
        return choice
    if not isinstance(choice, str):
        raise TypeError(f"tool_choice must be a str, got {type(choice).__name__}")
    mode = _TOOL_CHOICE_MODES.get(choice)
    if mode is not None:
        return generation_pb2.ToolChoice(mode=mode)
    return generation_pb2.ToolChoice(mode=generation_pb2.TOOL_CHOICE_MODE_TOOL, name=choice)


def _response_format(response_format: ResponseFormatLike) -> generation_pb2.ResponseFormat:
    """ "text" / "json_object" by name; a schema (`ResponseFormat` or dict) is JSON_SCHEMA."""
    if isinstance(response_format, generation_pb2.ResponseFormat):
        return response_format
    if isinstance(response_format, str):
        try:
            return generation_pb2.ResponseFormat(type=_RESPONSE_FORMAT_TYPES[response_format])
        except KeyError:
            raise ValueError(
                "response_format must be 'text', 'json_object' or a schema "
                f"(ResponseFormat or {{'schema': ...}}), got {response_format!r}"
            ) from None
    if isinstance(response_format, Mapping):
        response_format = ResponseFormat(**response_format)
    if not isinstance(response_format, ResponseFormat):
        raise TypeError(f"cannot use {type(response_format).__name__} as a response format")
    return generation_pb2.ResponseFormat(
        type=generation_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
        schema=_struct(response_format.schema),
        name=response_format.name,
        strict=response_format.strict,
    )


def to_target(target: TargetLike) -> generation_pb2.Target:
    """A Target from a `Target`, `(provider, model[, region])`, a dict or a protobuf Target."""
    if isinstance(target, generation_pb2.Target):
        return target
    if isinstance(target, Target):
        return generation_pb2.Target(
            provider=target.provider, model=target.model, region=target.region
        )
    if isinstance(target, Mapping):
        return generation_pb2.Target(**target)
    if isinstance(target, tuple) and len(target) in (2, 3):
        return generation_pb2.Target(**dict(zip(("provider", "model", "region"), target)))
    raise TypeError(f"cannot use {type(target).__name__} as a target")


def _generation_config(
    max_output_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    top_k: int | None,
    stop: str | Sequence[str] | None,
) -> generation_pb2.GenerationConfig | None:
    """None when no sampling argument is given, so the route's defaults apply untouched.

    The scalar fields are proto3 `optional`: an explicit 0 / 0.0 is sent as a value.
    """
    stop_sequences = _string_list(stop)
    sampling = (max_output_tokens, temperature, top_p, top_k)
    if all(value is None for value in sampling) and not stop_sequences:
        return None
    config = generation_pb2.GenerationConfig(stop_sequences=stop_sequences)
    if max_output_tokens is not None:
        config.max_output_tokens = max_output_tokens
    if temperature is not None:
        config.temperature = temperature
    if top_p is not None:
        config.top_p = top_p
    if top_k is not None:
        config.top_k = top_k
    return config


def _billing_options(
    billing: Billing | Mapping[str, str] | generation_pb2.BillingOptions,
) -> generation_pb2.BillingOptions:
    if isinstance(billing, generation_pb2.BillingOptions):
        return billing
    if isinstance(billing, Mapping):
        billing = Billing(**billing)
    return generation_pb2.BillingOptions(
        wallet_id=billing.wallet_id,
        idempotency_key=billing.idempotency_key,
        session_id=billing.session_id,
    )


def _retrieval_options(
    retrieval: RetrievalConfig | Mapping[str, Any] | generation_pb2.RetrievalOptions,
) -> generation_pb2.RetrievalOptions:
    if isinstance(retrieval, generation_pb2.RetrievalOptions):
        return retrieval
    if isinstance(retrieval, Mapping):
        retrieval = RetrievalConfig(**retrieval)
    options = generation_pb2.RetrievalOptions(
        namespace=retrieval.namespace,
        top_k=retrieval.top_k or 0,
        min_score=retrieval.min_score or 0.0,
        filters=_metadata_filters(retrieval.filters),
        document_ids=_string_list(retrieval.document_ids),
        mode=_search_mode(retrieval.mode),
        max_context_tokens=retrieval.max_context_tokens or 0,
    )
    return options


def _prompt_options(
    prompt: PromptTemplate | Mapping[str, Any] | generation_pb2.PromptOptions,
) -> generation_pb2.PromptOptions:
    if isinstance(prompt, generation_pb2.PromptOptions):
        return prompt
    if isinstance(prompt, Mapping):
        prompt = PromptTemplate(**prompt)
    return generation_pb2.PromptOptions(
        key=prompt.key,
        version=prompt.version,
        variables={str(name): str(value) for name, value in (prompt.variables or {}).items()},
    )


def _metadata_filters(
    filters: Mapping[str, str | Sequence[str]] | None,
) -> list[generation_pb2.MetadataFilter]:
    return [
        generation_pb2.MetadataFilter(key=key, values=_string_list(values))
        for key, values in (filters or {}).items()
    ]


def _search_mode(mode: SearchMode | int | None) -> generation_pb2.SearchMode.ValueType:
    """ "vector" / "keyword" / "hybrid" (or a SearchMode enum value); None is unspecified."""
    if mode is None:
        return generation_pb2.SEARCH_MODE_UNSPECIFIED
    if isinstance(mode, int):
        return cast(generation_pb2.SearchMode.ValueType, mode)
    try:
        return _SEARCH_MODES[mode]
    except KeyError:
        raise ValueError(f"mode must be one of {sorted(_SEARCH_MODES)}, got {mode!r}") from None


def _string_list(values: str | Iterable[str] | None) -> list[str]:
    """One string or several; a lone str is one value, not a sequence of characters."""
    if values is None:
        return []
    if isinstance(values, str):
        return [values]
    return [str(value) for value in values]


# --- retrieval ------------------------------------------------------------------------


def build_retrieve_request(
    namespace: str,
    query: str | None = None,
    vector: Sequence[float] | None = None,
    top_k: int = 5,
    *,
    min_score: float | None = None,
    filters: Mapping[str, str | Sequence[str]] | None = None,
    document_ids: Sequence[str] | None = None,
    mode: SearchMode | None = None,
    ef_search: int | None = None,
) -> retrieval_pb2.RetrieveRequest:
    return retrieval_pb2.RetrieveRequest(
        namespace=namespace,
        query=query or "",
        vector=list(vector or ()),
        top_k=top_k,
        min_score=min_score or 0.0,
        filters=_metadata_filters(filters),
        document_ids=_string_list(document_ids),
        mode=_search_mode(mode),
        ef_search=ef_search or 0,
    )


def build_ingest_documents_request(
    namespace: str,
    documents: Sequence[DocumentLike],
    *,
    chunk_size: int | None = None,
    chunk_overlap: int | None = None,
    embedding_model: str | None = None,
) -> retrieval_pb2.IngestDocumentsRequest:
    request = retrieval_pb2.IngestDocumentsRequest(
        namespace=namespace,
        documents=[_to_document(document) for document in documents],
        embedding_model=embedding_model or "",
    )
    if chunk_size is not None or chunk_overlap is not None:
        request.chunking.CopyFrom(
            retrieval_pb2.ChunkingOptions(
                chunk_size=chunk_size or 0, chunk_overlap=chunk_overlap or 0
            )
        )
    return request


def _to_document(document: DocumentLike | retrieval_pb2.Document) -> retrieval_pb2.Document:
    if isinstance(document, retrieval_pb2.Document):
        return document
    if isinstance(document, Mapping):
        document = Document(**document)
    message = retrieval_pb2.Document(
        id=document.id, title=document.title, source=document.source, text=document.text
    )
    if document.metadata:
        message.metadata.CopyFrom(_struct(document.metadata))
    return message


def _struct(values: Mapping[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(dict(values))
    return struct


def build_delete_documents_request(
    namespace: str, document_ids: str | Sequence[str]
) -> retrieval_pb2.DeleteDocumentsRequest:
    return retrieval_pb2.DeleteDocumentsRequest(
        namespace=namespace, document_ids=_string_list(document_ids)
    )


# --- billing --------------------------------------------------------------------------


def build_charge_request(
    wallet_id: str,
    idempotency_key: str,
    amount_micros: int | None = None,
    usage: UsageAmount | Mapping[str, Any] | billing_pb2.UsageAmount | None = None,
    *,
    currency_code: str | None = None,
    session_id: str | None = None,
    description: str | None = None,
) -> billing_pb2.ChargeRequest:
    """A ChargeRequest for an explicit amount or for token usage (the `amount` oneof)."""
    if amount_micros is not None and usage is not None:
        raise ValueError("charge either amount_micros or usage, not both")
    request = billing_pb2.ChargeRequest(
        wallet_id=wallet_id,
        idempotency_key=idempotency_key,
        currency_code=currency_code or "",
        session_id=session_id or "",
        description=description or "",
    )
    if amount_micros is not None:
        request.amount_micros = int(amount_micros)
    elif usage is not None:
        request.usage.CopyFrom(_usage_amount(usage))
    return request


def _usage_amount(
    usage: UsageAmount | Mapping[str, Any] | billing_pb2.UsageAmount,
) -> billing_pb2.UsageAmount:
    if isinstance(usage, billing_pb2.UsageAmount):
        return usage
    if isinstance(usage, Mapping):
        usage = UsageAmount(**usage)
    return billing_pb2.UsageAmount(
        model=usage.model,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_input_tokens=usage.cached_input_tokens,
    )


def build_create_wallet_request(
    wallet_id: str, currency_code: str, *, overdraft_limit_micros: int = 0
) -> billing_pb2.CreateWalletRequest:
    return billing_pb2.CreateWalletRequest(
        wallet_id=wallet_id,
        currency_code=currency_code,
        overdraft_limit_micros=overdraft_limit_micros,
    )


def build_credit_wallet_request(
    wallet_id: str,
    idempotency_key: str,
    amount_micros: int,
    *,
    currency_code: str | None = None,
    description: str | None = None,
) -> billing_pb2.CreditWalletRequest:
    return billing_pb2.CreditWalletRequest(
        wallet_id=wallet_id,
        idempotency_key=idempotency_key,
        amount_micros=int(amount_micros),
        currency_code=currency_code or "",
        description=description or "",
    )


def build_get_balance_request(wallet_id: str) -> billing_pb2.GetBalanceRequest:
    return billing_pb2.GetBalanceRequest(wallet_id=wallet_id)


def build_list_transactions_request(
    wallet_id: str,
    *,
    page_size: int | None = None,
    page_token: str | None = None,
    kind: str | None = None,
    start_time: datetime | None = None,
    end_time: datetime | None = None,
) -> billing_pb2.ListTransactionsRequest:
    """`kind` is "charge", "credit", "refund" or "hold"; naive datetimes are taken as UTC."""
    request = billing_pb2.ListTransactionsRequest(
        wallet_id=wallet_id, page_size=page_size or 0, page_token=page_token or ""
    )
    if kind is not None:
        try:
            request.kind = _TRANSACTION_KINDS[kind]
        except KeyError:
            raise ValueError(
                f"kind must be one of {sorted(_TRANSACTION_KINDS)}, got {kind!r}"
            ) from None
    if start_time is not None:
        request.start_time.CopyFrom(_timestamp(start_time))
    if end_time is not None:
        request.end_time.CopyFrom(_timestamp(end_time))
    return request


def _timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def build_refund_request(
    transaction_id: str, idempotency_key: str, *, reason: str | None = None
) -> billing_pb2.RefundRequest:
    return billing_pb2.RefundRequest(
        transaction_id=transaction_id, idempotency_key=idempotency_key, reason=reason or ""
    )
