"""What every vendor adapter takes and returns, the error taxonomy it classifies into, and
the scaffold every adapter is built on.

Adapters are leaves: they build the vendor request, call the official SDK, map the
answer back and classify failures into ``ProviderError`` once. The router decides what to
do with a failure; it never looks at vendor status codes itself.

Every vendor module has the same shape: ``build_request`` (our request → the SDK call's
arguments), ``translate_event`` (one raw stream event → a ``StreamUpdate``), ``classify``
(an SDK exception → ``ProviderError``) with its ``ERRORS = ErrorScope(classify)``, the
provider class (``generate``, ``stream`` through ``drive_stream``, ``aclose``) and, where
the vendor has an embeddings API, a ``VendorEmbedder``. What is the same for every vendor
lives here once: the error scope, the stream loop, the API-key check, deadline-bounded
reads and embedding in batches.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Any, ClassVar, Generic, NamedTuple, Protocol, TypeVar

import numpy as np


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


def check_key(provider: str, missing: bool) -> None:
    """Refuse a call to a provider that has no API key configured.

    Checked per call rather than at start-up so that a gateway missing one vendor's key
    still starts and serves the others: that vendor's targets fail with ``auth`` and the
    router moves on.
    """
    if missing:
        raise ProviderError(ErrorKind.AUTH, f"no API key is configured for provider "
                            f"{provider!r}")


class ErrorScope:
    """``with ERRORS:`` — any vendor exception raised inside leaves as a ``ProviderError``.

    Each adapter module makes one (``ERRORS = ErrorScope(classify)``) and wraps whole SDK
    calls and whole stream loops in it. It holds no per-call state, so one instance serves
    every concurrent call and entering it allocates nothing. Errors that are already
    classified (a key check, a blocked prompt) pass through unchanged, and so do
    ``BaseException``s (cancellation, a closed generator): they are not vendor failures.
    ``classify`` re-raises what it does not recognise, so programming errors stay visible.
    """

    __slots__ = ("_classify",)

    def __init__(self, classify: Callable[[Exception], ProviderError]) -> None:
        self._classify = classify

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        if not isinstance(exc, Exception) or isinstance(exc, ProviderError):
            return False
        raise self._classify(exc) from None


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


class StreamUpdate(NamedTuple):
    """What one raw vendor stream event adds: text to send on, and the finish reason and
    usage when the event carries them. A NamedTuple because the OpenAI hot path makes one
    per chunk: it is the cheapest immutable record to build."""

    text: str = ""
    finish: FinishReason | None = None
    usage: Usage | None = None


# The update of an event that adds nothing (pings, block starts): shared, never rebuilt.
NO_UPDATE = StreamUpdate()

# A vendor's ``translate_event(event, usage)``: ``usage`` is the stream's usage so far, for
# vendors that report it in parts (Anthropic folds each part into it and returns it).
Translate = Callable[[Any, Usage], StreamUpdate]


class Upstream(Protocol):
    """A vendor's raw event stream, in the shape the OpenAI and Anthropic SDK streams have
    (so the hot path iterates them unwrapped): iterate it, then close it. Closing releases
    the HTTP response, which the vendor sees as the caller leaving."""

    def __aiter__(self) -> AsyncIterator[Any]: ...

    async def close(self) -> None: ...


async def drive_stream(open_upstream: Callable[[], Awaitable[Upstream]], translate: Translate,
                       errors: ErrorScope) -> AsyncIterator[StreamEvent]:
    """Every adapter's ``stream``: open the vendor stream, send each event's text as a
    ``TextChunk``, then one ``StreamDone`` with the last finish reason and usage reported.

    ``open_upstream`` runs at the first read (as an async generator's body would), so a
    stream that is never read never calls the vendor. The error scope wraps the whole loop,
    not each event, and nothing is allocated per event here beyond the vendor's update and
    the chunk sent on. Closing this iterator, or cancelling the task reading it, closes the
    upstream at once, from our side.
    """
    with errors:
        upstream = await open_upstream()
    finish, usage = FinishReason.UNSPECIFIED, Usage()
    try:
        with errors:
            async for event in upstream:
                update = translate(event, usage)
                if update.text:
                    yield TextChunk(update.text)
                finish = update.finish or finish
                usage = update.usage or usage
    finally:
        await upstream.close()
    yield StreamDone(finish, usage)


class _Events(Protocol):
    """An async generator, or anything iterated and closed the same way."""

    def __anext__(self) -> Awaitable[Any]: ...

    def aclose(self) -> Awaitable[Any]: ...


class DeadlineEvents:
    """An ``Upstream`` whose every read must finish by ``deadline`` (event-loop time), for
    SDKs with no read timeout of their own (Gemini's async stream, Bedrock's reads in the
    thread pool). Bounded per read rather than around the driver's loop: a timeout spanning
    the driver's ``yield`` would also run, and fire, while the caller holds a chunk."""

    __slots__ = ("_deadline", "_events")

    def __init__(self, events: _Events, deadline: float) -> None:
        self._events = events
        self._deadline = deadline

    def __aiter__(self) -> DeadlineEvents:
        return self

    async def __anext__(self) -> Any:
        async with asyncio.timeout_at(self._deadline):
            return await self._events.__anext__()

    async def close(self) -> None:
        await self._events.aclose()


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


P = TypeVar("P")


class VendorEmbedder(Generic[P]):
    """What every vendor embedder shares (the retrieval package's ``Embedder`` interface):
    ``name``, stored with every chunk so a namespace never mixes models (``vendor/model``
    unless configured otherwise); ``dimension``; and ``embed``, which sends ``batch_size``
    texts per vendor call inside the vendor's error scope, so embedding failures are
    classified exactly like generation's. A vendor supplies ``_embed_batch`` and calls
    through its provider adapter (same client, key, endpoint and lifetime)."""

    vendor: ClassVar[str]
    errors: ClassVar[ErrorScope]
    default_batch_size: ClassVar[int]

    def __init__(self, provider: P, *, model: str, dimension: int, name: str | None = None,
                 batch_size: int | None = None) -> None:
        self.name = name or f"{self.vendor}/{model}"
        self.dimension = dimension
        self.model = model
        self._provider = provider
        self._batch = batch_size or self.default_batch_size

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array (len(texts), dimension), in the order of ``texts``."""
        vectors: list[list[float]] = []
        with self.errors:
            for start in range(0, len(texts), self._batch):
                vectors += await self._embed_batch(list(texts[start:start + self._batch]))
        return np.asarray(vectors, dtype=np.float32).reshape(len(vectors), self.dimension)

    async def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        """One vendor call's vectors, in the order of ``texts``."""
        raise NotImplementedError
