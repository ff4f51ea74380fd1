"""GCRA in Redis, shared by every gateway process: one atomic Lua script per check.

Why a script: read-TAT / decide / write-TAT must be atomic across processes, and one
EVALSHA is one round trip. Why Redis `TIME`: the processes' clocks disagree; the TAT is
only meaningful against one clock, so the script reads the Redis server's own.

The script is a transcription of `rules.gcra` on integer microseconds, so this limiter and
`LocalLimiter` make identical decisions. Keys are `<prefix><rule>:<key>` holding the TAT as
a decimal integer, with a PX expiry at the TAT (an expired key equals a fresh one), so idle
keys cost no memory. A denied check writes nothing.
"""

from __future__ import annotations

from typing import Final

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from server.ratelimit.rules import (
    Decision,
    GcraStep,
    Rule,
    check_cost,
    storage_key,
    to_decision,
)

DEFAULT_PREFIX: Final = "llmgw:rl:"
RECOMMENDED_SOCKET_TIMEOUT_S: Final = 0.25

# KEYS[1] = bucket key. ARGV = emission interval (µs), capacity (burst), cost.
# Returns {allowed 0|1, TAT after the step (µs), retry_after (µs), remaining}.
GCRA_LUA: Final = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tolerance = capacity * interval

local function floor_div(a, b)
  if a <= 0 then return 0 end
  return (a - a % b) / b
end

local tat = now
local stored = redis.call('GET', KEYS[1])
if stored then
  tat = tonumber(stored)
  if tat < now then tat = now end
end

local new_tat = tat + cost * interval
local allow_at = new_tat - tolerance
if now < allow_at then
  return {0, tat, allow_at - now, floor_div(now + tolerance - tat, interval)}
end
if new_tat > now then
  local ttl_ms = math.ceil((new_tat - now) / 1000)
  redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', string.format('%d', ttl_ms))
end
return {1, new_tat, 0, floor_div(now + tolerance - new_tat, interval)}
"""


# KEYS[1] = bucket key. ARGV = emission interval (µs), delta (units, may be negative).
# The transcription of `rules.gcra_adjust`: always applies; a refund stops at an idle key.
ADJUST_LUA: Final = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = now
local stored = redis.call('GET', KEYS[1])
if stored then
  tat = tonumber(stored)
  if tat < now then tat = now end
end
local new_tat = tat + tonumber(ARGV[2]) * tonumber(ARGV[1])
if new_tat > now then
  local ttl_ms = math.ceil((new_tat - now) / 1000)
  redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', string.format('%d', ttl_ms))
else
  redis.call('DEL', KEYS[1])
end
return 1
"""


class RedisLimiter:
    """GCRA limiter on a shared Redis.

    Build the client with short timeouts so a sick Redis fails fast instead of hanging
    requests (`FailoverLimiter` adds an overall deadline on top), e.g.::

        redis.asyncio.Redis.from_url(
            url, socket_timeout=0.25, socket_connect_timeout=0.25,
            retry=Retry(NoBackoff(), 1),   # one immediate reconnect, not 10 backed-off ones
        )

    which is what `RedisLimiter.from_url` does. The limiter closes the client in `aclose`
    only if it created it (`owns_client`).
    """

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = DEFAULT_PREFIX,
        *,
        owns_client: bool = False,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._owns_client = owns_client
        self._script = client.register_script(GCRA_LUA)
        self._adjust = client.register_script(ADJUST_LUA)

    @classmethod
    def from_url(
        cls,
        url: str,
        prefix: str = DEFAULT_PREFIX,
        *,
        socket_timeout_s: float = RECOMMENDED_SOCKET_TIMEOUT_S,
        socket_connect_timeout_s: float = RECOMMENDED_SOCKET_TIMEOUT_S,
    ) -> RedisLimiter:
        """A limiter with its own client configured as recommended above."""
        client = redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=socket_connect_timeout_s,
            retry=Retry(NoBackoff(), 1),
        )
        return cls(client, prefix, owns_client=True)

    async def check(self, key: str, rule: Rule, cost: int = 1) -> Decision:
        """One EVALSHA (the script is loaded on first use or after a SCRIPT FLUSH/restart).
        Raises redis errors as they come: failover is `FailoverLimiter`'s job."""
        impossible = check_cost(rule, cost)
        if impossible is not None:
            return impossible
        allowed, tat_us, retry_after_us, remaining = await self._script(
            keys=[self._prefix + storage_key(rule, key)],
            args=[rule.interval_us, rule.capacity, cost],
        )
        step = GcraStep(bool(allowed), int(tat_us), int(retry_after_us), int(remaining))
        return to_decision(step, rule)

    async def adjust(self, key: str, rule: Rule, delta: int) -> None:
        """One EVALSHA; raises redis errors (``FailoverLimiter`` swallows them)."""
        await self._adjust(keys=[self._prefix + storage_key(rule, key)],
                           args=[rule.interval_us, delta])

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()
