"""AWS Bedrock Runtime (Converse / ConverseStream, Titan embeddings through InvokeModel)
through ``boto3``, one client per region.

Why the shape: boto3 is blocking, so every call (and every read of the response's event
stream) runs in a bounded thread pool passed in by the caller, never on the event loop;
the pool's size caps how many Bedrock calls are in flight. A stream is read one event
per executor job, so a caller that stops reading (cancels, or the router's deadline
passes) stops the reads at once, and closing the iterator closes the HTTP response from
the consumer side. A blocking unary call cannot be interrupted once sent: a cancelled
one is abandoned (its result discarded) and ends at the client's read timeout.

Clients are cached per region (each region is a separate target to the router) and use
the standard AWS credential chain (environment, profile, instance role) unless explicit
credentials are passed in. botocore's retries are off: retrying is the router's decision.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor
from functools import partial
from typing import Any

import boto3
import botocore.exceptions as boto_errors
import urllib3.exceptions as urllib3_errors
from botocore.config import Config

from server.providers.base import (
    NO_UPDATE,
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
    drive_stream,
    map_params,
)
from server.providers.messages import merge_consecutive_roles

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
    "tool_use": FinishReason.STOP,
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


def build_request(request: ProviderRequest) -> dict[str, Any]:
    """The Converse request (keyword arguments of ``converse`` / ``converse_stream``)."""
    kwargs: dict[str, Any] = {
        "modelId": request.model,
        "messages": [{"role": m.role, "content": [{"text": m.content}]}
                     for m in merge_consecutive_roles(request.messages)],
    }
    if request.system:
        kwargs["system"] = [{"text": request.system}]
    inference: dict[str, Any] = {}
    inference.update(map_params(request.params, PARAMS))
    if inference:
        kwargs["inferenceConfig"] = inference
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
    """Map a botocore exception to the taxonomy (the message never holds credentials)."""
    if isinstance(exc, TimeoutError | boto_errors.ReadTimeoutError |
                  boto_errors.ConnectTimeoutError):
        return ProviderError(ErrorKind.TIMEOUT, "the vendor did not answer in time")
    if isinstance(exc, boto_errors.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        vendor_message = str(error.get("Message", ""))[:300]
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
    if isinstance(exc, boto_errors.NoCredentialsError | boto_errors.PartialCredentialsError):
        return ProviderError(ErrorKind.AUTH, "no AWS credentials were found")
    if isinstance(exc, boto_errors.BotoCoreError | urllib3_errors.HTTPError | OSError):
        return ProviderError(ErrorKind.UNAVAILABLE, "connection to the vendor failed")
    raise exc


ERRORS = ErrorScope(classify)


def translate_event(event: dict[str, Any], usage: Usage) -> StreamUpdate:
    """One ConverseStream event (a dict keyed by its type) → text, finish or usage."""
    if (delta := event.get("contentBlockDelta")) is not None:
        return StreamUpdate(delta.get("delta", {}).get("text", ""))
    if (stop := event.get("messageStop")) is not None:
        return StreamUpdate(finish=FINISH_REASONS.get(stop.get("stopReason", ""),
                                                      FinishReason.UNSPECIFIED))
    if (metadata := event.get("metadata")) is not None:
        return StreamUpdate(usage=map_usage(metadata.get("usage")))
    return NO_UPDATE


class _ThreadedEvents:
    """A ConverseStream response read one event per executor job, so a reader that stops
    (cancelled, or past its deadline) stops the reads at once. ``aclose`` closes the HTTP
    response from the consumer side: the vendor sees the disconnect even while an executor
    thread is blocked reading it."""

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
        self._stream.close()


class BedrockProvider:
    """Adapter for Bedrock Runtime in any number of regions."""

    def __init__(self, name: str, *, default_region: str, endpoint_url: str | None,
                 timeout_s: float, executor: Executor, max_connections: int,
                 credentials: tuple[str, str] | None = None) -> None:
        self.name = name
        self._default_region = default_region or "us-east-1"
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

    def _client(self, region: str) -> Any:
        """The region's client, created once (creation reads the service model: slow)."""
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
                self._clients[region] = client
            return client

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _converse(self, region: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        return self._client(region).converse(**kwargs)

    def _converse_stream(self, region: str, kwargs: dict[str, Any]) -> Any:
        return self._client(region).converse_stream(**kwargs)["stream"]

    async def generate(self, request: ProviderRequest, timeout_s: float) -> Completion:
        region = request.region or self._default_region
        with ERRORS:
            async with asyncio.timeout(timeout_s):
                response = await self._run(self._converse, region, build_request(request))
        content = response.get("output", {}).get("message", {}).get("content", [])
        text = "".join(block.get("text", "") for block in content)
        finish = FINISH_REASONS.get(response.get("stopReason", ""), FinishReason.UNSPECIFIED)
        return Completion(text=text, finish_reason=finish, usage=map_usage(response.get("usage")))

    def stream(self, request: ProviderRequest, timeout_s: float) -> AsyncIterator[StreamEvent]:
        return drive_stream(partial(self._open_stream, request, timeout_s), translate_event,
                            ERRORS)

    async def _open_stream(self, request: ProviderRequest, timeout_s: float) -> Upstream:
        """The region's ConverseStream, read in the thread pool, every read (and the
        opening call) bounded by this attempt's deadline."""
        region = request.region or self._default_region
        deadline = asyncio.get_running_loop().time() + timeout_s
        async with asyncio.timeout_at(deadline):
            event_stream = await self._run(self._converse_stream, region,
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


__all__ = ["ERRORS", "BedrockProvider", "TitanEmbedder", "build_request", "classify",
           "translate_event"]
