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

Memory: the default ``direct`` transport (``openai_direct.py``) needs only aiohttp, so the
SDK (with httpx, httpx2 and ~500 modules of typed models: ~18 MB resident here) is
imported only when something uses it — the ``sdk`` transport, or an embedder (on its first
batch, in a worker thread). A gateway that only chats over OpenAI-compatible endpoints
never loads it.

Tools, tool results, images and JSON mode map one to one onto Chat Completions fields
(``tools``, ``tool_choice``, ``parallel_tool_calls``, assistant ``tool_calls``, ``role:
"tool"`` messages, ``image_url`` content parts, ``response_format``); a request without
them has exactly the body it always had.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import importlib
import json
import os
import sys
from collections.abc import AsyncIterator, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

import aiohttp

from server.providers.base import (
    CONNECTION_FAILED,
    MAX_ECHO_CHARS,
    READ_TIMEOUT,
    UNREADABLE_ANSWER,
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
    VendorEmbedder,
    check_key,
    drive_stream,
    map_params,
    transport_error,
    unreadable,
)
from server.providers.content import (
    FormatKind,
    Image,
    ResponseFormat,
    ToolCall,
    ToolCallDelta,
    ToolChoiceMode,
    wire_id,
)
from server.providers.headers import retry_after_s
from server.providers.openai_direct import DirectChat, StreamFailed, VendorStatus

if TYPE_CHECKING:
    from openai import AsyncOpenAI

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
    "tool_calls": FinishReason.TOOL_CALLS,
    "function_call": FinishReason.STOP,  # the legacy ``functions`` API, which we never use
}

# Said in the system text when a JSON-object request mentions JSON nowhere: the API refuses
# ``json_object`` mode unless the messages contain the word "json".
JSON_OBJECT_HINT = "Answer with a JSON object."


def build_request(request: ProviderRequest) -> dict[str, Any]:
    """The Chat Completions request body for ``request``."""
    messages: list[dict[str, Any]] = []
    system = _system_text(request)
    if system:
        messages.append({"role": "system", "content": system})
    messages.extend(map(_message, request.messages))
    body: dict[str, Any] = {"model": request.model, "messages": messages}
    body.update(map_params(request.params, PARAMS))
    if request.tools:
        body.update(tool_fields(request))
    fmt = request.response_format
    if fmt is not None and fmt.json:
        body["response_format"] = response_format(fmt)
    return body


def _system_text(request: ProviderRequest) -> str:
    """The system text, with ``JSON_OBJECT_HINT`` added when JSON-object mode needs it."""
    fmt = request.response_format
    if fmt is None or fmt.kind is not FormatKind.JSON_OBJECT or any(
            "json" in text.lower() for text in _texts(request)):
        return request.system
    return f"{request.system}\n\n{JSON_OBJECT_HINT}" if request.system else JSON_OBJECT_HINT


def _texts(request: ProviderRequest) -> list[str]:
    return [request.system, *(m.content for m in request.messages)]


def _message(message: ChatMessage) -> dict[str, Any]:
    """One message in Chat Completions form. Plain text stays a string; images make the
    content an array of parts (the text, then the images); an assistant turn's tool calls
    go in ``tool_calls`` (content null when it said nothing), and a tool result is a
    ``tool`` message naming the call it answers."""
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": wire_id(message.tool_call_id),
                "content": message.content}
    content: Any = message.content
    if message.images:
        content = ([{"type": "text", "text": content}] if content else []) + [
            _image_part(image) for image in message.images]
    if not message.tool_calls:
        return {"role": message.role, "content": content}
    return {"role": message.role, "content": content or None,
            "tool_calls": [_call(call) for call in message.tool_calls]}


def _image_part(image: Image) -> dict[str, Any]:
    """An ``image_url`` part: the caller's URL, or the bytes as a base64 data URL."""
    url = image.url or (f"data:{image.mime_type};base64,"
                        f"{base64.b64encode(image.data).decode('ascii')}")
    return {"type": "image_url", "image_url": {"url": url}}


def _call(call: ToolCall) -> dict[str, Any]:
    # The API takes arguments as JSON text; an empty one (a call without arguments) as {}.
    return {"id": wire_id(call.id), "type": "function",
            "function": {"name": call.name, "arguments": call.arguments or "{}"}}


def tool_fields(request: ProviderRequest) -> dict[str, Any]:
    """``tools``, and ``tool_choice`` / ``parallel_tool_calls`` when set (the API refuses
    either without tools, so they are sent only with them)."""
    fields: dict[str, Any] = {"tools": [
        {"type": "function", "function": {
            "name": tool.name, **({"description": tool.description} if tool.description else {}),
            "parameters": dict(tool.parameters)}}
        for tool in request.tools]}
    choice = request.tool_choice
    if choice is not None:
        fields["tool_choice"] = ({"type": "function", "function": {"name": choice.name}}
                                 if choice.mode is ToolChoiceMode.TOOL else choice.mode.value)
    if request.parallel_tool_calls is not None:
        fields["parallel_tool_calls"] = request.parallel_tool_calls
    return fields


def response_format(fmt: ResponseFormat) -> dict[str, Any]:
    """A JSON response format in Chat Completions form."""
    if fmt.kind is FormatKind.JSON_OBJECT:
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {
        "name": fmt.name, "schema": dict(fmt.json_schema()), "strict": fmt.strict}}


def map_usage(usage: dict[str, Any] | None) -> Usage:
    if not usage:
        return Usage()
    details = usage.get("prompt_tokens_details") or {}
    return Usage(
        input_tokens=usage.get("prompt_tokens") or 0,
        output_tokens=usage.get("completion_tokens") or 0,
        cached_input_tokens=details.get("cached_tokens") or 0,
    )


class _Errors(NamedTuple):
    """The exception classes ``classify`` tells apart, by what they mean."""

    timeout: tuple[type[BaseException], ...]
    status: tuple[type[BaseException], ...]
    connection: tuple[type[BaseException], ...]
    failed: tuple[type[BaseException], ...]


# Without the SDK: only the direct transport's own (and the standard library's) classes.
_DIRECT_ERRORS = _Errors(timeout=(TimeoutError,), status=(),
                         connection=(aiohttp.ClientError, ConnectionError),
                         failed=(StreamFailed,))


def _errors() -> _Errors:
    """The classes to classify by: the SDK's and its HTTP stacks' too once the SDK is
    imported. Only an SDK client raises those, and one exists only after the import, so
    until then they need no checking — and checking them must not import the SDK."""
    return _sdk_errors() if "openai" in sys.modules else _DIRECT_ERRORS


@functools.cache
def _sdk_errors() -> _Errors:
    import httpx
    import httpx2
    import openai

    return _Errors(timeout=(openai.APITimeoutError, TimeoutError),
                   status=(openai.APIStatusError,),
                   connection=(openai.APIConnectionError, httpx.HTTPError, httpx2.HTTPError,
                               aiohttp.ClientError, ConnectionError),
                   failed=(openai.APIError, StreamFailed))


def classify(exc: Exception) -> ProviderError:
    """Map an SDK or transport exception to the taxonomy (the message never holds keys).
    The connection's own failures (refused, no pooled connection) are told apart first:
    the SDK files a pool wait under its timeout class."""
    if (precise := transport_error(exc)) is not None:
        return precise
    errors = _errors()
    if isinstance(exc, errors.timeout):
        return ProviderError(ErrorKind.TIMEOUT, READ_TIMEOUT)
    if isinstance(exc, errors.status):
        response = exc.response  # type: ignore[attr-defined]
        return classify_status(exc.status_code, exc.body,  # type: ignore[attr-defined]
                               response.headers if response is not None else None)
    if isinstance(exc, VendorStatus):
        return classify_status(exc.status, exc.body, exc.headers)
    if isinstance(exc, errors.connection):
        return ProviderError(ErrorKind.UNAVAILABLE, CONNECTION_FAILED)
    if (garbled := unreadable(exc)) is not None:
        return garbled
    if isinstance(exc, errors.failed):
        return ProviderError(ErrorKind.UNAVAILABLE, "the vendor stream failed")
    raise exc


def classify_status(status: int, body: Any,
                    headers: Mapping[str, str] | None) -> ProviderError:
    """An HTTP error status with its JSON body (the whole body or its ``error`` object) and
    headers → the taxonomy; one mapping for both transports."""
    error = body.get("error", body) if isinstance(body, dict) else {}
    code = str(error.get("code") or "") if isinstance(error, dict) else ""
    vendor_message = str(error.get("message") or "")[:MAX_ECHO_CHARS] \
        if isinstance(error, dict) else ""
    retry_after = retry_after_s(headers)
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


ERRORS = ErrorScope(classify)


def translate_events(events: list[dict[str, Any]], usage: Usage) -> StreamUpdate:
    """The events of one network read (the direct transport) → one update: their text and
    tool pieces in order, the last finish reason and usage reported."""
    if len(events) == 1:
        return translate_event(events[0], usage)
    text, finish, reported, tools = "", None, None, ()
    for event in events:
        update = translate_event(event, usage)
        text += update.text
        tools += update.tools
        finish = update.finish or finish
        if update.usage is not None:
            usage = reported = update.usage
    return StreamUpdate(text, finish, reported, merge_pieces(tools) if tools else tools)


def merge_pieces(pieces: tuple[ToolCallDelta, ...]) -> tuple[ToolCallDelta, ...]:
    """Consecutive pieces of the same call as one (arguments joined; the first id and name
    given), so a burst of argument pieces leaves as one delta, like a burst of text."""
    merged: list[ToolCallDelta] = []
    start = 0
    for end in range(1, len(pieces) + 1):
        if end < len(pieces) and pieces[end].index == pieces[start].index:
            continue
        if end - start == 1:
            merged.append(pieces[start])
        else:
            run = pieces[start:end]
            merged.append(ToolCallDelta(
                run[0].index, next((p.id for p in run if p.id), ""),
                next((p.name for p in run if p.name), ""), "".join(p.arguments for p in run)))
        start = end
    return tuple(merged)


def translate_event(chunk: dict[str, Any], usage: Usage) -> StreamUpdate:
    """One ``chat.completion.chunk`` → the text, tool-call pieces, finish reason and usage
    it carries (the usage chunk, last, has the whole call's counts). A text chunk costs one
    extra dict lookup for tools, nothing more."""
    text, finish, tools = "", None, ()
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        content = delta.get("content")
        if content:
            text += content
        if delta.get("tool_calls"):
            tools += tool_pieces(delta["tool_calls"])
        if choice.get("finish_reason"):
            finish = FINISH_REASONS.get(choice["finish_reason"], FinishReason.UNSPECIFIED)
    reported = chunk.get("usage")
    return StreamUpdate(text, finish, map_usage(reported) if reported is not None else None,
                        tools)


def tool_pieces(items: Any) -> tuple[ToolCallDelta, ...]:
    """A delta's ``tool_calls`` items → pieces keyed by the vendor's index (id and name are
    on a call's first item only). An item that is not a call is an unreadable answer.

    Hot path: a tool-call stream makes one per chunk, so items are read with ``type``
    checks (no isinstance chains) and the common single item builds no list."""
    if type(items) is not list:
        raise ProviderError(ErrorKind.UNAVAILABLE, UNREADABLE_ANSWER)
    if len(items) == 1:
        return (_tool_piece(items[0], 0),)
    return tuple(_tool_piece(item, position) for position, item in enumerate(items))


def _tool_piece(item: Any, position: int) -> ToolCallDelta:
    """One ``tool_calls`` item → a piece; arguments sent as an object (some compatible
    servers do) become its JSON text."""
    if type(item) is not dict:
        raise ProviderError(ErrorKind.UNAVAILABLE, UNREADABLE_ANSWER)
    index = item.get("index")
    if index is None:  # some compatible servers leave it out: the item's position
        index = position
    function = item.get("function") or _NO_FUNCTION
    if type(index) is not int or type(function) is not dict:
        raise ProviderError(ErrorKind.UNAVAILABLE, UNREADABLE_ANSWER)
    arguments = function.get("arguments") or ""
    if type(arguments) is not str:
        arguments = arguments_text(arguments)
    vendor_id, name = item.get("id"), function.get("name")
    return ToolCallDelta(index, vendor_id if type(vendor_id) is str else "",
                         name if type(name) is str else "", arguments)


_NO_FUNCTION: dict[str, Any] = {}


def read_completion(data: dict[str, Any]) -> Completion:
    """A unary ``chat.completion``: the first choice's text and tool calls."""
    choice = data["choices"][0]
    message = choice.get("message") or {}
    reason = FINISH_REASONS.get(choice.get("finish_reason") or "", FinishReason.UNSPECIFIED)
    return Completion(text=message.get("content") or "", finish_reason=reason,
                      usage=map_usage(data.get("usage")),
                      tool_calls=read_tool_calls(message.get("tool_calls"),
                                                 str(data.get("id") or "")))


def read_tool_calls(items: Any, answer_id: str) -> tuple[ToolCall, ...]:
    """A unary message's ``tool_calls`` → ToolCalls (ids made wire-safe; a missing id gets
    a stable one per answer and position). Arguments are passed on as sent, even when they
    are not JSON: the gateway checks them."""
    if not items:
        return ()
    if not isinstance(items, list):
        raise ProviderError(ErrorKind.UNAVAILABLE, UNREADABLE_ANSWER)
    calls = []
    for position, item in enumerate(items):
        function = item.get("function") if isinstance(item, dict) else None
        if not isinstance(function, dict):
            raise ProviderError(ErrorKind.UNAVAILABLE, UNREADABLE_ANSWER)
        calls.append(ToolCall(wire_id(_string(item.get("id")), salt=f"{answer_id}:{position}"),
                              _string(function.get("name")),
                              arguments_text(function.get("arguments"))))
    return tuple(calls)


def arguments_text(value: Any) -> str:
    """Arguments as JSON text: as sent when text (OpenAI's form), else the JSON of the
    value (some compatible servers send an object)."""
    if value is None or isinstance(value, str):
        return value or ""
    return json.dumps(value)


def _string(value: Any) -> str:
    return value if isinstance(value, str) else ""


def resolved_base_url(base_url: str | None) -> str:
    """The endpoint as the SDK resolves it (``AsyncOpenAI(base_url=...)``): the configured
    URL, else ``OPENAI_BASE_URL``, else OpenAI's. The direct transport posts to it without
    building an SDK client (``tests/providers/test_openai_without_sdk.py`` compares)."""
    if base_url is None:
        base_url = os.environ.get("OPENAI_BASE_URL")
    return base_url if base_url is not None else "https://api.openai.com/v1"


class OpenAIProvider:
    """Adapter for one configured OpenAI-compatible endpoint."""

    def __init__(self, name: str, *, base_url: str | None, api_key: str | None,
                 timeout_s: float, max_connections: int, transport: str = "sdk",
                 stream_batch_s: float = 0.0) -> None:
        self.name = name
        self._missing_key = api_key is None
        self._base_url = base_url
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._max_connections = max_connections
        self._sdk: AsyncOpenAI | None = None
        # transport "direct": chat over our own session (openai_direct.py), to the URL the
        # SDK would resolve; an SDK client, made on first use, serves embeddings.
        self._direct = DirectChat(resolved_base_url(base_url), api_key or "unset",
                                  max_connections=max_connections,
                                  stream_batch_s=stream_batch_s) \
            if transport == "direct" else None
        if self._direct is None:
            self._sdk = self._make_sdk()

    def _make_sdk(self) -> AsyncOpenAI:
        """The SDK client (importing the SDK if nothing has yet)."""
        import httpx2
        import openai

        http = openai.DefaultAioHttpClient(
            timeout=httpx2.Timeout(self._timeout_s, connect=min(5.0, self._timeout_s)),
            limits=httpx2.Limits(max_connections=self._max_connections,
                                 max_keepalive_connections=min(self._max_connections, 64)))
        return openai.AsyncOpenAI(api_key=self._api_key or "unset", base_url=self._base_url,
                                  max_retries=0, timeout=self._timeout_s, http_client=http)

    def client(self) -> AsyncOpenAI:
        """The SDK client, once the key check passed: chat (transport ``sdk``) and
        embeddings call through it. Made here on first use with the direct transport."""
        check_key(self.name, self._missing_key)
        if self._sdk is None:
            self._sdk = self._make_sdk()
        return self._sdk

    async def sdk_client(self) -> AsyncOpenAI:
        """``client()``, the SDK imported in a worker thread the first time (0.3-1 s of
        CPU that must not stall the event loop), like ``LazyProvider`` does for adapters."""
        check_key(self.name, self._missing_key)
        if self._sdk is None and "openai" not in sys.modules:
            await asyncio.to_thread(importlib.import_module, "openai")
        return self.client()

    async def generate(self, request: ProviderRequest, timeout_s: float) -> Completion:
        check_key(self.name, self._missing_key)
        with ERRORS:
            if self._direct is not None:
                data = await self._direct.complete(build_request(request), timeout_s)
            else:
                data = await self.client().post(
                    "/chat/completions", body=build_request(request), cast_to=object,
                    options={"timeout": timeout_s})
        if not isinstance(data, dict) or not data.get("choices"):
            raise ProviderError(ErrorKind.UNAVAILABLE, UNREADABLE_ANSWER)
        try:
            return read_completion(data)
        except (AttributeError, TypeError, LookupError) as exc:  # a 200 of the wrong shape
            raise ProviderError(ErrorKind.UNAVAILABLE, UNREADABLE_ANSWER) from exc

    def stream(self, request: ProviderRequest, timeout_s: float) -> AsyncIterator[StreamEvent]:
        # The direct transport's upstream yields the events of one network read together.
        translate = translate_events if self._direct is not None else translate_event
        return drive_stream(partial(self._open_stream, request, timeout_s),
                            translate, ERRORS)  # type: ignore[arg-type]

    async def _open_stream(self, request: ProviderRequest, timeout_s: float) -> Upstream:
        check_key(self.name, self._missing_key)
        body = {**build_request(request), "stream": True,
                "stream_options": {"include_usage": True}}
        if self._direct is not None:
            return await self._direct.stream(body, timeout_s)
        from openai import AsyncStream

        return await self.client().post(
            "/chat/completions", body=body, cast_to=object, options={"timeout": timeout_s},
            stream=True, stream_cls=AsyncStream[object])

    async def aclose(self) -> None:
        if self._direct is not None:
            await self._direct.aclose()
        if self._sdk is not None:
            await self._sdk.close()


class OpenAIEmbedder(VendorEmbedder[OpenAIProvider]):
    """``text-embedding-3-small`` / ``-large``, shortened to ``dimension``, on the
    provider's endpoint."""

    vendor = "openai"
    errors = ERRORS
    default_batch_size = 256

    async def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        client = await self._provider.sdk_client()
        response = await client.embeddings.create(
            model=self.model, input=texts, dimensions=self.dimension, encoding_format="float")
        return [item.embedding for item in sorted(response.data, key=lambda d: d.index)]


__all__ = ["ERRORS", "OpenAIEmbedder", "OpenAIProvider", "build_request", "classify",
           "read_completion", "read_tool_calls", "resolved_base_url", "response_format",
           "tool_fields", "tool_pieces", "translate_event", "translate_events"]
