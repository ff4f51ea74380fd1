"""A Generate request is validated as a whole before any I/O: one INVALID_ARGUMENT names
every bad field of every section, and neither the database nor a vendor is touched.

The gateway here has no database at all (its URL points at a closed port) and the real
simulator behind it: if any section were checked only after a lookup, the call would fail
with a database error instead, or the simulator would count a request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from llmgateway.v1 import generation_pb2 as pb
from llmgateway.v1 import generation_pb2_grpc as pb_grpc

from simulator.testing import SimulatorProcess
from tests.e2e.test_bad_input import details
from tests.support.gateway import (
    RunningGateway,
    bearer,
    free_port,
    raw_test_config,
    running_gateway,
)

AUTH = bearer("generate")


@pytest.fixture
async def dbless_gateway(simulator: SimulatorProcess, tmp_path: Path
                         ) -> AsyncIterator[RunningGateway]:
    raw = raw_test_config(simulator.base_url, tmp_path, billing={"enabled": False},
                          prompts={"load_defaults": False})
    async with running_gateway(raw, f"postgresql://nobody@127.0.0.1:{free_port()}/none") as gw:
        yield gw


def bad_everywhere() -> pb.GenerateRequest:
    return pb.GenerateRequest(
        bot="support-bot",  # would need a database lookup
        messages=[pb.Message(role="robot", content="Where is my order?")],      # messages
        config=pb.GenerationConfig(temperature=7.0, top_p=0.0),                   # config
        billing=pb.BillingOptions(wallet_id="bad wallet!", idempotency_key=""),  # billing
        retrieval=pb.RetrievalOptions(namespace="", top_k=-3, min_score=4.0),    # retrieval
        prompt=pb.PromptOptions(key="support", version=-1),                      # prompt
    )


async def test_one_error_names_every_section_before_any_io(
        dbless_gateway: RunningGateway, simulator: SimulatorProcess) -> None:
    before = simulator.stats()["requests"]
    async with grpc.aio.insecure_channel(dbless_gateway.target) as channel:
        stub = pb_grpc.GenerationServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Generate(bad_everywhere(), metadata=AUTH, timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as streamed:
            async for _ in stub.StreamGenerate(pb.StreamGenerateRequest(
                    **{f.name: v for f, v in bad_everywhere().ListFields()}),
                    metadata=AUTH, timeout=10):
                pass
    for error in (caught.value, streamed.value):
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        info, violations = details(error)
        assert info.reason == "INVALID_ARGUMENT"
        fields = {field for field, _ in violations}
        assert {"messages[0].role", "config.temperature", "config.top_p",
                "billing.wallet_id", "billing.idempotency_key", "retrieval.namespace",
                "retrieval.top_k", "retrieval.min_score", "prompt.version"} <= fields
    assert simulator.stats()["requests"] == before


async def test_the_database_really_is_away(dbless_gateway: RunningGateway) -> None:
    """The control: the same request with its fields fixed does reach for the database
    (the bot lookup) and fails there, so the test above would have seen that."""
    async with grpc.aio.insecure_channel(dbless_gateway.target) as channel:
        stub = pb_grpc.GenerationServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Generate(pb.GenerateRequest(
                bot="support-bot", messages=[pb.Message(role="user", content="Hi")]),
                metadata=AUTH, timeout=10)
    assert caught.value.code() not in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OK)
