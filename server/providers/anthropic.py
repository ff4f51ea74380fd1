"""Anthropic Messages API through the official ``anthropic`` SDK (AsyncAnthropic).

What differs from Chat Completions, and is handled here: the system prompt is a
top-level field; messages must alternate user/assistant (consecutive same-role messages
are merged); ``max_tokens`` is required (the provider's configured default fills it);
usage arrives in two parts while streaming (``message_start`` has the input and cache
counts, ``message_delta`` the output count); overload is its own status (529). SDK
retries are off: retrying is the router's decision.

Tools, images and tool results travel as content blocks (``tool_use`` in assistant turns,
``tool_result`` and ``image`` in user turns); a message with none of them keeps plain
string content, so plain requests are what they always were. The API has no JSON mode:
it is emulated with a forced tool whose input schema is the response format's schema,
and that tool's input comes back as the answer's text, not as a tool call.
"""

from __future__ import annotations

import base64
import json
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
    check_key,
    drive_stream,
    map_params,
    transport_error,
    unreadable,
)
from server.providers.content import (
    Image,
    ToolCall,
    ToolChoiceMode,
    wire_id,
)
from server.providers.forced_json import JSON_TOOL_DESCRIPTION, StreamTools, json_tool_name
from server.providers.headers import retry_after_s
from server.providers.messages import merge_turns

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
    "tool_use": FinishReason.TOOL_CALLS,
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



Content = str | list[dict[str, Any]]


def _image_block(image: Image) -> dict[str, Any]:
    """An image block: a URL source where the caller gave one, else the bytes as base64."""
    if image.url:
        return {"type": "image", "source": {"type": "url", "url": image.url}}
    return {"type": "image", "source": {"type": "base64", "media_type": image.mime_type,
                                        "data": base64.b64encode(image.data).decode("ascii")}}


def _tool_input(arguments: str) -> dict[str, Any]:
    """A call's JSON arguments as the object a ``tool_use`` block takes; arguments that are
    not the JSON of an object travel wrapped (``{"_raw": text}``) rather than failing the
    whole conversation."""
    try:
        value = json.loads(arguments)
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {"_raw": arguments}


def _turn(message: ChatMessage) -> tuple[str, Content]:
    """One message as (Anthropic role, content). Plain text stays a string; anything else
    becomes blocks: images before the text (the order Anthropic recommends), the
    assistant's tool calls after its text (an empty text block is left out), and a tool
    result as a user turn's ``tool_result`` block."""
    if message.role == "tool":
        result: Content = message.content
        if message.images:
            result = [_image_block(i) for i in message.images] + _text_blocks(message.content)
        return "user", [{"type": "tool_result", "tool_use_id": wire_id(message.tool_call_id),
                         "content": result}]
    if not message.images and not message.tool_calls:
        return message.role, message.content
    blocks = [_image_block(i) for i in message.images] + _text_blocks(message.content)
    blocks += [{"type": "tool_use", "id": wire_id(call.id), "name": call.name,
                "input": _tool_input(call.arguments)} for call in message.tool_calls]
    return message.role, blocks


def _text_blocks(content: Content) -> list[dict[str, Any]]:
    if isinstance(content, list):
        return content
    return [{"type": "text", "text": content}] if content else []


def _join(first: Content, second: Content) -> Content:
    """Two turns of one role as one: texts joined by a blank line (as plain turns always
    were), or their blocks in order — tool results first, as the API requires of a user
    turn that answers tool calls."""
    if isinstance(first, str) and isinstance(second, str):
        return first + "\n\n" + second
    blocks = _text_blocks(first) + _text_blocks(second)
    return sorted(blocks, key=lambda block: block["type"] != "tool_result")


def alternate(messages: tuple[ChatMessage, ...]) -> list[dict[str, Any]]:
    """Anthropic requires alternating roles: merge runs of the same role into one turn
    (tool results are user turns, so they merge with a user message that follows)."""
    return merge_turns(messages, _turn, _join)




def _declared_tools(request: ProviderRequest, json_tool: str) -> list[dict[str, Any]]:
    """The caller's tools (description left out when empty), then the JSON tool."""
    tools = [{"name": t.name, **({"description": t.description} if t.description else {}),
              "input_schema": dict(t.parameters)} for t in request.tools]
    if json_tool and request.response_format is not None:
        tools.append({"name": json_tool, "description": JSON_TOOL_DESCRIPTION,
                      "input_schema": dict(request.response_format.json_schema())})
    return tools


def _tool_choice(request: ProviderRequest, json_tool: str) -> dict[str, Any] | None:
    """Our tool choice in Anthropic's form (None: leave the API's default, auto).

    With a JSON tool the model must call a tool: the caller's named tool if it named
    one, otherwise any tool when the caller declared some (a call to theirs is a tool
    call, to ours the JSON answer), else ours — which is also how "none" reads then: no
    tool of the caller's, only the JSON answer. A lone JSON tool is called once."""
    choice = request.tool_choice
    mode = choice.mode if choice is not None else None
    if choice is not None and mode is ToolChoiceMode.TOOL:
        out: dict[str, Any] = {"type": "tool", "name": choice.name}
    elif json_tool:
        if request.tools and mode is not ToolChoiceMode.NONE:
            out = {"type": "any"}
        else:
            return {"type": "tool", "name": json_tool, "disable_parallel_tool_use": True}
    elif mode is ToolChoiceMode.NONE:
        return {"type": "none"}
    elif mode is ToolChoiceMode.REQUIRED:
        out = {"type": "any"}
    elif mode is ToolChoiceMode.AUTO or request.parallel_tool_calls is False:
        out = {"type": "auto"}
    else:
        return None
    if request.parallel_tool_calls is False:
        out["disable_parallel_tool_use"] = True
    return out


def _history_tools(request: ProviderRequest) -> dict[str, Any]:
    """The API refuses ``tool_use``/``tool_result`` blocks in a request that declares no
    tools; a conversation that used tools and now declares none declares the tools it
    called (any input) and forbids calling them."""
    names = sorted(set(request.tool_names_by_call().values()))
    if not names:
        return {}
    return {"tools": [{"name": name, "input_schema": {"type": "object"}} for name in names],
            "tool_choice": {"type": "none"}}


def tool_fields(request: ProviderRequest) -> dict[str, Any]:
    """``tools`` and ``tool_choice`` for ``request`` (nothing for a request without tools,
    a JSON response format or tool history)."""
    json_tool = json_tool_name(request)
    tools = _declared_tools(request, json_tool)
    if not tools:
        return _history_tools(request)
    fields: dict[str, Any] = {"tools": tools}
    choice = _tool_choice(request, json_tool)
    if choice is not None:
        fields["tool_choice"] = choice
    return fields


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
    body.update(tool_fields(request))
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


def tool_arguments(value: Any) -> str:
    """A ``tool_use`` block's input as JSON text. Input that arrived as text (not an
    object, which the API never sends but a proxy might) is passed on as sent: the
    gateway checks arguments, the adapter does not fail on them."""
    return value if isinstance(value, str) else json.dumps(value)


def read_message(message: Any, json_tool: str) -> Completion:
    """A unary answer: text blocks, and ``tool_use`` blocks as tool calls — except a call
    of the JSON tool, whose input is the answer's text (replacing any prose beside it, so
    the text is the JSON alone). "tool_use" is a tool-call finish only with a real call."""
    texts: list[str] = []
    answers: list[str] = []
    calls: list[ToolCall] = []
    for block in message.content:
        if block.type == "text":
            texts.append(block.text)
        elif block.type == "tool_use" and json_tool and block.name == json_tool:
            answers.append(tool_arguments(block.input))
        elif block.type == "tool_use":
            calls.append(ToolCall(wire_id(block.id), block.name, tool_arguments(block.input)))
    reason = FINISH_REASONS.get(message.stop_reason or "", FinishReason.UNSPECIFIED)
    if reason is FinishReason.TOOL_CALLS and not calls:
        reason = FinishReason.STOP
    return Completion(text="".join(answers or texts), finish_reason=reason,
                      usage=map_usage(message.usage), tool_calls=tuple(calls))




def _tool_start(index: int, block: Any, tools: StreamTools) -> StreamUpdate:
    """A ``tool_use`` block opening. Its input is ``{}`` here and arrives in deltas; a
    whole input sent up front (as some proxies do) is kept."""
    given = getattr(block, "input", None)
    return tools.start(index, block.id or "", block.name or "",
                       tool_arguments(given) if given else "")


def translate_event(event: Any, usage: Usage, tools: StreamTools | None = None) -> StreamUpdate:
    """One raw Messages stream event → the text, tool-call pieces and finish reason it
    carries. Usage comes in parts (``message_start``: input and cache counts;
    ``message_delta``: output), so each part is folded into the stream's ``usage`` and
    that is returned. ``tools`` is the stream's memory (see ``StreamTools``)."""
    kind = getattr(event, "type", "")
    if kind == "content_block_delta":
        delta_kind = getattr(event.delta, "type", "")
        if delta_kind == "text_delta":
            return StreamUpdate(event.delta.text)
        if delta_kind == "input_json_delta":
            return (tools or StreamTools()).piece(event.index, event.delta.partial_json)
        return NO_UPDATE
    if kind == "content_block_start" and getattr(event.content_block, "type", "") == "tool_use":
        return _tool_start(event.index, event.content_block, tools or StreamTools())
    if kind == "message_start":
        return StreamUpdate(usage=map_usage(event.message.usage, usage))
    if kind == "message_delta":
        reason = event.delta.stop_reason
        finish = FINISH_REASONS.get(reason, FinishReason.UNSPECIFIED) if reason else None
        if finish is FinishReason.TOOL_CALLS and tools is not None and not tools.called:
            finish = FinishReason.STOP
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
        try:
            return read_message(message, json_tool_name(request))
        except (AttributeError, TypeError) as exc:  # a 200 whose blocks are not blocks
            raise ProviderError(ErrorKind.UNAVAILABLE, UNREADABLE_ANSWER) from exc

    def stream(self, request: ProviderRequest, timeout_s: float) -> AsyncIterator[StreamEvent]:
        translate = partial(translate_event, tools=StreamTools(json_tool_name(request)))
        return drive_stream(partial(self._open_stream, request, timeout_s), translate, ERRORS)

    async def _open_stream(self, request: ProviderRequest, timeout_s: float) -> Upstream:
        return await self.client().messages.create(
            **build_request(request, self._default_max_tokens), stream=True, timeout=timeout_s)

    async def aclose(self) -> None:
        await self._sdk.close()


__all__ = ["ERRORS", "AnthropicProvider", "StreamTools", "build_request", "classify",
           "json_tool_name", "read_message", "translate_event"]
