"""When things happen: time to first byte, token rate, and never answering at all.

All waits are plain `asyncio.sleep`s, so they end at once when aiohttp cancels the
handler because the client went away.
"""

from __future__ import annotations

import asyncio

from simulator.scenario import Behaviour


class TokenPacer:
    """Spaces tokens at `tokens_per_second` on an absolute schedule (no drift).

    Zero or negative rate means as fast as possible: no sleeping at all, so the
    zero-latency benchmark measures the gateway and not the simulator.
    """

    def __init__(self, tokens_per_second: float) -> None:
        self._interval = 1.0 / tokens_per_second if tokens_per_second > 0 else 0.0
        self._loop = asyncio.get_running_loop()
        self._start = self._loop.time()

    async def before_token(self, index: int) -> None:
        """Wait until token `index` (0-based) is due."""
        if self._interval:
            delay = self._start + (index + 1) * self._interval - self._loop.time()
            if delay > 0:
                await asyncio.sleep(delay)


async def wait_latency(behaviour: Behaviour) -> None:
    """Sleep the scripted time-to-first-byte (cancellable when the client leaves)."""
    if behaviour.latency_ms > 0:
        await asyncio.sleep(behaviour.latency_ms / 1000.0)


async def unary_generation_delay(behaviour: Behaviour, tokens: int) -> None:
    """A unary reply takes as long as streaming its tokens would have."""
    if behaviour.tokens_per_second > 0 and tokens > 0:
        await asyncio.sleep(tokens / behaviour.tokens_per_second)


async def hang() -> None:
    """Never answer; returns only by cancellation (the client hung up or shutdown)."""
    await asyncio.get_running_loop().create_future()
