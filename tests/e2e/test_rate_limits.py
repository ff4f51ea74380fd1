"""Rate limits shared by two server processes through a real Redis, and what happens when
Redis goes away mid-run."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from llmgateway.v1 import generation_pb2 as pb
from llmgateway.v1 import generation_pb2_grpc as pb_grpc

from simulator.testing import SimulatorProcess
from tests.support.gateway import GatewayProcess, bearer, raw_test_config
from tests.support.redis_process import RedisProcess

LIMIT = 12
REQUEST = pb.GenerateRequest(model="sim-chat", messages=[pb.Message(role="user", content="hi")])


@pytest.fixture(scope="module")
def two_gateways(simulator: SimulatorProcess, pg_url: str, redis_server: RedisProcess,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[GatewayProcess]]:
    workdir = tmp_path_factory.mktemp("rl")
    raw = raw_test_config(simulator.base_url, Path(workdir), database={"url": pg_url},
                          rate_limits={"redis_url": redis_server.url, "rules": [
                              {"name": "svc", "per": "service", "requests_per_minute": LIMIT}]})
    gateways = [GatewayProcess(raw, workdir), GatewayProcess(raw, workdir)]
    try:
        for gw in gateways:
            gw.start()
        yield gateways
    finally:
        for gw in gateways:
            gw.stop()


def call(target: str, subject: str) -> grpc.StatusCode | tuple[grpc.StatusCode, grpc.RpcError]:
    with grpc.insecure_channel(target) as channel:
        try:
            pb_grpc.GenerationServiceStub(channel).Generate(
                REQUEST, metadata=bearer("generate", subject=subject), timeout=10)
            return grpc.StatusCode.OK
        except grpc.RpcError as error:
            return error.code(), error


def gauge(text: str, name: str) -> float:
    match = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else float("nan")


def test_two_processes_share_one_limit(two_gateways):
    results = [call(two_gateways[i % 2].target, "shared-svc") for i in range(LIMIT + 8)]
    ok = [r for r in results if r == grpc.StatusCode.OK]
    rejected = [r for r in results if r != grpc.StatusCode.OK]
    # Each process alone would admit LIMIT; together they admit LIMIT (the burst) in total.
    assert len(ok) == LIMIT
    assert len(rejected) == 8
    code, error = rejected[0]
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    trailers = dict(error.trailing_metadata())
    assert float(trailers["retry-after"]) >= 1
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    kinds = {d.TypeName() for d in status.details}
    assert {"google.rpc.ErrorInfo", "google.rpc.RetryInfo", "google.rpc.QuotaFailure"} <= kinds
    retry = error_details_pb2.RetryInfo()
    next(d for d in status.details if d.Is(retry.DESCRIPTOR)).Unpack(retry)
    assert retry.retry_delay.ToNanoseconds() > 0


def test_redis_outage_keeps_serving_and_shows_in_metrics(two_gateways, redis_server):
    gw = two_gateways[0]
    assert call(gw.target, "outage-svc") == grpc.StatusCode.OK
    assert gauge(gw.metrics_text(), "llmgw_rate_limit_degraded") == 0
    redis_server.stop()
    try:
        results = [call(gw.target, f"outage-svc-{i}") for i in range(5)]
        assert results == [grpc.StatusCode.OK] * 5
        text = gw.metrics_text()
        assert gauge(text, "llmgw_rate_limit_degraded") == 1
        assert gauge(text, "llmgw_rate_limit_fallback_decisions_total") >= 5
    finally:
        redis_server.start()
    # Recovery: the limiter goes back to Redis within its retry interval (1 s).
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert call(gw.target, "recovered-svc") == grpc.StatusCode.OK
        if gauge(gw.metrics_text(), "llmgw_rate_limit_degraded") == 0:
            break
        time.sleep(0.3)
    assert gauge(gw.metrics_text(), "llmgw_rate_limit_degraded") == 0


TOKEN_LIMIT = 1000


@pytest.fixture(scope="module")
def token_limited(simulator: SimulatorProcess, pg_url: str, redis_server: RedisProcess,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    simulator.set_scenario("tpm-short", reply_tokens=20)
    simulator.set_scenario("tpm-long", reply_tokens=600)
    workdir = tmp_path_factory.mktemp("tpm")
    raw = raw_test_config(simulator.base_url, Path(workdir), database={"url": pg_url},
                          rate_limits={"redis_url": redis_server.url, "rules": [
                              {"name": "tpm", "per": "service",
                               "tokens_per_minute": TOKEN_LIMIT}]})
    gateway = GatewayProcess(raw, workdir)
    try:
        yield gateway.start()
    finally:
        gateway.stop()


def ask(model: str, **config: int) -> pb.GenerateRequest:
    return pb.GenerateRequest(targets=[pb.Target(provider="simulator", model=model)],
                              messages=[pb.Message(role="user", content="hi")],
                              config=pb.GenerationConfig(**config))


def eventually_ok(send, attempts: int = 20) -> None:
    """Corrections land in the background: retry briefly (the bucket refills only
    1000 tokens/minute, ~17/s, far too slowly to pass by refill alone)."""
    for _ in range(attempts):
        try:
            send()
            return
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
            time.sleep(0.1)
    send()


def test_token_limits_are_corrected_by_the_usage_reported(token_limited):
    md = bearer("generate", subject="tpm-refund")
    with grpc.insecure_channel(token_limited.target) as channel:
        stub = pb_grpc.GenerationServiceStub(channel)
        # Estimated ~901 tokens each (max_output_tokens 900), used ~22: without the refund
        # of the first call's unused estimate the second could not pass for ~48 s.
        events = list(stub.StreamGenerate(ask("tpm-short", max_output_tokens=900),
                                          metadata=md, timeout=10))
        assert events[-1].end.usage.output_tokens == 20
        eventually_ok(lambda: stub.Generate(ask("tpm-short", max_output_tokens=900),
                                            metadata=md, timeout=10))

        # Estimated ~257 tokens each (no max_output_tokens), used ~600: the overdraw is
        # charged after each call, so after two calls (~1,200 used) the third is refused —
        # on estimates alone (~514 taken) it would pass.
        md = bearer("generate", subject="tpm-overdraw")
        for _ in range(2):
            reply = stub.Generate(ask("tpm-long"), metadata=md, timeout=10)
            assert reply.usage.output_tokens == 600
        time.sleep(0.5)  # the corrections are applied in the background
        with pytest.raises(grpc.RpcError) as denied:
            stub.Generate(ask("tpm-long"), metadata=md, timeout=10)
        assert denied.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
