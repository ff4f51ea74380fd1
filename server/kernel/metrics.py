"""Prometheus metrics of the gateway, created on a registry passed in (no module globals).

With ``llmgw serve --workers N`` every worker writes to prometheus_client's multiprocess
directory and the supervisor serves the aggregate, so the same objects work in both modes.
Label sets are small and bounded (method, code, provider, model, region, outcome).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                    5, 10, 30, 60)


class Metrics:
    """Every metric the gateway exports."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        kw = {"registry": registry}
        self.rpc_total = Counter("llmgw_rpc_total", "RPCs handled, by method and status code",
                                 ["method", "code"], **kw)
        self.rpc_latency = Histogram("llmgw_rpc_latency_seconds", "RPC latency by method",
                                     ["method"], buckets=_LATENCY_BUCKETS, **kw)
        self.provider_attempts = Counter(
            "llmgw_provider_attempts_total", "Vendor call attempts by target and outcome",
            ["provider", "model", "region", "outcome"], **kw)
        self.provider_latency = Histogram(
            "llmgw_provider_latency_seconds", "Vendor call latency", ["provider", "model"],
            buckets=_LATENCY_BUCKETS, **kw)
        self.fallbacks = Counter("llmgw_fallbacks_total",
                                 "Requests served by a target other than the first",
                                 ["model"], **kw)
        self.time_to_first_token = Histogram(
            "llmgw_time_to_first_token_seconds", "StreamGenerate time to the first delta",
            ["provider", "model"], buckets=_LATENCY_BUCKETS, **kw)
        self.tokens = Counter("llmgw_tokens_total", "Tokens processed",
                              ["provider", "model", "direction"], **kw)
        self.rate_limited = Counter("llmgw_rate_limit_rejections_total",
                                    "Calls rejected by a rate limit", ["rule"], **kw)
        self.rate_limit_degraded = Gauge(
            "llmgw_rate_limit_degraded",
            "1 while the shared (Redis) limiter is unreachable and the local one answers",
            multiprocess_mode="max", **kw)
        self.rate_limit_fallback_decisions = Counter(
            "llmgw_rate_limit_fallback_decisions_total",
            "Rate-limit decisions taken by the local limiter because Redis was unreachable", **kw)
        self.circuit_state = Gauge(
            "llmgw_circuit_breaker_state",
            "Circuit breaker per target: 0 closed, 1 half-open (probing), 2 open (skipped)",
            ["provider", "model", "region"], multiprocess_mode="max", **kw)
        self.retries_denied = Counter(
            "llmgw_retries_denied_total",
            "Retries not made because the global retry allowance was spent", **kw)
        self.database_up = Gauge("llmgw_database_up", "1 while the database answers",
                                 multiprocess_mode="min", **kw)
        self.ledger_operations = Counter(
            "llmgw_ledger_operations_total",
            "Ledger operations by kind (charge, hold, settle ...) and status (ok, "
            "insufficient_funds ...); replays count as ok", ["kind", "status"], **kw)
        self.ledger_batch_size = Histogram(
            "llmgw_ledger_batch_operations", "Operations applied per ledger statement",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), **kw)
