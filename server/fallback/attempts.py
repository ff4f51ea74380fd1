"""The record of what the router tried, reported in every response and error."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from server.fallback.chain import Target


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILED = "failed"
    SKIPPED_CIRCUIT_OPEN = "skipped_circuit_open"
    SKIPPED_DEADLINE = "skipped_deadline"
    SKIPPED_UNSUPPORTED = "skipped_unsupported"


@dataclass(frozen=True)
class Attempt:
    target: Target
    outcome: Outcome
    latency_s: float = 0.0
    retry: int = 0
    error_kind: str = ""
    error_message: str = ""


def describe(attempts: list[Attempt]) -> dict[str, str]:
    """Attempts as ErrorInfo metadata: ``attempt.0`` → ``simulator/sim-chat: unavailable``."""
    return {
        f"attempt.{i}": f"{a.target}: {a.error_kind or a.outcome.value}"
        + (f" ({a.error_message})" if a.error_message else "")
        for i, a in enumerate(attempts[:20])
    }
