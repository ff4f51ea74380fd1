"""In-process GCRA limiter: the single-instance default and the fallback when Redis is down.

State is one integer (the TAT, see `rules.py`) per (rule, key), kept in insertion/recency
order. A key whose TAT has passed is indistinguishable from a key never seen, so dropping it
("idle eviction") loses nothing; that sweep runs every `sweep_interval_s` and whenever the
table exceeds `max_keys`. If the table is still above 90 % of `max_keys` after such a sweep
(that many keys busy at once), the least recently used keys are forgotten down to 90 %:
memory stays bounded, at the price of a forgotten key getting a fresh burst.

`check` never awaits, so under asyncio each check is atomic without a lock.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from server.ratelimit.rules import (
    MICROS_PER_SECOND,
    Decision,
    Rule,
    check_cost,
    gcra,
    gcra_adjust,
    storage_key,
    to_decision,
)


class LocalLimiter:
    """GCRA in memory. `clock` returns monotonic seconds (injectable for tests)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
        sweep_interval_s: float = 60.0,
    ) -> None:
        if max_keys <= 0:
            raise ValueError("max_keys must be positive")
        self._clock = clock
        self._max_keys = max_keys
        self._low_water = max(1, int(max_keys * 0.9))
        self._sweep_interval_us = int(sweep_interval_s * MICROS_PER_SECOND)
        self._tats: OrderedDict[str, int] = OrderedDict()
        self._last_sweep_us = self._now_us()

    async def check(self, key: str, rule: Rule, cost: int = 1) -> Decision:
        return self.check_now(key, rule, cost)

    def check_now(self, key: str, rule: Rule, cost: int = 1) -> Decision:
        """Synchronous `check` (the same decision; for callers outside a coroutine)."""
        impossible = check_cost(rule, cost)
        if impossible is not None:
            return impossible
        now_us = self._now_us()
        name = storage_key(rule, key)
        step = gcra(self._tats.get(name), now_us, rule, cost)
        if step.tat_us > now_us:
            self._tats[name] = step.tat_us
            self._tats.move_to_end(name)
        else:
            self._tats.pop(name, None)
        if len(self._tats) > self._max_keys:
            self._sweep(now_us, make_room=True)
        elif now_us - self._last_sweep_us >= self._sweep_interval_us:
            self._sweep(now_us, make_room=False)
        return to_decision(step, rule)

    async def adjust(self, key: str, rule: Rule, delta: int) -> None:
        now_us = self._now_us()
        name = storage_key(rule, key)
        tat = gcra_adjust(self._tats.get(name), now_us, rule, delta)
        if tat > now_us:
            self._tats[name] = tat
            self._tats.move_to_end(name)
        else:
            self._tats.pop(name, None)

    async def aclose(self) -> None:
        self._tats.clear()

    def __len__(self) -> int:
        """Keys currently tracked (idle ones may linger until the next sweep)."""
        return len(self._tats)

    def _now_us(self) -> int:
        return round(self._clock() * MICROS_PER_SECOND)

    def _sweep(self, now_us: int, *, make_room: bool) -> None:
        """Drop idle keys; with `make_room`, also the least recently used down to the low
        water mark, so a full table is swept at most once per 10 % of `max_keys` inserts."""
        self._last_sweep_us = now_us
        idle = [name for name, tat in self._tats.items() if tat <= now_us]
        for name in idle:
            del self._tats[name]
        if make_room:
            while len(self._tats) > self._low_water:
                self._tats.popitem(last=False)
