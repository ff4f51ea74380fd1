"""Anthropic tools, JSON mode (a forced tool), images and tool results: the exact request
bodies, and the round trip through the anthropic SDK against the simulator."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace

import pytest
from jsonschema import Draft202012Validator

from server.providers.anthropic import (
    JSON_TOOL_DESCRIPTION,
    StreamTools,
    build_request,
    json_tool_name,
    translate_event,
)
from server.providers.base import (
    ChatMessage,
    Completion,
    ErrorKind,
    FinishReason,
    GenerationParams,
    ProviderError,
    ProviderRequest,
    StreamDone,
    TextChunk,
    Usage,
)
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
from simulator.tooling import IMAGE_TOKENS
from tests.providers.conftest import anthropic_vendor

WEATHER = Tool("get_weather", "The weather in a city.", {
    "type": "object", "properties": {"city": {"type": "string"},
                                     "days": {"type": "integer", "minimum": 1}},
    "required": ["city"]})
TIME = Tool("get_time", "", {"type": "object", "properties": {"zone": {"type": "string"}}})
ANSWER_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"},
                                                  "score": {"type": "number"}},
                 "required": ["name", "score"]}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


@pytest.fixture
async def claude(simulator):
    adapter = anthropic_vendor(simulator).build("sim-key")
    yield adapter
    await adapter.aclose()


def ask(model: str, *messages: ChatMessage, **fields: object) -> ProviderRequest:
    return ProviderRequest(model, messages or (ChatMessage("user", "weather in Paris?"),),
                           **fields)  # type: ignore[arg-type]


async def collect(stream) -> tuple[str, list[ToolCallDelta], StreamDone]:
    text, pieces, done = "", [], None
    async for event in stream:
        if isinstance(event, TextChunk):
            text += event.text
        elif isinstance(event, ToolCallDelta):
            pieces.append(event)
        else:
            done = event
    assert isinstance(done, StreamDone)
    return text, pieces, done


def valid(schema: dict, text: str) -> bool:
    return Draft202012Validator(schema).is_valid(json.loads(text))


# --------------------------------------------------------------------------- request bodies


def test_a_plain_text_request_body_is_unchanged():
    request = ProviderRequest("claude", (ChatMessage("user", "a"), ChatMessage("assistant", "b"),
                                         ChatMessage("user", "c")), system="sys",
                              params=GenerationParams(temperature=0.5))
    assert build_request(request, 100) == {
        "model": "claude", "max_tokens": 100, "system": "sys", "temperature": 0.5,
        "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                     {"role": "user", "content": "c"}]}
    # parallel_tool_calls without tools adds nothing either
    assert "tool_choice" not in build_request(ask("m", parallel_tool_calls=False), 100)


def test_tools_are_declared_with_their_input_schema():
    body = build_request(ask("m", tools=(WEATHER, TIME)), 100)
    assert body["tools"] == [
        {"name": "get_weather", "description": "The weather in a city.",
         "input_schema": WEATHER.parameters},
        {"name": "get_time", "input_schema": TIME.parameters}]
    assert "tool_choice" not in body  # the API's default: auto


@pytest.mark.parametrize(("choice", "parallel", "native"), [
    (ToolChoice(ToolChoiceMode.AUTO), None, {"type": "auto"}),
    (ToolChoice(ToolChoiceMode.NONE), None, {"type": "none"}),
    (ToolChoice(ToolChoiceMode.REQUIRED), None, {"type": "any"}),
    (ToolChoice(ToolChoiceMode.TOOL, "get_time"), None, {"type": "tool", "name": "get_time"}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    (ToolChoice(ToolChoiceMode.REQUIRED), False, {"type": "any",
                                                  "disable_parallel_tool_use": True}),
    (ToolChoice(ToolChoiceMode.TOOL, "get_time"), False,
     {"type": "tool", "name": "get_time", "disable_parallel_tool_use": True}),
    (ToolChoice(ToolChoiceMode.NONE), False, {"type": "none"}),
    (ToolChoice(ToolChoiceMode.AUTO), True, {"type": "auto"}),
])
def test_tool_choice_and_parallel_calls_map_to_the_native_choice(choice, parallel, native):
    body = build_request(ask("m", tools=(WEATHER, TIME), tool_choice=choice,
                             parallel_tool_calls=parallel), 100)
    assert body["tool_choice"] == native


def test_tool_calls_and_results_become_blocks_and_results_merge_with_the_next_user_turn():
    request = ask(
        "m",
        ChatMessage("user", "weather and time?"),
        ChatMessage("assistant", "", tool_calls=(
            ToolCall("toolu_1", "get_weather", '{"city": "Paris"}'),
            ToolCall("call.2", "get_time", "not json"))),
        ChatMessage("tool", "18C", tool_call_id="toolu_1"),
        ChatMessage("tool", "noon", tool_call_id="call.2"),
        ChatMessage("user", "and tomorrow?"),
        ChatMessage("assistant", "Let me look.", tool_calls=(
            ToolCall("toolu_3", "get_weather", '[1]'),)),
        tools=(WEATHER, TIME))
    assert build_request(request, 100)["messages"] == [
        {"role": "user", "content": "weather and time?"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
             "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_2", "name": "get_time",
             "input": {"_raw": "not json"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "call_2", "content": "noon"},
            {"type": "text", "text": "and tomorrow?"}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "toolu_3", "name": "get_weather",
             "input": {"_raw": "[1]"}}]}]


def test_a_user_turn_before_tool_results_puts_the_results_first():
    request = ask("m", ChatMessage("user", "q"),
                  ChatMessage("assistant", "", tool_calls=(ToolCall("t1", "get_time", "{}"),)),
                  ChatMessage("user", "hurry"), ChatMessage("tool", "noon", tool_call_id="t1"),
                  tools=(TIME,))
    assert build_request(request, 100)["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "t1", "content": "noon"},
        {"type": "text", "text": "hurry"}]


def test_a_tool_history_without_declared_tools_declares_the_called_tools_unusable():
    request = ask("m", ChatMessage("user", "q"),
                  ChatMessage("assistant", "", tool_calls=(ToolCall("t1", "get_time", "{}"),)),
                  ChatMessage("tool", "noon", tool_call_id="t1"))
    body = build_request(request, 100)
    assert body["tools"] == [{"name": "get_time", "input_schema": {"type": "object"}}]
    assert body["tool_choice"] == {"type": "none"}


def test_images_become_image_blocks_before_the_text():
    request = ask("m", ChatMessage("user", "what is this?", images=(
        Image("image/png", PNG), Image(url="https://example.com/cat.jpg"))))
    assert build_request(request, 100)["messages"] == [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": base64.b64encode(PNG).decode()}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "text", "text": "what is this?"}]}]


def test_json_schema_is_a_forced_tool_named_after_the_format():
    fmt = ResponseFormat(FormatKind.JSON_SCHEMA, ANSWER_SCHEMA, name="player.score v2")
    body = build_request(ask("m", response_format=fmt), 100)
    assert body["tools"] == [{"name": "player_score_v2", "description": JSON_TOOL_DESCRIPTION,
                              "input_schema": ANSWER_SCHEMA}]
    assert body["tool_choice"] == {"type": "tool", "name": "player_score_v2",
                                   "disable_parallel_tool_use": True}


def test_json_object_is_a_forced_tool_taking_any_object():
    body = build_request(ask("m", response_format=ResponseFormat(FormatKind.JSON_OBJECT)), 100)
    assert body["tools"] == [{"name": "response", "description": JSON_TOOL_DESCRIPTION,
                              "input_schema": {"type": "object"}}]
    assert body["tool_choice"]["name"] == "response"


def test_json_with_caller_tools_adds_the_json_tool_and_requires_any_tool():
    fmt = ResponseFormat(FormatKind.JSON_SCHEMA, ANSWER_SCHEMA, name="get_time")
    request = ask("m", tools=(WEATHER, TIME), response_format=fmt)
    assert json_tool_name(request) == "get_time_json1"  # never one of the caller's names
    body = build_request(request, 100)
    assert [t["name"] for t in body["tools"]] == ["get_weather", "get_time", "get_time_json1"]
    assert body["tool_choice"] == {"type": "any"}
    named = build_request(ask("m", tools=(WEATHER,), response_format=fmt,
                              tool_choice=ToolChoice(ToolChoiceMode.TOOL, "get_weather")), 100)
    assert named["tool_choice"] == {"type": "tool", "name": "get_weather"}
    none = build_request(ask("m", tools=(WEATHER,), response_format=fmt,
                             tool_choice=ToolChoice(ToolChoiceMode.NONE)), 100)
    assert none["tool_choice"] == {"type": "tool", "name": "get_time",
                                   "disable_parallel_tool_use": True}


def test_streamed_json_tool_input_is_text_and_its_tool_use_finish_is_stop():
    tools = StreamTools("answer")
    usage = Usage()
    events = [
        SimpleNamespace(type="content_block_start", index=0, content_block=SimpleNamespace(
            type="tool_use", id="toolu_x", name="answer", input={})),
        SimpleNamespace(type="content_block_delta", index=0, delta=SimpleNamespace(
            type="input_json_delta", partial_json='{"a"')),
        SimpleNamespace(type="content_block_delta", index=0, delta=SimpleNamespace(
            type="input_json_delta", partial_json="")),
        SimpleNamespace(type="content_block_delta", index=0, delta=SimpleNamespace(
            type="input_json_delta", partial_json=": 1}")),
        SimpleNamespace(type="message_delta", delta=SimpleNamespace(stop_reason="tool_use"),
                        usage=None),
    ]
    updates = [translate_event(e, usage, tools) for e in events]
    assert "".join(u.text for u in updates) == '{"a": 1}'
    assert not any(u.tools for u in updates)
    assert updates[-1].finish is FinishReason.STOP
    # without the stream's memory, tool_use is a tool-call finish
    assert translate_event(events[-1], usage).finish is FinishReason.TOOL_CALLS


# --------------------------------------------------------------------------- against the simulator


async def test_unary_tool_call_has_json_arguments_matching_the_schema(claude):
    completion = await claude.generate(ask("an-tool", tools=(WEATHER,)), 10)
    assert completion.finish_reason is FinishReason.TOOL_CALLS
    assert completion.text == ""
    [call] = completion.tool_calls
    assert call.name == "get_weather" and call.id.startswith("toolu_")
    assert valid(dict(WEATHER.parameters), call.arguments)
    assert completion.usage.output_tokens >= 1


async def test_streamed_tool_call_comes_in_pieces_and_assembles_like_the_unary_one(claude):
    request = ask("an-tool-stream", tools=(WEATHER,))
    unary = await claude.generate(request, 10)
    text, pieces, done = await collect(claude.stream(request, 10))
    assert text == ""
    assert len(pieces) > 1
    assert {(p.index, p.id, p.name) for p in pieces} == {(0, unary.tool_calls[0].id,
                                                          "get_weather")}
    assert "".join(p.arguments for p in pieces) == unary.tool_calls[0].arguments
    assert done.finish_reason is FinishReason.TOOL_CALLS
    assert done.tool_calls == unary.tool_calls
    assert done.usage == unary.usage


async def test_parallel_calls_unless_disabled(claude):
    both = await claude.generate(ask("an-parallel", tools=(WEATHER, TIME)), 10)
    assert [c.name for c in both.tool_calls] == ["get_weather", "get_time"]
    assert len({c.id for c in both.tool_calls}) == 2
    _, pieces, done = await collect(claude.stream(ask("an-parallel", tools=(WEATHER, TIME)), 10))
    assert done.tool_calls == both.tool_calls
    assert {p.index for p in pieces} == {0, 1}
    one = await claude.generate(ask("an-parallel", tools=(WEATHER, TIME),
                                    parallel_tool_calls=False), 10)
    assert [c.name for c in one.tool_calls] == ["get_weather"]


async def test_a_second_turn_with_the_tool_result_answers_in_text(claude):
    first = await claude.generate(ask("an-turns", tools=(WEATHER,)), 10)
    request = ask("an-turns", ChatMessage("user", "weather in Paris?"),
                  ChatMessage("assistant", first.text, tool_calls=first.tool_calls),
                  ChatMessage("tool", "sunny, 18C", tool_call_id=first.tool_calls[0].id),
                  tools=(WEATHER,))
    second = await claude.generate(request, 10)
    assert second.finish_reason is FinishReason.STOP and not second.tool_calls
    assert "sunny, 18C" in second.text
    text, pieces, done = await collect(claude.stream(request, 10))
    assert text == second.text and not pieces and not done.tool_calls
    assert second.usage.input_tokens > first.usage.input_tokens


async def test_a_tool_history_without_declared_tools_is_accepted(claude):
    request = ask("an-history", ChatMessage("user", "q"),
                  ChatMessage("assistant", "", tool_calls=(ToolCall("t1", "get_time", "{}"),)),
                  ChatMessage("tool", "noon", tool_call_id="t1"), ChatMessage("user", "thanks"))
    completion = await claude.generate(request, 10)
    assert completion.finish_reason is FinishReason.STOP and "noon" in completion.text


async def test_tool_choice_none_answers_in_text_and_a_named_tool_is_called(claude):
    none = await claude.generate(ask("an-choice", tools=(WEATHER, TIME),
                                     tool_choice=ToolChoice(ToolChoiceMode.NONE)), 10)
    assert none.finish_reason is FinishReason.STOP and not none.tool_calls
    assert none.text.startswith("Hello from an-choice.")
    named = await claude.generate(ask("an-choice", tools=(WEATHER, TIME),
                                      tool_choice=ToolChoice(ToolChoiceMode.TOOL, "get_time")), 10)
    assert [c.name for c in named.tool_calls] == ["get_time"]


@pytest.mark.parametrize("kind", [FormatKind.JSON_SCHEMA, FormatKind.JSON_OBJECT])
async def test_json_mode_answers_with_json_text_unary_and_streamed(claude, kind):
    fmt = ResponseFormat(kind, ANSWER_SCHEMA if kind is FormatKind.JSON_SCHEMA else None,
                         name="score")
    request = ask("an-json", response_format=fmt)
    unary = await claude.generate(request, 10)
    assert unary.finish_reason is FinishReason.STOP and not unary.tool_calls
    assert valid(dict(fmt.json_schema()), unary.text)
    text, pieces, done = await collect(claude.stream(request, 10))
    assert text == unary.text and not pieces
    assert done.finish_reason is FinishReason.STOP and not done.tool_calls
    if kind is FormatKind.JSON_SCHEMA:
        assert set(json.loads(text)) == {"name", "score"}


async def test_json_mode_with_caller_tools_still_calls_the_callers_tool(claude):
    fmt = ResponseFormat(FormatKind.JSON_SCHEMA, ANSWER_SCHEMA)
    completion = await claude.generate(ask("an-json-tools", tools=(WEATHER,),
                                           response_format=fmt), 10)
    assert completion.finish_reason is FinishReason.TOOL_CALLS
    assert [c.name for c in completion.tool_calls] == ["get_weather"]


async def test_an_inline_png_reaches_the_model_and_counts_its_tokens(claude):
    plain = await claude.generate(ask("an-image", ChatMessage("user", "what is this?")), 10)
    request = ask("an-image", ChatMessage("user", "what is this?",
                                          images=(Image("image/png", PNG),)))
    seen = await claude.generate(request, 10)
    assert seen.text.endswith("[saw 1 image(s): image/png]")
    assert seen.usage.input_tokens == plain.usage.input_tokens + IMAGE_TOKENS
    text, _, done = await collect(claude.stream(request, 10))
    assert text == seen.text and done.usage == seen.usage


async def test_an_image_url_reaches_the_model(claude):
    completion = await claude.generate(ask("an-image-url", ChatMessage(
        "user", "and this?", images=(Image(url="https://example.com/cat.png"),))), 10)
    assert "[saw 1 image(s)" in completion.text


async def test_an_undeclared_tool_is_passed_on_for_the_gateway_to_reject(claude, simulator):
    simulator.set_scenario("an-undeclared", output_fault="undeclared_tool")
    request = ask("an-undeclared", tools=(WEATHER,))
    unary = await claude.generate(request, 10)
    assert [c.name for c in unary.tool_calls] == ["undeclared_tool"]
    _, _, done = await collect(claude.stream(request, 10))
    assert done.tool_calls == unary.tool_calls


async def test_malformed_arguments_are_passed_on_as_sent(claude, simulator):
    simulator.set_scenario("an-malformed", output_fault="malformed_arguments")
    request = ask("an-malformed", tools=(WEATHER,))
    unary = await claude.generate(request, 10)
    assert isinstance(unary, Completion)
    assert unary.tool_calls[0].arguments == '{"unterminated": '
    assert unary.finish_reason is FinishReason.TOOL_CALLS
    _, pieces, done = await collect(claude.stream(request, 10))
    assert done.tool_calls == unary.tool_calls and len(pieces) > 1


async def test_a_truncated_tool_call_stream_is_incomplete_not_a_success(claude, simulator):
    simulator.set_scenario("an-tool-cut", truncate_after_chunks=1)
    with pytest.raises(ProviderError) as caught:
        await collect(claude.stream(ask("an-tool-cut", tools=(WEATHER,)), 10))
    assert caught.value.kind is ErrorKind.UNAVAILABLE
