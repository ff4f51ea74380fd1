"""Typed exceptions built from a gRPC status and its `google.rpc` details.

The gateway reports every failure as a gRPC code plus a `google.rpc.Status` in the
`grpc-status-details-bin` trailer carrying `ErrorInfo` (a stable `reason` such as
"INSUFFICIENT_FUNDS"), and where relevant `BadRequest`, `RetryInfo` or `QuotaFailure`.
Callers branch on the exception class and `reason`, never on the message text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from .metadata import (
    RETRY_AFTER_KEY,
    STATUS_DETAILS_KEY,
    TRACE_ID_KEY,
    MetadataPairs,
    first_text,
    first_value,
)

__all__ = [
    "Aborted",
    "AlreadyExists",
    "BudgetExceeded",
    "Cancelled",
    "DeadlineExceeded",
    "FailedPrecondition",
    "GatewayError",
    "InsufficientFunds",
    "InternalError",
    "InvalidArgument",
    "InvalidOutput",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "UnsupportedCapability",
    "error_from_rpc_error",
    "error_from_status",
]


class GatewayError(Exception):
    """A failed gateway call.

    Attributes:
        code: the gRPC status code.
        message: the human message (safe to log; never a secret).
        reason: `ErrorInfo.reason`, e.g. "INSUFFICIENT_FUNDS"; empty when the status had none.
        domain: `ErrorInfo.domain` ("llmgateway.v1" for the gateway's own errors).
        error_metadata: `ErrorInfo.metadata`, e.g. {"scope": "generate"}.
        field_violations: `(field, description)` pairs from `google.rpc.BadRequest`.
        quota_violations: `(subject, description)` pairs from `google.rpc.QuotaFailure`.
        retry_after_s: from `google.rpc.RetryInfo` (or the `retry-after` trailer).
        trace_id: the `x-trace-id` trailer, to quote when reporting a problem.
        status: the whole `google.rpc.Status`, when the server sent one.
    """

    default_code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        reason: str = "",
        domain: str = "",
        error_metadata: Mapping[str, str] | None = None,
        field_violations: list[tuple[str, str]] | None = None,
        quota_violations: list[tuple[str, str]] | None = None,
        retry_after_s: float | None = None,
        trace_id: str = "",
        status: status_pb2.Status | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code if code is not None else self.default_code
        self.message = message
        self.reason = reason
        self.domain = domain
        self.error_metadata = dict(error_metadata or {})
        self.field_violations = list(field_violations or [])
        self.quota_violations = list(quota_violations or [])
        self.retry_after_s = retry_after_s
        self.trace_id = trace_id
        self.status = status

    def __str__(self) -> str:
        text = f"{self.code.name}: {self.message}"
        if self.reason:
            text += f" [reason={self.reason}]"
        if self.field_violations:
            text += " " + "; ".join(f"{field}: {desc}" for field, desc in self.field_violations)
        if self.trace_id:
            text += f" (trace_id={self.trace_id})"
        return text


class InvalidArgument(GatewayError):
    default_code = grpc.StatusCode.INVALID_ARGUMENT


class Unauthenticated(GatewayError):
    default_code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(GatewayError):
    default_code = grpc.StatusCode.PERMISSION_DENIED


class NotFound(GatewayError):
    default_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(GatewayError):
    default_code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(GatewayError):
    default_code = grpc.StatusCode.FAILED_PRECONDITION


class InsufficientFunds(FailedPrecondition):
    """FAILED_PRECONDITION with reason INSUFFICIENT_FUNDS: the wallet cannot cover the cost."""


class InvalidOutput(FailedPrecondition):
    """FAILED_PRECONDITION with reason INVALID_OUTPUT: no target answered in the form asked
    for (JSON or tool calls), or a stream's answer turned out invalid at its end (then it
    is not charged). The gateway already retried and fell back, so the client does not.
    """


class UnsupportedCapability(FailedPrecondition):
    """FAILED_PRECONDITION with reason UNSUPPORTED_CAPABILITY: no target of the model's chain
    has what the request needs; `error_metadata["capability"]` names it ("tools", "json"
    or "images"). Choose another model (see `ModelInfo.capabilities`)."""


class ResourceExhausted(GatewayError):
    default_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class RateLimited(ResourceExhausted):
    """RESOURCE_EXHAUSTED with reason RATE_LIMITED; `retry_after_s` says when to try again."""


class BudgetExceeded(ResourceExhausted):
    """RESOURCE_EXHAUSTED with reason BUDGET_EXCEEDED: a daily or monthly budget is spent."""


class Unavailable(GatewayError):
    """UNAVAILABLE: the only code the client retries (all targets failed, shutting down …)."""

    default_code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(GatewayError):
    default_code = grpc.StatusCode.DEADLINE_EXCEEDED


class Aborted(GatewayError):
    default_code = grpc.StatusCode.ABORTED


class Cancelled(GatewayError):
    default_code = grpc.StatusCode.CANCELLED


class Unimplemented(GatewayError):
    default_code = grpc.StatusCode.UNIMPLEMENTED


class InternalError(GatewayError):
    default_code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[GatewayError]] = {
    cls.default_code: cls
    for cls in (
        InvalidArgument,
        Unauthenticated,
        PermissionDenied,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        ResourceExhausted,
        Unavailable,
        DeadlineExceeded,
        Aborted,
        Cancelled,
        Unimplemented,
        InternalError,
    )
}

# Reasons that deserve their own class because callers handle them differently from the
# rest of their code (top up the wallet; slow down; fix the output form; pick another model).
_BY_REASON: dict[tuple[grpc.StatusCode, str], type[GatewayError]] = {
    (grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS"): InsufficientFunds,
    (grpc.StatusCode.FAILED_PRECONDITION, "INVALID_OUTPUT"): InvalidOutput,
    (grpc.StatusCode.FAILED_PRECONDITION, "UNSUPPORTED_CAPABILITY"): UnsupportedCapability,
    (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED"): RateLimited,
    (grpc.StatusCode.RESOURCE_EXHAUSTED, "BUDGET_EXCEEDED"): BudgetExceeded,
}


def error_from_status(
    code: grpc.StatusCode, message: str | None, trailers: MetadataPairs | None
) -> GatewayError:
    """Build the typed error for a status code, its message and the call's trailers."""
    trailer_pairs = list(trailers) if trailers is not None else []
    status = _rich_status(trailer_pairs)
    fields: dict[str, Any] = {
        "reason": "",
        "domain": "",
        "error_metadata": {},
        "field_violations": [],
        "quota_violations": [],
        "retry_after_s": None,
    }
    if status is not None:
        _read_details(status, fields)
    if fields["retry_after_s"] is None:
        fields["retry_after_s"] = _retry_after_header(trailer_pairs)
    text = message or (status.message if status is not None else "") or code.name
    cls = _BY_REASON.get((code, fields["reason"])) or _BY_CODE.get(code, GatewayError)
    return cls(
        text,
        code=code,
        trace_id=first_text(trailer_pairs, TRACE_ID_KEY),
        status=status,
        **fields,
    )


def error_from_rpc_error(error: grpc.RpcError) -> GatewayError:
    """Translate a failed call (sync `grpc.RpcError` or `grpc.aio.AioRpcError`)."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    trailers = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    return error_from_status(code or grpc.StatusCode.UNKNOWN, details, trailers)


def _rich_status(trailers: MetadataPairs) -> status_pb2.Status | None:
    raw = first_value(trailers, STATUS_DETAILS_KEY)
    if not isinstance(raw, bytes):
        return None
    try:
        return status_pb2.Status.FromString(raw)
    except DecodeError:
        return None  # a garbled trailer must not hide the status code itself


def _read_details(status: status_pb2.Status, fields: dict[str, Any]) -> None:
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            fields["reason"] = info.reason
            fields["domain"] = info.domain
            fields["error_metadata"] = dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            fields["field_violations"].extend(
                (violation.field, violation.description)
                for violation in bad_request.field_violations
            )
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry_info = error_details_pb2.RetryInfo()
            detail.Unpack(retry_info)
            fields["retry_after_s"] = retry_info.retry_delay.ToTimedelta().total_seconds()
        elif detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
            quota = error_details_pb2.QuotaFailure()
            detail.Unpack(quota)
            fields["quota_violations"].extend(
                (violation.subject, violation.description) for violation in quota.violations
            )


def _retry_after_header(trailers: MetadataPairs) -> float | None:
    value = first_text(trailers, RETRY_AFTER_KEY)
    try:
        return float(value) if value else None
    except ValueError:
        return None
