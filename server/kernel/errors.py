"""Domain errors: what went wrong, in words the API promises, without importing grpc.

Handlers and interceptors turn a ``GatewayError`` into a gRPC status with
``google.rpc.Status`` details (see ``server/status.py``). Domain code raises these; it
never builds a status itself. ``reason`` is a name from ``ErrorReason`` in
``proto/llmgateway/v1/errors.proto`` without its prefix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Fault(Enum):
    """What kind of failure, in the domain's words. Only ``server/status.py`` knows which
    gRPC status code each becomes; domain code never thinks in transport codes."""

    INVALID_INPUT = "invalid_input"      # the request itself is wrong: fix it, don't retry
    NOT_FOUND = "not_found"              # no such object (or not the caller's to see)
    CONFLICT = "conflict"                # already exists / key used with another request
    REFUSED = "refused"                  # valid, but the current state forbids it (funds)
    EXHAUSTED = "exhausted"              # a limit or budget is used up for now
    UNAUTHENTICATED = "unauthenticated"  # who is calling is not proven
    FORBIDDEN = "forbidden"              # the caller may not do this
    UNAVAILABLE = "unavailable"          # a dependency failed: retrying may help
    ABORTED = "aborted"                  # lost a race with a concurrent change: retry
    OUT_OF_TIME = "out_of_time"          # the caller's deadline ran out
    BUG = "bug"                          # our fault: reported with a trace id only
    NOT_SUPPORTED = "not_supported"      # this gateway does not offer it


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

    code: Fault
    reason: str
    message: str
    violations: list[FieldViolation] = field(default_factory=list)
    retry_after_s: float | None = None
    quota_violations: list[QuotaViolation] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.code.name} {self.reason}: {self.message}"


def invalid_argument(violations: list[FieldViolation]) -> GatewayError:
    """INVALID_ARGUMENT naming every bad field (the message names the first ones)."""
    summary = "; ".join(f"{v.field}: {v.description}" for v in violations[:3])
    if len(violations) > 3:
        summary += f" (+{len(violations) - 3} more)"
    return GatewayError(Fault.INVALID_INPUT, "INVALID_ARGUMENT", summary, violations=violations)


def bad_field(field_path: str, description: str) -> GatewayError:
    return invalid_argument([FieldViolation(field_path, description)])
