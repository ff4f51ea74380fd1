"""Typed values at the client's boundary: what callers pass in and what calls return.

Results are frozen dataclasses with plain Python values (seconds as floats, enums as
lower-case strings like "stop", money as integer micros) and keep the protobuf message
in `raw` for anything this layer does not surface. Sequences are tuples so that a
result cannot be changed after the fact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
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
    "GenerateResult",
    "IngestResult",
    "MessagesLike",
    "ModelInfo",
    "ModelList",
    "PromptRef",
    "PromptTemplate",
    "RefundResult",
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
    "Transaction",
    "TransactionList",
    "Usage",
    "UsageAmount",
    "Wallet",
]

SearchMode: TypeAlias = Literal["vector", "keyword", "hybrid"]


# --- inputs -------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatMessage:
    """One conversation turn. Plain dicts and `(role, content)` tuples work too."""

    role: str
    content: str


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


MessageItem: TypeAlias = ChatMessage | Mapping[str, str] | tuple[str, str] | generation_pb2.Message
MessagesLike: TypeAlias = str | Sequence[MessageItem]
TargetLike: TypeAlias = (
    Target | tuple[str, str] | tuple[str, str, str] | Mapping[str, str] | generation_pb2.Target
)
DocumentLike: TypeAlias = Document | Mapping[str, Any]


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
    outcome: str  # "success", "failed", "skipped_circuit_open", "skipped_deadline"
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
    text: str
    finish_reason: str  # "stop", "length", "content_filter", "error", "unspecified"
    usage: Usage
    served_by: Target | None
    attempts: tuple[Attempt, ...]
    citations: tuple[Citation, ...]
    charge: ChargeSummary | None
    trace_id: str
    prompt: PromptRef | None
    latency_s: float
    raw: generation_pb2.GenerateResponse = field(repr=False, compare=False)


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
class StreamFinished:
    """Last stream event. `text` is the whole answer assembled from the chunks."""

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


StreamEvent: TypeAlias = StreamStarted | TextChunk | StreamFinished


@dataclass(frozen=True)
class ModelInfo:
    name: str
    description: str
    targets: tuple[Target, ...]
    attributes: Mapping[str, Any]


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
