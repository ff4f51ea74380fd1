"""Wiring: build every part of one gateway process from the configuration.

Explicit construction, no globals: ``Gateway`` owns the gRPC server, the providers, the
limiter, the database engine and the health state, and closes them in reverse order.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from llmgateway.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    billing_pb2,
    billing_pb2_grpc,
    config_pb2,
    config_pb2_grpc,
    generation_pb2,
    generation_pb2_grpc,
    retrieval_pb2,
    retrieval_pb2_grpc,
)
from prometheus_client import CollectorRegistry

from server.audit.recorder import AuditRecorder
from server.audit.snapshots import Snapshots
from server.audit.store import AuditStore
from server.auth.jwks_http import HttpJwksFetcher
from server.auth.jwks_refresh import JwksRefresher
from server.auth.keys import KeySet, jwt_secret
from server.auth.rotating import RotatingVerifier
from server.auth.tokens import TokenVerifier
from server.billing.pricing import PriceList
from server.kernel.tenancy import TenantClaims
from server.billing.runtime import BillingRuntime, BillingSettings, metrics_hook
from server.bots.store import BotStore
from server.kernel.config import GatewayConfig
from server.kernel.db.engine import create_engine, database_is_up
from server.fallback.breaker import BreakerPolicy
from server.fallback.retry_allowance import RetryAllowance
from server.fallback.chain import ChainBuilder
from server.fallback.route_store import RouteStore, refresh_forever
from server.fallback.capabilities import Capabilities
from server.generation.embed import EmbeddingService
from server.fallback.router import RetryPolicy, Router
from server.fallback.routes import RouteCache, configured_targets, routes_from_config
from server.handlers.audit import AuditService
from server.handlers.billing import BillingService
from server.handlers.config import ConfigService
from server.generation.grounding import Grounder
from server.generation.metering import Metering
from server.generation.presets import Presets
from server.generation.service import GenerationService
from server.handlers.generation import GenerationServicer
from server.handlers.retrieval import RetrievalService
from server.interceptors.audit import AuditInterceptor
from server.interceptors.auth import AuthInterceptor
from server.interceptors.checks import RequestChecksInterceptor
from server.interceptors.concurrency import StreamLimitInterceptor, StreamsPerCaller
from server.interceptors.ratelimit import RateLimitInterceptor
from server.interceptors.tracing import TracingInterceptor
from server.kernel.metrics import LabelSet, MetricLabels, Metrics
from server.prompts.render import Renderer
from server.prompts.store import PromptStore
from server.providers.registry import build_embedders, build_providers
from server.rag.runtime import RagRuntime
from server.ratelimit.local import LocalLimiter
from server.ratelimit.rules import RateLimiter
from server.kernel.telemetry import build_tracer_provider, tracer
from server.kernel.tls import CertificateReloader
from server.tls import listener_credentials

log = logging.getLogger("llmgw.server")

SERVICE_NAMES = (generation_pb2.DESCRIPTOR.services_by_name["GenerationService"].full_name,
                 billing_pb2.DESCRIPTOR.services_by_name["BillingService"].full_name,
                 retrieval_pb2.DESCRIPTOR.services_by_name["RetrievalService"].full_name,
                 config_pb2.DESCRIPTOR.services_by_name["ConfigService"].full_name,
                 audit_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name)


def metric_labels(config: GatewayConfig, routes: RouteCache) -> MetricLabels:
    """The closed label sets: configured providers, the models and regions of the routes in
    force (config and database, followed as the route cache refreshes) and our RPC methods.
    Nothing a request carries can add to them."""
    regions = {""}
    for provider in config.providers.values():
        regions.update((provider.region, *provider.failover_regions))
    methods = [m.name for pb in (generation_pb2, billing_pb2, retrieval_pb2, config_pb2,
                                 audit_pb2)
               for service in pb.DESCRIPTOR.services_by_name.values() for m in service.methods]
    return MetricLabels(
        providers=LabelSet(config.providers),
        models=LabelSet().follow(routes.all, lambda all_routes: [
            name for route in all_routes.values()
            for name in (route.name, *(t.model for t in route.targets))]),
        regions=LabelSet(regions).follow(routes.all, lambda all_routes: [
            t.region for route in all_routes.values() for t in route.targets]),
        methods=LabelSet(methods))


def build_verifier(config: GatewayConfig, environ: Mapping[str, str]
                   ) -> tuple[RotatingVerifier, JwksRefresher | None]:
    """The static keys' verifier, and the refresher that adds `auth.jwks_url`'s keys (if set;
    then the static keys may be none at all)."""
    auth = config.auth
    keys = KeySet.load(jwt_secret(config, environ), auth.public_key_files, auth.jwks_file,
                       allow_empty=auth.jwks_url is not None)
    verifier = RotatingVerifier(
        keys, lambda ks: TokenVerifier(ks, auth.issuer, auth.audience, auth.leeway_s))
    if auth.jwks_url is None:
        return verifier, None
    fetch = HttpJwksFetcher(auth.jwks_url, auth.jwks_timeout_s)
    return verifier, JwksRefresher(fetch, verifier, origin=fetch.origin,
                                   refresh_s=auth.jwks_refresh_s,
                                   min_refresh_s=auth.jwks_min_refresh_s)


def build_limiter(config: GatewayConfig, metrics: Metrics) -> RateLimiter:
    rl = config.rate_limits
    if not rl.redis_url:
        return LocalLimiter()
    # Imported here: redis-py (~8 MB resident) only when a Redis is configured.
    from server.ratelimit.failover import FailoverLimiter
    from server.ratelimit.redis_limiter import RedisLimiter

    metrics.rate_limit_degraded.set(0)
    return FailoverLimiter(
        RedisLimiter.from_url(rl.redis_url, socket_timeout_s=rl.redis_timeout_s,
                              socket_connect_timeout_s=rl.redis_timeout_s),
        LocalLimiter(), fail_open=rl.fail_open, timeout_s=rl.redis_timeout_s * 2,
        on_degraded=lambda degraded: metrics.rate_limit_degraded.set(1 if degraded else 0),
        on_fallback_decision=metrics.rate_limit_fallback_decisions.inc,
        logger=logging.getLogger("llmgw.ratelimit"))


def server_options(config: GatewayConfig) -> list[tuple[str, int]]:
    s = config.server
    return [
        ("grpc.max_receive_message_length", s.max_message_bytes),
        ("grpc.max_send_message_length", s.max_message_bytes),
        ("grpc.max_concurrent_streams", s.max_concurrent_streams),
        ("grpc.keepalive_time_ms", int(s.keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(s.keepalive_timeout_s * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_ping_strikes", 3),
        ("grpc.so_reuseport", 1),  # `llmgw serve --workers N` shares the port
    ]


class Gateway:
    """One gateway process: gRPC server, health, providers, limiter, database."""

    def __init__(self, config: GatewayConfig, *, database_url: str,
                 registry: CollectorRegistry | None,
                 environ: Mapping[str, str] = os.environ) -> None:
        self.config = config
        self.routes = RouteCache(routes_from_config(config))
        self.metrics = Metrics(registry, metric_labels(config, self.routes))
        self._tracer_provider = build_tracer_provider(config.tracing)
        otel = tracer(self._tracer_provider, config.tracing)
        # Blocking vendor SDKs (boto3) run here, never on the event loop; bounded.
        self._sdk_threads = ThreadPoolExecutor(max_workers=config.routing.bedrock_threads,
                                               thread_name_prefix="vendor-sdk")
        self._providers = build_providers(config, environ, self._sdk_threads)
        self._limiter = build_limiter(config, self.metrics)
        self._engine = create_engine(database_url, config.database.pool_size)
        self._health = health.aio.HealthServicer()
        self._health_task: asyncio.Task[None] | None = None
        self._draining = False
        self._route_store = RouteStore(self._engine)
        self._routes_task: asyncio.Task[None] | None = None
        chains = ChainBuilder(config, self._providers, routes=self.routes)
        r, g = config.retry, config.routing
        router = Router(self._providers, RetryPolicy(r.max_attempts_per_target, r.base_delay_s,
                                                     r.max_delay_s, r.max_retry_after_s),
                        self.metrics, otel,
                        retries=RetryAllowance(g.retry_ratio, g.retry_min_per_s),
                        attempt_timeouts={name: p.timeout_s
                                          for name, p in config.providers.items()},
                        capabilities=Capabilities(config.capabilities),
                        breaker_policy=BreakerPolicy(
                            g.breaker_consecutive_failures, g.breaker_error_rate,
                            g.breaker_window_s, g.breaker_min_calls, g.breaker_cooldown_s))
        self.router = router
        interceptors: list[grpc.aio.ServerInterceptor] = [TracingInterceptor(otel, self.metrics)]
        self._jwks: JwksRefresher | None = None
        self._jwks_task: asyncio.Task[None] | None = None
        if config.auth.enabled:
            verifier, self._jwks = build_verifier(config, environ)
            interceptors.append(AuthInterceptor(
                verifier, on_unknown_key=self._jwks.refresh_for_unknown_key if self._jwks
                else None))
        if config.rate_limits.enabled:
            interceptors.append(RateLimitInterceptor(self._limiter, config.rate_limits.rules,
                                                     self.metrics,
                                                     TenantClaims.from_config(config.tenancy)))
        self.streams = StreamsPerCaller(config.server.max_streams_per_caller)
        interceptors.append(StreamLimitInterceptor(self.streams, self.metrics))
        interceptors.append(RequestChecksInterceptor())  # right before handlers (and audit)
        audit_store = AuditStore(self._engine)
        self.audit = AuditRecorder(audit_store, on_outcome=lambda outcome:
                                   self.metrics.audit_events.labels(outcome).inc())
        # Innermost: records only checked requests whose handler succeeded.
        interceptors.append(AuditInterceptor(self.audit, Snapshots(self._engine),
                                             TenantClaims.from_config(config.tenancy)))
        self.server = grpc.aio.server(interceptors=interceptors, options=server_options(config))
        b = config.billing
        tenants = TenantClaims.from_config(config.tenancy)
        prices = PriceList.from_config(config)
        if unpriced := prices.unpriced(configured_targets(config)):
            log.warning("unpriced targets (billed calls reaching them fail with "
                        "PRICE_UNKNOWN): %s", ", ".join(unpriced))
        self.billing = BillingRuntime(database_url, prices,
                                      BillingSettings(b.pool_size, b.writers, b.max_batch,
                                                      b.hold_ttl_s, b.sweep_interval_s,
                                                      b.hold_output_tokens),
                                      on_batch=metrics_hook(self.metrics.ledger_operations,
                                                            self.metrics.ledger_batch_size))
        if b.enabled:
            billing_pb2_grpc.add_BillingServiceServicer_to_server(
                BillingService(self.billing.ledger, self.billing.budgets, tenants), self.server)
        self.rag = RagRuntime.from_config(config.rag, self._engine,
                                          build_embedders(config, self._providers))
        retrieval_pb2_grpc.add_RetrievalServiceServicer_to_server(
            RetrievalService(config.rag, self.rag.retriever, self.rag.ingestor, tenants), self.server)
        self.prompts = PromptStore(self._engine)
        bots = BotStore(self._engine)
        renderer = Renderer(timezone=config.prompts.timezone)
        config_pb2_grpc.add_ConfigServiceServicer_to_server(
            ConfigService(self.prompts, bots, renderer, tenants), self.server)
        metering = Metering(self.billing.calls, self.billing.recorder, prices) if b.enabled \
            else Metering(None, None)
        generation = GenerationService(
            chains, router, metering, self.metrics, presets=Presets(self.prompts, bots, renderer),
            grounder=Grounder(config.rag, self.rag.retriever))
        embedding = EmbeddingService(config, self.rag.embedders, router, metering)
        generation_pb2_grpc.add_GenerationServiceServicer_to_server(
            GenerationServicer(config, chains, generation, embedding), self.server)
        audit_pb2_grpc.add_AuditServiceServicer_to_server(AuditService(audit_store, tenants),
                                                          self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self.server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server)
        self.port = 0
        self.tls: CertificateReloader | None = None  # start() sets it when server.tls is set

    async def start(self, host: str, port: int) -> int:
        """Bind and start serving; returns the bound port (useful with port 0).

        Plaintext unless ``server.tls`` is set; then TLS (mutual with a client CA), the
        certificate re-read for new connections as ``self.tls`` decides (SIGHUP, file
        changes)."""
        address = f"{host}:{port}"
        if self.config.server.tls is None:
            self.port = self.server.add_insecure_port(address)
        else:
            credentials, self.tls = listener_credentials(self.config.server.tls)
            self.port = self.server.add_secure_port(address, credentials)
        if self.port == 0:
            raise OSError(f"cannot listen on {host}:{port}")
        if self.config.billing.enabled:
            await self.billing.start()
        if self._jwks is not None:  # a failed first fetch is logged; the task keeps retrying
            await self._jwks.refresh()
            self._jwks_task = asyncio.create_task(self._jwks.run_forever(), name="jwks-refresh")
        await self.server.start()
        database_up = await database_is_up(self._engine)
        if database_up and self.config.prompts.load_defaults:
            await self.prompts.load_defaults()
        await self._set_health(database_up)
        self._health_task = asyncio.create_task(self._watch_database(), name="db-health")
        self._routes_task = asyncio.create_task(
            refresh_forever(self._route_store, self.routes, self._providers,
                            self.config.routing.routes_refresh_s), name="routes-refresh")
        log.info("gateway listening", extra={
            "address": f"{host}:{self.port}",
            "tls": "off" if self.tls is None else "mutual" if self.tls.mutual else "on"})
        return self.port

    async def _set_health(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving and not self._draining \
            else health_pb2.HealthCheckResponse.NOT_SERVING
        self.metrics.database_up.set(1 if serving else 0)
        for name in ("", *SERVICE_NAMES):
            await self._health.set(name, status)

    async def _watch_database(self) -> None:
        """NOT_SERVING while Postgres does not answer, SERVING again when it does."""
        was_up = True
        while not self._draining:
            await asyncio.sleep(self.config.database.health_interval_s)
            up = await database_is_up(self._engine)
            if up != was_up:
                log.warning("database %s", "reachable again" if up else "unreachable")
                was_up = up
            await self._set_health(up)

    async def stop(self, grace_s: float | None = None) -> None:
        """Drain: NOT_SERVING at once, refuse new calls, give in-flight ones the grace."""
        self._draining = True
        await self._set_health(False)
        if self._health_task is not None:
            self._health_task.cancel()
        if self._routes_task is not None:
            self._routes_task.cancel()
        if self._jwks_task is not None:
            self._jwks_task.cancel()
        grace = self.config.server.grace_period_s if grace_s is None else grace_s
        await self.server.stop(grace)
        await self.billing.stop()
        await self.audit.drain()
        for provider in self._providers.values():
            await provider.aclose()
        self._sdk_threads.shutdown(wait=False, cancel_futures=True)
        await self._limiter.aclose()
        await self._engine.dispose()
        self._tracer_provider.shutdown()

    async def wait_for_termination(self) -> None:
        await self.server.wait_for_termination()
