"""A cap on the streams one caller (JWT subject) holds open at once.

Why: a stream holds a vendor connection and memory for its whole length, and request
rate limits do not bound how many a caller keeps open. One caller opening thousands of
slow streams would take the capacity (``server.max_concurrent_streams``, the providers'
``max_connections``) from everyone else. Over the cap, a new stream is refused with
RESOURCE_EXHAUSTED, reason RATE_LIMITED (metadata ``rule: max_streams_per_caller``).

The count map holds only subjects with a stream open right now (an entry is dropped when
its count returns to zero), so it is bounded by the server's concurrent streams.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from server.interceptors.wrapping import WrappingInterceptor
from server.kernel.call_context import current_call
from server.kernel.errors import Fault, GatewayError, QuotaViolation
from server.kernel.metrics import Metrics

RULE = "max_streams_per_caller"


class StreamsPerCaller:
    """Open-stream counts per subject; ``acquire`` refuses above ``limit``."""

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError("limit must be positive")
        self.limit = limit
        self._open: dict[str, int] = {}

    def acquire(self, subject: str) -> bool:
        held = self._open.get(subject, 0)
        if held >= self.limit:
            return False
        self._open[subject] = held + 1
        return True

    def release(self, subject: str) -> None:
        held = self._open.get(subject, 0) - 1
        if held > 0:
            self._open[subject] = held
        else:
            self._open.pop(subject, None)

    def __len__(self) -> int:
        """Subjects with at least one stream open."""
        return len(self._open)


class StreamLimitInterceptor(WrappingInterceptor):
    """Enforce ``StreamsPerCaller`` on server-streaming RPCs (runs after auth)."""

    def __init__(self, streams: StreamsPerCaller, metrics: Metrics) -> None:
        super().__init__()
        self._streams = streams
        self._metrics = metrics

    def _wrap(self, _method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        inner = handler.unary_stream
        if inner is None:  # unary calls hold nothing open
            return handler
        streams = self._streams

        async def limited(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            call = current_call.get()
            subject = call.subject if call else "anonymous"
            if not streams.acquire(subject):
                self._metrics.rate_limited.labels(RULE).inc()
                raise _refusal(subject, streams.limit)
            try:
                async for item in inner(request, context):
                    yield item
            finally:
                streams.release(subject)

        return grpc.unary_stream_rpc_method_handler(
            limited, handler.request_deserializer, handler.response_serializer)


def _refusal(subject: str, limit: int) -> GatewayError:
    return GatewayError(
        Fault.EXHAUSTED, "RATE_LIMITED",
        f"too many concurrent streams: at most {limit} per caller; retry when one ends",
        retry_after_s=1.0,
        quota_violations=[QuotaViolation(f"service:{subject}", f"{RULE}: {limit}")],
        metadata={"rule": RULE})
