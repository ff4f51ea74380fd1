"""Bedrock tools, JSON answers and images: the Converse request shapes ``build_request``
makes, and round trips through boto3 against the simulator (unary and ConverseStream)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import jsonschema
import pytest

from server.providers.base import (
    ChatMessage,
    ErrorKind,
    FinishReason,
    GenerationParams,
    ProviderError,
    ProviderRequest,
    StreamDone,
    TextChunk,
    Usage,
)
from server.providers.bedrock import StreamTools, build_request, translate_event
from server.providers.content import (
    FormatKind,
    Image,
    ResponseFormat,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolChoiceMode,
)
from simulator.tooling import IMAGE_TOKENS, image_note
from tests.providers.conftest import bedrock_vendor

WEATHER_SCHEMA = {"type": "object",
                  "properties": {"city": {"type": "string"},
                                 "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                  "required": ["city", "unit"]}
WEATHER = Tool("get_weather", "Current weather in a city", WEATHER_SCHEMA)
TIME = Tool("get_time", "", {"type": "object", "properties": {"zone": {"type": "string"}}})
ANSWER_SCHEMA = {"type": "object",
                 "properties": {"label": {"type": "string", "enum": ["refund", "other"]},
                                "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                                "tags": {"type": "array", "items": {"type": "string"}}},
                 "required": ["label", "confidence", "tags"], "additionalProperties": False}
TICKET = ResponseFormat(FormatKind.JSON_SCHEMA, ANSWER_SCHEMA, name="ticket", strict=True)
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c63000100000500010d0a2db40000000049454e44ae426082")
ASK = ChatMessage("user", "What is the weather in Paris?")
CALL = ToolCall("tooluse_abc123", "get_weather", '{"city": "Paris", "unit": "celsius"}')


def req(*messages: ChatMessage, model: str = "br-tools", **fields: Any) -> ProviderRequest:
    return ProviderRequest(model, messages or (ASK,), **fields)


def tool_spec(tool: Tool) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": tool.name, "inputSchema": {"json": dict(tool.parameters)}}
    if tool.description:
        spec["description"] = tool.description
    return {"toolSpec": spec}


# --------------------------------------------------------------------------- request bodies


def test_a_plain_text_request_body_is_unchanged():
    body = build_request(ProviderRequest(
        "m", (ChatMessage("user", "a"), ChatMessage("user", "b"), ChatMessage("assistant", "c"),
              ChatMessage("user", "")),
        system="S", params=GenerationParams(max_output_tokens=5, stop=("X",))))
    assert body == {
        "modelId": "m",
        "messages": [{"role": "user", "content": [{"text": "a\n\nb"}]},
                     {"role": "assistant", "content": [{"text": "c"}]},
                     {"role": "user", "content": [{"text": ""}]}],
        "system": [{"text": "S"}],
        "inferenceConfig": {"maxTokens": 5, "stopSequences": ["X"]},
    }


def test_tools_are_tool_specs_with_the_schema_under_json():
    body = build_request(req(tools=(WEATHER, TIME)))
    assert body["toolConfig"] == {"tools": [
        {"toolSpec": {"name": "get_weather", "description": "Current weather in a city",
                      "inputSchema": {"json": WEATHER_SCHEMA}}},
        # an empty description is left out: Converse wants it non-empty
        {"toolSpec": {"name": "get_time", "inputSchema": {"json": TIME.parameters}}},
    ]}


@pytest.mark.parametrize(("choice", "native"), [
    (ToolChoice(ToolChoiceMode.AUTO), {"auto": {}}),
    (ToolChoice(ToolChoiceMode.REQUIRED), {"any": {}}),
    (ToolChoice(ToolChoiceMode.TOOL, "get_time"), {"tool": {"name": "get_time"}}),
])
def test_tool_choice_is_converse_choice(choice, native):
    config = build_request(req(tools=(WEATHER, TIME), tool_choice=choice))["toolConfig"]
    assert config["toolChoice"] == native


def test_tool_choice_none_withholds_the_tools_and_parallel_has_no_knob():
    body = build_request(req(tools=(WEATHER,), tool_choice=ToolChoice(ToolChoiceMode.NONE),
                             parallel_tool_calls=False))
    assert "toolConfig" not in body
    assert build_request(req(tools=(WEATHER,), parallel_tool_calls=True))["toolConfig"] == {
        "tools": [tool_spec(WEATHER)]}


def history() -> tuple[ChatMessage, ...]:
    return (ASK, ChatMessage("assistant", "", tool_calls=(CALL,)),
            ChatMessage("tool", "18C and sunny", tool_call_id=CALL.id))


def test_tool_calls_and_results_are_tool_use_and_tool_result_blocks():
    body = build_request(req(*history(), tools=(WEATHER,)))
    assert body["messages"] == [
        {"role": "user", "content": [{"text": "What is the weather in Paris?"}]},
        {"role": "assistant", "content": [{"toolUse": {
            "toolUseId": "tooluse_abc123", "name": "get_weather",
            "input": {"city": "Paris", "unit": "celsius"}}}]},
        {"role": "user", "content": [{"toolResult": {
            "toolUseId": "tooluse_abc123", "content": [{"text": "18C and sunny"}],
            "status": "success"}}]},
    ]


def test_assistant_text_comes_before_its_calls_and_unreadable_arguments_are_wrapped():
    second = ToolCall("call.with:odd/chars", "get_time", "not json")
    body = build_request(req(
        ASK, ChatMessage("assistant", "Let me check.", tool_calls=(CALL, second)),
        ChatMessage("tool", "18C", tool_call_id=CALL.id),
        ChatMessage("tool", "noon", tool_call_id=second.id),
        ChatMessage("user", "And tomorrow?"), tools=(WEATHER, TIME)))
    assistant, results = body["messages"][1:]
    assert assistant["content"][0] == {"text": "Let me check."}
    odd = assistant["content"][2]["toolUse"]
    assert odd["input"] == {"_raw": "not json"}
    assert odd["toolUseId"] == "call_with_odd_chars"  # wire_id: what every vendor accepts
    # consecutive tool results and the user text after them are one user turn
    assert results == {"role": "user", "content": [
        {"toolResult": {"toolUseId": "tooluse_abc123", "content": [{"text": "18C"}],
                        "status": "success"}},
        {"toolResult": {"toolUseId": "call_with_odd_chars", "content": [{"text": "noon"}],
                        "status": "success"}},
        {"text": "And tomorrow?"}]}


def test_tool_history_keeps_a_tool_config_even_when_no_tool_may_be_called():
    # Converse refuses toolUse/toolResult blocks without a toolConfig, and has no "none".
    none = build_request(req(*history(), tools=(WEATHER,),
                             tool_choice=ToolChoice(ToolChoiceMode.NONE)))
    assert none["toolConfig"] == {"tools": [tool_spec(WEATHER)], "toolChoice": {"auto": {}}}
    undeclared = build_request(req(*history()))
    assert undeclared["toolConfig"] == {"tools": [
        {"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}}}]}


def test_images_are_raw_bytes_with_their_format_after_the_text():
    body = build_request(req(ChatMessage("user", "What is this?", images=(
        Image("image/png", PNG), Image("image/jpeg", b"\xff\xd8jpeg")))))
    assert body["messages"][0]["content"] == [
        {"text": "What is this?"},
        {"image": {"format": "png", "source": {"bytes": PNG}}},
        {"image": {"format": "jpeg", "source": {"bytes": b"\xff\xd8jpeg"}}}]
    image_only = build_request(req(ChatMessage("user", "", images=(Image("image/webp", b"w"),))))
    assert image_only["messages"][0]["content"] == [
        {"image": {"format": "webp", "source": {"bytes": b"w"}}}]


def test_image_urls_are_refused_as_invalid_requests():
    with pytest.raises(ProviderError) as caught:
        build_request(req(ChatMessage("user", "look", images=(
            Image(url="https://example.com/cat.png"),))))
    assert caught.value.kind is ErrorKind.INVALID_REQUEST
    assert "image URLs" in caught.value.message


def test_json_mode_is_a_forced_tool_named_after_the_format():
    body = build_request(req(response_format=TICKET))
    assert body["toolConfig"]["tools"][0]["toolSpec"]["name"] == "ticket"
    assert body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"] == {"json": ANSWER_SCHEMA}
    assert body["toolConfig"]["toolChoice"] == {"tool": {"name": "ticket"}}
    odd = ResponseFormat(FormatKind.JSON_OBJECT, name="my answer.v2")
    config = build_request(req(response_format=odd))["toolConfig"]
    assert config["tools"][0]["toolSpec"]["name"] == "my_answer_v2"
    assert config["tools"][0]["toolSpec"]["inputSchema"] == {"json": {"type": "object"}}


def test_json_mode_with_caller_tools_lets_the_model_call_any_or_the_named_one():
    clash = ResponseFormat(FormatKind.JSON_OBJECT, name="get_weather")
    config = build_request(req(tools=(WEATHER,), response_format=clash))["toolConfig"]
    assert [t["toolSpec"]["name"] for t in config["tools"]] == ["get_weather", "get_weather_json1"]
    assert config["toolChoice"] == {"any": {}}
    named = build_request(req(tools=(WEATHER, TIME), response_format=TICKET,
                              tool_choice=ToolChoice(ToolChoiceMode.TOOL, "get_time")))
    assert named["toolConfig"]["toolChoice"] == {"tool": {"name": "get_time"}}
    none = build_request(req(tools=(WEATHER,), response_format=TICKET,
                             tool_choice=ToolChoice(ToolChoiceMode.NONE)))
    assert none["toolConfig"] == {"tools": none["toolConfig"]["tools"][-1:],
                                  "toolChoice": {"tool": {"name": "ticket"}}}


def test_stream_events_become_tool_pieces_and_the_json_tool_becomes_text():
    tools = StreamTools("ticket")
    usage = Usage()
    events = [
        {"messageStart": {"role": "assistant"}},
        {"contentBlockStart": {"start": {"toolUse": {"toolUseId": "t1", "name": "get_weather"}},
                               "contentBlockIndex": 1}},
        {"contentBlockDelta": {"delta": {"toolUse": {"input": '{"city"'}},
                               "contentBlockIndex": 1}},
        {"contentBlockStart": {"start": {"toolUse": {"toolUseId": "t2", "name": "ticket"}},
                               "contentBlockIndex": 2}},
        {"contentBlockDelta": {"delta": {"toolUse": {"input": '{"a": 1}'}},
                               "contentBlockIndex": 2}},
        {"messageStop": {"stopReason": "tool_use"}},
    ]
    updates = [translate_event(e, usage, tools) for e in events]
    assert updates[1].tools == (ToolCallDelta(1, "t1", "get_weather", ""),)
    assert updates[2].tools == (ToolCallDelta(1, "", "", '{"city"'),)
    assert updates[3].tools == () and updates[3].text == ""
    assert updates[4].text == '{"a": 1}' and updates[4].tools == ()
    assert updates[5].finish is FinishReason.TOOL_CALLS
    only_json = StreamTools("ticket")
    translate_event(events[3], usage, only_json)
    assert translate_event(events[5], usage, only_json).finish is FinishReason.STOP


# --------------------------------------------------------------------------- against the simulator


@pytest.fixture
async def bedrock(simulator, bedrock_executor):
    adapter = bedrock_vendor(simulator, bedrock_executor).build("sim-key")
    yield adapter
    await adapter.aclose()


@contextmanager
def scenario(simulator, model: str, **behaviour: Any) -> Iterator[None]:
    simulator.set_scenario(model, **behaviour)
    try:
        yield
    finally:
        simulator.remove_scenario(model)


async def collect(adapter, request: ProviderRequest) -> tuple[list[Any], StreamDone]:
    events = [event async for event in adapter.stream(request, 10)]
    assert isinstance(events[-1], StreamDone)
    return events[:-1], events[-1]


async def test_unary_tool_call_has_json_arguments_matching_the_schema(bedrock):
    completion = await bedrock.generate(req(tools=(WEATHER,), region="us-east-1"), 10)
    assert completion.finish_reason is FinishReason.TOOL_CALLS
    assert completion.text == ""
    (call,) = completion.tool_calls
    assert call.name == "get_weather" and call.id.startswith("tooluse_")
    arguments = json.loads(call.arguments)
    jsonschema.validate(arguments, WEATHER_SCHEMA)
    assert completion.usage.output_tokens > 0


async def test_streamed_tool_call_arrives_in_pieces_and_assembles_like_unary(bedrock):
    request = req(tools=(WEATHER,))
    unary = await bedrock.generate(request, 10)
    events, done = await collect(bedrock, request)
    pieces = [e for e in events if isinstance(e, ToolCallDelta)]
    assert len(pieces) > 2 and not any(isinstance(e, TextChunk) for e in events)
    assert {(p.index, p.id, p.name) for p in pieces} == {(0, unary.tool_calls[0].id,
                                                          "get_weather")}
    assert "".join(p.arguments for p in pieces) == unary.tool_calls[0].arguments
    assert done.finish_reason is FinishReason.TOOL_CALLS
    assert done.tool_calls == unary.tool_calls
    assert done.usage.output_tokens == unary.usage.output_tokens


async def test_a_second_turn_with_the_tool_result_answers_quoting_it(bedrock):
    first = await bedrock.generate(req(tools=(WEATHER,)), 10)
    (call,) = first.tool_calls
    request = req(ASK, ChatMessage("assistant", "", tool_calls=(call,)),
                  ChatMessage("tool", "18C and sunny", tool_call_id=call.id), tools=(WEATHER,))
    completion = await bedrock.generate(request, 10)
    assert completion.finish_reason is FinishReason.STOP and not completion.tool_calls
    assert "18C and sunny" in completion.text
    events, done = await collect(bedrock, request)
    assert "".join(e.text for e in events if isinstance(e, TextChunk)) == completion.text
    assert done.finish_reason is FinishReason.STOP and done.tool_calls == ()


async def test_tool_choice_none_answers_text_and_a_named_tool_is_called(bedrock):
    none = await bedrock.generate(req(tools=(WEATHER, TIME),
                                      tool_choice=ToolChoice(ToolChoiceMode.NONE)), 10)
    assert none.finish_reason is FinishReason.STOP and none.tool_calls == ()
    assert none.text.startswith("Hello from br-tools.")
    named = await bedrock.generate(req(tools=(WEATHER, TIME), tool_choice=ToolChoice(
        ToolChoiceMode.TOOL, "get_time")), 10)
    assert [c.name for c in named.tool_calls] == ["get_time"]


async def test_json_schema_answer_is_text_valid_against_the_schema(bedrock):
    request = req(response_format=TICKET)
    unary = await bedrock.generate(request, 10)
    assert unary.finish_reason is FinishReason.STOP and unary.tool_calls == ()
    jsonschema.validate(json.loads(unary.text), ANSWER_SCHEMA)
    events, done = await collect(bedrock, request)
    chunks = [e.text for e in events if isinstance(e, TextChunk)]
    assert len(chunks) > 1 and "".join(chunks) == unary.text
    assert done.finish_reason is FinishReason.STOP and done.tool_calls == ()


async def test_json_mode_beside_caller_tools_reports_their_calls_as_tool_calls(bedrock):
    completion = await bedrock.generate(req(tools=(WEATHER,), response_format=TICKET), 10)
    assert [c.name for c in completion.tool_calls] == ["get_weather"]
    assert completion.finish_reason is FinishReason.TOOL_CALLS


async def test_an_inline_png_reaches_the_model_and_counts_image_tokens(bedrock):
    plain = await bedrock.generate(req(ChatMessage("user", "What is this?")), 10)
    request = req(ChatMessage("user", "What is this?", images=(Image("image/png", PNG),)))
    seen = await bedrock.generate(request, 10)
    assert seen.text.endswith(image_note(["image/png"]))
    assert seen.usage.input_tokens == plain.usage.input_tokens + IMAGE_TOKENS
    events, done = await collect(bedrock, request)
    assert "".join(e.text for e in events if isinstance(e, TextChunk)) == seen.text
    assert done.usage.input_tokens == seen.usage.input_tokens


async def test_declared_tools_count_as_prompt_tokens(bedrock):
    plain = await bedrock.generate(req(), 10)
    with_tools = await bedrock.generate(req(tools=(WEATHER,),
                                            tool_choice=ToolChoice(ToolChoiceMode.AUTO)), 10)
    assert with_tools.usage.input_tokens > plain.usage.input_tokens


@pytest.mark.parametrize("stream", [False, True])
async def test_an_undeclared_tool_call_is_passed_on_for_the_gateway_to_reject(
        bedrock, simulator, stream):
    model = f"br-tools-undeclared-{stream}"
    with scenario(simulator, model, output_fault="undeclared_tool"):
        request = req(tools=(WEATHER,), model=model)
        if stream:
            _, done = await collect(bedrock, request)
            calls, finish = done.tool_calls, done.finish_reason
        else:
            completion = await bedrock.generate(request, 10)
            calls, finish = completion.tool_calls, completion.finish_reason
    assert [c.name for c in calls] == ["undeclared_tool"]
    assert finish is FinishReason.TOOL_CALLS


@pytest.mark.parametrize("stream", [False, True])
async def test_unreadable_arguments_are_passed_on_as_sent(bedrock, simulator, stream):
    model = f"br-tools-malformed-{stream}"
    with scenario(simulator, model, output_fault="malformed_arguments"):
        request = req(tools=(WEATHER,), model=model)
        if stream:
            _, done = await collect(bedrock, request)
            calls = done.tool_calls
        else:
            calls = (await bedrock.generate(request, 10)).tool_calls
    (call,) = calls
    assert call.name == "get_weather"
    with pytest.raises(ValueError):
        json.loads(call.arguments)


async def test_a_cut_tool_call_stream_is_incomplete(bedrock, simulator):
    model = "br-tools-truncated"
    with scenario(simulator, model, truncate_after_chunks=2), \
            pytest.raises(ProviderError) as caught:
        await collect(bedrock, req(tools=(WEATHER,), model=model))
    assert caught.value.kind is ErrorKind.UNAVAILABLE
