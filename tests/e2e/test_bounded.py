"""A hostile caller's distinct names do not grow the gateway: 2,000 requests with 2,000
distinct model names, targets, regions and end users leave /metrics small (every such
value reads "other") and the breaker and limiter maps bounded (the long version is
bench/soak.py)."""

from __future__ import annotations

import asyncio
import random
import time

import grpc
from llmgateway.v1 import generation_pb2 as pb
from llmgateway.v1 import generation_pb2_grpc as pb_grpc
from prometheus_client import generate_latest

from server.fallback.breaker import DEFAULT_MAX_BREAKERS
from simulator.testing import SimulatorProcess
from tests.support.gateway import bearer, raw_test_config, running_gateway

REQUESTS, CONCURRENCY, METRICS_LIMIT = 2_000, 32, 100_000


def hostile(i: int, rng: random.Random) -> pb.GenerateRequest:
    """Valid-shaped, with caller-chosen names everywhere a name can go."""
    word = f"{rng.getrandbits(48):012x}-{i}"
    messages = [pb.Message(role="user", content="hi")]
    common = {"messages": messages, "end_user_id": f"user-{word}",
              "metadata": {f"k-{word}": word}}
    kind = i % 3
    if kind == 0:
        return pb.GenerateRequest(model=f"model-{word}", **common)
    if kind == 1:
        return pb.GenerateRequest(targets=[pb.Target(provider="simulator", model=f"m-{word}")],
                                  **common)
    return pb.GenerateRequest(targets=[pb.Target(provider="simulator", model=f"m-{word}",
                                                 region=f"region-{word}")], **common)


async def test_distinct_caller_names_do_not_grow_metrics_or_maps(
        simulator: SimulatorProcess, pg_url: str, data_dir):
    rng = random.Random(7)
    started = time.monotonic()
    async with running_gateway(raw_test_config(simulator.base_url, data_dir), pg_url) as gw, \
            grpc.aio.insecure_channel(gw.target) as channel:
        stub = pb_grpc.GenerationServiceStub(channel)
        metadata = bearer("generate")
        codes: dict[grpc.StatusCode, int] = {}
        pending = iter(range(REQUESTS))

        async def caller() -> None:
            for i in pending:
                try:
                    await stub.Generate(hostile(i, rng), metadata=metadata, timeout=10)
                    code = grpc.StatusCode.OK
                except grpc.aio.AioRpcError as error:
                    code = error.code()
                codes[code] = codes.get(code, 0) + 1

        await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
        exposition = generate_latest(gw.registry)
        breakers = len(gw.gateway.router.breakers)
        limiter = gw.gateway._limiter  # the in-process limiter (no redis_url)

    assert sum(codes.values()) == REQUESTS
    assert codes.get(grpc.StatusCode.OK, 0) > 0, codes  # the explicit targets were served
    assert grpc.StatusCode.INTERNAL not in codes, codes
    assert len(exposition) < METRICS_LIMIT, len(exposition)
    assert b"model-" not in exposition and b"region-" not in exposition
    assert breakers <= min(DEFAULT_MAX_BREAKERS, REQUESTS)
    # one small entry per live (rule, key): at most the three default rules' keys
    assert len(limiter) <= 3 * REQUESTS
    assert time.monotonic() - started < 30


async def test_a_caller_over_its_stream_cap_is_refused_and_others_are_not(
        simulator: SimulatorProcess, pg_url: str, data_dir):
    simulator.set_scenario("bounded-slow", tokens_per_second=20, reply_tokens=20)
    request = pb.StreamGenerateRequest(
        targets=[pb.Target(provider="simulator", model="bounded-slow")],
        messages=[pb.Message(role="user", content="hi")])
    raw = raw_test_config(simulator.base_url, data_dir, server={"max_streams_per_caller": 2})
    async with running_gateway(raw, pg_url) as gw, \
            grpc.aio.insecure_channel(gw.target) as channel:
        stub = pb_grpc.GenerationServiceStub(channel)
        hog, polite = bearer("generate", subject="hog"), bearer("generate", subject="polite")
        held = [stub.StreamGenerate(request, metadata=hog, timeout=20) for _ in range(2)]
        for call in held:
            await call.read()  # the start event: both streams are open
        third = stub.StreamGenerate(request, metadata=hog, timeout=20)
        try:
            await third.read()
            raise AssertionError("the third stream was admitted")
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
            assert "concurrent streams" in error.details()
        other = [e async for e in stub.StreamGenerate(request, metadata=polite, timeout=20)]
        assert other[-1].WhichOneof("event") == "end"
        for call in held:
            while await call.read() is not grpc.aio.EOF:
                pass
        again = [e async for e in stub.StreamGenerate(request, metadata=hog, timeout=20)]
        assert again[-1].WhichOneof("event") == "end"  # a finished stream frees its slot
        assert len(gw.gateway.streams) == 0
        assert gw.metric("llmgw_rate_limit_rejections_total",
                         {"rule": "max_streams_per_caller"}) == 1
    simulator.remove_scenario("bounded-slow")
