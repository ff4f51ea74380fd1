"""In-process GCRA: bursts, refill, token costs and bounded memory, on an injected clock."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.ratelimit.local import LocalLimiter
from server.ratelimit.rules import Decision, RateLimiter, Rule


class ManualClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def limiter(clock: ManualClock) -> LocalLimiter:
    return LocalLimiter(clock=clock)


REQUESTS = Rule("requests", limit=10, period_s=60)  # 10 at once, then one per 6 s


def test_local_limiter_satisfies_the_protocol(limiter: LocalLimiter) -> None:
    assert isinstance(limiter, RateLimiter)


async def test_fresh_key_allows_exactly_the_burst_then_denies(limiter: LocalLimiter) -> None:
    decisions = [await limiter.check("tenant-a", REQUESTS) for _ in range(11)]

    assert [d.allowed for d in decisions] == [True] * 10 + [False]
    assert [d.remaining for d in decisions[:10]] == list(range(9, -1, -1))
    denied = decisions[-1]
    assert denied.retry_after_s == pytest.approx(6.0)
    assert denied.remaining == 0
    assert denied.rule is REQUESTS


async def test_burst_can_be_smaller_than_the_limit(limiter: LocalLimiter) -> None:
    rule = Rule("smooth", limit=60, period_s=60, burst=3)

    allowed = [(await limiter.check("k", rule)).allowed for _ in range(4)]

    assert allowed == [True, True, True, False]


async def test_denied_check_takes_nothing_and_retry_after_is_exact(
    limiter: LocalLimiter, clock: ManualClock
) -> None:
    for _ in range(10):
        await limiter.check("k", REQUESTS)
    denied = await limiter.check("k", REQUESTS)
    again = await limiter.check("k", REQUESTS)
    assert not again.allowed and again.retry_after_s == pytest.approx(denied.retry_after_s)

    clock.advance(denied.retry_after_s - 0.001)
    assert not (await limiter.check("k", REQUESTS)).allowed
    clock.advance(0.001)
    assert (await limiter.check("k", REQUESTS)).allowed
    assert not (await limiter.check("k", REQUESTS)).allowed


async def test_capacity_refills_over_time(limiter: LocalLimiter, clock: ManualClock) -> None:
    for _ in range(10):
        await limiter.check("k", REQUESTS)

    clock.advance(18)  # three emission intervals
    assert [(await limiter.check("k", REQUESTS)).allowed for _ in range(4)] == [True] * 3 + [False]

    clock.advance(3600)  # long idle: back to a full burst, never more
    decisions = [await limiter.check("k", REQUESTS) for _ in range(11)]
    assert sum(d.allowed for d in decisions) == 10


async def test_cost_takes_that_many_units(limiter: LocalLimiter, clock: ManualClock) -> None:
    tokens = Rule("tokens-per-minute", limit=1000, period_s=60)  # 60 ms per token

    first = await limiter.check("tenant", tokens, cost=600)
    too_big = await limiter.check("tenant", tokens, cost=500)
    fits = await limiter.check("tenant", tokens, cost=400)

    assert (first.allowed, first.remaining) == (True, 400)
    assert (too_big.allowed, too_big.remaining) == (False, 400)
    assert too_big.retry_after_s == pytest.approx(100 * 0.06)  # the 100 tokens it lacked
    assert (fits.allowed, fits.remaining) == (True, 0)
    clock.advance(6)
    assert (await limiter.check("tenant", tokens, cost=100)).allowed


async def test_cost_above_the_burst_can_never_pass(limiter: LocalLimiter) -> None:
    tokens = Rule("tokens", limit=1000, period_s=60)

    decision = await limiter.check("tenant", tokens, cost=1001)

    assert not decision.allowed
    assert math.isinf(decision.retry_after_s)
    assert not decision.retryable
    assert (await limiter.check("tenant", tokens, cost=1000)).allowed  # nothing was taken


async def test_zero_cost_peeks_without_taking(limiter: LocalLimiter) -> None:
    rule = Rule("r", limit=2, period_s=60)

    peek = await limiter.check("k", rule, cost=0)

    assert (peek.allowed, peek.remaining) == (True, 2)
    assert [(await limiter.check("k", rule)).allowed for _ in range(3)] == [True, True, False]


async def test_negative_cost_is_a_programming_error(limiter: LocalLimiter) -> None:
    with pytest.raises(ValueError):
        await limiter.check("k", REQUESTS, cost=-1)


async def test_keys_and_rules_are_independent(limiter: LocalLimiter) -> None:
    other_rule = Rule("other", limit=10, period_s=60)
    for _ in range(10):
        await limiter.check("a", REQUESTS)

    assert not (await limiter.check("a", REQUESTS)).allowed
    assert (await limiter.check("b", REQUESTS)).allowed
    assert (await limiter.check("a", other_rule)).allowed


async def test_idle_keys_are_evicted(clock: ManualClock) -> None:
    limiter = LocalLimiter(clock=clock, sweep_interval_s=30)
    for i in range(50):
        await limiter.check(f"caller-{i}", REQUESTS)
    assert len(limiter) == 50

    clock.advance(31)  # every key's single unit has been refilled (6 s) and a sweep is due
    await limiter.check("someone-new", REQUESTS)

    assert len(limiter) == 1


async def test_memory_is_bounded_when_many_keys_are_busy(clock: ManualClock) -> None:
    limiter = LocalLimiter(clock=clock, max_keys=100)

    for i in range(1000):
        await limiter.check(f"caller-{i}", REQUESTS)

    assert len(limiter) <= 100


def test_rules_are_validated() -> None:
    for bad in (  # (name, limit, period_s, burst)
        ("", 1, 1, None),
        ("a:b", 1, 1, None),
        ("r", 0, 1, None),
        ("r", 1, 0, None),
        ("r", 1, 1, 0),
    ):
        with pytest.raises(ValueError):
            Rule(*bad)


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(1, 50),
    burst=st.integers(1, 50),
    steps=st.lists(st.tuples(st.floats(0, 5), st.integers(0, 60)), max_size=60),
)
def test_never_admits_more_than_burst_plus_refill(limit: int, burst: int, steps) -> None:
    """Over any span from a fresh key: admitted units ≤ burst + elapsed / interval; and a
    denied check's retry_after is exactly the wait that makes that same check pass."""
    clock = ManualClock()
    limiter = LocalLimiter(clock=clock)
    rule = Rule("prop", limit=limit, period_s=10, burst=burst)
    start, admitted = clock.now, 0
    for advance, cost in steps:
        clock.advance(advance)
        decision: Decision = limiter.check_now("k", rule, cost)
        if decision.allowed:
            admitted += cost
        elif decision.retryable:
            clock.advance(decision.retry_after_s)
            assert limiter.check_now("k", rule, cost).allowed
            admitted += cost
        elapsed_us = round((clock.now - start) * 1e6)
        assert admitted <= burst + elapsed_us // rule.interval_us
