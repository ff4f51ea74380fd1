"""A caller that leaves stops the vendor call at once, for every vendor and in every
phase: while waiting for the response headers, after the headers but before the first
token, mid-stream, and during a unary call. "At once" is what the vendor sees: the
simulator counts the client's disconnect within ``PROMPTLY_S`` of the cancellation.

``PROMPTLY_S`` is far below every scripted vendor's own end (5 s of silence, 5 s per
token, 200 tokens at 20/s = 10 s), so only the cancellation can explain a disconnect
seen within it, yet it leaves room for a loaded 2-core CI machine (a 100 ms bound
failed there once at 383 ms). It is not a speed target: those live in ``bench/``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from server.providers.base import Provider, TextChunk
from simulator.testing import SimulatorProcess
from tests.providers.conftest import Vendor
from tests.providers.test_adapter_contract import ask, model_name, wait_for_stats

PROMPTLY_S = 2.0

# How each phase is scripted, and how far the call gets before the caller leaves.
PHASES: dict[str, dict[str, object]] = {
    "before-headers": {"latency_ms": 5000},                      # vendor silent
    "before-first-token": {"tokens_per_second": 0.2},            # headers, no text yet
    "mid-stream": {"reply_tokens": 200, "tokens_per_second": 20},
    "unary": {"latency_ms": 5000},
}


async def read_stream(provider: Provider, vendor: Vendor, model: str, chunks: int,
                      reached: asyncio.Event) -> None:
    """Read ``chunks`` text chunks, signal, then keep reading (until cancelled)."""
    seen = 0
    async for event in provider.stream(ask(model, vendor), timeout_s=30):
        seen += isinstance(event, TextChunk)
        if seen >= chunks:
            reached.set()


async def disconnect_seen_promptly(simulator: SimulatorProcess, before: int,
                                   cancelled_at: float) -> None:
    while True:
        seen = simulator.stats()["client_disconnects"] > before
        elapsed = time.monotonic() - cancelled_at
        assert elapsed <= PROMPTLY_S, \
            f"the vendor saw no disconnect within {PROMPTLY_S * 1000:g} ms of the cancel"
        if seen:
            return
        await asyncio.sleep(0.005)


async def started(simulator: SimulatorProcess, model: str,
                  reached: asyncio.Event | None) -> None:
    """Wait until the vendor has the call (and, with ``reached``, the reader got there)."""
    await wait_for_stats(simulator, lambda s: s["requests_by_model"].get(model, 0) >= 1)
    if reached is not None:
        await asyncio.wait_for(reached.wait(), 5)
    else:
        await asyncio.sleep(0.05)  # the call is now blocked on the vendor


def caller(phase: str, provider: Provider, vendor: Vendor, model: str,
           reached: asyncio.Event) -> Callable[[], Awaitable[object]]:
    if phase == "unary":
        return lambda: provider.generate(ask(model, vendor), timeout_s=30)
    chunks = 2 if phase == "mid-stream" else 0
    return lambda: read_stream(provider, vendor, model, chunks, reached)


@pytest.mark.parametrize("phase", list(PHASES))
async def test_cancelling_the_caller_closes_the_upstream_promptly(provider, vendor, simulator,
                                                                  phase):
    model = model_name(vendor, f"leave-{phase}")
    simulator.set_scenario(model, **PHASES[phase])
    before = simulator.stats()["client_disconnects"]
    reached = asyncio.Event()
    task = asyncio.create_task(caller(phase, provider, vendor, model, reached)())
    await started(simulator, model, reached if phase == "mid-stream" else None)
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await disconnect_seen_promptly(simulator, before, cancelled_at)


@pytest.mark.parametrize("phase", ["before-first-token", "mid-stream"])
async def test_closing_the_stream_closes_the_upstream_promptly(provider, vendor, simulator,
                                                               phase):
    model = model_name(vendor, f"aclose-{phase}")
    simulator.set_scenario(model, **PHASES[phase])
    before = simulator.stats()["client_disconnects"]
    stream = provider.stream(ask(model, vendor), timeout_s=30)
    if phase == "mid-stream":
        assert isinstance(await anext(stream), TextChunk)
        closed_at = time.monotonic()
        await stream.aclose()
    else:
        # Opened (headers in) but no text yet: the reader gives up waiting.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(stream), 0.3)
        closed_at = time.monotonic()
        await stream.aclose()
    await disconnect_seen_promptly(simulator, before, closed_at)
