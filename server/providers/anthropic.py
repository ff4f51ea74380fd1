"""Anthropic Messages API through the official ``anthropic`` SDK (AsyncAnthropic).

What differs from Chat Completions, and is handled here: the system prompt is a
top-level field; messages must alternate user/assistant (consecutive same-role messages
are merged); ``max_tokens`` is required (the provider's configured default fills it);
usage arrives in two parts while streaming (``message_start`` has the input and cache
counts, ``message_delta`` the output count); overload is its own status (529). SDK
retries are off: retrying is the router's decision.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import anthropic
import httpx2
from anthropic import AsyncAnthropic

from server.providers.base import (
    CONNECTION_FAILED,
    MAX_ECHO_CHARS,
    NO_UPDATE,
    READ_TIMEOUT,
    ChatMessage,
    Completion,
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
    check_key,
    drive_stream,
    map_params,
    transport_error,
    unreadable,
)
from server.providers.headers import retry_after_s
from server.providers.messages import merge_consecutive_roles

# Our parameter → the vendor's field, with an optional transform. Data, not code paths.
PARAMS: ParamMap = (
    ("temperature", "temperature", lambda t: min(t, 1.0) if t is not None else None),
    ("top_p", "top_p", None),
    ("top_k", "top_k", None),
    ("stop", "stop_sequences", lambda stop: list(stop) or None),
    # max_output_tokens → max_tokens is required, so build_request sets it (with a default).
)

FINISH_REASONS = {
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP,
    "max_tokens": FinishReason.LENGTH,
    "tool_use": FinishReason.STOP,
    "pause_turn": FinishReason.STOP,
    "refusal": FinishReason.CONTENT_FILTER,
}

# Anthropic's error ``type`` → our kind. The type is authoritative: an error that arrives
# inside an SSE stream comes with the stream's HTTP 200.
ERROR_TYPES = {
    "rate_limit_error": ErrorKind.RATE_LIMITED,
    "overloaded_error": ErrorKind.OVERLOADED,
    "api_error": ErrorKind.UNAVAILABLE,
    "timeout_error": ErrorKind.TIMEOUT,
    "authentication_error": ErrorKind.AUTH,
    "permission_error": ErrorKind.PERMISSION,
    "billing_error": ErrorKind.PERMISSION,
    "not_found_error": ErrorKind.NOT_FOUND,
    "request_too_large": ErrorKind.CONTEXT_TOO_LONG,
    "invalid_request_error": ErrorKind.INVALID_REQUEST,
}
STATUS_KINDS = {429: ErrorKind.RATE_LIMITED, 529: ErrorKind.OVERLOADED, 401: ErrorKind.AUTH,
                403: ErrorKind.PERMISSION, 404: ErrorKind.NOT_FOUND, 408: ErrorKind.TIMEOUT,
                504: ErrorKind.TIMEOUT, 413: ErrorKind.CONTEXT_TOO_LONG}
SAFE_MESSAGES = {
    ErrorKind.RATE_LIMITED: "rate limited by the vendor",
    ErrorKind.OVERLOADED: "the vendor is overloaded",
    ErrorKind.UNAVAILABLE: "the vendor failed",
    ErrorKind.TIMEOUT: "the vendor timed out",
    ErrorKind.AUTH: "the vendor rejected the API key",
    ErrorKind.PERMISSION: "the API key may not use this model",
    ErrorKind.NOT_FOUND: "the vendor does not know this model",
}


def alternate(messages: tuple[ChatMessage, ...]) -> list[dict[str, str]]:
    """Anthropic requires alternating roles: merge runs of the same role into one turn."""
    return [{"role": m.role, "content": m.content} for m in merge_consecutive_roles(messages)]


def build_request(request: ProviderRequest, default_max_tokens: int) -> dict[str, Any]:
    """The Messages API request body for ``request``."""
    body: dict[str, Any] = {
        "model": request.model,
        "messages": alternate(request.messages),
        "max_tokens": request.params.max_output_tokens or default_max_tokens,
    }
    if request.system:
        body["system"] = request.system
    body.update(map_params(request.params, PARAMS))
    return body


def map_usage(usage: Any, into: Usage | None = None) -> Usage:
    """Anthropic counts cache reads and writes apart from ``input_tokens``; ours is the
    whole prompt, with the cached and cache-written parts also reported on their own."""
    out = into or Usage()
    if usage is None:
        return out
    cached = getattr(usage, "cache_read_input_tokens", None)
    written = getattr(usage, "cache_creation_input_tokens", None)
    uncached = getattr(usage, "input_tokens", None)
    if uncached is not None or cached is not None or written is not None:
        out.cached_input_tokens = cached or out.cached_input_tokens
        out.cache_write_tokens = written or out.cache_write_tokens
        if uncached is not None:
            out.input_tokens = uncached + out.cached_input_tokens + out.cache_write_tokens
    if getattr(usage, "output_tokens", None) is not None:
        out.output_tokens = usage.output_tokens
    return out


def classify(exc: Exception) -> ProviderError:
    """Map an SDK or transport exception to the taxonomy (the message never holds keys).
    The connection's own failures (refused, no pooled connection) are told apart first:
    the SDK files a pool wait under its timeout class."""
    if (precise := transport_error(exc)) is not None:
        return precise
    if isinstance(exc, anthropic.APITimeoutError):
        return ProviderError(ErrorKind.TIMEOUT, READ_TIMEOUT)
    if isinstance(exc, anthropic.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        error = body.get("error", {}) if isinstance(body.get("error"), dict) else {}
        vendor_type = str(error.get("type") or "")
        vendor_message = str(error.get("message") or "")[:MAX_ECHO_CHARS]
        status = exc.status_code
        kind = ERROR_TYPES.get(vendor_type) or STATUS_KINDS.get(status) or (
            ErrorKind.UNAVAILABLE if status >= 500 or status < 400 else ErrorKind.INVALID_REQUEST)
        if kind is ErrorKind.INVALID_REQUEST and "prompt is too long" in vendor_message:
            kind = ErrorKind.CONTEXT_TOO_LONG
        message = SAFE_MESSAGES.get(kind) or vendor_message or \
            f"the vendor rejected the request ({status})"
        return ProviderError(kind, message, status=status, retry_after_s=retry_after_s(
            exc.response.headers if exc.response is not None else None))
    if isinstance(exc, (anthropic.APIConnectionError, httpx2.HTTPError)):
        return ProviderError(ErrorKind.UNAVAILABLE, CONNECTION_FAILED)
    if (garbled := unreadable(exc)) is not None:
        return garbled
    if isinstance(exc, anthropic.APIError):
        return ProviderError(ErrorKind.UNAVAILABLE, "the vendor stream failed")
    raise exc


ERRORS = ErrorScope(classify)


def translate_event(event: Any, usage: Usage) -> StreamUpdate:
    """One raw Messages stream event → the text and finish reason it carries. Usage comes
    in parts (``message_start``: input and cache counts; ``message_delta``: output), so
    each part is folded into the stream's ``usage`` and that is returned."""
    kind = getattr(event, "type", "")
    if kind == "message_start":
        return StreamUpdate(usage=map_usage(event.message.usage, usage))
    if kind == "content_block_delta" and getattr(event.delta, "type", "") == "text_delta":
        return StreamUpdate(event.delta.text)
    if kind == "message_delta":
        reason = event.delta.stop_reason
        finish = FINISH_REASONS.get(reason, FinishReason.UNSPECIFIED) if reason else None
        return StreamUpdate(finish=finish, usage=map_usage(event.usage, usage))
    return NO_UPDATE


class AnthropicProvider:
    """Adapter for one configured Anthropic endpoint."""

    def __init__(self, name: str, *, base_url: str | None, api_key: str | None,
                 timeout_s: float, max_connections: int, default_max_tokens: int) -> None:
        self.name = name
        self._missing_key = api_key is None
        self._default_max_tokens = default_max_tokens
        # This SDK runs on httpx2 (a fork of httpx): its own client type is required.
        self._http = anthropic.DefaultAsyncHttpxClient(
            limits=httpx2.Limits(max_connections=max_connections,
                                 max_keepalive_connections=max_connections),
            timeout=httpx2.Timeout(timeout_s, connect=min(5.0, timeout_s)),
        )
        self._sdk = AsyncAnthropic(api_key=api_key or "unset", base_url=base_url,
                                   max_retries=0, timeout=timeout_s, http_client=self._http)

    def client(self) -> AsyncAnthropic:
        """The SDK client, once the key check passed."""
        check_key(self.name, self._missing_key)
        return self._sdk

    async def generate(self, request: ProviderRequest, timeout_s: float) -> Completion:
        client = self.client()
        with ERRORS:
            message = await client.messages.create(
                **build_request(request, self._default_max_tokens), timeout=timeout_s)
        text = "".join(block.text for block in message.content if block.type == "text")
        reason = FINISH_REASONS.get(message.stop_reason or "", FinishReason.UNSPECIFIED)
        return Completion(text=text, finish_reason=reason, usage=map_usage(message.usage))

    def stream(self, request: ProviderRequest, timeout_s: float) -> AsyncIterator[StreamEvent]:
        return drive_stream(partial(self._open_stream, request, timeout_s), translate_event,
                            ERRORS)

    async def _open_stream(self, request: ProviderRequest, timeout_s: float) -> Upstream:
        return await self.client().messages.create(
            **build_request(request, self._default_max_tokens), stream=True, timeout=timeout_s)

    async def aclose(self) -> None:
        await self._sdk.close()


__all__ = ["ERRORS", "AnthropicProvider", "build_request", "classify", "translate_event"]
