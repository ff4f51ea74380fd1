"""Typed values at the client's boundary: what callers pass in and what calls return.

Results are frozen dataclasses with plain Python values (seconds as floats, enums as
lower-case strings like "stop", money as integer micros) and keep the protobuf message
in `raw` for anything this layer does not surface. Sequences are tuples so that a
result cannot be changed after the fact.
"""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeAlias

from google.protobuf.message import Message as ProtoMessage
from llmgateway.v1 import generation_pb2

__all__ = [
    "Attempt",
    "Billing",
    "ChargeResult",
    "ChargeSummary",
    "ChatMessage",
    "Citation",
    "CreditResult",
    "DeleteResult",
    "Document",
    "DocumentLike",
    "DocumentResult",
    "EmbedResult",
    "GenerateResult",
    "Image",
    "IngestResult",
    "MessagesLike",
    "ModelInfo",
    "ModelList",
    "PromptRef",
    "PromptTemplate",
    "RefundResult",
    "ResponseFormat",
    "ResponseFormatLike",
    "RetrievalConfig",
    "RetrieveResult",
    "RetrievedChunk",
    "SearchMode",
    "StreamEvent",
    "StreamFinished",
    "StreamStarted",
    "Target",
    "TargetLike",
    "TextChunk",
    "Tool",
    "ToolCall",
    "ToolCallChunk",
    "ToolChoiceLike",
    "ToolLike",
    "Transaction",
    "TransactionList",
    "Usage",
    "UsageAmount",
    "Wallet",
    "tool_result",
]

SearchMode: TypeAlias = Literal["vector", "keyword", "hybrid"]


# --- inputs -------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolCall:
    """A tool call the model made (`GenerateResult.tool_calls`), and the same value as input.

    `arguments` stays the JSON text the gateway returned, so that sending the call back in
    an assistant message repeats exactly what the model said; `parse_arguments()` gives
    the value. The gateway has already checked that it is the JSON text of an object.
    """

    id: str
    name: str
    arguments: str = "{}"

    def parse_arguments(self) -> Any:
        """The arguments as a Python value (a dict for every call the gateway returns)."""
        return json.loads(self.arguments) if self.arguments else {}


@dataclass(frozen=True)
class Image:
    """An image in a user message: inline `data` with its `mime_type`, or an https `url`.

    Set one of `data` and `url` (the gateway rejects both or neither, naming the field).
    Gemini and Bedrock only take inline bytes, so `data` is the portable choice.
    """

    data: bytes = field(default=b"", repr=False)
    mime_type: str = ""
    url: str = ""

    @classmethod
    def from_file(cls, path: str | Path, mime_type: str | None = None) -> Image:
        """Read an image file; the MIME type is guessed from the file name unless given."""
        path = Path(path)
        guessed = mime_type or mimetypes.guess_type(path.name)[0]
        if not guessed:
            raise ValueError(f"cannot tell the MIME type of {path.name}; pass mime_type=")
        return cls(data=path.read_bytes(), mime_type=guessed)


@dataclass(frozen=True)
class ChatMessage:
    """One conversation turn. Plain dicts and `(role, content)` tuples work too.

    An assistant turn that called tools carries them in `tool_calls` (so the conversation
    can continue after the tools ran); a "tool" turn answers the call `tool_call_id` (see
    `tool_result`); a user turn may carry `images`, sent after `content`.
    """

    role: str
    content: str = ""
    tool_calls: Sequence[ToolCall] = ()
    tool_call_id: str = ""
    images: Sequence[Image] = ()

    def __post_init__(self) -> None:
        # Tuples, so that a message built from a caller's list cannot change afterwards.
        object.__setattr__(self, "tool_calls", tuple(self.tool_calls))
        object.__setattr__(self, "images", tuple(self.images))


def tool_result(call_id: str, content: str | Mapping[str, Any] | Sequence[Any]) -> ChatMessage:
    """The "tool" message answering the tool call `call_id` with its result.

    `content` is the result as text; any other value is sent as its JSON text, which is
    what models expect a tool to return.
    """
    text = content if isinstance(content, str) else json.dumps(content)
    return ChatMessage(role="tool", content=text, tool_call_id=call_id)


@dataclass(frozen=True)
class Tool:
    """A function the model may call. `parameters` is the JSON Schema of its arguments
    (top-level type "object"); None means the function takes no arguments."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ResponseFormat:
    """Ask for JSON matching `schema` (a JSON Schema). With `strict` the gateway also
    validates the answer against the schema and retries or falls back when it does not
    match; without it only that the answer is JSON is checked. `name` labels the schema
    for vendors that want one (default "response")."""

    schema: Mapping[str, Any]
    name: str = ""
    strict: bool = False


@dataclass(frozen=True)
class Target:
    """A model at a vendor, optionally pinned to a region (also how `served_by` reads)."""

    provider: str
    model: str
    region: str = ""


@dataclass(frozen=True)
class Billing:
    """Which wallet pays for a generate call; the key makes the charge idempotent."""

    wallet_id: str
    idempotency_key: str
    session_id: str = ""


@dataclass(frozen=True)
class RetrievalConfig:
    """Ground a generate call in a namespace's documents. None leaves the server default."""

    namespace: str
    top_k: int | None = None
    min_score: float | None = None
    filters: Mapping[str, str | Sequence[str]] | None = None
    document_ids: Sequence[str] = ()
    mode: SearchMode | None = None
    max_context_tokens: int | None = None


@dataclass(frozen=True)
class PromptTemplate:
    """A stored prompt template to render; version 0 means the active version."""

    key: str
    version: int = 0
    variables: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Document:
    """A document to ingest."""

    id: str
    text: str
    title: str = ""
    source: str = ""
    metadata: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class UsageAmount:
    """Token usage for the gateway to price in a charge."""

    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0


MessageItem: TypeAlias = ChatMessage | Mapping[str, Any] | tuple[str, str] | generation_pb2.Message
MessagesLike: TypeAlias = str | Sequence[MessageItem]
TargetLike: TypeAlias = (
    Target | tuple[str, str] | tuple[str, str, str] | Mapping[str, str] | generation_pb2.Target
)
DocumentLike: TypeAlias = Document | Mapping[str, Any]
ToolLike: TypeAlias = Tool | Mapping[str, Any] | generation_pb2.Tool
# "auto", "none", "required", or the name of the one declared tool the model must call.
ToolChoiceLike: TypeAlias = str | generation_pb2.ToolChoice
# "text", "json_object", or a schema (`ResponseFormat` or its dict form) for JSON_SCHEMA.
ResponseFormatLike: TypeAlias = (
    str | ResponseFormat | Mapping[str, Any] | generation_pb2.ResponseFormat
)


# --- generation results ---------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0


@dataclass(frozen=True)
class Attempt:
    """One attempt (or skipped target) the gateway's fallback router made."""

    target: Target | None
    # "success", "failed", "skipped_circuit_open", "skipped_deadline",
    # "skipped_unsupported" (the target lacks a capability the request needs)
    outcome: str
    error_reason: str
    error_message: str
    latency_s: float
    retry: int


@dataclass(frozen=True)
class Citation:
    chunk_id: str
    document_id: str
    title: str
    label: str
    score: float


@dataclass(frozen=True)
class ChargeSummary:
    transaction_id: str
    amount_micros: int
    currency_code: str
    balance_after_micros: int
    replayed: bool


@dataclass(frozen=True)
class PromptRef:
    key: str
    version: int


@dataclass(frozen=True)
class GenerateResult:
    """The whole answer. With finish reason "tool_calls" the model asks for `tool_calls`
    to be run: append `as_message()` and one `tool_result` per call, and generate again."""

    text: str
    # "stop", "length", "content_filter", "error", "tool_calls", "unspecified"
    finish_reason: str
    usage: Usage
    served_by: Target | None
    attempts: tuple[Attempt, ...]
    citations: tuple[Citation, ...]
    charge: ChargeSummary | None
    trace_id: str
    prompt: PromptRef | None
    latency_s: float
    raw: generation_pb2.GenerateResponse = field(repr=False, compare=False)
    tool_calls: tuple[ToolCall, ...] = ()

    def as_message(self) -> ChatMessage:
        """This answer as the assistant turn of a conversation (text and tool calls)."""
        return ChatMessage(role="assistant", content=self.text, tool_calls=self.tool_calls)


@dataclass(frozen=True)
class StreamStarted:
    """First stream event: which target is serving and what failed before it."""

    served_by: Target | None
    trace_id: str
    attempts: tuple[Attempt, ...]
    raw: generation_pb2.StreamStart = field(repr=False, compare=False)


@dataclass(frozen=True)
class TextChunk:
    """Text to append to the answer."""

    text: str


@dataclass(frozen=True)
class ToolCallChunk:
    """A piece of a tool call: append `arguments_delta` to the arguments of the call at
    `index` (`id` and `name` are the same on every piece of one call). `StreamFinished`
    carries the assembled calls, so most callers only look there."""

    index: int
    id: str
    name: str
    arguments_delta: str


@dataclass(frozen=True)
class StreamFinished:
    """Last stream event. `text` is the whole answer assembled from the chunks, and
    `tool_calls` the calls the model made (finish reason "tool_calls")."""

    text: str
    finish_reason: str
    usage: Usage
    served_by: Target | None
    attempts: tuple[Attempt, ...]
    citations: tuple[Citation, ...]
    charge: ChargeSummary | None
    trace_id: str
    prompt: PromptRef | None
    time_to_first_token_s: float
    latency_s: float
    raw: generation_pb2.StreamEnd = field(repr=False, compare=False)
    tool_calls: tuple[ToolCall, ...] = ()

    def as_message(self) -> ChatMessage:
        """The streamed answer as the assistant turn of a conversation."""
        return ChatMessage(role="assistant", content=self.text, tool_calls=self.tool_calls)


StreamEvent: TypeAlias = StreamStarted | TextChunk | ToolCallChunk | StreamFinished


@dataclass(frozen=True)
class ModelInfo:
    name: str
    description: str
    targets: tuple[Target, ...]
    attributes: Mapping[str, Any]
    # What requests to this name may use: "tools", "json", "images", or "embeddings"
    # (an `embed` route). Requests needing a capability skip targets without it.
    capabilities: tuple[str, ...] = ()


@dataclass(frozen=True)
class EmbedResult:
    """One vector per input, in input order, all `dimensions` long."""

    vectors: tuple[tuple[float, ...], ...]
    dimensions: int
    usage: Usage
    served_by: Target | None
    attempts: tuple[Attempt, ...]
    charge: ChargeSummary | None
    trace_id: str
    raw: generation_pb2.EmbedResponse = field(repr=False, compare=False)


@dataclass(frozen=True)
class ModelList:
    models: tuple[ModelInfo, ...]
    next_page_token: str
    raw: ProtoMessage = field(repr=False, compare=False)


# --- retrieval results ------------------------------------------------------------------


@dataclass(frozen=True)
class RetrievedChunk:
    chunk_id: str
    document_id: str
    title: str
    source: str
    content: str
    score: float
    metadata: Mapping[str, Any]
    position: int


@dataclass(frozen=True)
class RetrieveResult:
    chunks: tuple[RetrievedChunk, ...]
    embedding_model: str
    embedding_time_s: float
    search_time_s: float
    raw: ProtoMessage = field(repr=False, compare=False)


@dataclass(frozen=True)
class DocumentResult:
    document_id: str
    outcome: str  # "created", "updated", "unchanged"
    chunk_count: int


@dataclass(frozen=True)
class IngestResult:
    results: tuple[DocumentResult, ...]
    embedding_model: str
    raw: ProtoMessage = field(repr=False, compare=False)


@dataclass(frozen=True)
class DeleteResult:
    deleted_documents: int
    deleted_chunks: int
    raw: ProtoMessage = field(repr=False, compare=False)


# --- billing results --------------------------------------------------------------------


@dataclass(frozen=True)
class Wallet:
    wallet_id: str
    currency_code: str
    balance_micros: int
    held_micros: int
    available_micros: int
    overdraft_limit_micros: int
    create_time: datetime | None
    raw: ProtoMessage = field(repr=False, compare=False)


@dataclass(frozen=True)
class ChargeResult:
    transaction_id: str
    amount_micros: int
    balance_after_micros: int
    replayed: bool
    raw: ProtoMessage = field(repr=False, compare=False)


@dataclass(frozen=True)
class CreditResult:
    transaction_id: str
    balance_after_micros: int
    replayed: bool
    raw: ProtoMessage = field(repr=False, compare=False)


@dataclass(frozen=True)
class RefundResult:
    transaction_id: str
    amount_micros: int
    balance_after_micros: int
    replayed: bool
    raw: ProtoMessage = field(repr=False, compare=False)


@dataclass(frozen=True)
class Transaction:
    transaction_id: str
    kind: str  # "charge", "credit", "refund", "hold"
    amount_micros: int
    description: str
    create_time: datetime | None


@dataclass(frozen=True)
class TransactionList:
    transactions: tuple[Transaction, ...]
    next_page_token: str
    raw: ProtoMessage = field(repr=False, compare=False)
