"""Outermost interceptor: trace context, RPC metrics, and domain errors → gRPC status.

It reads a W3C ``traceparent`` from the call's metadata (or starts a new trace), opens an
OpenTelemetry server span, publishes a ``CallContext`` for everything downstream, and
puts the trace id in the ``x-trace-id`` trailer of every call — including calls that auth
or the rate limiter reject, which is why it runs before them. It is also the one place
where a ``GatewayError`` becomes a status and an unexpected exception becomes INTERNAL
with the trace id (the stack trace goes to the log only) — unless it is the database
being away (``server/kernel/db/faults.py``): that is UNAVAILABLE, which clients retry,
and is not counted as an internal error.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from server.interceptors.wrapping import WrappingInterceptor
from server.kernel.call_context import CallContext, current_call, trace_trailers
from server.kernel.db.faults import dependency_fault
from server.kernel.errors import GatewayError
from server.kernel.metrics import Metrics
from server.status import GRPC_CODES, abort, internal_error

log = logging.getLogger("llmgw.rpc")
_PROPAGATOR = TraceContextTextMapPropagator()


def _carrier(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return {k: v for k, v in (context.invocation_metadata() or ()) if k in ("traceparent",
                                                                             "tracestate")}


class TracingInterceptor(WrappingInterceptor):
    """Trace, measure and map errors for every non-public RPC."""

    def __init__(self, tracer: trace.Tracer, metrics: Metrics) -> None:
        self._tracer = tracer
        self._metrics = metrics
        super().__init__()

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        short = self._metrics.known.methods.fold(method.rsplit("/", 1)[-1])
        latency = self._metrics.rpc_latency.labels(short)
        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                started = time.perf_counter()
                with self._span(method, context) as (call, span):
                    code = "OK"
                    try:
                        response = await inner(request, context)
                        context.set_trailing_metadata(trace_trailers(call))
                        return response
                    except Exception as exc:
                        error = answer_for(exc)
                        code = exc_code(error, context)
                        await self._fail(error, context, call, span, raised=exc)
                        raise
                    except asyncio.CancelledError:
                        code = "CANCELLED"
                        raise
                    finally:
                        self._metrics.child(self._metrics.rpc_total, short, code).inc()
                        latency.observe(time.perf_counter() - started)

            return grpc.unary_unary_rpc_method_handler(
                unary, handler.request_deserializer, handler.response_serializer)

        inner_stream = handler.unary_stream
        if inner_stream is None:  # no client-streaming RPCs in this API
            return handler

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started = time.perf_counter()
            with self._span(method, context) as (call, span):
                code = "OK"
                try:
                    async for item in inner_stream(request, context):
                        yield item
                    context.set_trailing_metadata(trace_trailers(call))
                except Exception as exc:
                    error = answer_for(exc)
                    code = exc_code(error, context)
                    await self._fail(error, context, call, span, raised=exc)
                    raise
                except (asyncio.CancelledError, GeneratorExit):
                    code = "CANCELLED"
                    raise
                finally:
                    self._metrics.child(self._metrics.rpc_total, short, code).inc()
                    latency.observe(time.perf_counter() - started)

        return grpc.unary_stream_rpc_method_handler(
            stream, handler.request_deserializer, handler.response_serializer)

    def _span(self, method: str, context: grpc.aio.ServicerContext) -> _CallSpan:
        return _CallSpan(self._tracer, method, context)

    async def _fail(self, exc: Exception, context: grpc.aio.ServicerContext,
                    call: CallContext, span: trace.Span, raised: Exception) -> None:
        """End the call with ``exc``'s status (``answer_for(raised)``). Aborting raises
        AbortError, which grpc expects; an AbortError raised by the handler itself is left
        as it is."""
        if isinstance(exc, grpc.aio.AbortError):
            return
        if isinstance(exc, GatewayError):
            if exc is not raised:  # the database is away: worth a line, not a stack trace
                log.warning("%s answered %s: %s: %s", call.method, exc.reason,
                            type(raised).__name__, raised, extra={"trace_id": call.trace_id})
            span.set_status(Status(StatusCode.ERROR, exc.reason))
            await abort(context, exc, call)
        self._metrics.internal_errors.labels(
            self._metrics.known.methods.fold(call.method.rsplit("/", 1)[-1])).inc()
        log.exception("unhandled error in %s", call.method, extra={"trace_id": call.trace_id})
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, "internal"))
        await abort(context, internal_error(call), call)


def answer_for(exc: Exception) -> Exception:
    """``exc``, or the UNAVAILABLE ``GatewayError`` it stands for when it is the database
    being away rather than a bug."""
    if isinstance(exc, (GatewayError, grpc.aio.AbortError)):
        return exc
    return dependency_fault(exc) or exc


def exc_code(exc: Exception, context: grpc.aio.ServicerContext) -> str:
    """The status code name a failed call ends with, for the RPC metric."""
    if isinstance(exc, GatewayError):
        return GRPC_CODES[exc.code].name
    if isinstance(exc, grpc.aio.AbortError):
        code = context.code()
        return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
    return "INTERNAL"


class _CallSpan:
    """Context manager: server span + CallContext published for the call's task.

    With no exporter configured the tracer is a NoOpTracer: then no span objects are
    built (they would go nowhere), but the call still continues the caller's W3C trace id,
    or gets a fresh random one, so ids in responses, trailers and logs stay meaningful.
    """

    __slots__ = ("_context", "_method", "_span_cm", "_token", "_tracer")

    def __init__(self, tracer: trace.Tracer, method: str, context: grpc.aio.ServicerContext):
        self._tracer, self._method, self._context = tracer, method, context
        self._span_cm: Any = None

    def __enter__(self) -> tuple[CallContext, trace.Span]:
        parent = _PROPAGATOR.extract(_carrier(self._context))
        if isinstance(self._tracer, trace.NoOpTracer):
            span: trace.Span = trace.INVALID_SPAN
            caller = trace.get_current_span(parent).get_span_context()
            trace_id_int = caller.trace_id if caller.is_valid else random.getrandbits(128) or 1
        else:
            self._span_cm = self._tracer.start_as_current_span(
                self._method, context=parent, kind=SpanKind.SERVER, record_exception=False,
                set_status_on_exception=False)
            span = self._span_cm.__enter__()
            trace_id_int = span.get_span_context().trace_id
        call = CallContext(method=self._method, trace_id=format(trace_id_int, "032x"))
        self._token = current_call.set(call)
        return call, span

    def __exit__(self, *exc: object) -> None:
        try:
            current_call.reset(self._token)
        except ValueError:  # a stream closed from another context (e.g. on cancellation)
            pass
        if self._span_cm is not None:
            self._span_cm.__exit__(None, None, None)
