"""Request and token rate limits (GCRA): in-process, shared via Redis, or Redis with an
in-process fallback. Domain code only; the gRPC interceptor maps a denied `Decision` to
RESOURCE_EXHAUSTED with RetryInfo/QuotaFailure.
"""

from server.ratelimit.failover import FailoverLimiter
from server.ratelimit.local import LocalLimiter
from server.ratelimit.redis_limiter import RedisLimiter
from server.ratelimit.rules import Decision, RateLimiter, Rule

__all__ = ["Decision", "FailoverLimiter", "LocalLimiter", "RateLimiter", "RedisLimiter", "Rule"]
