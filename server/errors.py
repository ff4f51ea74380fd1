"""Domain errors: what went wrong, in words the API promises, without importing grpc.

Handlers and interceptors turn a ``GatewayError`` into a gRPC status with
``google.rpc.Status`` details (see ``server/status.py``). Domain code raises these; it
never builds a status itself. ``reason`` is a name from ``ErrorReason`` in
``proto/llmgateway/v1/errors.proto`` without its prefix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Code(Enum):
    """The gRPC status codes the API uses, by name (mapped to grpc.StatusCode at the edge)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAVAILABLE = "UNAVAILABLE"
    ABORTED = "ABORTED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    INTERNAL = "INTERNAL"
    UNIMPLEMENTED = "UNIMPLEMENTED"


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: a path like ``messages[0].role`` and what is expected."""

    field: str
    description: str


@dataclass(frozen=True)
class QuotaViolation:
    """Which limit was hit, for google.rpc.QuotaFailure."""

    subject: str
    description: str


@dataclass
class GatewayError(Exception):
    """An error the API reports to the caller, with everything its status details need."""

    code: Code
    reason: str
    message: str
    violations: list[FieldViolation] = field(default_factory=list)
    retry_after_s: float | None = None
    quota_violations: list[QuotaViolation] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.code.value} {self.reason}: {self.message}"


def invalid_argument(violations: list[FieldViolation]) -> GatewayError:
    """INVALID_ARGUMENT naming every bad field (the message names the first ones)."""
    summary = "; ".join(f"{v.field}: {v.description}" for v in violations[:3])
    if len(violations) > 3:
        summary += f" (+{len(violations) - 3} more)"
    return GatewayError(Code.INVALID_ARGUMENT, "INVALID_ARGUMENT", summary, violations=violations)


def bad_field(field_path: str, description: str) -> GatewayError:
    return invalid_argument([FieldViolation(field_path, description)])
