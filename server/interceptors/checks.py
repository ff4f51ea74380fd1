"""Innermost interceptor: decode safely and check every request before its handler.

It gives each of our RPCs a deserializer that never raises (so undecodable bytes become
INVALID_ARGUMENT "the request could not be decoded as <Message>", not grpc's UNKNOWN with
a Python exception in it) and runs ``server.request_checks`` on every decoded request:
NUL bytes, lengths, counts, Timestamp/Duration ranges, finite numbers, known enum values.
Health and reflection are left alone. Being innermost, it runs after auth: an
unauthenticated caller learns nothing about what a valid request looks like.
"""

from __future__ import annotations

from typing import Any

import grpc

from server.interceptors.wrapping import WrappingInterceptor, wrap_before
from server.request_checks import RequestChecker, Undecodable, safe_deserializer, undecodable_error


class RequestChecksInterceptor(WrappingInterceptor):
    """Refuse undecodable or structurally bad requests with one INVALID_ARGUMENT."""

    def __init__(self, checker: RequestChecker | None = None) -> None:
        self._checker = checker or RequestChecker()
        super().__init__()

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        # Generated handlers deserialize with ``<Message>.FromString``, bound to the class.
        message_class = getattr(handler.request_deserializer, "__self__", None)
        if message_class is None or not hasattr(message_class, "DESCRIPTOR"):
            return handler
        check = self._checker.check

        async def before(request: Any, _context: grpc.aio.ServicerContext) -> None:
            if isinstance(request, Undecodable):
                raise undecodable_error(request)
            if request is not None:
                check(request)

        wrapped = wrap_before(handler, before)
        return wrapped._replace(request_deserializer=safe_deserializer(message_class))  # type: ignore[attr-defined]
