"""Prometheus metrics of the gateway, created on a registry passed in (no module globals).

With ``llmgw serve --workers N`` every worker writes to prometheus_client's multiprocess
directory and the supervisor serves the aggregate, so the same objects work in both modes.
Label values are a closed set: a value a caller can influence (model, region, method ...)
goes through a ``LabelSet`` built from the configuration (and the database routes), and
anything outside it is exported as ``other``. A hostile caller sending a million distinct
model names must not grow ``/metrics`` (and the process) by a million series.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                    5, 10, 30, 60)


OTHER = "other"


class LabelSet:
    """The values one label may take; ``fold`` maps anything else to ``OTHER``.

    Why closed and not "the first N seen": the set must grow only from configuration or
    the database, never from a request, or a hostile caller picks which series exist.
    ``follow`` adds values read from a live source (e.g. the route cache, which a database
    refresh swaps); they are recomputed only when the source returns a new object.
    """

    def __init__(self, values: Iterable[str] = (), *, accept_all: bool = False) -> None:
        self._static = frozenset(values)
        self._sources: list[_Followed] = []
        self._accept_all = accept_all

    @classmethod
    def unrestricted(cls) -> LabelSet:
        """Every value passes: only for a ``Metrics`` outside a gateway (unit tests, tools),
        where no caller can reach it."""
        return cls(accept_all=True)

    def follow(self, snapshot: Callable[[], Any],
               extract: Callable[[Any], Iterable[str]]) -> LabelSet:
        """Also accept ``extract(snapshot())``; ``snapshot`` must return a new object when
        its content changes (as ``RouteCache.all`` does). Returns self for chaining."""
        self._sources.append(_Followed(snapshot, extract))
        return self

    def fold(self, value: str) -> str:
        if self._accept_all or value in self._static:
            return value
        return value if any(value in source.values() for source in self._sources) else OTHER

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and self.fold(value) == value


@dataclass
class _Followed:
    snapshot: Callable[[], Any]
    extract: Callable[[Any], Iterable[str]]
    _seen: Any = None
    _values: Collection[str] = frozenset()

    def values(self) -> Collection[str]:
        current = self.snapshot()
        if current is not self._seen:
            self._values, self._seen = frozenset(self.extract(current)), current
        return self._values


@dataclass
class MetricLabels:
    """The closed label sets of the gateway's metrics (``server.app.metric_labels`` builds
    them from the configuration). A set left out accepts every value: that is for a
    ``Metrics`` no caller reaches (unit tests); the gateway always passes all four."""

    providers: LabelSet = field(default_factory=LabelSet.unrestricted)
    models: LabelSet = field(default_factory=LabelSet.unrestricted)
    regions: LabelSet = field(default_factory=LabelSet.unrestricted)
    methods: LabelSet = field(default_factory=LabelSet.unrestricted)

    def target(self, provider: str, model: str, region: str) -> tuple[str, str, str]:
        """(provider, model, region) label values of an upstream target."""
        return self.providers.fold(provider), self.models.fold(model), self.regions.fold(region)

    def provider_model(self, provider: str, model: str) -> tuple[str, str]:
        return self.providers.fold(provider), self.models.fold(model)

    def is_known_target(self, provider: str, model: str, region: str) -> bool:
        return self.target(provider, model, region) == (provider, model, region)


# Targets outside the closed sets whose breaker state is exported at once (see below).
MAX_AD_HOC_BREAKER_SERIES = 32


class Metrics:
    """Every metric the gateway exports. ``labels``: the closed label sets (see
    ``MetricLabels``); call sites fold caller-influenced values through ``self.known``."""

    def set_breaker_state(self, provider: str, model: str, region: str, value: int) -> None:
        """The circuit-breaker gauge of one target. A configured target always has its
        series. An ad-hoc one (request ``targets``) has one only while its breaker is not
        closed, at most ``MAX_AD_HOC_BREAKER_SERIES`` at a time: an open breaker is what an
        operator must see, and folding states of different targets into ``other`` would
        mean nothing."""
        key = (provider, model, region)
        if self.known.is_known_target(*key):
            self.circuit_state.labels(*key).set(value)
        elif value == 0:
            if key in self._ad_hoc_breakers:
                self._ad_hoc_breakers.discard(key)
                self.circuit_state.labels(*key).set(0)  # what a multiprocess file keeps
                self.circuit_state.remove(*key)
        elif key in self._ad_hoc_breakers or \
                len(self._ad_hoc_breakers) < MAX_AD_HOC_BREAKER_SERIES:
            self._ad_hoc_breakers.add(key)
            self.circuit_state.labels(*key).set(value)

    def child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, remembered: prometheus_client's own lookup (str() of
        every value, validation, a lock) cost ~2 µs, and a unary call makes eight. For
        label values already folded into the closed sets (so the map stays bounded) of a
        metric whose series are never removed (not ``circuit_state``)."""
        key = (metric, values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    def __init__(self, registry: CollectorRegistry | None,
                 labels: MetricLabels | None = None) -> None:
        self.known = labels if labels is not None else MetricLabels()
        self._ad_hoc_breakers: set[tuple[str, str, str]] = set()
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}
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
        # Upstream calls per configured provider name (the router labels only those).
        self.upstream_in_flight = Gauge(
            "llmgw_upstream_in_flight",
            "Upstream vendor calls in flight per provider (a stream counts until it ends); "
            "compare with providers.<name>.max_connections to see pool queueing",
            ["provider"], multiprocess_mode="livesum", **kw)
        self.attempt_wait = Histogram(
            "llmgw_attempt_wait_seconds",
            "Per provider, time from the router taking a request to the start of each "
            "upstream attempt (earlier attempts and backoff); a wait for a pooled connection "
            "happens inside the attempt and, when it runs out, counts as outcome "
            "pool_exhausted", ["provider"], buckets=_LATENCY_BUCKETS, **kw)
        self.internal_errors = Counter(
            "llmgw_internal_errors_total",
            "Calls that ended INTERNAL because of an unexpected exception (a bug; each is "
            "logged with its trace id)", ["method"], **kw)
        self.audit_events = Counter(
            "llmgw_audit_events_total",
            "Audit events by outcome: written, or failed (then logged in full at ERROR)",
            ["outcome"], **kw)
