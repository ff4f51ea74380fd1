"""A provider's `timeout_s` caps one attempt, so a slow (not failing) target leaves the rest
of the caller's deadline to the next target instead of using all of it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from llmgateway.v1 import generation_pb2 as pb
from llmgateway.v1 import generation_pb2_grpc as pb_grpc

from tests.support.gateway import RunningGateway, bearer, raw_test_config, running_gateway

TARGETS = [pb.Target(provider="slow-sim", model="very-slow"),
           pb.Target(provider="simulator", model="sim-chat")]


@pytest.fixture(scope="module")
async def capped(simulator, pg_url, data_dir) -> AsyncIterator[RunningGateway]:
    raw = raw_test_config(simulator.base_url, data_dir, providers={"slow-sim": {
        "kind": "openai", "base_url": f"{simulator.base_url}/v1", "requires_api_key": False,
        "timeout_s": 0.3}})
    async with running_gateway(raw, pg_url) as gw:
        yield gw


def message() -> list[pb.Message]:
    return [pb.Message(role="user", content="Hello")]


async def test_slow_primary_times_out_and_the_fallback_serves_within_the_deadline(
        capped, simulator):
    simulator.set_scenario("very-slow", latency_ms=5000)
    import grpc

    async with grpc.aio.insecure_channel(capped.target) as channel:
        stub = pb_grpc.GenerationServiceStub(channel)
        started = time.monotonic()
        response = await stub.Generate(pb.GenerateRequest(messages=message(), targets=TARGETS),
                                       metadata=bearer("generate"), timeout=3)
        elapsed = time.monotonic() - started
    first, second = response.attempts[0], response.attempts[-1]
    assert (first.target.model, first.error_reason) == ("very-slow", "timeout")
    assert "attempt timeout" in first.error_message
    assert (second.target.model, second.outcome) == ("sim-chat", pb.ATTEMPT_OUTCOME_SUCCESS)
    assert elapsed < 2.5  # the 5 s primary did not eat the 3 s deadline


async def test_stream_first_token_is_bounded_by_the_attempt_timeout(capped, simulator):
    simulator.set_scenario("very-slow", latency_ms=5000)
    import grpc

    async with grpc.aio.insecure_channel(capped.target) as channel:
        stub = pb_grpc.GenerationServiceStub(channel)
        events = [e async for e in stub.StreamGenerate(
            pb.StreamGenerateRequest(messages=message(), targets=TARGETS),
            metadata=bearer("generate"), timeout=3)]
    start, end = events[0].start, events[-1].end
    assert start.served_by.model == "sim-chat"
    assert [a.error_reason for a in start.attempts if a.target.model == "very-slow"][0] == \
        "timeout"
    assert end.usage.output_tokens == 12
