"""Generate and StreamGenerate through the real server, the real OpenAI SDK and the
simulator over real HTTP."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from llmgateway.v1 import generation_pb2 as pb
from llmgateway.v1 import generation_pb2_grpc as pb_grpc

from server.kernel.tokens import estimate_tokens
from simulator.testing import SimulatorProcess
from tests.support.gateway import RunningGateway, bearer


def request(model: str = "sim-chat", text: str = "Hello", **kw: object) -> pb.GenerateRequest:
    return pb.GenerateRequest(model=model, messages=[pb.Message(role="user", content=text)], **kw)


def stream_request(model: str, text: str = "Hello", **kw: object) -> pb.StreamGenerateRequest:
    return pb.StreamGenerateRequest(model=model, messages=[pb.Message(role="user", content=text)],
                                    **kw)


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> pb_grpc.GenerationServiceStub:
    return pb_grpc.GenerationServiceStub(channel)


async def test_generate_returns_text_usage_served_by_and_trace(stub, gateway: RunningGateway):
    call = stub.Generate(request(), metadata=bearer("generate"), timeout=10)
    response = await call
    trailers = dict(await call.trailing_metadata())

    assert response.text.startswith("Hello from sim-chat.")
    assert response.finish_reason == pb.FINISH_REASON_STOP
    assert response.usage.input_tokens > 0 and response.usage.output_tokens == 12
    assert (response.served_by.provider, response.served_by.model) == ("simulator", "sim-chat")
    assert [a.outcome for a in response.attempts] == [pb.ATTEMPT_OUTCOME_SUCCESS]
    assert len(response.trace_id) == 32 and trailers["x-trace-id"] == response.trace_id
    assert gateway.metric("llmgw_rpc_total", {"method": "Generate", "code": "OK"}) >= 1
    assert gateway.metric("llmgw_provider_attempts_total", {
        "provider": "simulator", "model": "sim-chat", "region": "", "outcome": "success"}) >= 1


async def test_generate_continues_callers_w3c_trace(stub):
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    metadata = (*bearer("generate"), ("traceparent", f"00-{trace_id}-00f067aa0ba902b7-01"))
    response = await stub.Generate(request(), metadata=metadata, timeout=10)
    assert response.trace_id == trace_id


async def test_parameters_reach_the_vendor(stub):
    response = await stub.Generate(
        request(config=pb.GenerationConfig(max_output_tokens=3)), metadata=bearer("generate"),
        timeout=10)
    assert response.usage.output_tokens == 3
    assert response.finish_reason == pb.FINISH_REASON_LENGTH


async def test_failed_target_falls_back_and_reports_every_attempt(stub):
    response = await stub.Generate(request(model="gpt-4o-mini"), metadata=bearer("generate"),
                                   timeout=10)
    first, second = response.attempts
    assert (first.target.provider, first.outcome, first.error_reason) == (
        "openai", pb.ATTEMPT_OUTCOME_FAILED, "auth")
    assert first.error_message == "no API key is configured for provider 'openai'"
    assert (second.target.provider, second.outcome) == ("simulator", pb.ATTEMPT_OUTCOME_SUCCESS)
    assert response.served_by.provider == "simulator"


async def test_stream_relays_tokens_as_they_arrive(stub, simulator: SimulatorProcess):
    simulator.set_scenario("slow-stream", tokens_per_second=20, reply_tokens=20)
    started = time.monotonic()
    arrivals: list[tuple[str, float]] = []
    async for event in stub.StreamGenerate(
            stream_request("slow-stream", targets=[pb.Target(provider="simulator",
                                                             model="slow-stream")]),
            metadata=bearer("generate"), timeout=20):
        arrivals.append((event.WhichOneof("event"), time.monotonic() - started))

    kinds = [kind for kind, _ in arrivals]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert kinds.count("delta") == 20
    first_delta = next(t for kind, t in arrivals if kind == "delta")
    last_delta = [t for kind, t in arrivals if kind == "delta"][-1]
    # 20 tokens at 20/s take ~1 s upstream; the first must reach us long before the last.
    assert last_delta - first_delta > 0.5
    assert first_delta < last_delta / 2


async def test_stream_final_event_carries_usage_and_served_by(stub):
    events = [e async for e in stub.StreamGenerate(stream_request("sim-chat"),
                                                   metadata=bearer("generate"), timeout=10)]
    start, end = events[0].start, events[-1].end
    text = "".join(e.delta.text for e in events if e.WhichOneof("event") == "delta")
    assert start.served_by.model == "sim-chat" and len(start.trace_id) == 32
    assert text.startswith("Hello from sim-chat.")
    assert end.usage.output_tokens == 12 and end.usage.input_tokens > 0
    assert end.finish_reason == pb.FINISH_REASON_STOP
    assert end.served_by.provider == "simulator" and end.trace_id == start.trace_id
    assert end.time_to_first_token.ToNanoseconds() > 0


async def test_cancelling_the_stream_closes_the_upstream_request(stub, simulator):
    simulator.set_scenario("cancel-me", tokens_per_second=10, reply_tokens=200)
    before = simulator.stats()["client_disconnects"]
    call = stub.StreamGenerate(
        stream_request("cancel-me", targets=[pb.Target(provider="simulator", model="cancel-me")]),
        metadata=bearer("generate"), timeout=30)
    deltas = 0
    async for event in call:
        if event.WhichOneof("event") == "delta":
            deltas += 1
            if deltas == 3:
                break
    call.cancel()
    stats = await asyncio.to_thread(
        simulator.wait_for_stats, lambda s: s["client_disconnects"] > before, 5.0)
    assert stats["client_disconnects"] == before + 1
    assert stats["streams_completed"] < stats["streams_started"]


async def test_deadline_exceeded_is_reported_as_such(stub, simulator):
    simulator.set_scenario("too-slow", latency_ms=3000)
    target = [pb.Target(provider="simulator", model="too-slow")]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Generate(request(targets=target), metadata=bearer("generate"), timeout=0.3)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in stub.StreamGenerate(stream_request("too-slow", targets=target),
                                           metadata=bearer("generate"), timeout=0.3):
            pass
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_upstream_abandoned_when_deadline_passes(stub, simulator):
    simulator.set_scenario("hang", timeout=True)
    before = simulator.stats()["client_disconnects"]
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.Generate(request(targets=[pb.Target(provider="simulator", model="hang")]),
                            metadata=bearer("generate"), timeout=0.3)
    await asyncio.to_thread(simulator.wait_for_stats,
                            lambda s: s["client_disconnects"] > before, 5.0)


async def test_stream_cut_after_first_token_ends_with_usage_then_unavailable(stub, simulator):
    simulator.set_scenario("drops", drop_after_tokens=4, reply_tokens=20)
    events = []
    call = stub.StreamGenerate(
        stream_request("drops", targets=[pb.Target(provider="simulator", model="drops")]),
        metadata=bearer("generate"), timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for event in call:
            events.append(event)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert [e.WhichOneof("event") for e in events].count("delta") in range(1, 5)  # 4 tokens
    end = events[-1].end
    sent = "".join(e.delta.text for e in events if e.HasField("delta"))
    assert end.finish_reason == pb.FINISH_REASON_ERROR
    assert end.usage.output_tokens == estimate_tokens(sent) and end.usage.input_tokens > 0


async def test_list_models_shows_routes(stub):
    response = await stub.ListModels(pb.ListModelsRequest(), metadata=bearer("generate"),
                                     timeout=5)
    names = [m.name for m in response.models]
    assert {"sim-chat", "gpt-4o-mini"} <= set(names)
    gpt = next(m for m in response.models if m.name == "gpt-4o-mini")
    assert [t.provider for t in gpt.targets] == ["openai", "simulator"]
    page = await stub.ListModels(pb.ListModelsRequest(page_size=1), metadata=bearer("generate"),
                                 timeout=5)
    assert len(page.models) == 1 and page.next_page_token == names[1]


async def test_every_call_writes_a_priced_usage_record(stub, pg_url):
    from tests.support.usage import usage_record

    response = await stub.Generate(request(end_user_id="user-7", metadata={"feature": "faq"}),
                                   metadata=bearer("generate"), timeout=10)
    record = await usage_record(pg_url, response.trace_id)
    assert (record["service"], record["end_user_id"], record["provider"], record["model"]) == (
        "test-service", "user-7", "simulator", "sim-chat")
    assert (record["input_tokens"], record["output_tokens"]) == (
        response.usage.input_tokens, response.usage.output_tokens)
    # sim-chat lists 0.15 USD per million input and 0.60 per million output tokens.
    expected = -(-(response.usage.input_tokens * 150_000
                   + response.usage.output_tokens * 600_000) // 1_000_000)
    assert (record["cost_micros"], record["currency_code"]) == (expected, "USD")
    assert record["status"] == "OK" and record["wallet_id"] == ""
