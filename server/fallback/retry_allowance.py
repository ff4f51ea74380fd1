"""A global retry allowance: retries may add at most a fixed share of load to the vendors.

Why: per-target retry caps bound one request, but during an outage every request retries
at once and multiplies the load on a vendor that is already failing. The allowance
(Finagle's "retry budget"; in this code base "budget" means money) earns ``ratio``
retries per request plus ``min_per_s`` retries per second (so a quiet gateway can still
retry), up to a cap; each retry spends one. With no
allowance left the router moves to the next target instead of retrying.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class RetryAllowance:
    """Token bucket of retries; lives on the event loop (not thread-safe)."""

    def __init__(self, ratio: float = 0.2, min_per_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ratio = ratio
        self._min_per_s = min_per_s
        self._clock = clock
        # Holds at most one second of the guaranteed rate plus what 100 requests earn.
        self._cap = max(1.0, min_per_s + 100 * ratio)
        self._balance = self._cap
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._balance = min(self._cap, self._balance + (now - self._updated) * self._min_per_s)
        self._updated = now

    def on_request(self) -> None:
        """A new request earns ``ratio`` retries."""
        self._refill()
        self._balance = min(self._cap, self._balance + self._ratio)

    def try_spend(self) -> bool:
        """Take one retry from the allowance; False when it is spent."""
        self._refill()
        if self._balance >= 1.0 - 1e-9:  # 10 × 0.1 must make one retry
            self._balance -= 1.0
            return True
        return False

    @property
    def balance(self) -> float:
        self._refill()
        return self._balance
