"""A primary that never answers, with the packaged provider timeout (60 s) and a healthy
fallback: per-attempt budgets leave the fallback its time, and the hanging target's
breaker sees the failures and opens early (the small version of bench/hang_bench.py)."""

from __future__ import annotations

import asyncio
import time

import grpc
from llmgateway.v1 import generation_pb2 as pb
from llmgateway.v1 import generation_pb2_grpc as pb_grpc

from tests.fallback.conftest import router_config
from tests.fallback.test_router_scenarios import AUTH, ask
from tests.support.gateway import running_gateway

CALLS, CONCURRENCY, DEADLINE_S = 200, 16, 1.0
PRIMARY, FALLBACK = "hang-primary", "hang-fallback"


async def test_a_hanging_primary_opens_its_breaker_early_and_the_fallback_serves(
        simulator, routes_pg_url, data_dir):
    raw = router_config(simulator, data_dir, routing={  # the packaged breaker policy
        "breaker_consecutive_failures": 5, "breaker_cooldown_s": 10})
    assert "timeout_s" not in raw["providers"]["simulator"]  # the 60 s default
    simulator.set_scenario(PRIMARY, timeout=True)
    request = ask(f"simulator/{PRIMARY}", f"sim-b/{FALLBACK}")
    served: list[bool] = [False] * CALLS
    skipped: list[bool] = [False] * CALLS
    started_at = time.monotonic()
    async with running_gateway(raw, routes_pg_url) as gw, \
            grpc.aio.insecure_channel(gw.target) as channel:
        stub = pb_grpc.GenerationServiceStub(channel)
        pending = iter(range(CALLS))

        async def caller() -> None:
            for i in pending:
                try:
                    response = await stub.Generate(request, metadata=AUTH, timeout=DEADLINE_S)
                except grpc.aio.AioRpcError:
                    continue
                served[i] = response.served_by.model == FALLBACK
                skipped[i] = any(a.outcome == pb.ATTEMPT_OUTCOME_SKIPPED_CIRCUIT_OPEN
                                 for a in response.attempts)

        await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
        state = gw.metric("llmgw_circuit_breaker_state",
                          {"provider": "simulator", "model": PRIMARY, "region": ""})
    assert sum(served) >= 0.99 * CALLS, f"{sum(served)} of {CALLS} served"
    assert skipped.index(True) < 50  # the breaker opened within the first 50 calls
    assert state == 2  # and is still open (10 s cool-down)
    assert time.monotonic() - started_at < 30
