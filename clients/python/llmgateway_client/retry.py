"""When to retry a call, and how long to wait: shared by the async and the sync client.

Only UNAVAILABLE is retried: it means the request was not served (no target answered,
the server is shutting down, the connection failed), so trying again cannot do anything
twice that the gateway's idempotency keys do not already cover. Every other code is the
caller's to handle. Waits use exponential backoff with full jitter (a uniformly random
wait up to the exponential cap) so that many clients do not retry in lockstep, and all
attempts of one call share one deadline: a wait that would end past it is not started.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from .errors import DeadlineExceeded, GatewayError, Unavailable

__all__ = ["Backoff", "RetryPlan", "full_jitter"]


def full_jitter(cap_s: float) -> float:
    """A uniformly random wait in [0, cap_s]."""
    return random.uniform(0.0, cap_s)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: retry n (from 0) waits `jitter(min(max_s, initial_s * multiplier**n))`.

    The default jitter is full jitter; tests pass `jitter=lambda cap: cap` for exact waits.
    """

    initial_s: float = 0.2
    max_s: float = 5.0
    multiplier: float = 2.0
    jitter: Callable[[float], float] = full_jitter

    def delay_s(self, retry: int) -> float:
        return self.jitter(min(self.max_s, self.initial_s * self.multiplier**retry))


class RetryPlan:
    """The retry budget of one call: at most `max_retries` retries, all before one deadline."""

    def __init__(
        self,
        *,
        timeout_s: float,
        max_retries: int,
        backoff: Backoff,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._deadline = clock() + timeout_s
        self._max_retries = max_retries
        self._backoff = backoff
        self.retries = 0

    def remaining_s(self) -> float:
        return self._deadline - self._clock()

    def attempt_timeout_s(self) -> float:
        """The gRPC timeout for the next attempt: whatever is left of the call's deadline."""
        remaining = self.remaining_s()
        if remaining <= 0:
            raise DeadlineExceeded(
                "the call's deadline passed before it could be sent",
                code=grpc.StatusCode.DEADLINE_EXCEEDED,
            )
        return remaining

    def next_delay_s(self, error: GatewayError) -> float | None:
        """How long to wait before retrying after `error`, or None to give up and raise it.

        A server's RetryInfo is honoured as a minimum wait.
        """
        if not isinstance(error, Unavailable) or self.retries >= self._max_retries:
            return None
        delay = self._backoff.delay_s(self.retries)
        if error.retry_after_s is not None:
            delay = max(delay, error.retry_after_s)
        if delay >= self.remaining_s():
            return None  # the retry could not even start before the deadline
        self.retries += 1
        return delay
