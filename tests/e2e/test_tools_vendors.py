"""Tools, structured output and images through the real gateway on all four vendor
protocols (the adapters' official SDKs against the simulator): unary and streamed tool
round trips, schema-valid JSON, images reaching the vendor in its own format, a
conversation continued on another vendor after a failover, and a vendor's malformed
output answered by a fallback or a precise error — never INTERNAL, never charged."""

from __future__ import annotations

import json
import uuid
from contextlib import contextmanager

import grpc
import jsonschema
import pytest
from google.protobuf import struct_pb2
from llmgateway.v1 import generation_pb2 as pb
from llmgateway.v1 import generation_pb2_grpc as pb_grpc

from tests.billing.test_generate_billing import balance_of, wallet_with
from tests.e2e.test_bad_input import details
from tests.e2e.test_tools_bad_input import PNG
from tests.support.gateway import bearer

MD = bearer("generate", "billing:admin", "billing:read")
# model route → the simulated vendor model behind it
VENDORS = {"sim-chat": "sim-chat", "sim-anthropic": "sim-claude",
           "sim-gemini": "sim-gemini", "sim-bedrock": "sim-bedrock-model"}
WEATHER_SCHEMA = {"type": "object",
                  "properties": {"city": {"type": "string"},
                                 "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                  "required": ["city", "unit"]}
ANSWER_SCHEMA = {"type": "object",
                 "properties": {"label": {"type": "string", "enum": ["refund", "other"]},
                                "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                                "tags": {"type": "array", "items": {"type": "string"}}},
                 "required": ["label", "confidence", "tags"], "additionalProperties": False}


def struct(value: dict) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(value)
    return out


WEATHER = pb.Tool(name="get_weather", description="Current weather in a city",
                  parameters=struct(WEATHER_SCHEMA))
ASK = pb.Message(role="user", content="What is the weather in Paris?")
JSON_FORMAT = pb.ResponseFormat(type=pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, name="ticket",
                                schema=struct(ANSWER_SCHEMA), strict=True)


def stub(channel) -> pb_grpc.GenerationServiceStub:
    return pb_grpc.GenerationServiceStub(channel)


@contextmanager
def scenario(simulator, model: str, **behaviour):
    simulator.set_scenario(model, **behaviour)
    try:
        yield
    finally:
        simulator.remove_scenario(model)


async def streamed(channel, request: pb.StreamGenerateRequest):
    """(events by kind, the end event) of one stream."""
    events: dict[str, list] = {"start": [], "delta": [], "tool_call": [], "end": []}
    async for event in stub(channel).StreamGenerate(request, metadata=MD, timeout=15):
        kind = event.WhichOneof("event")
        events[kind].append(getattr(event, kind))
    return events, events["end"][-1]


def follow_up(calls) -> list[pb.Message]:
    """The conversation after the model called ``calls``: its turn, then the results."""
    return [ASK, pb.Message(role="assistant", tool_calls=calls),
            *(pb.Message(role="tool", tool_call_id=c.id, content='{"temperature": 21}')
              for c in calls)]


def assert_weather_call(call: pb.ToolCall) -> None:
    assert call.name == "get_weather" and call.id
    jsonschema.validate(json.loads(call.arguments), WEATHER_SCHEMA)


@pytest.mark.parametrize("model", list(VENDORS))
async def test_unary_tool_round_trip(channel, model):
    first = await stub(channel).Generate(pb.GenerateRequest(
        model=model, messages=[ASK], tools=[WEATHER]), metadata=MD, timeout=15)
    assert first.finish_reason == pb.FINISH_REASON_TOOL_CALLS
    assert first.served_by.model == VENDORS[model]
    assert len(first.tool_calls) == 1
    assert_weather_call(first.tool_calls[0])
    assert first.usage.output_tokens > 0
    final = await stub(channel).Generate(pb.GenerateRequest(
        model=model, messages=follow_up(first.tool_calls), tools=[WEATHER]),
        metadata=MD, timeout=15)
    assert final.finish_reason == pb.FINISH_REASON_STOP and not final.tool_calls
    assert "temperature" in final.text and "21" in final.text


@pytest.mark.parametrize("model", list(VENDORS))
async def test_streamed_tool_round_trip(channel, model):
    events, end = await streamed(channel, pb.StreamGenerateRequest(
        model=model, messages=[ASK], tools=[WEATHER]))
    pieces = events["tool_call"]
    assert pieces and not events["delta"]
    assert {(p.index, p.id, p.name) for p in pieces} == {(0, end.tool_calls[0].id, "get_weather")}
    assert "".join(p.arguments_delta for p in pieces) == end.tool_calls[0].arguments
    assert end.finish_reason == pb.FINISH_REASON_TOOL_CALLS
    assert_weather_call(end.tool_calls[0])
    # Gemini sends a call whole; OpenAI's pieces that arrive in one network read leave as
    # one (transport: direct); Anthropic and Bedrock stream theirs piece by piece.
    if model in ("sim-anthropic", "sim-bedrock"):
        assert len(pieces) > 1
    events, end = await streamed(channel, pb.StreamGenerateRequest(
        model=model, messages=follow_up(end.tool_calls), tools=[WEATHER]))
    assert end.finish_reason == pb.FINISH_REASON_STOP
    assert "21" in "".join(d.text for d in events["delta"])


@pytest.mark.parametrize("model", list(VENDORS))
async def test_tool_choice_none_and_named(channel, model):
    none = await stub(channel).Generate(pb.GenerateRequest(
        model=model, messages=[ASK], tools=[WEATHER],
        tool_choice=pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_NONE)), metadata=MD, timeout=15)
    assert not none.tool_calls and none.text and none.finish_reason == pb.FINISH_REASON_STOP
    clock = pb.Tool(name="get_time", parameters=struct({"type": "object", "properties": {
        "zone": {"type": "string"}}, "required": ["zone"]}))
    named = await stub(channel).Generate(pb.GenerateRequest(
        model=model, messages=[ASK], tools=[WEATHER, clock],
        tool_choice=pb.ToolChoice(name="get_time")), metadata=MD, timeout=15)
    assert [c.name for c in named.tool_calls] == ["get_time"]


@pytest.mark.parametrize("model", list(VENDORS))
async def test_json_schema_answers_match_the_schema(channel, model):
    unary = await stub(channel).Generate(pb.GenerateRequest(
        model=model, messages=[pb.Message(role="user", content="Classify: I want my money")],
        response_format=JSON_FORMAT), metadata=MD, timeout=15)
    jsonschema.validate(json.loads(unary.text), ANSWER_SCHEMA)
    assert unary.finish_reason == pb.FINISH_REASON_STOP and not unary.tool_calls
    events, end = await streamed(channel, pb.StreamGenerateRequest(
        model=model, messages=[pb.Message(role="user", content="Classify: I want my money")],
        response_format=JSON_FORMAT))
    jsonschema.validate(json.loads("".join(d.text for d in events["delta"])), ANSWER_SCHEMA)
    assert end.finish_reason == pb.FINISH_REASON_STOP and not end.tool_calls


@pytest.mark.parametrize("model", list(VENDORS))
async def test_an_image_reaches_the_vendor(channel, model):
    plain = await stub(channel).Generate(pb.GenerateRequest(
        model=model, messages=[pb.Message(role="user", content="Describe it")]),
        metadata=MD, timeout=15)
    seen = await stub(channel).Generate(pb.GenerateRequest(model=model, messages=[pb.Message(
        role="user", content="Describe it",
        parts=[pb.ContentPart(image=pb.ImagePart(data=PNG, mime_type="image/png"))])]),
        metadata=MD, timeout=15)
    assert "[saw 1 image(s): image/png]" in seen.text
    assert seen.usage.input_tokens > plain.usage.input_tokens


async def test_a_tool_conversation_continues_on_another_vendor_after_failover(
        channel, simulator):
    """The call is made by Gemini (ids minted by the gateway); its result is answered after
    Anthropic fails by Bedrock — each vendor receives the history in its own form."""
    first = await stub(channel).Generate(pb.GenerateRequest(
        model="sim-gemini", messages=[ASK], tools=[WEATHER]), metadata=MD, timeout=15)
    assert first.tool_calls
    with scenario(simulator, "sim-claude", always_status=529):
        final = await stub(channel).Generate(pb.GenerateRequest(
            targets=[pb.Target(provider="sim-anthropic", model="sim-claude"),
                     pb.Target(provider="sim-bedrock", model="sim-bedrock-model",
                               region="us-east-1")],
            messages=follow_up(first.tool_calls), tools=[WEATHER]), metadata=MD, timeout=15)
    assert final.served_by.provider == "sim-bedrock"
    assert [a.error_reason for a in final.attempts if a.outcome == pb.ATTEMPT_OUTCOME_FAILED]
    assert final.attempts[0].target.provider == "sim-anthropic"
    assert "21" in final.text


async def test_text_only_target_is_skipped_for_tools(channel):
    reply = await stub(channel).Generate(pb.GenerateRequest(
        model="sim-text", messages=[ASK], tools=[WEATHER]), metadata=MD, timeout=15)
    assert reply.served_by.model == "sim-chat"
    skipped = reply.attempts[0]
    assert skipped.outcome == pb.ATTEMPT_OUTCOME_SKIPPED_UNSUPPORTED
    assert "tools" in skipped.error_message
    assert reply.tool_calls


@pytest.mark.parametrize("fault", ["undeclared_tool", "malformed_arguments"])
async def test_malformed_tool_call_falls_back(channel, simulator, fault):
    """sim-anthropic falls back to sim-chat: the bad call is an invalid_output attempt."""
    stream = pb.StreamGenerateRequest(model="sim-anthropic", messages=[ASK], tools=[WEATHER])
    with scenario(simulator, "sim-claude", output_fault=fault):
        reply = await stub(channel).Generate(pb.GenerateRequest(
            model="sim-anthropic", messages=[ASK], tools=[WEATHER]), metadata=MD, timeout=15)
        if fault == "undeclared_tool":  # seen at the first piece: the stream fails over
            events, end = await streamed(channel, stream)
            assert end.served_by.model == "sim-chat"
            assert_weather_call(end.tool_calls[0])
            assert all(p.name == "get_weather" for p in events["tool_call"])
        else:  # seen only once the arguments are whole: the stream ends in an error
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await streamed(channel, stream)
            assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert details(caught.value)[0].reason == "INVALID_OUTPUT"
    assert reply.served_by.model == "sim-chat"
    assert {a.error_reason for a in reply.attempts if a.outcome == pb.ATTEMPT_OUTCOME_FAILED} \
        == {"invalid_output"}
    assert_weather_call(reply.tool_calls[0])


async def test_invalid_output_everywhere_is_a_precise_error(channel, simulator):
    with scenario(simulator, "sim-gemini", output_fault="schema_mismatch"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub(channel).Generate(pb.GenerateRequest(
                targets=[pb.Target(provider="sim-gemini", model="sim-gemini")],
                messages=[ASK], response_format=JSON_FORMAT), metadata=MD, timeout=15)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info, _ = details(caught.value)
    assert info.reason == "INVALID_OUTPUT"
    assert "schema" in caught.value.details()


async def test_a_stream_whose_json_turns_out_invalid_is_not_charged(channel, simulator):
    wallet = await wallet_with(channel, MD, 5_000_000)
    request = pb.StreamGenerateRequest(
        model="sim-chat", messages=[ASK], response_format=JSON_FORMAT,
        billing=pb.BillingOptions(wallet_id=wallet, idempotency_key=uuid.uuid4().hex))
    with scenario(simulator, "sim-chat", output_fault="malformed_json"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await streamed(channel, request)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details(caught.value)[0].reason == "INVALID_OUTPUT"
    assert (await balance_of(channel, MD, wallet)).balance_micros == 5_000_000
