"""The Python client's tools, JSON output and embeddings against the real gateway and
simulator: a tool-call round trip unary and streamed (the conversation continued with the
client's own result types), schema-valid JSON, vectors in input order, capabilities."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict

import jsonschema
import pytest
from llmgateway_client import (
    EmbedResult,
    Gateway,
    GatewayClient,
    InvalidOutput,
    ResponseFormat,
    StreamFinished,
    StreamStarted,
    Tool,
    ToolCall,
    ToolCallChunk,
    UnsupportedCapability,
    tool_result,
)

from tests.e2e.test_python_client import minter

WEATHER = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
ASK = {"role": "user", "content": "What is the weather in Paris?"}
TICKET_SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["refund", "other"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["label", "confidence"],
    "additionalProperties": False,
}
TEXTS = [
    "The refund policy allows returns within 30 days.",
    "Error E-4012 means the card was declined.",
    "Form W-9 is needed for contractors.",
]


def client_for(gateway) -> GatewayClient:
    return GatewayClient(gateway.target, token_source=minter(), timeout_s=15)


async def test_embed_returns_one_vector_per_input_in_order(gateway):
    async with client_for(gateway) as client:
        result = await client.embed("sim-embed", TEXTS)
        single = await client.embed("sim-embed", TEXTS[1], dimensions=256)

    assert isinstance(result, EmbedResult)
    assert len(result.vectors) == 3 and result.dimensions == 256
    assert all(len(vector) == 256 for vector in result.vectors)
    assert single.vectors[0] == result.vectors[1]  # input order kept
    assert result.vectors[0] != result.vectors[1]
    assert result.served_by is not None and result.served_by.provider == "simulator"
    assert result.usage.input_tokens > 0 and result.usage.output_tokens == 0
    assert [a.outcome for a in result.attempts][-1] == "success"
    assert len(result.trace_id) == 32

    def sync_embed() -> EmbedResult:
        with Gateway(gateway.target, token_source=minter(), timeout_s=15) as sync_client:
            return sync_client.embed("sim-embed", TEXTS)

    assert (await asyncio.to_thread(sync_embed)).vectors == result.vectors


async def test_a_tool_call_round_trip(gateway):
    async with client_for(gateway) as client:
        first = await client.generate("sim-chat", [ASK], tools=[WEATHER])
        assert first.finish_reason == "tool_calls", first
        (call,) = first.tool_calls
        assert isinstance(call, ToolCall) and call.name == "get_weather" and call.id
        arguments = call.parse_arguments()
        assert isinstance(arguments, dict) and "city" in arguments

        final = await client.generate(
            "sim-chat",
            [
                ASK,
                {"role": "assistant", "tool_calls": first.tool_calls},
                tool_result(call.id, '{"temp": 21}'),
            ],
            tools=[WEATHER],
        )

    assert final.finish_reason == "stop" and not final.tool_calls
    assert "temp" in final.text


async def test_a_streamed_tool_call_round_trip(gateway):
    tools = [Tool(**WEATHER)]
    async with client_for(gateway) as client:
        events = [e async for e in client.stream_generate("sim-chat", [ASK], tools=tools)]
        assert isinstance(events[0], StreamStarted)
        finished = events[-1]
        assert isinstance(finished, StreamFinished) and finished.finish_reason == "tool_calls"
        chunks = [e for e in events if isinstance(e, ToolCallChunk)]
        assert chunks, events
        pieces: dict[int, list[str]] = defaultdict(list)
        for chunk in chunks:
            pieces[chunk.index].append(chunk.arguments_delta)
        (call,) = finished.tool_calls
        assert {(c.index, c.id, c.name) for c in chunks} == {(0, call.id, "get_weather")}
        assert json.loads("".join(pieces[0])) == call.parse_arguments()
        assert "city" in call.parse_arguments()

        messages = [ASK, finished.as_message(), tool_result(call.id, {"temp": 21})]
        answer = [e async for e in client.stream_generate("sim-chat", messages, tools=tools)]

    assert isinstance(answer[-1], StreamFinished)
    assert answer[-1].finish_reason == "stop" and answer[-1].tool_calls == ()
    assert "temp" in answer[-1].text


async def test_response_format_json_schema_gives_valid_json(gateway):
    async with client_for(gateway) as client:
        strict = await client.generate(
            "sim-chat",
            "Classify: I want my money back",
            response_format=ResponseFormat(TICKET_SCHEMA, name="ticket", strict=True),
        )
        as_dict = await client.generate(
            "sim-chat", "Classify", response_format={"schema": TICKET_SCHEMA}
        )
        any_object = await client.generate(
            "sim-chat", "Answer in JSON", response_format="json_object"
        )

    jsonschema.validate(json.loads(strict.text), TICKET_SCHEMA)
    jsonschema.validate(json.loads(as_dict.text), TICKET_SCHEMA)
    assert isinstance(json.loads(any_object.text), dict)


async def test_models_say_what_they_can_do(gateway):
    async with client_for(gateway) as client:
        models = {m.name: m for m in (await client.list_models(page_size=1000)).models}
    assert "tools" in models["sim-chat"].capabilities
    assert "embeddings" in models["sim-embed"].capabilities


async def test_capability_and_output_failures_are_typed(gateway, simulator):
    async with client_for(gateway) as client:
        fell_back = await client.generate("sim-text", [ASK], tools=[WEATHER])
        with pytest.raises(UnsupportedCapability) as unsupported:
            await client.generate("", [ASK], targets=[("simulator", "sim-text")], tools=[WEATHER])
        simulator.set_scenario("sim-chat", output_fault="malformed_json")
        try:
            with pytest.raises(InvalidOutput) as invalid:
                async for _ in client.stream_generate(
                    "sim-chat", [ASK], response_format=ResponseFormat(TICKET_SCHEMA, strict=True)
                ):
                    pass
        finally:
            simulator.remove_scenario("sim-chat")

    assert [a.outcome for a in fell_back.attempts] == ["skipped_unsupported", "success"]
    assert fell_back.finish_reason == "tool_calls"
    assert unsupported.value.error_metadata["capability"] == "tools"
    assert invalid.value.reason == "INVALID_OUTPUT" and invalid.value.trace_id
