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
import errno
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, NamedTuple, Protocol, TypeVar

from server.providers.content import (
    Image,
    ResponseFormat,
    Tool,
    ToolCall,
    ToolCallAssembler,
    ToolCallDelta,
    ToolChoice,
)

# numpy (~11 MB resident with its BLAS) is imported by the calls that use it, not at
# start-up: a gateway that serves no embedding or retrieval never loads it.
if TYPE_CHECKING:
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
    # The vendor answered, but not in a form the request allows: JSON that does not match
    # the response format, a tool call with unreadable arguments or to an undeclared tool.
    # Another attempt (or another vendor) may well answer properly.
    INVALID_OUTPUT = "invalid_output"
    # Our own HTTP client had no free connection to the vendor within the attempt's time:
    # not the vendor's fault (so no breaker failure), not worth retrying the same target
    # (the pool stays full), but another target has its own pool: fall back.
    POOL_EXHAUSTED = "pool_exhausted"


# Retrying the same target can help only for these.
RETRYABLE_KINDS = frozenset({ErrorKind.RATE_LIMITED, ErrorKind.OVERLOADED, ErrorKind.TIMEOUT,
                             ErrorKind.UNAVAILABLE, ErrorKind.INVALID_OUTPUT})
# These would fail the same way at any vendor: no fallback either.
FINAL_KINDS = frozenset({ErrorKind.INVALID_REQUEST, ErrorKind.CONTEXT_TOO_LONG})


# The longest vendor or caller text an error message may carry: errors reach callers,
# logs and attempt lists, and none of them should grow with what a vendor or caller sent.
MAX_ECHO_CHARS = 200

# The messages of the failures every adapter reports the same way.
INCOMPLETE_STREAM = "the vendor's stream ended without its final event"
UNREADABLE_ANSWER = "the vendor's answer could not be read"
CONNECTION_REFUSED = "connection refused by the vendor"
CONNECTION_FAILED = "connection to the vendor failed"
POOL_EXHAUSTED_MESSAGE = "no free connection to the vendor within the attempt's time"
READ_TIMEOUT = "the vendor did not answer in time"


def bounded(text: object, limit: int = MAX_ECHO_CHARS) -> str:
    """``text`` cut to ``limit`` characters (marked with an ellipsis when cut)."""
    value = str(text)
    return value if len(value) <= limit else value[:limit - 1] + "…"


class ProviderError(Exception):
    """A classified vendor failure. ``message`` is safe to show to callers, and bounded
    (vendor and caller text in it is capped at ``MAX_ECHO_CHARS``)."""

    def __init__(self, kind: ErrorKind, message: str, *, retry_after_s: float | None = None,
                 status: int | None = None) -> None:
        message = bounded(message, 2 * MAX_ECHO_CHARS)
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


def _causes(exc: BaseException, limit: int = 16) -> Iterator[BaseException]:
    """``exc`` and what it was raised from or during (``__cause__``, ``__context__``, the
    members of exception groups), breadth first and bounded: SDKs wrap transport errors
    in their own classes, several layers deep."""
    pending, seen = [exc], 0
    while pending and seen < limit:
        link = pending.pop(0)
        seen += 1
        yield link
        if isinstance(link, BaseExceptionGroup):
            pending.extend(link.exceptions)
        pending.extend(e for e in (link.__cause__, link.__context__) if e is not None)


def _raised_in(exc: BaseException, function: str) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == function:
            return True
        tb = tb.tb_next
    return False


def transport_error(exc: BaseException) -> ProviderError | None:
    """The precise kind of a failure below the vendor's API — the connection itself —
    whatever SDK wrapped it, or None when it is not one of these:

    * a refused connection (ECONNREFUSED anywhere in the chain: aiohttp's
      ClientConnectorError, httpx's ConnectError, botocore's EndpointConnectionError all
      carry it) is ``unavailable`` "connection refused" — never ``timeout``, even where an
      SDK files it under a timeout class;
    * our own pool having no free connection in time (httpx/httpcore ``PoolTimeout``, or
      aiohttp's connect timeout that fired while queued for a connection slot) is
      ``pool_exhausted``: the vendor never saw the call.
    """
    for link in _causes(exc):
        if isinstance(link, ConnectionRefusedError) or (
                isinstance(link, OSError) and link.errno == errno.ECONNREFUSED):
            return ProviderError(ErrorKind.UNAVAILABLE, CONNECTION_REFUSED)
    for link in _causes(exc):
        if type(link).__name__ == "PoolTimeout" or _raised_in(
                link, "_wait_for_available_connection"):
            return ProviderError(ErrorKind.POOL_EXHAUSTED, POOL_EXHAUSTED_MESSAGE)
    return None


def unreadable(exc: BaseException) -> ProviderError | None:
    """A 200 answer whose body does not parse (cut mid-JSON, wrong shape): ``unavailable``
    and retryable — the next attempt may get a whole answer — rather than an exception
    that would escape as an internal error. Covers ``json.JSONDecodeError`` (a
    ``ValueError``) and pydantic's ``ValidationError`` (also a ``ValueError``), wherever
    in the chain an SDK put them."""
    for link in _causes(exc):
        if isinstance(link, ValueError) and (
                type(link).__name__ in ("JSONDecodeError", "ValidationError")):
            return ProviderError(ErrorKind.UNAVAILABLE, UNREADABLE_ANSWER)
    return None


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
    TOOL_CALLS = "tool_calls"


@dataclass(frozen=True)
class ChatMessage:
    """One turn. ``role`` is "user", "assistant" or "tool" (system text travels in
    ProviderRequest.system). An assistant turn may carry the tool calls it made; a tool
    turn answers the call ``tool_call_id`` with ``content``. Images follow the text."""

    role: str
    content: str
    images: tuple[Image, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""


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
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None

    def tool_names_by_call(self) -> dict[str, str]:
        """Each tool-call id of the conversation → the tool it called (vendors that key
        tool results by function name, like Gemini, need it)."""
        return {call.id: call.name for m in self.messages for call in m.tool_calls}


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
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True)
class TextChunk:
    """Streamed text to append."""

    text: str


@dataclass(frozen=True)
class StreamDone:
    """The last stream event: why it ended and the vendor's usage."""

    finish_reason: FinishReason
    usage: Usage
    tool_calls: tuple[ToolCall, ...] = ()


StreamEvent = TextChunk | ToolCallDelta | StreamDone


class StreamUpdate(NamedTuple):
    """What one raw vendor stream event adds: text to send on, and the finish reason and
    usage when the event carries them. A NamedTuple because the OpenAI hot path makes one
    per chunk: it is the cheapest immutable record to build."""

    text: str = ""
    finish: FinishReason | None = None
    usage: Usage | None = None
    tools: tuple[ToolCallDelta, ...] = ()
    """Tool-call pieces, each with the vendor's index (and id and name where the vendor
    sends them); ``drive_stream`` numbers, names and assembles them."""


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

    Completeness is part of the contract: a vendor stream is whole only when it carried
    the vendor's final event (the update with a ``finish``). One that ends cleanly
    without it — a proxy or vendor cutting the body short — raises ``unavailable``
    (``INCOMPLETE_STREAM``) instead of passing a partial answer on as a success: before
    the first text the router fails over; after it, the caller's stream ends in error.

    ``open_upstream`` runs at the first read (as an async generator's body would), so a
    stream that is never read never calls the vendor. The error scope wraps the whole loop,
    not each event, and nothing is allocated per event here beyond the vendor's update and
    the chunk sent on. Closing this iterator, or cancelling the task reading it, closes the
    upstream at once, from our side.
    """
    with errors:
        upstream = await open_upstream()
    finish: FinishReason | None = None
    usage = Usage()
    calls: ToolCallAssembler | None = None
    try:
        with errors:
            async for event in upstream:
                update = translate(event, usage)
                if update.text:
                    yield TextChunk(update.text)
                if update.tools:
                    if calls is None:
                        calls = ToolCallAssembler(str(id(upstream)))
                    for piece in update.tools:
                        yield calls.piece(piece.index, piece.id, piece.name, piece.arguments)
                if update.finish is not None:
                    finish = update.finish
                usage = update.usage or usage
    finally:
        await upstream.close()
    if finish is None:
        raise ProviderError(ErrorKind.UNAVAILABLE, INCOMPLETE_STREAM)
    yield StreamDone(finish, usage, calls.calls() if calls else ())


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


class VendorEmbedder(ABC, Generic[P]):
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
        import numpy as np

        vectors: list[list[float]] = []
        with self.errors:
            for start in range(0, len(texts), self._batch):
                vectors += await self._embed_batch(list(texts[start:start + self._batch]))
        return np.asarray(vectors, dtype=np.float32).reshape(len(vectors), self.dimension)

    @abstractmethod
    async def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        """One vendor call's vectors, in the order of ``texts`` (each vendor's module)."""
