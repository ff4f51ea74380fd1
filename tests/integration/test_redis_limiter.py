"""GCRA in a real redis-server: same decisions as the local limiter, shared by processes,
and a failover that keeps answering when Redis dies and recovers when it returns."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as redis

from server.ratelimit.failover import FailoverLimiter
from server.ratelimit.local import LocalLimiter
from server.ratelimit.redis_limiter import RedisLimiter
from server.ratelimit.rules import RateLimiter, Rule
from server.ratelimit.redis_limiter import DEFAULT_PREFIX
from tests.support.redis_process import RedisProcess


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisProcess]:
    with RedisProcess() as server:
        yield server


@pytest.fixture
async def client(redis_server: RedisProcess) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(
        redis_server.url, socket_timeout=0.25, socket_connect_timeout=0.25
    )
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
async def limiter(client: redis.Redis) -> RedisLimiter:
    return RedisLimiter(client)


async def test_redis_limiter_satisfies_the_protocol(limiter: RedisLimiter) -> None:
    assert isinstance(limiter, RateLimiter)


async def test_fresh_key_allows_exactly_the_burst_then_denies(limiter: RedisLimiter) -> None:
    rule = Rule("requests", limit=5, period_s=3600)  # one unit per 720 s

    decisions = [await limiter.check("tenant-a", rule) for _ in range(6)]

    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0]
    assert decisions[-1].retry_after_s == pytest.approx(720, abs=1)


async def test_cost_takes_that_many_units(limiter: RedisLimiter) -> None:
    tokens = Rule("tokens-per-minute", limit=1000, period_s=3600)

    first = await limiter.check("tenant", tokens, cost=600)
    too_big = await limiter.check("tenant", tokens, cost=500)
    fits = await limiter.check("tenant", tokens, cost=400)
    never = await limiter.check("tenant", tokens, cost=1001)

    assert (first.allowed, first.remaining) == (True, 400)
    assert (too_big.allowed, too_big.remaining) == (False, 400)
    assert too_big.retry_after_s == pytest.approx(100 * 3.6, abs=0.1)
    assert (fits.allowed, fits.remaining) == (True, 0)
    assert not never.allowed and not never.retryable


async def test_capacity_refills_in_real_time(limiter: RedisLimiter) -> None:
    rule = Rule("fast", limit=20, period_s=1, burst=2)  # one unit per 50 ms

    assert [(await limiter.check("k", rule)).allowed for _ in range(3)] == [True, True, False]
    denied = await limiter.check("k", rule)
    assert 0 < denied.retry_after_s <= 0.05

    await asyncio.sleep(denied.retry_after_s + 0.005)

    assert (await limiter.check("k", rule)).allowed


async def test_corrections_match_the_local_limiter(limiter: RedisLimiter) -> None:
    """Checks interleaved with corrections (overdraws and refunds, as a token limit is
    settled against real usage): the same answers from Redis and from memory."""
    rng = random.Random(20261205)
    local = LocalLimiter()
    for case in range(15):
        rule = Rule(f"adjust{case}", limit=rng.randint(5, 60), period_s=3600,
                    burst=rng.randint(5, 60))
        for _ in range(rng.randint(1, 20)):
            cost = rng.randint(0, 8)
            remote, here = await limiter.check("k", rule, cost), await local.check("k", rule, cost)
            assert (remote.allowed, remote.remaining) == (here.allowed, here.remaining)
            delta = rng.randint(-10, 10)
            await limiter.adjust("k", rule, delta)
            await local.adjust("k", rule, delta)


async def test_decisions_match_the_local_limiter(limiter: RedisLimiter) -> None:
    """Same rule, same cost sequence, (almost) the same instant: same answers."""
    rng = random.Random(20240601)
    local = LocalLimiter()
    for case in range(25):
        rule = Rule(
            f"parity{case}", limit=rng.randint(1, 40), period_s=3600, burst=rng.randint(1, 40)
        )
        for _ in range(rng.randint(1, 30)):
            cost = rng.randint(0, 12)
            remote, here = await limiter.check("k", rule, cost), await local.check("k", rule, cost)
            assert (remote.allowed, remote.remaining) == (here.allowed, here.remaining)
            assert remote.retry_after_s == pytest.approx(here.retry_after_s, abs=0.5)


async def test_two_clients_share_one_limit(
    redis_server: RedisProcess, limiter: RedisLimiter
) -> None:
    """Two connection pools, as two gateway processes would have, draw from one bucket."""
    other_client = redis.Redis.from_url(redis_server.url)
    other = RedisLimiter(other_client)
    rule = Rule("shared", limit=10, period_s=3600)
    try:
        sequential = [await (limiter if i % 2 else other).check("tenant", rule) for i in range(6)]
        assert all(d.allowed for d in sequential)
        assert sequential[-1].remaining == 4

        concurrent = await asyncio.gather(
            *((limiter if i % 2 else other).check("tenant", rule) for i in range(40))
        )
        assert sum(d.allowed for d in concurrent) == 4  # atomic: never over-admits
    finally:
        await other_client.aclose()


async def test_bucket_key_expires_when_it_would_be_full_again(
    client: redis.Redis, limiter: RedisLimiter
) -> None:
    rule = Rule("ttl", limit=10, period_s=60)  # 6 s per unit

    await limiter.check("tenant", rule, cost=3)

    key = f"{DEFAULT_PREFIX}ttl:tenant"
    assert 17_000 < await client.pttl(key) <= 18_000
    server_seconds, server_micros = await client.time()
    tat_us = int(await client.get(key))
    # The TAT is on the Redis server's clock (wall time in µs), not this process's.
    assert tat_us - (server_seconds * 1_000_000 + server_micros) == pytest.approx(18e6, abs=1e5)


async def test_denied_check_writes_nothing(client: redis.Redis, limiter: RedisLimiter) -> None:
    rule = Rule("deny", limit=1, period_s=3600)
    await limiter.check("t", rule)
    before = await client.get(f"{DEFAULT_PREFIX}deny:t")

    assert not (await limiter.check("t", rule)).allowed
    assert await client.get(f"{DEFAULT_PREFIX}deny:t") == before


async def test_script_survives_a_script_flush(client: redis.Redis, limiter: RedisLimiter) -> None:
    rule = Rule("flush", limit=3, period_s=3600)
    await limiter.check("t", rule)

    await client.script_flush()

    assert (await limiter.check("t", rule)).remaining == 1


# --- failover -------------------------------------------------------------------------------


class CountingRedisLimiter(RedisLimiter):
    """The real RedisLimiter, counting how often the failover actually calls it."""

    calls = 0

    async def check(self, key, rule, cost=1):
        self.calls += 1
        return await super().check(key, rule, cost)


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def outage_redis() -> Iterator[RedisProcess]:
    with RedisProcess() as server:  # its own server: this test kills it
        yield server


async def test_failover_answers_through_an_outage_and_recovers(
    outage_redis: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    primary = CountingRedisLimiter.from_url(outage_redis.url)  # 0.25 s timeouts, 1 retry
    clock = ManualClock()
    transitions: list[bool] = []
    fallback_decisions: list[None] = []
    limiter = FailoverLimiter(
        primary,
        LocalLimiter(),
        retry_interval_s=1.0,
        on_degraded=transitions.append,
        on_fallback_decision=lambda: fallback_decisions.append(None),
        clock=clock,
        logger=logging.getLogger("test.ratelimit"),
    )
    rule = Rule("failover", limit=100, period_s=3600)

    # Healthy: Redis answers.
    assert (await limiter.check("t", rule)).remaining == 99
    assert (primary.calls, transitions, limiter.degraded) == (1, [], False)

    # Redis dies: the first failing call degrades; later calls don't touch Redis.
    outage_redis.stop()
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="test.ratelimit"):
        decisions = [await limiter.check("t", rule) for _ in range(20)]
    assert time.monotonic() - started < 2
    assert all(d.allowed for d in decisions)  # fail open: the local limiter answers
    assert transitions == [True] and limiter.degraded
    assert primary.calls == 2
    assert len(fallback_decisions) == 20
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Redis unavailable" in warnings[0].getMessage()
    assert outage_redis.url not in warnings[0].getMessage()

    # Still down at the next retry: one probe, still degraded, no new transition.
    clock.now += 1.0
    await limiter.check("t", rule)
    await limiter.check("t", rule)
    assert primary.calls == 3 and transitions == [True]

    # Redis is back: the next probe recovers and traffic returns to Redis.
    outage_redis.start()
    clock.now += 1.0
    assert (await limiter.check("t", rule)).allowed
    assert transitions == [True, False] and not limiter.degraded
    await limiter.check("t", rule)
    assert primary.calls == 5

    await limiter.aclose()


async def test_fail_closed_denies_while_redis_is_down(outage_redis: RedisProcess) -> None:
    limiter = FailoverLimiter(
        RedisLimiter.from_url(outage_redis.url),
        LocalLimiter(),
        fail_open=False,
        retry_interval_s=2.0,
    )
    outage_redis.stop()

    decision = await limiter.check("t", Rule("closed", limit=10, period_s=60))

    assert not decision.allowed
    assert decision.retry_after_s == 2.0
    await limiter.aclose()


async def test_a_silent_redis_cannot_hang_a_request() -> None:
    """A peer that accepts connections and never answers (a wedged Redis, a black hole)."""
    accepted: list[asyncio.StreamWriter] = []

    async def swallow(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    badly_configured = redis.Redis(host="127.0.0.1", port=port, socket_timeout=30)
    limiter = FailoverLimiter(
        RedisLimiter(badly_configured, owns_client=True), LocalLimiter(), timeout_s=0.2
    )
    try:
        started = time.monotonic()
        decision = await limiter.check("t", Rule("silent", limit=10, period_s=60))

        assert time.monotonic() - started < 1.0
        assert decision.allowed and limiter.degraded
    finally:
        await limiter.aclose()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
