"""A gateway configured for router scenarios: two simulator-backed vendors, a vendor with a
rejected key, fast retries, a breaker that opens after 3 failures and a quick route
refresh. Every test scripts its own model names on the shared simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from llmgateway.v1 import generation_pb2_grpc as pb_grpc

from simulator.testing import SimulatorProcess
from tests.support.gateway import RunningGateway, raw_test_config, running_gateway

BREAKER_FAILURES = 3
BREAKER_COOLDOWN_S = 0.5


@pytest.fixture(scope="session")
def routes_pg_url(pg_url: str) -> str:
    """The shared Postgres, migrated to heads (including the routes table, 0004)."""
    return pg_url


def router_config(simulator: SimulatorProcess, data_dir: Path, **overrides: object) -> dict:
    bad_key = data_dir / "invalid-sim-key"
    bad_key.write_text(SimulatorProcess.invalid_api_key)
    sim_v1 = f"{simulator.base_url}/v1"
    raw = raw_test_config(simulator.base_url, data_dir, **{
        "providers": {
            "sim-b": {"kind": "openai", "base_url": sim_v1, "requires_api_key": False},
            "badkey": {"kind": "openai", "base_url": sim_v1, "api_key_file": str(bad_key)},
        },
        "retry": {"max_attempts_per_target": 2, "base_delay_s": 0.005, "max_delay_s": 0.02},
        "routing": {"breaker_consecutive_failures": BREAKER_FAILURES,
                    "breaker_cooldown_s": BREAKER_COOLDOWN_S, "routes_refresh_s": 0.2},
        "rate_limits": {"enabled": False},
        "models": {
            "fb-weighted": {"strategy": "weighted", "targets": [
                {"provider": "simulator", "model": "fb-w-a", "weight": 70},
                {"provider": "sim-b", "model": "fb-w-b", "weight": 30}]},
            "fb-seed-primary": {"targets": [{"provider": "simulator", "model": "fb-seed-a"}],
                                "fallbacks": ["fb-seed-cross", "fb-seed-same"]},
            "fb-seed-same": {"targets": [{"provider": "simulator", "model": "fb-seed-b"}]},
            "fb-seed-cross": {"targets": [{"provider": "sim-b", "model": "fb-seed-c"}]},
        },
        **overrides,
    })
    return raw


@pytest.fixture(scope="session")
async def router_gateway(simulator: SimulatorProcess, routes_pg_url: str,
                         data_dir: Path) -> AsyncIterator[RunningGateway]:
    async with running_gateway(router_config(simulator, data_dir), routes_pg_url) as gw:
        yield gw


@pytest.fixture(scope="session")
async def router_channel(router_gateway: RunningGateway) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(router_gateway.target) as ch:
        yield ch


@pytest.fixture
def stub(router_channel: grpc.aio.Channel) -> pb_grpc.GenerationServiceStub:
    return pb_grpc.GenerationServiceStub(router_channel)
