"""Tools, tool results, images and JSON mode through the OpenAI adapter: the exact Chat
Completions bodies ``build_request`` makes, and the answers read back from the simulator
(whose wire format the official ``openai`` SDK is also shown to parse)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openai import AsyncOpenAI

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
from server.providers.openai import (
    JSON_OBJECT_HINT,
    OpenAIProvider,
    build_request,
    read_completion,
    translate_event,
)
from simulator.testing import SimulatorProcess
from simulator.tooling import IMAGE_TOKENS
from tests.providers.conftest import openai_vendor

WEATHER = Tool("get_weather", "The weather in a city.", {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
    "required": ["city", "days"],
})
TIME = Tool("get_time", "", {"type": "object", "properties": {"zone": {"type": "string"}}})
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "score": {"type": "number"},
                   "tags": {"type": "array", "items": {"type": "string"}}},
    "required": ["title", "score", "tags"],
    "additionalProperties": False,
}
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(32))


def ask(model: str, text: str = "What is the weather in Paris?", **fields: Any) -> ProviderRequest:
    return ProviderRequest(model=model, messages=(ChatMessage("user", text),), **fields)


@pytest.fixture
async def adapter(simulator: SimulatorProcess) -> AsyncIterator[OpenAIProvider]:
    provider = openai_vendor(simulator).build(SimulatorProcess.api_key)
    yield provider  # type: ignore[misc]
    await provider.aclose()


async def collect(stream: AsyncIterator[Any]) -> tuple[str, list[ToolCallDelta], StreamDone]:
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


def assert_valid(value: Any, schema: dict[str, Any]) -> None:
    assert not list(Draft202012Validator(schema).iter_errors(value)), value


# --------------------------------------------------------------------------- request bodies


def test_a_plain_text_request_body_is_unchanged() -> None:
    request = ProviderRequest(model="m", messages=(ChatMessage("user", "hi"),
                                                   ChatMessage("assistant", "hello"),
                                                   ChatMessage("user", "bye")),
                              system="be brief", params=GenerationParams(max_output_tokens=5))
    assert build_request(request) == {
        "model": "m",
        "messages": [{"role": "system", "content": "be brief"},
                     {"role": "user", "content": "hi"},
                     {"role": "assistant", "content": "hello"},
                     {"role": "user", "content": "bye"}],
        "max_tokens": 5,
    }


def test_tools_are_declared_as_functions_without_empty_descriptions() -> None:
    body = build_request(ask("m", tools=(WEATHER, TIME)))
    assert body["tools"] == [
        {"type": "function", "function": {"name": "get_weather",
                                          "description": "The weather in a city.",
                                          "parameters": WEATHER.parameters}},
        {"type": "function", "function": {"name": "get_time",
                                          "parameters": TIME.parameters}},
    ]
    assert "tool_choice" not in body and "parallel_tool_calls" not in body


@pytest.mark.parametrize(("choice", "native"), [
    (ToolChoice(ToolChoiceMode.AUTO), "auto"),
    (ToolChoice(ToolChoiceMode.NONE), "none"),
    (ToolChoice(ToolChoiceMode.REQUIRED), "required"),
    (ToolChoice(ToolChoiceMode.TOOL, "get_time"),
     {"type": "function", "function": {"name": "get_time"}}),
])
def test_tool_choice_maps_to_its_native_form(choice: ToolChoice, native: Any) -> None:
    body = build_request(ask("m", tools=(WEATHER, TIME), tool_choice=choice,
                             parallel_tool_calls=False))
    assert body["tool_choice"] == native
    assert body["parallel_tool_calls"] is False


def test_choice_and_parallel_flag_are_not_sent_without_tools() -> None:
    body = build_request(ask("m", tool_choice=ToolChoice(ToolChoiceMode.NONE),
                             parallel_tool_calls=True))
    assert set(body) == {"model", "messages"}


def test_tool_calls_and_results_take_the_native_message_forms() -> None:
    request = ProviderRequest(model="m", tools=(WEATHER,), messages=(
        ChatMessage("user", "weather?"),
        ChatMessage("assistant", "", tool_calls=(
            ToolCall("call_a", "get_weather", '{"city": "Paris", "days": 1}'),
            ToolCall("call_b", "get_weather", ""))),
        ChatMessage("tool", "sunny", tool_call_id="call_a"),
        ChatMessage("tool", "rainy", tool_call_id="call_b"),
        ChatMessage("assistant", "Looking.", tool_calls=(ToolCall("call_c", "get_weather",
                                                                  "{}"),)),
    ))
    messages = build_request(request)["messages"]
    assert messages[1] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_a", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris", "days": 1}'}},
        {"id": "call_b", "type": "function",
         "function": {"name": "get_weather", "arguments": "{}"}},
    ]}
    assert messages[2] == {"role": "tool", "tool_call_id": "call_a", "content": "sunny"}
    assert messages[3] == {"role": "tool", "tool_call_id": "call_b", "content": "rainy"}
    assert messages[4]["content"] == "Looking."


def test_images_make_the_content_an_array_of_parts() -> None:
    request = ProviderRequest(model="m", messages=(
        ChatMessage("user", "what is this?", images=(
            Image("image/png", PNG), Image(url="https://example.com/cat.jpg"))),
        ChatMessage("user", "", images=(Image("image/jpeg", b"\xff\xd8"),)),
        ChatMessage("user", "no images"),
    ))
    messages = build_request(request)["messages"]
    assert messages[0]["content"] == [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {
            "url": "data:image/png;base64,iVBORw0KGgoAAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHw=="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    assert messages[1]["content"] == [
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9g="}}]
    assert messages[2]["content"] == "no images"


def test_json_schema_response_format() -> None:
    fmt = ResponseFormat(FormatKind.JSON_SCHEMA, ANSWER_SCHEMA, name="review", strict=True)
    body = build_request(ask("m", response_format=fmt))
    assert body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "review", "schema": ANSWER_SCHEMA, "strict": True}}
    assert body["messages"] == [{"role": "user", "content": "What is the weather in Paris?"}]


def test_json_object_mode_mentions_json_when_the_prompt_does_not() -> None:
    fmt = ResponseFormat(FormatKind.JSON_OBJECT)
    body = build_request(ask("m", response_format=fmt))
    assert body["response_format"] == {"type": "json_object"}
    assert body["messages"][0] == {"role": "system", "content": JSON_OBJECT_HINT}

    with_system = build_request(ask("m", response_format=fmt, system="be brief"))
    assert with_system["messages"][0]["content"] == f"be brief\n\n{JSON_OBJECT_HINT}"

    said = build_request(ask("m", "answer in JSON please", response_format=fmt))
    assert said["messages"] == [{"role": "user", "content": "answer in JSON please"}]


def test_a_text_response_format_adds_nothing() -> None:
    body = build_request(ask("m", response_format=ResponseFormat(FormatKind.TEXT)))
    assert set(body) == {"model", "messages"}


# --------------------------------------------------------------------------- answers read


def test_stream_tool_pieces_keep_the_vendor_index_and_text_chunks_carry_none() -> None:
    first = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": None,
                                                 "tool_calls": [{"index": 0, "id": "call_x",
                                                                 "type": "function",
                                                                 "function": {"name": "f",
                                                                              "arguments": ""}}]},
                          "finish_reason": None}]}
    piece = {"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 1, "function": {"arguments": '{"a"'}}]}, "finish_reason": None}]}
    end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
    text = {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]}
    assert translate_event(first, Usage()).tools == (ToolCallDelta(0, "call_x", "f", ""),)
    assert translate_event(piece, Usage()).tools == (ToolCallDelta(1, "", "", '{"a"'),)
    assert translate_event(end, Usage()).finish is FinishReason.TOOL_CALLS
    update = translate_event(text, Usage())
    assert update.text == "hi" and update.tools == ()


@pytest.mark.parametrize("items", ["nope", [1], [{"index": "0", "function": {}}],
                                   [{"index": 0, "function": "f"}]])
def test_unreadable_stream_tool_pieces_are_unavailable(items: Any) -> None:
    chunk = {"choices": [{"index": 0, "delta": {"tool_calls": items}}]}
    with pytest.raises(ProviderError) as caught:
        translate_event(chunk, Usage())
    assert caught.value.kind is ErrorKind.UNAVAILABLE


def test_unary_tool_calls_pass_arguments_on_as_sent() -> None:
    data = {"id": "chatcmpl-1", "choices": [{"finish_reason": "tool_calls", "message": {
        "content": None, "tool_calls": [
            {"id": "call 1/bad", "type": "function",
             "function": {"name": "f", "arguments": '{"unterminated": '}},
            {"type": "function", "function": {"name": "g", "arguments": {"x": 1}}},
        ]}}]}
    completion = read_completion(data)
    assert completion.finish_reason is FinishReason.TOOL_CALLS
    assert completion.text == ""
    first, second = completion.tool_calls
    assert (first.id, first.name, first.arguments) == ("call_1_bad", "f", '{"unterminated": ')
    assert second.name == "g" and json.loads(second.arguments) == {"x": 1}
    assert second.id.startswith("call_") and second.id != first.id


# --------------------------------------------------------------------------- against the simulator


async def test_unary_tool_call(adapter: OpenAIProvider) -> None:
    completion = await adapter.generate(ask("oa-tools-unary", tools=(WEATHER,)), timeout_s=10)
    assert completion.finish_reason is FinishReason.TOOL_CALLS
    assert completion.text == ""
    (call,) = completion.tool_calls
    assert call.name == "get_weather" and call.id.startswith("call_")
    arguments = json.loads(call.arguments)
    assert isinstance(arguments, dict)
    assert_valid(arguments, dict(WEATHER.parameters))
    assert completion.usage.output_tokens == len(call.arguments.split())


async def test_streamed_tool_call_assembles_to_the_unary_answer(adapter: OpenAIProvider) -> None:
    request = ask("oa-tools-stream", tools=(WEATHER,))
    unary = await adapter.generate(request, timeout_s=10)
    text, pieces, done = await collect(adapter.stream(request, timeout_s=10))
    assert text == ""
    assert done.finish_reason is FinishReason.TOOL_CALLS
    assert len(pieces) > 1
    assert {(p.index, p.id, p.name) for p in pieces} == {(0, unary.tool_calls[0].id,
                                                          "get_weather")}
    assert "".join(p.arguments for p in pieces) == unary.tool_calls[0].arguments
    assert done.tool_calls == unary.tool_calls
    assert done.usage.output_tokens == unary.usage.output_tokens
    assert done.usage.input_tokens == unary.usage.input_tokens


async def test_parallel_calls_stream_in_index_order(adapter: OpenAIProvider) -> None:
    request = ask("oa-tools-parallel", tools=(WEATHER, TIME))
    unary = await adapter.generate(request, timeout_s=10)
    _, pieces, done = await collect(adapter.stream(request, timeout_s=10))
    assert [c.name for c in unary.tool_calls] == ["get_weather", "get_time"]
    assert done.tool_calls == unary.tool_calls
    assert [p.index for p in pieces] == sorted(p.index for p in pieces)

    single = await adapter.generate(ask("oa-tools-parallel", tools=(WEATHER, TIME),
                                        parallel_tool_calls=False), timeout_s=10)
    assert [c.name for c in single.tool_calls] == ["get_weather"]


async def test_a_tool_result_turn_ends_with_text_quoting_it(adapter: OpenAIProvider) -> None:
    first = await adapter.generate(ask("oa-tools-second", tools=(WEATHER,)), timeout_s=10)
    call = first.tool_calls[0]
    request = ProviderRequest(model="oa-tools-second", tools=(WEATHER,), messages=(
        ChatMessage("user", "What is the weather in Paris?"),
        ChatMessage("assistant", "", tool_calls=(call,)),
        ChatMessage("tool", "sunny and 21C", tool_call_id=call.id),
    ))
    completion = await adapter.generate(request, timeout_s=10)
    assert completion.finish_reason is FinishReason.STOP
    assert completion.tool_calls == ()
    assert "sunny and 21C" in completion.text
    text, pieces, done = await collect(adapter.stream(request, timeout_s=10))
    assert text == completion.text and pieces == [] and done.tool_calls == ()


async def test_tool_choice_none_answers_text_and_a_named_tool_is_called(
        adapter: OpenAIProvider) -> None:
    none = await adapter.generate(ask("oa-tools-choice", tools=(WEATHER, TIME),
                                      tool_choice=ToolChoice(ToolChoiceMode.NONE)), timeout_s=10)
    assert none.tool_calls == () and none.finish_reason is FinishReason.STOP
    assert none.text.startswith("Hello from oa-tools-choice.")

    named = await adapter.generate(ask("oa-tools-choice", tools=(WEATHER, TIME),
                                       tool_choice=ToolChoice(ToolChoiceMode.TOOL, "get_time")),
                                   timeout_s=10)
    assert [c.name for c in named.tool_calls] == ["get_time"]
    assert named.finish_reason is FinishReason.TOOL_CALLS


async def test_json_schema_answer_matches_the_schema(adapter: OpenAIProvider) -> None:
    fmt = ResponseFormat(FormatKind.JSON_SCHEMA, ANSWER_SCHEMA, name="review", strict=True)
    request = ask("oa-json-schema", "Review this film.", response_format=fmt)
    unary = await adapter.generate(request, timeout_s=10)
    assert unary.finish_reason is FinishReason.STOP
    assert_valid(json.loads(unary.text), ANSWER_SCHEMA)
    text, _, done = await collect(adapter.stream(request, timeout_s=10))
    assert text == unary.text and done.finish_reason is FinishReason.STOP


async def test_json_object_answer_is_an_object(adapter: OpenAIProvider) -> None:
    request = ask("oa-json-object", "Say hi.", response_format=ResponseFormat(FormatKind.JSON_OBJECT))
    completion = await adapter.generate(request, timeout_s=10)
    assert isinstance(json.loads(completion.text), dict)


async def test_an_inline_image_reaches_the_model_and_counts(adapter: OpenAIProvider) -> None:
    plain = await adapter.generate(ask("oa-image", "Describe this."), timeout_s=10)
    request = ProviderRequest(model="oa-image", messages=(
        ChatMessage("user", "Describe this.", images=(Image("image/png", PNG),)),))
    seen = await adapter.generate(request, timeout_s=10)
    assert seen.text.endswith("[saw 1 image(s): image/png]")
    assert seen.text.startswith(plain.text)
    assert seen.usage.input_tokens == plain.usage.input_tokens + IMAGE_TOKENS
    text, _, _ = await collect(adapter.stream(request, timeout_s=10))
    assert text == seen.text


@pytest.mark.parametrize(("fault", "check"), [
    ("undeclared_tool", lambda call: call.name == "undeclared_tool"),
    ("malformed_arguments", lambda call: call.arguments == '{"unterminated": '),
])
async def test_bad_tool_calls_are_passed_on_for_the_gateway_to_judge(
        adapter: OpenAIProvider, simulator: SimulatorProcess, fault: str, check: Any) -> None:
    model = f"oa-fault-{fault}"
    simulator.set_scenario(model, output_fault=fault)
    request = ask(model, tools=(WEATHER,))
    unary = await adapter.generate(request, timeout_s=10)
    assert unary.finish_reason is FinishReason.TOOL_CALLS
    assert check(unary.tool_calls[0])
    _, _, done = await collect(adapter.stream(request, timeout_s=10))
    assert done.tool_calls == unary.tool_calls


async def test_a_tool_call_stream_cut_short_is_unavailable(
        adapter: OpenAIProvider, simulator: SimulatorProcess) -> None:
    simulator.set_scenario("oa-tools-truncated", truncate_after_chunks=1)
    pieces = []
    with pytest.raises(ProviderError) as caught:
        async for event in adapter.stream(ask("oa-tools-truncated", tools=(WEATHER,)),
                                          timeout_s=10):
            pieces.append(event)
    assert caught.value.kind is ErrorKind.UNAVAILABLE
    assert [type(p) for p in pieces] == [ToolCallDelta, ToolCallDelta]  # the header, 1 piece


async def test_the_official_sdk_reads_the_simulated_tool_calls(
        simulator: SimulatorProcess) -> None:
    client = AsyncOpenAI(base_url=simulator.openai_base_url, api_key=simulator.api_key,
                         max_retries=0)
    tools: Any = build_request(ask("m", tools=(WEATHER,)))["tools"]
    messages: Any = [{"role": "user", "content": "weather in Paris?"}]
    try:
        unary = await client.chat.completions.create(model="oa-sdk-tools", messages=messages,
                                                     tools=tools)
        choice = unary.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content is None
        (call,) = choice.message.tool_calls or []
        assert call.type == "function" and call.function.name == "get_weather"
        assert_valid(json.loads(call.function.arguments), dict(WEATHER.parameters))

        stream = await client.chat.completions.create(
            model="oa-sdk-tools", messages=messages, tools=tools, stream=True,
            stream_options={"include_usage": True})
        ids, names, arguments, finish = set(), set(), "", None
        async for chunk in stream:
            for streamed in chunk.choices:
                for piece in streamed.delta.tool_calls or ():
                    assert piece.index == 0
                    ids.add(piece.id)
                    names.add(piece.function and piece.function.name)
                    arguments += (piece.function and piece.function.arguments) or ""
                finish = streamed.finish_reason or finish
        assert ids == {call.id, None} and names == {"get_weather", None}
        assert arguments == call.function.arguments and finish == "tool_calls"

        answered = await client.chat.completions.create(
            model="oa-sdk-tools", tools=tools, messages=[
                *messages, choice.message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": "sunny"}])
        assert "sunny" in (answered.choices[0].message.content or "")
    finally:
        await client.close()
