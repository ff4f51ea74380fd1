"""Rate-limit rules, decisions, the limiter protocol and the GCRA arithmetic they share.

Algorithm: GCRA (the generic cell rate algorithm, a.k.a. a virtual-scheduling leaky
bucket). Per (rule, key) we store one number, the theoretical arrival time (TAT): when the
bucket would be empty again. With emission interval I = period / limit and capacity
C = burst, a request of `cost` units at time `now` is allowed iff

    max(TAT, now) + cost·I − C·I  ≤  now

and then TAT becomes max(TAT, now) + cost·I. So a fresh key admits exactly `burst` units at
once, then one unit every I; a denied request changes nothing and may retry after exactly
the time it lacked. One stored integer per key, no background refill, O(1) per check.

All arithmetic is on integer microseconds so the in-process limiter (`gcra` below) and the
Redis Lua script (`redis_limiter.py`, a line-by-line transcription) agree to the microsecond.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

MICROS_PER_SECOND = 1_000_000


@dataclass(frozen=True)
class Rule:
    """`limit` units per `period_s` seconds, with up to `burst` units at once.

    `name` is part of the storage key: two rules with different names never share state
    (so it must not contain ':'). `burst` defaults to `limit`, e.g. 600 requests / 60 s
    admits 600 at once, then 10 per second.
    """

    name: str
    limit: int
    period_s: float
    burst: int | None = None

    def __post_init__(self) -> None:
        if not self.name or ":" in self.name or any(ch.isspace() for ch in self.name):
            raise ValueError(f"rule name must be non-empty, without ':' or spaces: {self.name!r}")
        if self.limit <= 0:
            raise ValueError(f"rule {self.name}: limit must be positive")
        if not (self.period_s > 0 and math.isfinite(self.period_s)):
            raise ValueError(f"rule {self.name}: period_s must be positive and finite")
        if self.burst is not None and self.burst <= 0:
            raise ValueError(f"rule {self.name}: burst must be positive")

    @property
    def capacity(self) -> int:
        """Units admitted at once from an idle key (the burst)."""
        return self.limit if self.burst is None else self.burst

    @property
    def interval_us(self) -> int:
        """Emission interval in whole microseconds (rounding moves the rate by < 1 µs/unit)."""
        return max(1, round(self.period_s * MICROS_PER_SECOND / self.limit))


@dataclass(frozen=True)
class Decision:
    """The answer to one check.

    `remaining`: units that could be taken right now after this decision. `retry_after_s`:
    0 when allowed; when denied, the wait after which the same request would pass, or
    `math.inf` when its cost exceeds the rule's burst and it can never pass.
    """

    allowed: bool
    retry_after_s: float
    remaining: int
    rule: Rule

    @property
    def retryable(self) -> bool:
        return self.allowed or math.isfinite(self.retry_after_s)


@runtime_checkable
class RateLimiter(Protocol):
    async def check(self, key: str, rule: Rule, cost: int = 1) -> Decision:
        """Take `cost` units (requests, or tokens for token/minute rules) from `key` under
        `rule`, if available. A denied check takes nothing."""
        ...

    async def adjust(self, key: str, rule: Rule, delta: int) -> None:
        """Correct an earlier check once the real cost is known: take ``delta`` more units
        (may overdraw: later checks wait until it drains) or give ``-delta`` back (never
        beyond a full bucket). Best effort: a limiter that cannot reach its store skips it."""
        ...

    async def aclose(self) -> None: ...


class GcraStep(NamedTuple):
    allowed: bool
    tat_us: int
    """TAT to store after this step (unchanged when denied)."""
    retry_after_us: int
    remaining: int


def gcra(stored_tat_us: int | None, now_us: int, rule: Rule, cost: int) -> GcraStep:
    """One GCRA step: the reference implementation the Lua script mirrors."""
    interval = rule.interval_us
    tolerance = rule.capacity * interval
    tat = now_us if stored_tat_us is None or stored_tat_us < now_us else stored_tat_us
    new_tat = tat + cost * interval
    allow_at = new_tat - tolerance
    if now_us < allow_at:
        return GcraStep(
            False, tat, allow_at - now_us, max(0, (now_us + tolerance - tat) // interval)
        )
    return GcraStep(True, new_tat, 0, (now_us + tolerance - new_tat) // interval)


def gcra_adjust(stored_tat_us: int | None, now_us: int, rule: Rule, delta: int) -> int:
    """The TAT after correcting a key by ``delta`` units (the Lua ADJUST script mirrors
    it): unlike a check it always applies, and a refund stops at an idle key (``now``)."""
    tat = now_us if stored_tat_us is None or stored_tat_us < now_us else stored_tat_us
    return max(now_us, tat + delta * rule.interval_us)


def check_cost(rule: Rule, cost: int) -> Decision | None:
    """Validate `cost`; for a cost no bucket state could ever admit, the final Decision."""
    if isinstance(cost, bool) or not isinstance(cost, int) or cost < 0:
        raise ValueError(f"cost must be a non-negative integer, got {cost!r}")
    if cost > rule.capacity:
        return Decision(allowed=False, retry_after_s=math.inf, remaining=0, rule=rule)
    return None


def storage_key(rule: Rule, key: str) -> str:
    """`<rule name>:<key>`; limiters prefix it as they need."""
    return f"{rule.name}:{key}"


def to_decision(step: GcraStep, rule: Rule) -> Decision:
    return Decision(
        allowed=step.allowed,
        retry_after_s=step.retry_after_us / MICROS_PER_SECOND,
        remaining=step.remaining,
        rule=rule,
    )
