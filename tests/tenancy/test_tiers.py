"""Limits per tenant tier, shared by three gateway replicas through one Redis: a tenant on
the free tier gets the free limit, one on the pro tier the pro limit, each its own bucket
(the same service name in both tenants never shares one)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import grpc
import pytest
from llmgateway.v1 import generation_pb2 as pb
from llmgateway.v1 import generation_pb2_grpc as pb_grpc

from tests.support.gateway import GatewayProcess, bearer, raw_test_config
from tests.support.redis_process import RedisProcess

FREE, PRO = 4, 9
RULES = [{"name": "free", "per": "service", "tier": "free", "requests_per_minute": FREE},
         {"name": "pro", "per": "service", "tier": "pro", "requests_per_minute": PRO}]
REQUEST = pb.GenerateRequest(model="sim-fast", messages=[pb.Message(role="user", content="hi")])


@pytest.fixture(scope="module")
def replicas(simulator, pg_url: str, redis_server: RedisProcess,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[GatewayProcess]]:
    workdir = tmp_path_factory.mktemp("tiers")
    raw = raw_test_config(simulator.base_url, workdir, database={"url": pg_url},
                          rate_limits={"redis_url": redis_server.url, "rules": RULES},
                          tenancy={"tiers": {"tier-bravo": "pro"}})
    gateways = [GatewayProcess(raw, workdir) for _ in range(3)]
    try:
        for gateway in gateways:
            gateway.start(timeout_s=90)
        yield gateways
    finally:
        for gateway in gateways:
            gateway.stop()


def served(replicas: list[GatewayProcess], md, calls: int) -> int:
    """How many of ``calls`` round-robin calls over the replicas were served."""
    ok = 0
    channels = [grpc.insecure_channel(g.target) for g in replicas]
    try:
        for channel in itertools.islice(itertools.cycle(channels), calls):
            try:
                pb_grpc.GenerationServiceStub(channel).Generate(REQUEST, metadata=md, timeout=10)
                ok += 1
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
    finally:
        for channel in channels:
            channel.close()
    return ok


def test_each_tier_gets_its_own_limit_across_replicas(replicas):
    # The tier from the token's claim, and from the tenant's configured tier.
    alpha = bearer("generate", subject="svc", claims={"tenant": "tier-alpha", "tier": "free"})
    bravo = bearer("generate", subject="svc", claims={"tenant": "tier-bravo"})
    assert served(replicas, alpha, 3 * FREE) == FREE
    assert served(replicas, bravo, 3 * PRO) == PRO
    # A second free tenant has its own bucket, not alpha's.
    charlie = bearer("generate", subject="svc", claims={"tenant": "tier-charlie", "tier": "free"})
    assert served(replicas, charlie, 2 * FREE) == FREE
