"""What every vendor adapter takes and returns, and the error taxonomy it classifies into.

Adapters are leaves: they build the vendor request, call the official SDK, map the
answer back and classify failures into ``ProviderError`` once. The router decides what to
do with a failure; it never looks at vendor status codes itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class ErrorKind(StrEnum):
    """The error classes of every vendor, as the router understands them."""

    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"
    AUTH = "auth"
    PERMISSION = "permission"
    INVALID_REQUEST = "invalid_request"
    CONTEXT_TOO_LONG = "context_too_long"
    CONTENT_FILTERED = "content_filtered"
    NOT_FOUND = "not_found"


# Retrying the same target can help only for these.
RETRYABLE_KINDS = frozenset({ErrorKind.RATE_LIMITED, ErrorKind.OVERLOADED, ErrorKind.TIMEOUT,
                             ErrorKind.UNAVAILABLE})
# These would fail the same way at any vendor: no fallback either.
FINAL_KINDS = frozenset({ErrorKind.INVALID_REQUEST, ErrorKind.CONTEXT_TOO_LONG})


class ProviderError(Exception):
    """A classified vendor failure. ``message`` is safe to show to callers."""

    def __init__(self, kind: ErrorKind, message: str, *, retry_after_s: float | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after_s = retry_after_s
        self.status = status

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE_KINDS

    def __repr__(self) -> str:
        return f"ProviderError({self.kind.value}, {self.message!r}, status={self.status})"


class FinishReason(StrEnum):
    UNSPECIFIED = "unspecified"
    STOP = "stop"
    LENGTH = "length"
    CONTENT_FILTER = "content_filter"
    ERROR = "error"


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "user" | "assistant" (system text travels in ProviderRequest.system)
    content: str


@dataclass(frozen=True)
class GenerationParams:
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()


# How one vendor names our generation parameters: (our field, vendor field, transform).
# Each adapter declares its table as data; ``map_params`` applies it.
ParamMap = tuple[tuple[str, str, Callable[[Any], Any] | None], ...]


def map_params(params: GenerationParams, table: ParamMap) -> dict[str, Any]:
    """The vendor's parameter fields for ``params`` (unset values are left out)."""
    out: dict[str, Any] = {}
    for ours, theirs, transform in table:
        value = getattr(params, ours)
        if transform is not None:
            value = transform(value)
        if value is not None:
            out[theirs] = value
    return out


@dataclass(frozen=True)
class ProviderRequest:
    """One call to one vendor model (the router fills model and region per target)."""

    model: str
    messages: tuple[ChatMessage, ...]
    system: str = ""
    params: GenerationParams = GenerationParams()
    region: str = ""


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: FinishReason
    usage: Usage = field(default_factory=Usage)


@dataclass(frozen=True)
class TextChunk:
    """Streamed text to append."""

    text: str


@dataclass(frozen=True)
class StreamDone:
    """The last stream event: why it ended and the vendor's usage."""

    finish_reason: FinishReason
    usage: Usage


StreamEvent = TextChunk | StreamDone


class Provider(Protocol):
    """A vendor adapter."""

    name: str

    async def generate(self, request: ProviderRequest, timeout_s: float) -> Completion:
        """The whole answer; raises ProviderError."""
        ...

    def stream(self, request: ProviderRequest, timeout_s: float) -> AsyncIterator[StreamEvent]:
        """Text chunks then one StreamDone; raises ProviderError. Closing the iterator
        (or cancelling its task) closes the upstream connection."""
        ...

    async def aclose(self) -> None:
        ...
