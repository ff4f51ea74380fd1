"""Attempt budgets, cancelled attempts and pool exhaustion as specifications: the router
with fake providers on the real event loop (no network; each test takes well under 1 s).
The rules are in the docstring of server/fallback/router.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from server.fallback.attempts import Outcome
from server.fallback.breaker import BreakerPolicy, BreakerState
from server.fallback.chain import Target
from server.fallback.router import POOL_EXHAUSTED, RetryPolicy, Router, StreamStarted
from server.kernel.metrics import Metrics
from server.providers.base import ChatMessage, Completion, ErrorKind, FinishReason
from server.providers.base import ProviderError, ProviderRequest, StreamDone, StreamEvent
from server.providers.base import TextChunk, Usage

HANGS, SERVES, THIRD = Target("hangs", "m"), Target("serves", "m"), Target("third", "m")


class FakeProvider:
    """Hangs, raises ``error`` or answers; remembers the timeout of every call."""

    def __init__(self, name: str, *, hang: bool = False,
                 error: ProviderError | None = None) -> None:
        self.name, self.hang, self.error = name, hang, error
        self.timeouts: list[float] = []

    async def _answer(self, timeout_s: float) -> None:
        self.timeouts.append(timeout_s)
        if self.hang:
            await asyncio.sleep(3600)
        if self.error is not None:
            raise self.error

    async def generate(self, request: ProviderRequest, timeout_s: float) -> Completion:
        await self._answer(timeout_s)
        return Completion("hi", FinishReason.STOP, Usage(1, 1))

    async def stream(self, request: ProviderRequest,
                     timeout_s: float) -> AsyncIterator[StreamEvent]:
        await self._answer(timeout_s)
        yield TextChunk("hi")
        yield StreamDone(FinishReason.STOP, Usage(1, 1))


def make_router(*providers: FakeProvider, failures: int = 1,
                timeouts: dict[str, float] | None = None,
                clock: Callable[[], float] = time.monotonic) -> tuple[Router, Metrics]:
    metrics = Metrics(CollectorRegistry())
    router = Router({p.name: p for p in providers}, RetryPolicy(base_delay_s=0.001), metrics,
                    trace.get_tracer("test"),
                    breaker_policy=BreakerPolicy(consecutive_failures=failures, cooldown_s=60),
                    attempt_timeouts=timeouts, clock=clock)
    return router, metrics


REQUEST = ProviderRequest("", (ChatMessage("user", "Hello"),))


def deadline(seconds: float) -> float:
    return time.monotonic() + seconds


async def test_a_hanging_primary_gets_its_share_and_the_fallback_the_rest():
    hangs, serves = FakeProvider("hangs", hang=True), FakeProvider("serves")
    router, _ = make_router(hangs, serves)
    routed = await router.generate([HANGS, SERVES], REQUEST, deadline(0.4))
    assert routed.served_by == SERVES
    assert hangs.timeouts == [pytest.approx(0.2, abs=0.02)]  # half, and no retry of it
    assert serves.timeouts[0] == pytest.approx(0.2, abs=0.03)
    first = routed.attempts[0]
    assert (first.error_kind, "share of the deadline" in first.error_message) == ("timeout", True)
    assert router.breakers.get(HANGS).state is BreakerState.OPEN  # the breaker saw it


async def test_the_share_counts_only_distinct_targets_whose_breaker_is_not_open():
    hangs, serves, third = (FakeProvider("hangs", hang=True), FakeProvider("serves"),
                            FakeProvider("third"))
    router, _ = make_router(hangs, serves, third)
    router.breakers.get(THIRD).record_failure()  # opens (one failure opens here)
    await router.generate([HANGS, SERVES, SERVES, THIRD], REQUEST, deadline(0.4))
    assert hangs.timeouts == [pytest.approx(0.2, abs=0.02)]


async def test_the_provider_timeout_caps_the_share():
    hangs, serves = FakeProvider("hangs", hang=True), FakeProvider("serves")
    router, _ = make_router(hangs, serves, failures=5, timeouts={"hangs": 0.05})
    routed = await router.generate([HANGS, SERVES], REQUEST, deadline(2))
    assert hangs.timeouts == [0.05, 0.05]  # a provider timeout may be retried
    assert "provider's attempt timeout" in routed.attempts[0].error_message


async def test_a_stream_budget_bounds_the_wait_for_the_first_event():
    hangs, serves = FakeProvider("hangs", hang=True), FakeProvider("serves")
    router, _ = make_router(hangs, serves)
    events = [e async for e in router.stream([HANGS, SERVES], REQUEST, deadline(0.4))]
    assert isinstance(events[0], StreamStarted) and events[0].served_by == SERVES
    assert [a.error_kind for a in events[0].attempts] == ["timeout", ""]


@pytest.mark.parametrize("silent_s, state", [(0.19, BreakerState.OPEN),
                                             (0.05, BreakerState.CLOSED)])
async def test_a_cancelled_attempt_counts_as_a_timeout_only_after_a_silent_budget(
        silent_s, state):
    now = [100.0]  # the router's clock: moved by hand, so the test does not race
    hangs = FakeProvider("hangs", hang=True)
    router, metrics = make_router(hangs, clock=lambda: now[0])
    call = asyncio.ensure_future(router.generate([HANGS], REQUEST, now[0] + 0.2))
    await asyncio.sleep(0.01)
    now[0] += silent_s
    call.cancel()  # as the caller's deadline does
    with pytest.raises(asyncio.CancelledError):
        await call  # the cancellation still propagates
    assert router.breakers.get(HANGS).state is state
    assert metrics.upstream_in_flight.labels("hangs")._value.get() == 0


@pytest.mark.skipif(POOL_EXHAUSTED is None, reason="adapters do not report pool_exhausted yet")
@pytest.mark.parametrize("streaming", [False, True])
async def test_pool_exhausted_falls_back_without_retry_or_breaker(streaming):
    full = FakeProvider("hangs", error=ProviderError(POOL_EXHAUSTED, "no free connection"))
    serves = FakeProvider("serves")
    router, metrics = make_router(full, serves)
    if streaming:
        events = [e async for e in router.stream([HANGS, SERVES], REQUEST, deadline(1))]
        attempts = events[0].attempts
    else:
        attempts = (await router.generate([HANGS, SERVES], REQUEST, deadline(1))).attempts
    assert [(a.target, a.outcome, a.error_kind) for a in attempts] == [
        (HANGS, Outcome.FAILED, "pool_exhausted"), (SERVES, Outcome.SUCCESS, "")]
    assert len(full.timeouts) == 1
    assert router.breakers.get(HANGS).state is BreakerState.CLOSED
    assert metrics.provider_attempts.labels("hangs", "m", "", "pool_exhausted")._value.get() == 1


async def test_in_flight_upstream_calls_are_counted_until_they_end():
    gate = asyncio.Event()

    class Slow(FakeProvider):
        async def generate(self, request: ProviderRequest, timeout_s: float) -> Completion:
            await gate.wait()
            return Completion("hi", FinishReason.STOP)

    router, metrics = make_router(Slow("serves"))
    in_flight = metrics.upstream_in_flight.labels("serves")._value
    calls = [asyncio.ensure_future(router.generate([SERVES], REQUEST, deadline(1)))
             for _ in range(3)]
    await asyncio.sleep(0.01)
    assert in_flight.get() == 3
    gate.set()
    await asyncio.gather(*calls)
    assert in_flight.get() == 0
    assert metrics.attempt_wait.labels("serves")._sum.get() >= 0


def test_pool_exhausted_is_never_a_breaker_failure():
    from server.fallback.router import BREAKER_KINDS
    assert POOL_EXHAUSTED not in BREAKER_KINDS
    assert ErrorKind.TIMEOUT in BREAKER_KINDS
