"""Every silent or noisy vendor misbehaviour, for every vendor protocol, unary and
streamed, through a real gateway: what the caller gets is either a whole answer (from the
vendor, or from the fallback when the failure came before any text) or, once text has
been relayed, a stream that ends with FINISH_REASON_ERROR and UNAVAILABLE
UPSTREAM_STREAM_FAILED. Never OK with partial text and an unspecified finish.

Each case has its own route (``fm-<vendor>-<fault>-<mode>``: the vendor's target, then the
healthy ``fm-healthy`` on the OpenAI-compatible simulator), so no case's failures open
another case's circuit breaker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from enum import Enum
from pathlib import Path

import grpc
import pytest
from llmgateway.v1 import generation_pb2 as pb
from llmgateway.v1 import generation_pb2_grpc as pb_grpc

from server.kernel.tokens import estimate_tokens
from simulator.testing import SimulatorProcess
from tests.fallback.test_router_scenarios import error_info
from tests.support.gateway import bearer, raw_test_config, running_gateway

AUTH = bearer("generate")
REPLY_TOKENS = 12
HEALTHY = "fm-healthy"

# Vendor protocol → the target of its route (Bedrock pinned to one region so the
# fallback is the next target, not the next region).
VENDORS = {
    "openai": {"provider": "simulator"},
    "anthropic": {"provider": "sim-anthropic"},
    "gemini": {"provider": "sim-gemini"},
    "bedrock": {"provider": "sim-bedrock", "region": "us-east-1", "pin_region": True},
}


class Seen(Enum):
    """What the caller sees."""

    SERVED_BY_VENDOR = "served by the vendor"      # the fault does not apply to this mode
    SERVED_BY_FALLBACK = "served by the fallback"  # failed before any text: failover
    INTERRUPTED = "interrupted"                    # failed after text: error end + status


# fault → (scenario, what a unary call sees, what a stream sees, text chunks before the end)
FAULTS: dict[str, tuple[dict[str, object], Seen, Seen, int]] = {
    "truncated-before-first-token": ({"truncate_after_chunks": 0},
                                     Seen.SERVED_BY_VENDOR, Seen.SERVED_BY_FALLBACK, 0),
    "truncated-after-3-chunks": ({"truncate_after_chunks": 3},
                                 Seen.SERVED_BY_VENDOR, Seen.INTERRUPTED, 3),
    "no-terminal-event": ({"omit_terminal_event": True},
                          Seen.SERVED_BY_VENDOR, Seen.INTERRUPTED, REPLY_TOKENS),
    "body-cut-mid-json": ({"truncate_body": True},
                          Seen.SERVED_BY_FALLBACK, Seen.SERVED_BY_VENDOR, 0),
    "connection-dropped-mid-stream": ({"drop_after_tokens": 3},
                                      Seen.SERVED_BY_FALLBACK, Seen.INTERRUPTED, 3),
}
MODES = ("unary", "stream")


def case_model(vendor: str, fault: str, mode: str) -> str:
    return f"fm-{vendor}-{fault}-{mode}"


@pytest.fixture(scope="module")
async def stub(simulator: SimulatorProcess, pg_url: str,
               data_dir: Path) -> AsyncIterator[pb_grpc.GenerationServiceStub]:
    """One gateway for the whole matrix, with a route per case."""
    models: dict[str, object] = {HEALTHY: {"targets": [{"provider": "simulator",
                                                        "model": HEALTHY}]}}
    for vendor, target in VENDORS.items():
        for fault in FAULTS:
            for mode in MODES:
                name = case_model(vendor, fault, mode)
                models[name] = {"targets": [{**target, "model": name}], "fallbacks": [HEALTHY]}
    raw = raw_test_config(simulator.base_url, data_dir,
                          rate_limits={"enabled": False},
                          retry={"max_attempts_per_target": 2, "base_delay_s": 0.001,
                                 "max_delay_s": 0.005})
    raw["models"] = {**raw["models"], **models}
    async with running_gateway(raw, pg_url) as gw, grpc.aio.insecure_channel(gw.target) as ch:
        yield pb_grpc.GenerationServiceStub(ch)


def failed_first(attempts, model: str) -> None:
    """The attempt list names the vendor's target as failed before the fallback served."""
    failed = [a for a in attempts if a.outcome == pb.ATTEMPT_OUTCOME_FAILED]
    assert failed and all(a.target.model == model for a in failed)
    assert attempts[-1].outcome == pb.ATTEMPT_OUTCOME_SUCCESS
    assert attempts[-1].target.model == HEALTHY


async def unary(stub: pb_grpc.GenerationServiceStub, model: str, expected: Seen) -> None:
    response = await stub.Generate(
        pb.GenerateRequest(model=model, messages=[pb.Message(role="user", content="Hello")]),
        metadata=AUTH, timeout=15)
    assert response.finish_reason == pb.FINISH_REASON_STOP
    served = HEALTHY if expected is Seen.SERVED_BY_FALLBACK else model
    assert response.served_by.model == served
    assert response.text.startswith(f"Hello from {served}.")
    assert response.usage.output_tokens == REPLY_TOKENS
    if expected is Seen.SERVED_BY_FALLBACK:
        failed_first(response.attempts, model)


async def stream(stub: pb_grpc.GenerationServiceStub, model: str, expected: Seen,
                 chunks: int) -> None:
    events: list[pb.StreamGenerateResponse] = []
    request = pb.StreamGenerateRequest(model=model,
                                       messages=[pb.Message(role="user", content="Hello")])
    call = stub.StreamGenerate(request, metadata=AUTH, timeout=15)
    if expected is Seen.INTERRUPTED:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for event in call:
                events.append(event)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert error_info(caught.value).reason.endswith("UPSTREAM_STREAM_FAILED")
        # (tokens that arrived in one upstream read leave as one delta: 1..chunks of them)
        kinds = [e.WhichOneof("event") for e in events]
        assert kinds[0] == "start" and kinds[-1] == "end" and set(kinds[1:-1]) == {"delta"}
        assert 1 <= len(kinds) - 2 <= chunks
        end = events[-1].end
        assert end.finish_reason == pb.FINISH_REASON_ERROR
        sent = "".join(e.delta.text for e in events if e.HasField("delta"))
        # The vendor reported no usage: the prompt and the text sent, by the token policy.
        assert end.served_by.model == model
        assert end.usage.output_tokens == estimate_tokens(sent) and end.usage.input_tokens > 0
        return
    events = [event async for event in call]
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and set(kinds[1:-1]) == {"delta"}
    served = HEALTHY if expected is Seen.SERVED_BY_FALLBACK else model
    assert events[0].start.served_by.model == served
    text = "".join(e.delta.text for e in events if e.HasField("delta"))
    assert text.startswith(f"Hello from {served}.")
    end = events[-1].end
    assert end.finish_reason == pb.FINISH_REASON_STOP
    assert end.usage.output_tokens == REPLY_TOKENS
    if expected is Seen.SERVED_BY_FALLBACK:
        failed_first(end.attempts, model)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("vendor", list(VENDORS))
async def test_a_misbehaving_vendor_never_yields_a_partial_success(stub, simulator, vendor,
                                                                   fault, mode):
    scenario, on_unary, on_stream, chunks = FAULTS[fault]
    model = case_model(vendor, fault, mode)
    simulator.set_scenario(model, reply_tokens=REPLY_TOKENS, **scenario)
    if mode == "unary":
        await unary(stub, model, on_unary)
    else:
        await stream(stub, model, on_stream, chunks)
