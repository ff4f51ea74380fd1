"""Shared Redis limits with an in-process fallback: rate limiting must not take the
gateway down with Redis.

States: *healthy* (every check goes to Redis) and *degraded* (checks are answered locally;
one check per `retry_interval_s` probes Redis). A Redis error or a check exceeding
`timeout_s` moves to degraded: logged once per outage and reported via `on_degraded(True)`.
The first successful probe moves back and reports `on_degraded(False)`.

While degraded, with `fail_open=True` the `LocalLimiter` answers: each process then enforces
the full limit on its own, so N processes admit up to N× the shared limit (degraded, not
unlimited). With `fail_open=False` every check is denied with `retry_after_s =
retry_interval_s` (for limits that guard money or a hard upstream quota).

Callbacks run inline on the request path: they must be cheap and must not raise.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from redis.exceptions import RedisError

from server.ratelimit.local import LocalLimiter
from server.ratelimit.redis_limiter import RedisLimiter
from server.ratelimit.rules import Decision, Rule, check_cost

# What "Redis is unavailable" looks like: redis-py errors (connection, timeout, busy
# loading, script errors), raw socket errors, and our own deadline (TimeoutError).
REDIS_FAILURES: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


class FailoverLimiter:
    """`primary` (Redis) while it answers, `fallback` (local) while it does not.

    A Redis call never hangs a request: the client should have ~0.25 s socket and connect
    timeouts (see `RedisLimiter.from_url`), and each call is also bounded by
    `asyncio.wait_for(..., timeout_s)`.
    """

    def __init__(
        self,
        primary: RedisLimiter,
        fallback: LocalLimiter,
        *,
        fail_open: bool = True,
        retry_interval_s: float = 1.0,
        timeout_s: float = 0.5,
        on_degraded: Callable[[bool], None] | None = None,
        on_fallback_decision: Callable[[], None] | None = None,
        logger: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if retry_interval_s <= 0 or timeout_s <= 0:
            raise ValueError("retry_interval_s and timeout_s must be positive")
        self._primary = primary
        self._fallback = fallback
        self._fail_open = fail_open
        self._retry_interval_s = retry_interval_s
        self._timeout_s = timeout_s
        self._on_degraded = on_degraded
        self._on_fallback_decision = on_fallback_decision
        self._log = logger or logging.getLogger(__name__)
        self._clock = clock
        self._degraded = False
        self._degraded_since = 0.0
        self._next_probe_at = 0.0

    @property
    def degraded(self) -> bool:
        """True while checks are answered without Redis."""
        return self._degraded

    async def check(self, key: str, rule: Rule, cost: int = 1) -> Decision:
        probing = self._degraded
        if not probing or self._probe_due():
            try:
                decision = await asyncio.wait_for(
                    self._primary.check(key, rule, cost), self._timeout_s
                )
            except REDIS_FAILURES as exc:
                self._mark_down(exc)
            else:
                # Only the probe may end an outage: a call that began before the outage
                # and succeeded late says nothing about Redis now.
                if probing:
                    self._mark_up()
                return decision
        return await self._fallback_check(key, rule, cost)

    async def adjust(self, key: str, rule: Rule, delta: int) -> None:
        """Where checks are answered now; a correction Redis misses is dropped (the
        limits are approximate while degraded anyway)."""
        if self._degraded:
            await self._fallback.adjust(key, rule, delta)
            return
        try:
            await asyncio.wait_for(self._primary.adjust(key, rule, delta), self._timeout_s)
        except REDIS_FAILURES as exc:
            self._mark_down(exc)

    async def aclose(self) -> None:
        await self._primary.aclose()
        await self._fallback.aclose()

    def _probe_due(self) -> bool:
        """At most one probe per retry interval; concurrent checks meanwhile stay local."""
        now = self._clock()
        if now < self._next_probe_at:
            return False
        self._next_probe_at = now + self._retry_interval_s
        return True

    async def _fallback_check(self, key: str, rule: Rule, cost: int) -> Decision:
        if self._on_fallback_decision is not None:
            self._on_fallback_decision()
        if self._fail_open:
            return await self._fallback.check(key, rule, cost)
        impossible = check_cost(rule, cost)
        if impossible is not None:
            return impossible
        return Decision(allowed=False, retry_after_s=self._retry_interval_s, remaining=0, rule=rule)

    def _mark_down(self, exc: BaseException) -> None:
        now = self._clock()
        self._next_probe_at = now + self._retry_interval_s
        if self._degraded:
            return
        self._degraded = True
        self._degraded_since = now
        # The error's class only: redis-py messages can carry host names and URLs.
        self._log.warning(
            "rate limiter degraded: Redis unavailable (%s); %s; retrying every %.2fs",
            type(exc).__name__,
            "answering from the in-process limiter"
            if self._fail_open
            else "denying rate-limited requests (fail closed)",
            self._retry_interval_s,
        )
        if self._on_degraded is not None:
            self._on_degraded(True)

    def _mark_up(self) -> None:
        if not self._degraded:
            return
        self._degraded = False
        self._log.info(
            "rate limiter recovered: Redis answering again after %.1fs degraded",
            self._clock() - self._degraded_since,
        )
        if self._on_degraded is not None:
            self._on_degraded(False)
