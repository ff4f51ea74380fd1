"""Turn domain errors into gRPC statuses with ``google.rpc.Status`` details.

This is the only place where ``GatewayError`` meets grpc: ErrorInfo (domain
``llmgateway.v1``, a stable reason), BadRequest field violations, RetryInfo and
QuotaFailure go into the ``grpc-status-details-bin`` trailer, so any language's
status-details helper can read them.
"""

from __future__ import annotations

import logging
import re

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from server.kernel.call_context import CallContext, trace_trailers
from server.kernel.errors import Fault, GatewayError

DOMAIN = "llmgateway.v1"
log = logging.getLogger(__name__)

# Messages quote callers' values; a caller must not be able to make an error (or the logs
# and dashboards that show it) as large as their request. Echoed runs are cut to ECHO_CHARS.
ECHO_CHARS = 64
MAX_MESSAGE_CHARS = 1024
MAX_METADATA_CHARS = 128
_LONG_QUOTED = re.compile(rf"'([^'\n]{{{ECHO_CHARS}}})[^'\n]+'|\"([^\"\n]{{{ECHO_CHARS}}})[^\"\n]+\"")
_LONG_RUN = re.compile(rf"([^\s'\"…]{{{ECHO_CHARS}}})[^\s'\"…]+")


def bounded(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` with every quoted value or unbroken run over ECHO_CHARS cut to ECHO_CHARS
    + "…", and at most ``limit`` characters in all."""
    if len(text) <= ECHO_CHARS:
        return text
    text = _LONG_QUOTED.sub(lambda m: f"'{m.group(1) or m.group(2)}…'", text)
    text = _LONG_RUN.sub(lambda m: m.group(1) + "…", text)
    return text if len(text) <= limit else text[:limit] + "…"


def _capped(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[:limit] + "…"

# The one mapping from the domain's kinds of failure to gRPC status codes.
GRPC_CODES: dict[Fault, grpc.StatusCode] = {
    Fault.INVALID_INPUT: grpc.StatusCode.INVALID_ARGUMENT,
    Fault.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Fault.CONFLICT: grpc.StatusCode.ALREADY_EXISTS,
    Fault.REFUSED: grpc.StatusCode.FAILED_PRECONDITION,
    Fault.EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Fault.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Fault.FORBIDDEN: grpc.StatusCode.PERMISSION_DENIED,
    Fault.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Fault.ABORTED: grpc.StatusCode.ABORTED,
    Fault.OUT_OF_TIME: grpc.StatusCode.DEADLINE_EXCEEDED,
    Fault.BUG: grpc.StatusCode.INTERNAL,
    Fault.NOT_SUPPORTED: grpc.StatusCode.UNIMPLEMENTED,
}


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def to_status_details(error: GatewayError) -> status_pb2.Status:
    """Build the google.rpc.Status for ``error``."""
    details = [
        _pack(error_details_pb2.ErrorInfo(
            reason=error.reason, domain=DOMAIN,
            metadata={k: _capped(v, MAX_METADATA_CHARS) for k, v in error.metadata.items()}))
    ]
    if error.violations:
        details.append(_pack(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=_capped(v.field, 256),
                                                        description=bounded(v.description, 512))
            for v in error.violations
        ])))
    if error.retry_after_s is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(error.retry_after_s * 1e9))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    if error.quota_violations:
        details.append(_pack(error_details_pb2.QuotaFailure(violations=[
            error_details_pb2.QuotaFailure.Violation(subject=q.subject, description=q.description)
            for q in error.quota_violations
        ])))
    return status_pb2.Status(code=getattr(code_pb2, GRPC_CODES[error.code].name),
                             message=bounded(error.message), details=details)


def error_trailers(error: GatewayError, call: CallContext | None) -> tuple[tuple[str, str | bytes], ...]:
    """Trailing metadata for a failed call: status details, trace id, retry-after."""
    trailers: list[tuple[str, str | bytes]] = [
        ("grpc-status-details-bin", to_status_details(error).SerializeToString()),
        *trace_trailers(call),
    ]
    if error.retry_after_s is not None:
        trailers.append(("retry-after", str(max(1, round(error.retry_after_s)))))
    return tuple(trailers)


async def abort(context: grpc.aio.ServicerContext, error: GatewayError,
                call: CallContext | None) -> None:
    """End the call with ``error``'s status (raises, as grpc's abort does)."""
    await context.abort(GRPC_CODES[error.code], bounded(error.message),
                        error_trailers(error, call))


def internal_error(call: CallContext | None) -> GatewayError:
    """What a caller sees for a bug: no stack trace, only the trace id to quote."""
    trace = call.trace_id if call else "unknown"
    return GatewayError(Fault.BUG, "INTERNAL",
                        f"internal error; quote trace id {trace} when reporting it")
