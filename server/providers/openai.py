"""OpenAI Chat Completions and embeddings, and every OpenAI-compatible vendor, through the
``openai`` SDK.

The same adapter serves OpenAI, OpenRouter, Groq, Byteplus Ark, Together, Ollama, vLLM
and the local simulator: only ``base_url`` and the key differ. SDK retries are off
(``max_retries=0``) because retrying is the router's decision, made with the caller's
deadline in view.

Speed: every Generate pays for this call, and the SDK's typed layer (TypedDict
transforms, pydantic models for the response and for every stream chunk) cost more CPU
than the whole rest of the gateway (bench/README.md). So the adapter uses the SDK's own
client — its auth, base URL, error classes, SSE decoder and the aiohttp transport — through
``AsyncOpenAI.post(..., cast_to=object)``, which returns plain JSON dicts; the mapping
below reads them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import aiohttp
import httpx
import httpx2
import openai
from openai import AsyncOpenAI, AsyncStream

from server.providers.base import (
    CONNECTION_FAILED,
    MAX_ECHO_CHARS,
    READ_TIMEOUT,
    UNREADABLE_ANSWER,
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
    VendorEmbedder,
    check_key,
    drive_stream,
    map_params,
    transport_error,
    unreadable,
)
from server.providers.headers import retry_after_s

# Our parameter → the vendor's field, with an optional transform. Data, not code paths.
PARAMS: ParamMap = (
    ("max_output_tokens", "max_tokens", None),
    ("temperature", "temperature", None),
    ("top_p", "top_p", None),
    ("stop", "stop", lambda stop: list(stop) or None),
    # top_k has no Chat Completions field; it is dropped.
)

FINISH_REASONS = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "content_filter": FinishReason.CONTENT_FILTER,
    "tool_calls": FinishReason.STOP,
    "function_call": FinishReason.STOP,
}


def build_request(request: ProviderRequest) -> dict[str, Any]:
    """The Chat Completions request body for ``request``."""
    messages: list[dict[str, str]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    messages.extend({"role": m.role, "content": m.content} for m in request.messages)
    body: dict[str, Any] = {"model": request.model, "messages": messages}
    body.update(map_params(request.params, PARAMS))
    return body


def map_usage(usage: dict[str, Any] | None) -> Usage:
    if not usage:
        return Usage()
    details = usage.get("prompt_tokens_details") or {}
    return Usage(
        input_tokens=usage.get("prompt_tokens") or 0,
        output_tokens=usage.get("completion_tokens") or 0,
        cached_input_tokens=details.get("cached_tokens") or 0,
    )


def classify(exc: Exception) -> ProviderError:
    """Map an SDK or transport exception to the taxonomy (the message never holds keys).
    The connection's own failures (refused, no pooled connection) are told apart first:
    the SDK files a pool wait under its timeout class."""
    if (precise := transport_error(exc)) is not None:
        return precise
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError(ErrorKind.TIMEOUT, READ_TIMEOUT)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        body = exc.body if isinstance(exc.body, dict) else {}
        error = body.get("error", body) if isinstance(body, dict) else {}
        code = str(error.get("code") or "") if isinstance(error, dict) else ""
        vendor_message = str(error.get("message") or "")[:MAX_ECHO_CHARS] if isinstance(error, dict) else ""
        retry_after = retry_after_s(exc.response.headers if exc.response is not None else None)
        if status == 429:
            return ProviderError(ErrorKind.RATE_LIMITED, "rate limited by the vendor",
                                 retry_after_s=retry_after, status=status)
        if status in (529,) or "overloaded" in code:
            return ProviderError(ErrorKind.OVERLOADED, "the vendor is overloaded",
                                 retry_after_s=retry_after, status=status)
        if status == 401:
            return ProviderError(ErrorKind.AUTH, "the vendor rejected the API key", status=status)
        if status == 403:
            return ProviderError(ErrorKind.PERMISSION, "the API key may not use this model",
                                 status=status)
        if status == 404:
            return ProviderError(ErrorKind.NOT_FOUND, "the vendor does not know this model",
                                 status=status)
        if status == 408 or status == 504:
            return ProviderError(ErrorKind.TIMEOUT, f"the vendor timed out ({status})",
                                 status=status)
        if status >= 500:
            return ProviderError(ErrorKind.UNAVAILABLE, f"the vendor failed ({status})",
                                 retry_after_s=retry_after, status=status)
        if code == "context_length_exceeded":
            return ProviderError(ErrorKind.CONTEXT_TOO_LONG, vendor_message or
                                 "the prompt exceeds the model's context window", status=status)
        if code == "content_filter" or code == "content_policy_violation":
            return ProviderError(ErrorKind.CONTENT_FILTERED, "the vendor's safety system "
                                 "refused the request", status=status)
        return ProviderError(ErrorKind.INVALID_REQUEST,
                             vendor_message or f"the vendor rejected the request ({status})",
                             status=status)
    if isinstance(exc, (openai.APIConnectionError, httpx.HTTPError, httpx2.HTTPError,
                        aiohttp.ClientError, ConnectionError)):
        return ProviderError(ErrorKind.UNAVAILABLE, CONNECTION_FAILED)
    if (garbled := unreadable(exc)) is not None:
        return garbled
    if isinstance(exc, openai.APIError):
        return ProviderError(ErrorKind.UNAVAILABLE, "the vendor stream failed")
    raise exc


ERRORS = ErrorScope(classify)


def translate_event(chunk: dict[str, Any], usage: Usage) -> StreamUpdate:
    """One ``chat.completion.chunk`` → the text, finish reason and usage it carries (the
    usage chunk, last, has the whole call's counts)."""
    text, finish = "", None
    for choice in chunk.get("choices") or ():
        content = (choice.get("delta") or {}).get("content")
        if content:
            text += content
        if choice.get("finish_reason"):
            finish = FINISH_REASONS.get(choice["finish_reason"], FinishReason.UNSPECIFIED)
    reported = chunk.get("usage")
    return StreamUpdate(text, finish, map_usage(reported) if reported is not None else None)


class OpenAIProvider:
    """Adapter for one configured OpenAI-compatible endpoint."""

    def __init__(self, name: str, *, base_url: str | None, api_key: str | None,
                 timeout_s: float, max_connections: int) -> None:
        self.name = name
        self._missing_key = api_key is None
        http = openai.DefaultAioHttpClient(
            timeout=httpx2.Timeout(timeout_s, connect=min(5.0, timeout_s)),
            limits=httpx2.Limits(max_connections=max_connections,
                                 max_keepalive_connections=min(max_connections, 64)))
        self._sdk = AsyncOpenAI(api_key=api_key or "unset", base_url=base_url, max_retries=0,
                                timeout=timeout_s, http_client=http)

    def client(self) -> AsyncOpenAI:
        """The SDK client, once the key check passed: chat and embeddings call through it."""
        check_key(self.name, self._missing_key)
        return self._sdk

    async def generate(self, request: ProviderRequest, timeout_s: float) -> Completion:
        client = self.client()
        with ERRORS:
            data = await client.post("/chat/completions", body=build_request(request),
                                     cast_to=object, options={"timeout": timeout_s})
        if not isinstance(data, dict) or not data.get("choices"):
            raise ProviderError(ErrorKind.UNAVAILABLE, UNREADABLE_ANSWER)
        choices = data.get("choices") or [{}]
        choice = choices[0]
        message = choice.get("message") or {}
        reason = FINISH_REASONS.get(choice.get("finish_reason") or "", FinishReason.UNSPECIFIED)
        return Completion(text=message.get("content") or "", finish_reason=reason,
                          usage=map_usage(data.get("usage")))

    def stream(self, request: ProviderRequest, timeout_s: float) -> AsyncIterator[StreamEvent]:
        return drive_stream(partial(self._open_stream, request, timeout_s), translate_event,
                            ERRORS)

    async def _open_stream(self, request: ProviderRequest, timeout_s: float) -> Upstream:
        body = {**build_request(request), "stream": True,
                "stream_options": {"include_usage": True}}
        return await self.client().post(
            "/chat/completions", body=body, cast_to=object, options={"timeout": timeout_s},
            stream=True, stream_cls=AsyncStream[object])

    async def aclose(self) -> None:
        await self._sdk.close()


class OpenAIEmbedder(VendorEmbedder[OpenAIProvider]):
    """``text-embedding-3-small`` / ``-large``, shortened to ``dimension``, on the
    provider's endpoint."""

    vendor = "openai"
    errors = ERRORS
    default_batch_size = 256

    async def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        response = await self._provider.client().embeddings.create(
            model=self.model, input=texts, dimensions=self.dimension, encoding_format="float")
        return [item.embedding for item in sorted(response.data, key=lambda d: d.index)]


__all__ = ["ERRORS", "OpenAIEmbedder", "OpenAIProvider", "build_request", "classify",
           "translate_event"]
