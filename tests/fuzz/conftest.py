"""The fuzz suite's own gateway: real Postgres, the simulator, no rate limits.

Its own process state (limiter, breakers, metrics registry) keeps ~20k hostile requests
from exhausting anything the other tests share; the database rows it writes are all under
names that start with ``RUN`` (wallets, namespaces, prompt keys, bots, idempotency subject).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from simulator.testing import SimulatorProcess
from tests.support.gateway import RunningGateway, raw_test_config, running_gateway

RUN = f"fuzz-{uuid.uuid4().hex[:8]}"
EMBEDDER = "openai/text-embedding-3-small"


@pytest.fixture(scope="package")
async def fuzz_gateway(simulator: SimulatorProcess, pg_url: str,
                       data_dir: Path) -> AsyncIterator[RunningGateway]:
    # Embeddings through the simulator (cheap), not the local model (CPU-bound on 2 cores).
    raw = raw_test_config(simulator.base_url, data_dir, rate_limits={"enabled": False}, rag={
        "embedder": EMBEDDER,
        "embedders": {EMBEDDER: {"provider": "simulator", "model": "text-embedding-3-small",
                                 "dimension": 64}}})
    async with running_gateway(raw, pg_url) as gateway:
        yield gateway


@pytest.fixture(scope="package")
async def fuzz_channel(fuzz_gateway: RunningGateway) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(
            fuzz_gateway.target, options=[("grpc.max_send_message_length", 64 << 20),
                                          ("grpc.max_receive_message_length", 64 << 20)]) as ch:
        yield ch
