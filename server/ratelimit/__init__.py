"""Request and token rate limits (GCRA): in-process, shared via Redis, or Redis with an
in-process fallback. Domain code only; the gRPC interceptor maps a denied `Decision` to
RESOURCE_EXHAUSTED with RetryInfo/QuotaFailure.

Import the limiters from their modules (``server.ratelimit.local``, ``.redis_limiter``,
``.failover``, ``.rules``): this package imports nothing, so a gateway without Redis never
loads redis-py (~8 MB resident).
"""
