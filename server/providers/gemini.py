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

Tools are ``functionDeclarations`` (their JSON Schema as ``parametersJsonSchema``, which
takes plain JSON Schema where ``parameters`` takes only Google's OpenAPI subset); the tool
choice is ``functionCallingConfig.mode`` (AUTO, NONE, ANY, ANY with one allowed name). A
call comes back as a whole ``functionCall`` part whose ``args`` is an object and whose
``id`` is optional, and Gemini's finish reason for it is STOP: a STOP after a call is
reported as ``tool_calls``. A tool result goes back as a ``functionResponse`` part in a
user turn, keyed by the function's NAME (Gemini ids are optional), so the adapter looks
the name up by call id. Images travel inline only (``inlineData``): Gemini file URIs are
not web URLs. JSON mode is native: ``responseMimeType`` plus ``responseJsonSchema``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Mapping, Sequence
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
    ChatMessage,
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
from server.providers.content import (
    FormatKind,
    Image,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolChoiceMode,
    wire_id,
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
                  **{name: FinishReason.CONTENT_FILTER for name in _FILTERED}}
# Finishes that mean the model tried to call a function and failed to (unparseable call,
# a call with function calling off, too many calls): there is no call to pass on, and
# another attempt may well succeed — the answer is invalid output, not a success.
_INVALID_CALLS = ("MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS")
JSON_MIME_TYPE = "application/json"

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


def _plain(value: Any) -> Any:
    """``value`` with every mapping a dict and every sequence a list, as the SDK's
    pydantic models serialise them (schemas may arrive as read-only mappings)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [_plain(v) for v in value]
    return value


def _arguments_object(arguments: str) -> dict[str, Any]:
    """A call's JSON-text arguments as the object ``functionCall.args`` must be; text that
    is not a JSON object (a model's malformed call replayed) is kept as ``{"_raw": text}``
    rather than dropped, so the conversation stays as it was."""
    try:
        value = json.loads(arguments) if arguments else {}
    except ValueError:
        return {"_raw": arguments}
    return value if isinstance(value, dict) else {"_raw": arguments}


def _result_value(content: str) -> Any:
    """A tool result as ``functionResponse.response.result``: the object itself when the
    result is a JSON object (the model reads structure better), else the text."""
    try:
        value = json.loads(content)
    except ValueError:
        return content
    return value if isinstance(value, dict) else content


def _image_part(image: Image) -> types.Part:
    """Inline bytes; Gemini's ``fileData`` takes only its own file URIs, never web URLs."""
    if image.url:
        raise ProviderError(ErrorKind.INVALID_REQUEST,
                            "Gemini does not take image URLs: send the image bytes inline")
    return types.Part(inline_data=types.Blob(mime_type=image.mime_type, data=image.data))


def _message_parts(message: ChatMessage) -> list[types.Part]:
    """A user or assistant turn: its text (as before when it is only text), its images,
    then the function calls an assistant turn made."""
    if not message.images and not message.tool_calls:
        return [types.Part(text=message.content)]
    parts = [types.Part(text=message.content)] if message.content else []
    parts += [_image_part(image) for image in message.images]
    parts += [types.Part(function_call=types.FunctionCall(
        id=call.id, name=call.name, args=_arguments_object(call.arguments)))
        for call in message.tool_calls]
    return parts


def _result_parts(message: ChatMessage, names: Mapping[str, str]) -> list[types.Part]:
    """A tool turn: a ``functionResponse`` named after the function it answers (Gemini
    keys results by name; the id is passed too), then any images it carries."""
    name = names.get(message.tool_call_id)
    if name is None:
        raise ProviderError(ErrorKind.INVALID_REQUEST,
                            f"the tool result {bounded(message.tool_call_id)!r} answers no "
                            "call made earlier in the conversation")
    response = types.FunctionResponse(id=message.tool_call_id, name=name,
                                      response={"result": _result_value(message.content)})
    return [types.Part(function_response=response),
            *(_image_part(image) for image in message.images)]


def build_contents(request: ProviderRequest) -> list[types.Content]:
    """The conversation as Gemini turns: ``model`` for the assistant, and consecutive
    tool results gathered into one user turn (one answer to one turn of calls)."""
    names = request.tool_names_by_call()
    contents: list[types.Content] = []
    gathering = False  # the last turn holds tool results
    for message in request.messages:
        if message.role != "tool":
            contents.append(types.Content(role=ROLES.get(message.role, "user"),
                                          parts=_message_parts(message)))
        elif gathering:
            contents[-1].parts = [*(contents[-1].parts or ()), *_result_parts(message, names)]
        else:
            contents.append(types.Content(role="user", parts=_result_parts(message, names)))
        gathering = message.role == "tool"
    return contents


def _declaration(tool: Tool) -> types.FunctionDeclaration:
    return types.FunctionDeclaration(name=tool.name, description=tool.description or None,
                                     parameters_json_schema=_plain(tool.parameters))


def _tool_config(choice: ToolChoice) -> types.ToolConfig:
    """AUTO / NONE as such; "some tool" is ANY; one named tool is ANY limited to it."""
    modes = {ToolChoiceMode.AUTO: types.FunctionCallingConfigMode.AUTO,
             ToolChoiceMode.NONE: types.FunctionCallingConfigMode.NONE}
    if choice.mode is ToolChoiceMode.TOOL:
        calling = types.FunctionCallingConfig(mode=types.FunctionCallingConfigMode.ANY,
                                              allowed_function_names=[choice.name])
    else:
        calling = types.FunctionCallingConfig(
            mode=modes.get(choice.mode, types.FunctionCallingConfigMode.ANY))
    return types.ToolConfig(function_calling_config=calling)


def _output_fields(request: ProviderRequest) -> dict[str, Any]:
    """Tools, tool choice and JSON mode as config fields (none when not asked for, so a
    plain request is unchanged)."""
    fields: dict[str, Any] = {}
    if request.tools:
        fields["tools"] = [types.Tool(
            function_declarations=[_declaration(tool) for tool in request.tools])]
        if request.tool_choice is not None:
            fields["tool_config"] = _tool_config(request.tool_choice)
    fmt = request.response_format
    if fmt is not None and fmt.json:
        fields["response_mime_type"] = JSON_MIME_TYPE
        if fmt.kind is FormatKind.JSON_SCHEMA:
            fields["response_json_schema"] = _plain(fmt.json_schema())
    return fields


def build_config(request: ProviderRequest, timeout_s: float) -> types.GenerateContentConfig:
    """The generation config: system instruction, mapped parameters, this call's timeout."""
    fields: dict[str, Any] = {
        "http_options": types.HttpOptions(timeout=max(1, int(timeout_s * 1000)))}
    if request.system:
        fields["system_instruction"] = request.system
    fields.update(map_params(request.params, PARAMS))
    fields.update(_output_fields(request))
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


def _call_piece(call: types.FunctionCall, index: int, response_id: str) -> ToolCallDelta:
    """One whole function call. Gemini often sends no id: the one made up is a digest of
    the response, the call's position and the call, so it is the same every time that
    answer is read and distinct between the calls of one answer."""
    name = call.name or ""
    arguments = json.dumps(call.args if call.args is not None else {})
    vendor_id = wire_id(call.id or "", salt=f"{response_id}:{index}:{name}:{arguments}")
    return ToolCallDelta(index, vendor_id, name, arguments)


def translate_event(chunk: types.GenerateContentResponse, usage: Usage,
                    calls_before: int = 0) -> StreamUpdate:
    """One streamed ``GenerateContentResponse`` (or a whole one: same shape) → its text,
    function calls, finish reason and usage; raises content_filtered when the prompt was
    blocked, and invalid_output when the model failed to make a function call.

    ``calls_before`` counts the calls earlier chunks of the stream carried: it numbers
    this chunk's calls after them, and a STOP after any call is a ``tool_calls`` finish
    (Gemini says STOP for both)."""
    if (blocked := _blocked(chunk)) is not None:
        raise blocked
    text, finish = "", None
    calls: list[ToolCallDelta] = []
    for candidate in chunk.candidates or ():
        content = candidate.content
        for part in (content.parts or ()) if content is not None else ():
            if part.function_call is not None:
                calls.append(_call_piece(part.function_call, calls_before + len(calls),
                                         chunk.response_id or ""))
            elif part.text and not part.thought:
                text += part.text
        if candidate.finish_reason is not None:
            finish = _finish(_name(candidate.finish_reason))
        break  # one candidate is requested
    if finish is FinishReason.STOP and (calls or calls_before):
        finish = FinishReason.TOOL_CALLS
    reported = map_usage(chunk.usage_metadata) if chunk.usage_metadata is not None else None
    return StreamUpdate(text, finish, reported, tuple(calls))


def _finish(name: str) -> FinishReason:
    if name in _INVALID_CALLS:
        raise ProviderError(ErrorKind.INVALID_OUTPUT,
                            f"the model failed to make a valid function call ({name})")
    return FINISH_REASONS.get(name, FinishReason.UNSPECIFIED)


class _StreamCalls:
    """``translate_event`` for one stream: it counts the stream's function calls, so each
    whole call Gemini sends gets the next index and the finish knows calls were made."""

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls = 0

    def __call__(self, chunk: types.GenerateContentResponse, usage: Usage) -> StreamUpdate:
        update = translate_event(chunk, usage, self._calls)
        self._calls += len(update.tools)
        return update


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
        calls = tuple(ToolCall(piece.id, piece.name, piece.arguments) for piece in update.tools)
        return Completion(text=update.text, finish_reason=update.finish or FinishReason.UNSPECIFIED,
                          usage=update.usage or usage, tool_calls=calls)

    def stream(self, request: ProviderRequest, timeout_s: float) -> AsyncIterator[StreamEvent]:
        return drive_stream(partial(self._open_stream, request, timeout_s), _StreamCalls(),
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
