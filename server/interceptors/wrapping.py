"""Wrap a gRPC method handler's behaviour, keeping its kind and (de)serializers.

grpc.aio interceptors only see the handler, not the call, so per-call logic (reading the
request, writing trailers) means building a new handler around the old behaviour. The
wrapped handler is built once per method and cached: the per-call cost is one extra
coroutine frame.
"""

from __future__ import annotations

from abc import abstractmethod

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

# A hook run before the behaviour: (request, context) -> None; it raises to refuse.
Before = Callable[[Any, grpc.aio.ServicerContext], Awaitable[None]]

PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def is_public(method: str) -> bool:
    """Health and reflection need no token and are not rate limited."""
    return method.startswith(PUBLIC_PREFIXES)


def wrap_before(handler: grpc.RpcMethodHandler, before: Before) -> grpc.RpcMethodHandler:
    """A handler that awaits ``before(request, context)`` and then runs the original."""
    if handler.unary_unary:
        inner_uu = handler.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await before(request, context)
            return await inner_uu(request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary_unary, handler.request_deserializer, handler.response_serializer)
    if handler.unary_stream:
        inner_us = handler.unary_stream

        async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            await before(request, context)
            async for item in inner_us(request, context):
                yield item

        return grpc.unary_stream_rpc_method_handler(
            unary_stream, handler.request_deserializer, handler.response_serializer)
    # Client-streaming methods: the request is an iterator; hooks see None.
    if handler.stream_unary:
        inner_su = handler.stream_unary

        async def stream_unary(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            await before(None, context)
            return await inner_su(requests, context)

        return grpc.stream_unary_rpc_method_handler(
            stream_unary, handler.request_deserializer, handler.response_serializer)
    inner_ss = handler.stream_stream

    async def stream_stream(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        await before(None, context)
        async for item in inner_ss(requests, context):
            yield item

    return grpc.stream_stream_rpc_method_handler(
        stream_stream, handler.request_deserializer, handler.response_serializer)


class HandlerCache:
    """Wrapped handlers by method name, built on first use."""

    def __init__(self, build: Callable[[str, grpc.RpcMethodHandler], grpc.RpcMethodHandler]):
        self._build = build
        self._wrapped: dict[tuple[str, int], grpc.RpcMethodHandler] = {}

    def get(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        key = (method, id(handler))
        wrapped = self._wrapped.get(key)
        if wrapped is None:
            wrapped = self._wrapped[key] = self._build(method, handler)
        return wrapped


class WrappingInterceptor(grpc.aio.ServerInterceptor):
    """Base of our interceptors: each non-public method's handler is wrapped once by
    ``_wrap`` (cached); health and reflection pass through untouched."""

    def __init__(self) -> None:
        self._cache = HandlerCache(self._wrap)

    def _active(self) -> bool:
        """False: this interceptor has nothing to do at all (e.g. no rules configured)."""
        return True

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or is_public(method) or not self._active():
            return handler
        return self._cache.get(method, handler)

    @abstractmethod
    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """``handler`` with this interceptor's work around it (each interceptor's module)."""
