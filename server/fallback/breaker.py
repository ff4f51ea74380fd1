"""Circuit breakers: stop sending traffic to a target that keeps failing, then probe it.

Why per target (provider, model, region): one Bedrock region being down must not take the
model's other regions, or another vendor, out of rotation. A breaker opens after
``consecutive_failures`` failures in a row, or when the error rate over a sliding window
reaches ``error_rate`` (once the window holds ``min_calls`` calls). It stays open for
``cooldown_s``; then one probe call is let through (half-open): its success closes the
breaker, its failure opens it for another cool-down.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

_BUCKETS = 10


class BreakerState(StrEnum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


# The numeric value exported by the metric (a gauge per target).
STATE_VALUE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


@dataclass(frozen=True)
class BreakerPolicy:
    consecutive_failures: int = 5
    error_rate: float = 0.5
    window_s: float = 30.0
    min_calls: int = 20
    cooldown_s: float = 10.0


class _Window:
    """Calls and failures over the last ``window_s``, in fixed buckets (bounded memory)."""

    def __init__(self, window_s: float) -> None:
        self._width = window_s / _BUCKETS
        self._calls = [0] * _BUCKETS
        self._failures = [0] * _BUCKETS
        self._epochs = [-1] * _BUCKETS

    def add(self, now: float, failed: bool) -> None:
        epoch = int(now / self._width)
        i = epoch % _BUCKETS
        if self._epochs[i] != epoch:
            self._epochs[i], self._calls[i], self._failures[i] = epoch, 0, 0
        self._calls[i] += 1
        self._failures[i] += failed

    def totals(self, now: float) -> tuple[int, int]:
        oldest = int(now / self._width) - _BUCKETS + 1
        live = [i for i in range(_BUCKETS) if self._epochs[i] >= oldest]
        return sum(self._calls[i] for i in live), sum(self._failures[i] for i in live)

    def clear(self) -> None:
        self._epochs = [-1] * _BUCKETS


class CircuitBreaker:
    """The breaker of one target. Not thread-safe: it lives on the event loop."""

    def __init__(self, policy: BreakerPolicy, clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[BreakerState], None] | None = None) -> None:
        self._policy = policy
        self._clock = clock
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        self._consecutive = 0
        self._window = _Window(policy.window_s)
        self._opened_at = 0.0
        self._probe_started: float | None = None

    @property
    def state(self) -> BreakerState:
        """The state as of now (an open breaker whose cool-down is over reads half-open)."""
        if self._state is BreakerState.OPEN and \
                self._clock() - self._opened_at >= self._policy.cooldown_s:
            self._set(BreakerState.HALF_OPEN)
        return self._state

    def allow(self) -> bool:
        """May a call go to this target now? In half-open, only one probe at a time."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        now = self._clock()
        # A probe that never reported back (its caller gave up) must not wedge the breaker.
        if self._probe_started is not None and now - self._probe_started < self._policy.cooldown_s:
            return False
        self._probe_started = now
        return True

    def record_success(self) -> None:
        self._consecutive = 0
        self._probe_started = None
        self._window.add(self._clock(), False)
        if self._state is not BreakerState.CLOSED:
            self._window.clear()
            self._set(BreakerState.CLOSED)

    def record_failure(self) -> None:
        now = self._clock()
        self._consecutive += 1
        self._probe_started = None
        self._window.add(now, True)
        if self._state is BreakerState.HALF_OPEN:
            self._open(now)
            return
        calls, failures = self._window.totals(now)
        if self._consecutive >= self._policy.consecutive_failures or (
                calls >= self._policy.min_calls
                and failures >= self._policy.error_rate * calls):
            self._open(now)

    def record_neutral(self) -> None:
        """The call ended in a way that says nothing about the target's health
        (e.g. the request itself was invalid): free the probe slot, count nothing."""
        self._probe_started = None

    def _open(self, now: float) -> None:
        self._opened_at = now
        self._consecutive = 0
        self._set(BreakerState.OPEN)

    def _set(self, state: BreakerState) -> None:
        if state is not self._state:
            self._state = state
            if self._on_change is not None:
                self._on_change(state)


K = TypeVar("K", bound=Hashable)


DEFAULT_MAX_BREAKERS = 4096


class BreakerBoard(Generic[K]):
    """One breaker per key (a target), created on first use; reports state changes.

    Bounded: request ``targets`` may name any model, so at most ``max_breakers`` are kept,
    in recency order. Making room forgets the least recently used *closed* breaker (a
    closed breaker with its history dropped behaves like a new one, give or take a few
    counted failures); only if every one is open or probing is the oldest forgotten anyway.
    """

    def __init__(self, policy: BreakerPolicy, clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[K, BreakerState], None] | None = None,
                 max_breakers: int = DEFAULT_MAX_BREAKERS) -> None:
        if max_breakers <= 0:
            raise ValueError("max_breakers must be positive")
        self._policy = policy
        self._clock = clock
        self._on_change = on_change
        self._max = max_breakers
        self._breakers: OrderedDict[K, CircuitBreaker] = OrderedDict()

    def __len__(self) -> int:
        return len(self._breakers)

    def get(self, key: K) -> CircuitBreaker:
        breaker = self._breakers.get(key)
        if breaker is not None:
            self._breakers.move_to_end(key)
        else:
            if len(self._breakers) >= self._max:
                self._evict_one()
            notify = self._on_change
            breaker = CircuitBreaker(
                self._policy, self._clock,
                (lambda state: notify(key, state)) if notify is not None else None)
            self._breakers[key] = breaker
            if notify is not None:
                notify(key, BreakerState.CLOSED)
        return breaker

    def _evict_one(self) -> None:
        victim = next((key for key, breaker in self._breakers.items()
                       if breaker.state is BreakerState.CLOSED), None)
        if victim is None:
            self._breakers.popitem(last=False)
        else:
            del self._breakers[victim]

    def is_open(self, key: K) -> bool:
        """Is ``key``'s breaker open now (its calls skipped)? Creates no breaker: the
        router asks this of targets it may never try, to plan their time."""
        breaker = self._breakers.get(key)
        return breaker is not None and breaker.state is BreakerState.OPEN

    def states(self) -> dict[K, BreakerState]:
        """Every known target's state (for admin views and logs)."""
        return {key: breaker.state for key, breaker in self._breakers.items()}
