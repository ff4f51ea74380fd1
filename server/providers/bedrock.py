"""AWS Bedrock Runtime (Converse / ConverseStream, Titan embeddings through InvokeModel)
through ``boto3``, one client per region.

Why the shape: boto3 is blocking, so every call (and every read of the response's event
stream) runs in a bounded thread pool passed in by the caller, never on the event loop;
the pool's size caps how many Bedrock calls are in flight. A stream is read one event
per executor job, so a caller that stops reading (cancels, or the router's deadline
passes) stops the reads at once, and closing the iterator closes the HTTP response from
the consumer side.

A blocking call (Converse, or ConverseStream until its response headers arrive) is
cancelled through its ``_CallHandle``: each region's client uses connection classes that
register the connection a call is waiting on, and cancelling shuts that socket down from
the event loop's thread, so the vendor sees the caller leave at once and the executor
thread is freed. An event stream that still arrives after its caller left is closed the
moment its call returns: no upstream request is ever left open.

Clients are cached per region (each region is a separate target to the router), only
for the regions configured for this provider (``regions``): a request naming any other
region is refused, so callers cannot make the gateway build clients without bound. They
use the standard AWS credential chain (environment, profile, instance role) unless
explicit credentials are passed in. botocore's retries are off: retrying is the router's
decision.

Tools travel in ``toolConfig`` (``toolSpec`` declarations; ``toolChoice`` auto / any /
tool — Converse has no "none" and no parallel-calls knob), tool calls and results as
``toolUse`` / ``toolResult`` content blocks, images as ``image`` blocks holding the raw
bytes (Converse takes no image URLs). A plain message stays one text block, so plain
requests are what they always were. Converse has no JSON mode here: it is emulated with
a forced tool whose input schema is the response format's schema, and that tool's input
comes back as the answer's text, not as a tool call.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from concurrent.futures import Executor, Future
from functools import partial
from typing import Any

import boto3
import botocore.exceptions as boto_errors
import urllib3.exceptions as urllib3_errors
from botocore.awsrequest import (
    AWSHTTPConnection,
    AWSHTTPConnectionPool,
    AWSHTTPSConnection,
    AWSHTTPSConnectionPool,
)
from botocore.config import Config
from botocore.parsers import ResponseParserError

from server.providers.base import (
    CONNECTION_FAILED,
    MAX_ECHO_CHARS,
    NO_UPDATE,
    READ_TIMEOUT,
    UNREADABLE_ANSWER,
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
    drive_stream,
    map_params,
    transport_error,
    unreadable,
)
from server.providers.content import Image, ToolCall, ToolChoiceMode, wire_id
from server.providers.forced_json import JSON_TOOL_DESCRIPTION, StreamTools, json_tool_name
from server.providers.messages import merge_turns

# Our parameter → Converse ``inferenceConfig`` field, with an optional transform.
# top_k has no Converse field (it is model-specific); it is dropped.
PARAMS: ParamMap = (
    ("max_output_tokens", "maxTokens", None),
    ("temperature", "temperature", None),
    ("top_p", "topP", None),
    ("stop", "stopSequences", lambda stop: list(stop) or None),
)

FINISH_REASONS = {
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP,
    "tool_use": FinishReason.TOOL_CALLS,
    "max_tokens": FinishReason.LENGTH,
    "guardrail_intervened": FinishReason.CONTENT_FILTER,
    "content_filtered": FinishReason.CONTENT_FILTER,
}

# AWS error codes (lower-cased: event-stream errors use camelCase) → our kind.
ERROR_CODES = {
    "throttlingexception": ErrorKind.RATE_LIMITED,
    "servicequotaexceededexception": ErrorKind.RATE_LIMITED,
    "serviceunavailableexception": ErrorKind.UNAVAILABLE,
    "internalserverexception": ErrorKind.UNAVAILABLE,
    "modelnotreadyexception": ErrorKind.UNAVAILABLE,
    "modelerrorexception": ErrorKind.UNAVAILABLE,
    "modelstreamerrorexception": ErrorKind.UNAVAILABLE,
    "modeltimeoutexception": ErrorKind.TIMEOUT,
    "accessdeniedexception": ErrorKind.PERMISSION,
    "unrecognizedclientexception": ErrorKind.AUTH,
    "invalidsignatureexception": ErrorKind.AUTH,
    "expiredtokenexception": ErrorKind.AUTH,
    "missingauthenticationtokenexception": ErrorKind.AUTH,
    "resourcenotfoundexception": ErrorKind.NOT_FOUND,
    "validationexception": ErrorKind.INVALID_REQUEST,
}
SAFE_MESSAGES = {
    ErrorKind.RATE_LIMITED: "rate limited by the vendor",
    ErrorKind.UNAVAILABLE: "the vendor failed",
    ErrorKind.TIMEOUT: "the vendor timed out",
    ErrorKind.AUTH: "the vendor rejected the AWS credentials",
    ErrorKind.PERMISSION: "the AWS credentials may not use this model",
    ErrorKind.NOT_FOUND: "the vendor does not know this model in this region",
}
_CONTEXT_HINTS = ("too long", "too many input tokens", "context length", "context window")
_END = object()


# Our image MIME types → Converse's image ``format``.
IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif",
                 "image/webp": "webp"}
# Where blocks go when turns of one role merge: tool results open a user turn, and an
# assistant turn's text comes before its tool calls (Converse requires both).
_BLOCK_ORDER = {"toolResult": 0, "toolUse": 2}

Block = dict[str, Any]


def _image_block(image: Image) -> Block:
    """An image block with the raw bytes (boto3 base64-encodes them on the wire).
    Converse takes inline bytes (or S3 locations), never URLs."""
    if image.url:
        raise ProviderError(ErrorKind.INVALID_REQUEST,
                            "Bedrock Converse does not take image URLs: send the image's bytes")
    fmt = IMAGE_FORMATS.get(image.mime_type)
    if fmt is None:
        raise ProviderError(ErrorKind.INVALID_REQUEST, f"Bedrock Converse does not take "
                            f"{bounded(image.mime_type, 40)!r} images")
    return {"image": {"format": fmt, "source": {"bytes": image.data}}}


def _tool_input(arguments: str) -> dict[str, Any]:
    """A call's JSON arguments as the object a ``toolUse`` block takes; arguments that are
    not the JSON of an object travel wrapped (``{"_raw": text}``) rather than failing the
    whole conversation."""
    try:
        value = json.loads(arguments)
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {"_raw": arguments}


def _turn(message: ChatMessage) -> tuple[str, list[Block]]:
    """One message as (Converse role, content blocks). A plain message is one text block,
    as it always was; otherwise images follow the text, the assistant's tool calls follow
    its text (blank text blocks, which Converse refuses, are left out), and a tool result
    is a user turn's ``toolResult`` block."""
    if message.role == "tool":
        result = ([{"text": message.content}] if message.content else []) + \
            [_image_block(image) for image in message.images]
        return "user", [{"toolResult": {"toolUseId": wire_id(message.tool_call_id),
                                        "content": result, "status": "success"}}]
    if not message.images and not message.tool_calls:
        return message.role, [{"text": message.content}]
    blocks = [{"text": message.content}] if message.content else []
    blocks += [_image_block(image) for image in message.images]
    blocks += [{"toolUse": {"toolUseId": wire_id(call.id), "name": call.name,
                            "input": _tool_input(call.arguments)}}
               for call in message.tool_calls]
    return message.role, blocks


def _join(first: list[Block], second: list[Block]) -> list[Block]:
    """Two turns of one role as one: tool results first, tool calls last, and adjacent
    text blocks joined by a blank line — so two plain turns become the one text block
    they always did."""
    blocks = sorted(first + second, key=lambda block: _BLOCK_ORDER.get(next(iter(block)), 1))
    joined: list[Block] = []
    for block in blocks:
        if joined and "text" in block and "text" in joined[-1]:
            joined[-1] = {"text": joined[-1]["text"] + "\n\n" + block["text"]}
        else:
            joined.append(block)
    return joined


def alternate(messages: tuple[ChatMessage, ...]) -> list[dict[str, Any]]:
    """Converse (with Anthropic's and most models) requires alternating roles: runs of
    one role merge into one turn. Tool results are user turns, so consecutive results
    and the user text after them travel as one user turn."""
    return merge_turns(messages, _turn, _join)




def _tool_spec(name: str, description: str, schema: Any) -> Block:
    """A ``toolSpec`` (an empty description is left out: Converse wants it non-empty)."""
    spec: Block = {"name": name, "inputSchema": {"json": dict(schema)}}
    if description:
        spec["description"] = description
    return {"toolSpec": spec}


def _uses_tools(request: ProviderRequest) -> bool:
    return any(m.role == "tool" or m.tool_calls for m in request.messages)


def _declared_tools(request: ProviderRequest, json_tool: str, history: bool) -> list[Block]:
    """The caller's tools, then the JSON tool. Converse has no "none" choice, so "none"
    withholds the caller's tools — unless the conversation holds tool calls or results:
    Converse then requires a ``toolConfig``, so the tools stay (with choice "auto", or
    the JSON tool forced). A conversation that used tools but declares none now declares
    the tools it called, with any input."""
    none = request.tool_choice is not None and request.tool_choice.mode is ToolChoiceMode.NONE
    tools = [] if none and not history else [
        _tool_spec(t.name, t.description, t.parameters) for t in request.tools]
    if json_tool and request.response_format is not None:
        tools.append(_tool_spec(json_tool, JSON_TOOL_DESCRIPTION,
                                request.response_format.json_schema()))
    if not tools and history:
        tools = [_tool_spec(name, "", {"type": "object"})
                 for name in sorted(set(request.tool_names_by_call().values()))]
    return tools


def _tool_choice(request: ProviderRequest, json_tool: str) -> Block | None:
    """Our tool choice in Converse's form (None: leave it out — the API's default is
    auto). With a JSON tool a tool must be called: the caller's named one, else any when
    the caller's tools may be called (a call to theirs is a tool call, to ours the JSON
    answer), else ours. Converse has no parallel-calls knob."""
    choice = request.tool_choice
    mode = choice.mode if choice is not None else None
    if choice is not None and mode is ToolChoiceMode.TOOL:
        return {"tool": {"name": choice.name}}
    if json_tool:
        if request.tools and mode is not ToolChoiceMode.NONE:
            return {"any": {}}
        return {"tool": {"name": json_tool}}
    if mode is ToolChoiceMode.REQUIRED:
        return {"any": {}}
    if mode is ToolChoiceMode.AUTO or mode is ToolChoiceMode.NONE:
        # NONE reaches here only when the tools had to stay declared (tool history):
        # "auto" is the nearest Converse has.
        return {"auto": {}}
    return None


def tool_config(request: ProviderRequest) -> dict[str, Any] | None:
    """The ``toolConfig`` for ``request`` (None for a request without tools, a JSON
    response format or tool history)."""
    json_tool = json_tool_name(request)
    tools = _declared_tools(request, json_tool, _uses_tools(request))
    if not tools:
        return None
    config: dict[str, Any] = {"tools": tools}
    choice = _tool_choice(request, json_tool)
    if choice is not None:
        config["toolChoice"] = choice
    return config


def build_request(request: ProviderRequest) -> dict[str, Any]:
    """The Converse request (keyword arguments of ``converse`` / ``converse_stream``)."""
    kwargs: dict[str, Any] = {
        "modelId": request.model,
        "messages": alternate(request.messages),
    }
    if request.system:
        kwargs["system"] = [{"text": request.system}]
    inference: dict[str, Any] = {}
    inference.update(map_params(request.params, PARAMS))
    if inference:
        kwargs["inferenceConfig"] = inference
    config = tool_config(request)
    if config is not None:
        kwargs["toolConfig"] = config
    return kwargs


def map_usage(usage: dict[str, Any] | None) -> Usage:
    """Converse usage; ``inputTokens`` excludes cache reads/writes, ours includes them."""
    if not usage:
        return Usage()
    cached = usage.get("cacheReadInputTokens", 0) or 0
    written = usage.get("cacheWriteInputTokens", 0) or 0
    return Usage(input_tokens=(usage.get("inputTokens", 0) or 0) + cached + written,
                 output_tokens=usage.get("outputTokens", 0) or 0,
                 cached_input_tokens=cached, cache_write_tokens=written)


def classify(exc: BaseException) -> ProviderError:
    """Map a botocore exception to the taxonomy (the message never holds credentials).
    A refused connection (``EndpointConnectionError`` carrying ECONNREFUSED) is told
    apart first; a body that does not parse (botocore's ``ResponseParserError``, or the
    JSON errors of a cut body) is ``unavailable`` and retryable."""
    if (precise := transport_error(exc)) is not None:
        return precise
    if isinstance(exc, TimeoutError | boto_errors.ReadTimeoutError |
                  boto_errors.ConnectTimeoutError):
        return ProviderError(ErrorKind.TIMEOUT, READ_TIMEOUT)
    if isinstance(exc, boto_errors.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        vendor_message = str(error.get("Message", ""))[:MAX_ECHO_CHARS]
        kind = ERROR_CODES.get(code.lower())
        if status in (408, 504):  # a gateway timeout, whatever code the body names
            kind = ErrorKind.TIMEOUT
        if kind is None:
            kind = ErrorKind.UNAVAILABLE if (status or 500) >= 500 else ErrorKind.INVALID_REQUEST
        if kind is ErrorKind.INVALID_REQUEST and any(h in vendor_message.lower()
                                                     for h in _CONTEXT_HINTS):
            kind = ErrorKind.CONTEXT_TOO_LONG
        message = SAFE_MESSAGES.get(kind) or vendor_message or \
            f"the vendor rejected the request ({code or status})"
        return ProviderError(kind, message, status=status)
    if isinstance(exc, boto_errors.ParamValidationError):
        # botocore checked the request against the service model before sending it.
        return ProviderError(ErrorKind.INVALID_REQUEST, "the request does not fit Bedrock "
                             f"Converse: {bounded(exc.kwargs.get('report', ''))}")
    if isinstance(exc, boto_errors.NoCredentialsError | boto_errors.PartialCredentialsError):
        return ProviderError(ErrorKind.AUTH, "no AWS credentials were found")
    if isinstance(exc, ResponseParserError) or unreadable(exc) is not None:
        return ProviderError(ErrorKind.UNAVAILABLE, UNREADABLE_ANSWER)
    if isinstance(exc, boto_errors.BotoCoreError | urllib3_errors.HTTPError | OSError):
        return ProviderError(ErrorKind.UNAVAILABLE, CONNECTION_FAILED)
    raise exc


ERRORS = ErrorScope(classify)


def tool_arguments(value: Any) -> str:
    """A ``toolUse`` block's input as JSON text. Input that arrived as text (not an
    object, which the API never sends but a proxy might) is passed on as sent: the
    gateway checks arguments, the adapter does not fail on them."""
    return value if isinstance(value, str) else json.dumps(value)


def read_output(response: dict[str, Any], json_tool: str) -> Completion:
    """A unary answer: text blocks, and ``toolUse`` blocks as tool calls — except a call
    of the JSON tool, whose input is the answer's text (replacing any prose beside it, so
    the text is the JSON alone). "tool_use" is a tool-call finish only with a real call."""
    content = response["output"]["message"]["content"]
    texts: list[str] = []
    answers: list[str] = []
    calls: list[ToolCall] = []
    for position, block in enumerate(content):
        if "text" in block:
            texts.append(block["text"])
        elif (use := block.get("toolUse")) is not None:
            arguments = tool_arguments(use.get("input", {}))
            if json_tool and use.get("name") == json_tool:
                answers.append(arguments)
            else:
                calls.append(ToolCall(wire_id(str(use.get("toolUseId", "")),
                                              salt=str(position)),
                                      str(use.get("name", "")), arguments))
    finish = FINISH_REASONS.get(response.get("stopReason", ""), FinishReason.UNSPECIFIED)
    if finish is FinishReason.TOOL_CALLS and not calls:
        finish = FinishReason.STOP
    return Completion(text="".join(answers or texts), finish_reason=finish,
                      usage=map_usage(response.get("usage")), tool_calls=tuple(calls))




def _delta(index: int, delta: dict[str, Any], tools: StreamTools | None) -> StreamUpdate:
    """A ``contentBlockDelta``: text, or a piece of a call's input JSON text (the JSON
    tool's pieces are the answer's text)."""
    if (use := delta.get("toolUse")) is not None:
        return (tools or StreamTools()).piece(index, use.get("input", ""))
    return StreamUpdate(delta.get("text", ""))


def translate_event(event: dict[str, Any], usage: Usage,
                    tools: StreamTools | None = None) -> StreamUpdate:
    """One ConverseStream event (a dict keyed by its type) → text, tool-call pieces,
    finish or usage. ``tools`` is the stream's memory (see ``StreamTools``)."""
    if (delta := event.get("contentBlockDelta")) is not None:
        return _delta(delta.get("contentBlockIndex", 0), delta.get("delta", {}), tools)
    if (start := event.get("contentBlockStart")) is not None:
        use = start.get("start", {}).get("toolUse")
        if use is None:
            return NO_UPDATE
        return (tools or StreamTools()).start(start.get("contentBlockIndex", 0),
                                              str(use.get("toolUseId", "")),
                                              str(use.get("name", "")))
    if (stop := event.get("messageStop")) is not None:
        finish = FINISH_REASONS.get(stop.get("stopReason", ""), FinishReason.UNSPECIFIED)
        if finish is FinishReason.TOOL_CALLS and tools is not None and not tools.called:
            finish = FinishReason.STOP
        return StreamUpdate(finish=finish)
    if (metadata := event.get("metadata")) is not None:
        return StreamUpdate(usage=map_usage(metadata.get("usage")))
    return NO_UPDATE


class _CallHandle:
    """One blocking boto3 call's connection, so that a caller who leaves can cut it.

    The call's thread attaches the connection it is about to wait on (see
    ``_tracked_connections``); ``cancel`` — from the event loop's thread — shuts that
    socket down, which ends the blocked read at once and tells the vendor the caller left.
    A connection attached after ``cancel`` is cut on arrival."""

    __slots__ = ("_cancelled", "_connection", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connection: Any = None
        self._cancelled = False

    def attach(self, connection: Any) -> None:
        with self._lock:
            self._connection = connection
            cancelled = self._cancelled
        if cancelled:
            _cut(connection)

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            connection = self._connection
        if connection is not None:
            _cut(connection)


def _cut(connection: Any) -> None:
    sock = getattr(connection, "sock", None)
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed: nothing left to cut


def _tracked_connections(calls: threading.local) -> dict[str, type]:
    """HTTP(S) connection-pool classes whose connections attach themselves to the
    ``_CallHandle`` of the call running in the current thread (``calls.handle``) just
    before they wait for the response: the moment a cancelled call could block."""

    def tracked(base: type) -> type:
        def getresponse(self: Any, *args: Any, **kwargs: Any) -> Any:
            handle: _CallHandle | None = getattr(calls, "handle", None)
            if handle is not None:
                handle.attach(self)
            return base.getresponse(self, *args, **kwargs)

        return type(f"Tracked{base.__name__}", (base,), {"getresponse": getresponse})

    return {
        "http": type("TrackedHTTPPool", (AWSHTTPConnectionPool,),
                     {"ConnectionCls": tracked(AWSHTTPConnection)}),
        "https": type("TrackedHTTPSPool", (AWSHTTPSConnectionPool,),
                      {"ConnectionCls": tracked(AWSHTTPSConnection)}),
    }


def _close_if_stream(work: Future[Any]) -> None:
    """Done-callback of an abandoned call: an event stream that arrived after its caller
    left is closed at once (its connection is never left open)."""
    if work.cancelled() or work.exception() is not None:
        return
    result = work.result()
    if hasattr(result, "close"):
        result.close()


class _ThreadedEvents:
    """A ConverseStream response read one event per executor job, so a reader that stops
    (cancelled, or past its deadline) stops the reads at once. ``aclose`` first cuts the
    socket of a response still holding its connection (a thread blocked reading it would
    otherwise keep it open until the vendor's next byte), then closes the response: the
    vendor sees the disconnect at once. A response read to its end has already handed its
    connection back to the pool, and that connection is left alone."""

    def __init__(self, event_stream: Any, run: Callable[..., Awaitable[Any]]) -> None:
        self._stream = event_stream
        self._events = iter(event_stream)
        self._run = run

    def __aiter__(self) -> _ThreadedEvents:
        return self

    async def __anext__(self) -> dict[str, Any]:
        event = await self._run(next, self._events, _END)
        if event is _END:
            raise StopAsyncIteration
        return event

    async def aclose(self) -> None:
        raw = getattr(self._stream, "_raw_stream", None)  # botocore's urllib3 response
        connection = getattr(raw, "connection", None)
        if connection is not None:
            _cut(connection)
        self._stream.close()


class BedrockProvider:
    """Adapter for Bedrock Runtime in any number of regions."""

    def __init__(self, name: str, *, default_region: str, endpoint_url: str | None,
                 timeout_s: float, executor: Executor, max_connections: int,
                 credentials: tuple[str, str] | None = None,
                 regions: Collection[str] = ()) -> None:
        self.name = name
        self._default_region = default_region or "us-east-1"
        # The regions a request may name: the configured ones (default, failover, routes).
        self._regions = frozenset(regions) | {self._default_region}
        self._calls = threading.local()  # the _CallHandle of each executor thread's call
        self._endpoint_url = endpoint_url
        self._executor = executor
        self._config = Config(
            connect_timeout=min(5.0, timeout_s), read_timeout=timeout_s,
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=max_connections)
        self._credentials = credentials
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()  # clients are created in executor threads

    @property
    def default_region(self) -> str:
        return self._default_region

    def runtime_client(self, region: str) -> Any:
        """The region's bedrock-runtime client (blocking: call it in ``run_blocking``)."""
        return self._client(region)

    async def run_blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking boto3 call in this provider's bounded thread pool."""
        return await self._run(fn, *args)

    def check_region(self, region: str) -> str:
        """``region`` when it is configured for this provider; else ``invalid_request``
        (a request cannot make the gateway build clients for regions without bound)."""
        if region not in self._regions:
            raise ProviderError(ErrorKind.INVALID_REQUEST, f"region {bounded(region)!r} is not "
                                f"configured for provider {self.name!r}")
        return region

    def _client(self, region: str) -> Any:
        """The region's client, created once (creation reads the service model: slow),
        its connections tracked so a cancelled call can be cut (``_CallHandle``)."""
        self.check_region(region)
        with self._lock:
            client = self._clients.get(region)
            if client is None:
                key_id, secret = self._credentials or (None, None)
                session = boto3.session.Session(aws_access_key_id=key_id,
                                                aws_secret_access_key=secret)
                endpoint = self._endpoint_url.replace("{region}", region) \
                    if self._endpoint_url else None
                client = session.client("bedrock-runtime", region_name=region,
                                        endpoint_url=endpoint, config=self._config)
                http = getattr(client._endpoint, "http_session", None)
                pools = getattr(http, "_pool_classes_by_scheme", None)
                if isinstance(pools, dict):  # shared by botocore's pool managers
                    pools.update(_tracked_connections(self._calls))
                self._clients[region] = client
            return client

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A blocking vendor call in the thread pool that the caller can leave: cancelled
        (or timed out), its connection is cut at once and a late result closed."""
        handle = _CallHandle()
        work = self._executor.submit(self._tracked, handle, fn, *args)
        try:
            return await asyncio.wrap_future(work)
        except BaseException:
            handle.cancel()
            work.add_done_callback(_close_if_stream)
            raise

    def _tracked(self, handle: _CallHandle, fn: Callable[..., Any], *args: Any) -> Any:
        self._calls.handle = handle
        try:
            return fn(*args)
        finally:
            self._calls.handle = None

    def _converse(self, region: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        return self._client(region).converse(**kwargs)

    def _converse_stream(self, region: str, kwargs: dict[str, Any]) -> Any:
        return self._client(region).converse_stream(**kwargs)["stream"]

    async def generate(self, request: ProviderRequest, timeout_s: float) -> Completion:
        region = self.check_region(request.region or self._default_region)
        with ERRORS:
            async with asyncio.timeout(timeout_s):
                response = await self._call(self._converse, region, build_request(request))
        if "output" not in response or "stopReason" not in response:
            # botocore answers a body it cannot parse with just its metadata, no error:
            # an answer without Converse's required members is a cut or garbled body.
            raise ProviderError(ErrorKind.UNAVAILABLE, UNREADABLE_ANSWER)
        try:
            return read_output(response, json_tool_name(request))
        except (AttributeError, KeyError, TypeError) as exc:  # members of the wrong shape
            raise ProviderError(ErrorKind.UNAVAILABLE, UNREADABLE_ANSWER) from exc

    def stream(self, request: ProviderRequest, timeout_s: float) -> AsyncIterator[StreamEvent]:
        translate = partial(translate_event, tools=StreamTools(json_tool_name(request)))
        return drive_stream(partial(self._open_stream, request, timeout_s), translate, ERRORS)

    async def _open_stream(self, request: ProviderRequest, timeout_s: float) -> Upstream:
        """The region's ConverseStream, read in the thread pool, every read (and the
        opening call) bounded by this attempt's deadline."""
        region = self.check_region(request.region or self._default_region)
        deadline = asyncio.get_running_loop().time() + timeout_s
        async with asyncio.timeout_at(deadline):
            event_stream = await self._call(self._converse_stream, region,
                                            build_request(request))
        return DeadlineEvents(_ThreadedEvents(event_stream, self._run), deadline)

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            client.close()


class TitanEmbedder(VendorEmbedder[BedrockProvider]):
    """Amazon Titan text embeddings v2 on Bedrock (256, 512 or 1024 dimensions): one
    InvokeModel call per text, at most ``concurrency`` at once, in the provider's thread
    pool and through its region's client."""

    vendor = "bedrock"
    errors = ERRORS
    default_batch_size = 256

    def __init__(self, bedrock: BedrockProvider, *, model: str = "amazon.titan-embed-text-v2:0",
                 dimension: int = 1024, name: str | None = None, region: str = "",
                 concurrency: int = 8) -> None:
        super().__init__(bedrock, model=model, dimension=dimension, name=name)
        self._region = region or bedrock.default_region
        self._slots = asyncio.Semaphore(concurrency)

    def _invoke(self, text: str) -> list[float]:
        response = self._provider.runtime_client(self._region).invoke_model(
            modelId=self.model, contentType="application/json", accept="application/json",
            body=json.dumps({"inputText": text, "dimensions": self.dimension,
                             "normalize": True}))
        body: dict[str, Any] = json.loads(response["body"].read())
        return body["embedding"]

    async def _one(self, text: str) -> list[float]:
        async with self._slots:
            return await self._provider.run_blocking(self._invoke, text)

    async def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        return list(await asyncio.gather(*(self._one(text) for text in texts)))


__all__ = ["ERRORS", "BedrockProvider", "StreamTools", "TitanEmbedder", "build_request",
           "classify", "json_tool_name", "read_output", "tool_config", "translate_event"]
