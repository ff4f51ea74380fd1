"""Google Gemini (generateContent / streamGenerateContent, embedContent) through
``google-genai``'s async client (``client.aio``).

What differs, and is handled here: the system prompt is ``system_instruction``; the
assistant role is called ``model``; parameters live in a generation config; safety
blocks come back as a blocked prompt (no candidates: a ``content_filtered`` error) or a
``SAFETY`` finish (a ``content_filter`` finish); errors are google.rpc statuses whose
``RetryInfo`` detail carries the retry delay. The SDK's own retries (including its
implicit retry of connection errors) are off: retrying is the router's decision.

The adapter owns the SDK's aiohttp session (made on first use, inside the event loop):
its connector caps connections at ``max_connections``, and a trace hook hands each
response to the stream that asked for it (``_Responses``). Why: the SDK reads a stream
through several nested async generators and closing the outer one leaves the inner ones
— and the HTTP response — to the garbage collector, so a cancelled stream would hold its
upstream open for an unpredictable time. Holding the response, the adapter closes it
itself.

Model ids travel in the URL path (``models/{model}:generateContent``): ``build_request``
refuses any with URL-significant characters before a request is made.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextvars import ContextVar
from functools import partial
from types import SimpleNamespace
from typing import Any

import aiohttp
import httpx
import httpx2
from google import genai
from google.genai import errors, types

from server.providers.base import (
    CONNECTION_FAILED,
    MAX_ECHO_CHARS,
    READ_TIMEOUT,
    Completion,
    DeadlineEvents,
    ErrorKind,
    ErrorScope,
    FinishReason,
    ParamMap,
    ProviderError,
    ProviderRequest,
    StreamEvent,
    StreamUpdate,
    Upstream,
    Usage,
    VendorEmbedder,
    bounded,
    check_key,
    drive_stream,
    map_params,
    transport_error,
    unreadable,
)
from server.providers.headers import retry_after_s

# Our parameter → the generation config's field, with an optional transform.
PARAMS: ParamMap = (
    ("max_output_tokens", "max_output_tokens", None),
    ("temperature", "temperature", None),
    ("top_p", "top_p", None),
    ("top_k", "top_k", lambda k: float(k) if k is not None else None),
    ("stop", "stop_sequences", lambda stop: list(stop) or None),
)
ROLES = {"user": "user", "assistant": "model"}

_FILTERED = ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY")
FINISH_REASONS = {"STOP": FinishReason.STOP, "MAX_TOKENS": FinishReason.LENGTH,
                  "MALFORMED_FUNCTION_CALL": FinishReason.ERROR,
                  **{name: FinishReason.CONTENT_FILTER for name in _FILTERED}}

# google.rpc code names (the error's ``status``) → our kind; the HTTP code is the fallback.
STATUS_NAMES = {
    "RESOURCE_EXHAUSTED": ErrorKind.RATE_LIMITED,
    "UNAVAILABLE": ErrorKind.UNAVAILABLE,
    "INTERNAL": ErrorKind.UNAVAILABLE,
    "DEADLINE_EXCEEDED": ErrorKind.TIMEOUT,
    "UNAUTHENTICATED": ErrorKind.AUTH,
    "PERMISSION_DENIED": ErrorKind.PERMISSION,
    "NOT_FOUND": ErrorKind.NOT_FOUND,
    "INVALID_ARGUMENT": ErrorKind.INVALID_REQUEST,
    "FAILED_PRECONDITION": ErrorKind.INVALID_REQUEST,
}
HTTP_KINDS = {429: ErrorKind.RATE_LIMITED, 401: ErrorKind.AUTH, 403: ErrorKind.PERMISSION,
              404: ErrorKind.NOT_FOUND, 408: ErrorKind.TIMEOUT, 504: ErrorKind.TIMEOUT}
SAFE_MESSAGES = {
    ErrorKind.RATE_LIMITED: "rate limited by the vendor",
    ErrorKind.UNAVAILABLE: "the vendor failed",
    ErrorKind.TIMEOUT: "the vendor timed out",
    ErrorKind.AUTH: "the vendor rejected the API key",
    ErrorKind.PERMISSION: "the API key may not use this model",
    ErrorKind.NOT_FOUND: "the vendor does not know this model",
}


def build_contents(request: ProviderRequest) -> list[types.Content]:
    return [types.Content(role=ROLES.get(m.role, "user"), parts=[types.Part(text=m.content)])
            for m in request.messages]


def build_config(request: ProviderRequest, timeout_s: float) -> types.GenerateContentConfig:
    """The generation config: system instruction, mapped parameters, this call's timeout."""
    fields: dict[str, Any] = {
        "http_options": types.HttpOptions(timeout=max(1, int(timeout_s * 1000)))}
    if request.system:
        fields["system_instruction"] = request.system
    fields.update(map_params(request.params, PARAMS))
    return types.GenerateContentConfig(**fields)


# A model id as it may appear in the URL path: an optional resource prefix, then letters,
# digits, dots, dashes and underscores. Nothing that means something in a URL (?, #, /,
# %, spaces), no "..".
MODEL_ID = re.compile(r"(?:(?:models|tunedModels)/)?[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_model(model: str) -> str:
    """``model`` when it is a well-formed Gemini model id; else ``invalid_request``."""
    if MODEL_ID.fullmatch(model) is None or ".." in model:
        raise ProviderError(ErrorKind.INVALID_REQUEST,
                            f"{bounded(model)!r} is not a valid Gemini model id")
    return model


def build_request(request: ProviderRequest, timeout_s: float) -> dict[str, Any]:
    """The keyword arguments of ``generate_content`` / ``generate_content_stream``."""
    return {"model": check_model(request.model), "contents": build_contents(request),
            "config": build_config(request, timeout_s)}


def map_usage(metadata: Any) -> Usage:
    """Gemini's prompt count includes cached tokens (as ours does); thinking is output."""
    if metadata is None:
        return Usage()
    return Usage(
        input_tokens=metadata.prompt_token_count or 0,
        output_tokens=(metadata.candidates_token_count or 0)
        + (getattr(metadata, "thoughts_token_count", None) or 0),
        cached_input_tokens=metadata.cached_content_token_count or 0,
    )


# google.rpc ErrorInfo reasons that name the real cause behind a generic status
# (an invalid key is a 400 INVALID_ARGUMENT with reason API_KEY_INVALID).
ERROR_REASONS = {"API_KEY_INVALID": ErrorKind.AUTH, "API_KEY_EXPIRED": ErrorKind.AUTH,
                 "RATE_LIMIT_EXCEEDED": ErrorKind.RATE_LIMITED}


def _details(body: Any, type_suffix: str) -> list[dict[str, Any]]:
    """The google.rpc status details of one type (e.g. "RetryInfo") in an error body."""
    error = body.get("error", body) if isinstance(body, dict) else {}
    found = error.get("details", ()) if isinstance(error, dict) else ()
    return [d for d in found if isinstance(d, dict)
            and str(d.get("@type", "")).endswith(type_suffix)]


def _retry_delay(body: Any) -> float | None:
    """``RetryInfo.retryDelay`` ("2s", "0.5s") from a google.rpc error body."""
    for detail in _details(body, "RetryInfo"):
        try:
            return float(str(detail.get("retryDelay", "")).rstrip("s"))
        except ValueError:
            return None
    return None


def classify(exc: BaseException) -> ProviderError:
    """Map an SDK or transport exception to the taxonomy (the message never holds keys).
    The connection's own failures (refused, no pooled connection) are told apart first:
    aiohttp raises a pool wait as a timeout."""
    if (precise := transport_error(exc)) is not None:
        return precise
    if isinstance(exc, TimeoutError):
        return ProviderError(ErrorKind.TIMEOUT, READ_TIMEOUT)
    if isinstance(exc, errors.APIError):
        code = exc.code or 0
        reasons = [ERROR_REASONS.get(str(d.get("reason"))) for d in _details(exc.details,
                                                                              "ErrorInfo")]
        kind = next((k for k in reasons if k is not None), None) or \
            STATUS_NAMES.get(exc.status or "") or HTTP_KINDS.get(code) or (
                ErrorKind.UNAVAILABLE if code >= 500 else ErrorKind.INVALID_REQUEST)
        vendor_message = str(exc.message or "")[:MAX_ECHO_CHARS]
        if kind is ErrorKind.INVALID_REQUEST and "token count" in vendor_message.lower() \
                and "exceeds" in vendor_message.lower():
            kind = ErrorKind.CONTEXT_TOO_LONG
        headers = getattr(exc.response, "headers", None)
        retry = _retry_delay(exc.details)
        if retry is None:
            retry = retry_after_s(headers)
        message = SAFE_MESSAGES.get(kind) or vendor_message or \
            f"the vendor rejected the request ({code})"
        return ProviderError(kind, message, status=code, retry_after_s=retry)
    if isinstance(exc, (aiohttp.ClientError, httpx.HTTPError, httpx2.HTTPError, OSError)):
        return ProviderError(ErrorKind.UNAVAILABLE, CONNECTION_FAILED)
    if (garbled := unreadable(exc)) is not None:
        return garbled
    raise exc


ERRORS = ErrorScope(classify)


def _blocked(response: Any) -> ProviderError | None:
    feedback = getattr(response, "prompt_feedback", None)
    reason = getattr(feedback, "block_reason", None) if feedback is not None else None
    if reason is None:
        return None
    return ProviderError(ErrorKind.CONTENT_FILTERED,
                         f"the vendor's safety system blocked the prompt ({_name(reason)})")


def _name(value: Any) -> str:
    return str(getattr(value, "value", value) or "")


def translate_event(chunk: types.GenerateContentResponse, usage: Usage) -> StreamUpdate:
    """One streamed ``GenerateContentResponse`` (or a whole one: same shape) → its text,
    finish reason and usage; raises content_filtered when the prompt was blocked."""
    if (blocked := _blocked(chunk)) is not None:
        raise blocked
    text, finish = "", None
    for candidate in chunk.candidates or ():
        content = candidate.content
        for part in (content.parts or ()) if content is not None else ():
            if part.text and not part.thought:
                text += part.text
        if candidate.finish_reason is not None:
            finish = FINISH_REASONS.get(_name(candidate.finish_reason), FinishReason.UNSPECIFIED)
        break  # one candidate is requested
    reported = map_usage(chunk.usage_metadata) if chunk.usage_metadata is not None else None
    return StreamUpdate(text, finish, reported)


# The responses opened by the stream currently reading (set only around its reads).
_OPENED: ContextVar[list[aiohttp.ClientResponse] | None] = ContextVar("gemini_opened",
                                                                      default=None)


async def _on_response(session: aiohttp.ClientSession, context: SimpleNamespace,
                       params: aiohttp.TraceRequestEndParams) -> None:
    """aiohttp trace hook: a response arrived; hand it to the stream that asked for it."""
    opened = _OPENED.get()
    if opened is not None:
        opened.append(params.response)


class _Responses:
    """The SDK's stream, plus the HTTP responses its reads opened: closing it closes the
    SDK's generators and then those responses, so the upstream closes at once."""

    __slots__ = ("_events", "_opened")

    def __init__(self, events: AsyncIterator[Any]) -> None:
        self._events = events
        self._opened: list[aiohttp.ClientResponse] = []

    def __aiter__(self) -> _Responses:
        return self

    async def __anext__(self) -> Any:
        token = _OPENED.set(self._opened)
        try:
            return await self._events.__anext__()
        finally:
            _OPENED.reset(token)

    async def aclose(self) -> None:
        try:
            await self._events.aclose()  # type: ignore[attr-defined]
        finally:
            for response in self._opened:
                response.close()


class GeminiProvider:
    """Adapter for one configured Gemini API endpoint (API key auth)."""

    def __init__(self, name: str, *, base_url: str | None, api_key: str | None,
                 timeout_s: float, max_connections: int = 1000) -> None:
        self.name = name
        self._missing_key = api_key is None
        self._api_key = api_key or "unset"
        self._options = types.HttpOptions(
            base_url=base_url, timeout=int(timeout_s * 1000),
            retry_options=types.HttpRetryOptions(attempts=1))
        self._max_connections = max_connections
        self._sdk: genai.Client | None = None
        self._session: aiohttp.ClientSession | None = None

    def client(self) -> genai.Client:
        """The SDK client, once the key check passed: generation and embeddings call
        through it. Made on first use, in the event loop its aiohttp session needs."""
        check_key(self.name, self._missing_key)
        if self._sdk is None:
            trace = aiohttp.TraceConfig()
            trace.on_request_end.append(_on_response)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                trace_configs=[trace], trust_env=True)
            options = self._options.model_copy(update={"aiohttp_client": self._session})
            self._sdk = genai.Client(api_key=self._api_key, http_options=options)
        return self._sdk

    async def generate(self, request: ProviderRequest, timeout_s: float) -> Completion:
        client = self.client()
        usage = Usage()
        call = build_request(request, timeout_s)
        with ERRORS:
            async with asyncio.timeout(timeout_s):
                response = await client.aio.models.generate_content(**call)
            update = translate_event(response, usage)
        return Completion(text=update.text, finish_reason=update.finish or FinishReason.UNSPECIFIED,
                          usage=update.usage or usage)

    def stream(self, request: ProviderRequest, timeout_s: float) -> AsyncIterator[StreamEvent]:
        return drive_stream(partial(self._open_stream, request, timeout_s), translate_event,
                            ERRORS)

    async def _open_stream(self, request: ProviderRequest, timeout_s: float) -> Upstream:
        """The SDK's stream, every read (and the opening call) bounded by this attempt's
        deadline."""
        client = self.client()
        call = build_request(request, timeout_s)
        deadline = asyncio.get_running_loop().time() + timeout_s
        async with asyncio.timeout_at(deadline):
            upstream = await client.aio.models.generate_content_stream(**call)
        return DeadlineEvents(_Responses(upstream), deadline)

    async def aclose(self) -> None:
        if self._sdk is not None:
            await self._sdk.aio.aclose()
        if self._session is not None:
            await self._session.close()


class GeminiEmbedder(VendorEmbedder[GeminiProvider]):
    """Gemini embeddings (e.g. ``gemini-embedding-001``, ``text-embedding-004``) with
    ``output_dimensionality``."""

    vendor = "gemini"
    errors = ERRORS
    default_batch_size = 100

    async def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        response = await self._provider.client().aio.models.embed_content(
            model=self.model, contents=texts,
            config=types.EmbedContentConfig(output_dimensionality=self.dimension))
        return [list(e.values or ()) for e in response.embeddings or ()]


__all__ = ["ERRORS", "GeminiEmbedder", "GeminiProvider", "build_request", "classify",
           "translate_event"]
