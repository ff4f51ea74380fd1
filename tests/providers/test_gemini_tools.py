"""Gemini tools, JSON mode and images: the native request shapes (``functionDeclarations``,
``functionCallingConfig``, ``functionCall``/``functionResponse`` parts, ``inlineData``,
``responseJsonSchema``) captured on the wire, and the adapter's answers against the
simulator — unary and streamed tool calls, tool results, JSON answers, images and
malformed output."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import jsonschema
import pytest
from aiohttp import web
from google import genai
from google.genai import types

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
    TOOL_CALL_ID,
    FormatKind,
    Image,
    ResponseFormat,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolChoiceMode,
)
from server.providers.gemini import GeminiProvider, translate_event
from simulator.testing import SimulatorProcess
from simulator.tooling import IMAGE_TOKENS, UNDECLARED_TOOL
from tests.providers.conftest import gemini_vendor

MODEL = "gm-tools"
WEATHER_SCHEMA = {"type": "object",
                  "properties": {"city": {"type": "string"},
                                 "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                  "required": ["city", "unit"]}
CLOCK_SCHEMA = {"type": "object", "properties": {"zone": {"type": "string"}},
                "required": ["zone"]}
WEATHER = Tool("get_weather", "Current weather in a city", WEATHER_SCHEMA)
CLOCK = Tool("get_time", "", CLOCK_SCHEMA)
ASK = ChatMessage("user", "What is the weather in Paris?")
ANSWER_SCHEMA = {"type": "object",
                 "properties": {"label": {"type": "string", "enum": ["refund", "other"]},
                                "confidence": {"type": "number", "minimum": 0, "maximum": 1}},
                 "required": ["label", "confidence"], "additionalProperties": False}
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"


def ask(*messages: ChatMessage, model: str = MODEL, **fields: Any) -> ProviderRequest:
    return ProviderRequest(model, messages or (ASK,), **fields)


@pytest.fixture
async def gemini(simulator: SimulatorProcess) -> AsyncIterator[GeminiProvider]:
    adapter = gemini_vendor(simulator).build(SimulatorProcess.api_key)
    yield adapter  # type: ignore[misc]
    await adapter.aclose()


async def streamed(adapter: GeminiProvider, request: ProviderRequest) -> list[Any]:
    return [event async for event in adapter.stream(request, 10)]


def assert_weather_call(call: ToolCall) -> None:
    assert call.name == "get_weather" and TOOL_CALL_ID.fullmatch(call.id)
    jsonschema.validate(json.loads(call.arguments), WEATHER_SCHEMA)


# --------------------------------------------------------------------------- wire shapes


class Capture:
    """A stand-in Gemini endpoint that records each request body and answers ``reply``."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.reply: dict[str, Any] = {"candidates": [{"content": {
            "role": "model", "parts": [{"text": "ok"}]}, "finishReason": "STOP"}]}

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        return web.json_response(self.reply)


@pytest.fixture
async def wire() -> AsyncIterator[tuple[Capture, GeminiProvider]]:
    capture = Capture()
    app = web.Application()
    app.router.add_post("/{tail:.*}", capture.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    adapter = GeminiProvider("gemini", base_url=f"http://127.0.0.1:{port}", api_key="k",
                             timeout_s=5)
    yield capture, adapter
    await adapter.aclose()
    await runner.cleanup()


async def body_of(wire: tuple[Capture, GeminiProvider], request: ProviderRequest
                  ) -> dict[str, Any]:
    capture, adapter = wire
    await adapter.generate(request, 5)
    return capture.bodies[-1]


async def test_a_plain_text_request_body_is_unchanged(wire):
    body = await body_of(wire, ProviderRequest(
        "gemini-x", (ChatMessage("user", "hi"), ChatMessage("assistant", "yo")), system="sys",
        params=GenerationParams(max_output_tokens=5, temperature=0.5, stop=("X",))))
    assert body == {
        "contents": [{"parts": [{"text": "hi"}], "role": "user"},
                     {"parts": [{"text": "yo"}], "role": "model"}],
        "systemInstruction": {"parts": [{"text": "sys"}], "role": "user"},
        "generationConfig": {"temperature": 0.5, "maxOutputTokens": 5, "stopSequences": ["X"]}}


async def test_tools_are_function_declarations_with_a_json_schema(wire):
    body = await body_of(wire, ask(tools=(WEATHER, CLOCK)))
    assert body["tools"] == [{"functionDeclarations": [
        {"name": "get_weather", "description": "Current weather in a city",
         "parameters_json_schema": WEATHER_SCHEMA},
        {"name": "get_time", "parameters_json_schema": CLOCK_SCHEMA}]}]
    assert "toolConfig" not in body and not body.get("generationConfig")


@pytest.mark.parametrize(("choice", "config"), [
    (ToolChoice(ToolChoiceMode.AUTO), {"mode": "AUTO"}),
    (ToolChoice(ToolChoiceMode.NONE), {"mode": "NONE"}),
    (ToolChoice(ToolChoiceMode.REQUIRED), {"mode": "ANY"}),
    (ToolChoice(ToolChoiceMode.TOOL, "get_time"),
     {"mode": "ANY", "allowedFunctionNames": ["get_time"]}),
])
async def test_tool_choice_is_the_function_calling_mode(wire, choice, config):
    body = await body_of(wire, ask(tools=(WEATHER, CLOCK), tool_choice=choice,
                                   parallel_tool_calls=False))
    assert body["toolConfig"] == {"functionCallingConfig": config}


async def test_calls_and_results_are_function_parts_keyed_by_name(wire):
    calls = (ToolCall("call_1", "get_weather", '{"city": "Paris", "unit": "celsius"}'),
             ToolCall("call_2", "get_time", "not json"))
    body = await body_of(wire, ask(
        ASK, ChatMessage("assistant", "Let me look.", tool_calls=calls),
        ChatMessage("tool", '{"temperature": 21}', tool_call_id="call_1"),
        ChatMessage("tool", "noon", tool_call_id="call_2"),
        ChatMessage("user", "And?"), tools=(WEATHER, CLOCK)))
    assert body["contents"][1:] == [
        {"role": "model", "parts": [
            {"text": "Let me look."},
            {"functionCall": {"id": "call_1", "name": "get_weather",
                              "args": {"city": "Paris", "unit": "celsius"}}},
            {"functionCall": {"id": "call_2", "name": "get_time",
                              "args": {"_raw": "not json"}}}]},
        {"role": "user", "parts": [  # consecutive results: one turn
            {"functionResponse": {"id": "call_1", "name": "get_weather",
                                  "response": {"result": {"temperature": 21}}}},
            {"functionResponse": {"id": "call_2", "name": "get_time",
                                  "response": {"result": "noon"}}}]},
        {"role": "user", "parts": [{"text": "And?"}]}]


async def test_images_are_inline_data_and_urls_are_refused(wire):
    body = await body_of(wire, ask(ChatMessage("user", "Describe it",
                                               images=(Image("image/png", PNG),))))
    assert body["contents"] == [{"role": "user", "parts": [
        {"text": "Describe it"},
        {"inlineData": {"mime_type": "image/png", "data": base64.b64encode(PNG).decode()}}]}]
    with pytest.raises(ProviderError) as refused:
        await body_of(wire, ask(ChatMessage("user", "x", images=(
            Image(url="https://example.com/cat.png"),))))
    assert refused.value.kind is ErrorKind.INVALID_REQUEST
    assert "URL" in refused.value.message


async def test_json_mode_is_the_response_mime_type_and_json_schema(wire):
    schema_body = await body_of(wire, ask(response_format=ResponseFormat(
        FormatKind.JSON_SCHEMA, ANSWER_SCHEMA, "ticket", strict=True)))
    assert schema_body["generationConfig"] == {"responseMimeType": "application/json",
                                               "responseJsonSchema": ANSWER_SCHEMA}
    object_body = await body_of(wire, ask(response_format=ResponseFormat(
        FormatKind.JSON_OBJECT)))
    assert object_body["generationConfig"] == {"responseMimeType": "application/json"}
    text_body = await body_of(wire, ask(response_format=ResponseFormat(FormatKind.TEXT)))
    assert not text_body.get("generationConfig")


async def test_id_less_calls_get_stable_distinct_ids(wire):
    capture, adapter = wire
    capture.reply = {"responseId": "resp-1", "candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "get_weather", "args": {"city": "A"}}},
        {"functionCall": {"name": "get_weather", "args": {"city": "A"}}}]},
        "finishReason": "STOP"}]}
    request = ask(tools=(WEATHER,))
    first, again = await adapter.generate(request, 5), await adapter.generate(request, 5)
    assert first.finish_reason is FinishReason.TOOL_CALLS
    assert [c.id for c in first.tool_calls] == [c.id for c in again.tool_calls]
    assert len({c.id for c in first.tool_calls}) == 2
    assert all(TOOL_CALL_ID.fullmatch(c.id) for c in first.tool_calls)


def test_streamed_calls_are_numbered_across_chunks_and_stop_becomes_tool_calls():
    def chunk(parts: list[dict[str, Any]], finish: str | None = None
              ) -> types.GenerateContentResponse:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}}
        if finish:
            candidate["finishReason"] = finish
        return types.GenerateContentResponse._from_response(
            response={"candidates": [candidate], "responseId": "r"}, kwargs={})

    call = {"functionCall": {"name": "get_time", "args": {"zone": "UTC"}, "id": "c9"}}
    first = translate_event(chunk([call]), Usage())
    later = translate_event(chunk([{"text": ""}], "STOP"), Usage(), calls_before=1)
    assert first.tools == (ToolCallDelta(0, "c9", "get_time", '{"zone": "UTC"}'),)
    assert later.finish is FinishReason.TOOL_CALLS and not later.tools
    assert translate_event(chunk([call], "STOP"), Usage(), 3).tools[0].index == 3
    with pytest.raises(ProviderError) as malformed:
        translate_event(chunk([], "MALFORMED_FUNCTION_CALL"), Usage())
    assert malformed.value.kind is ErrorKind.INVALID_OUTPUT


# --------------------------------------------------------------------------- simulator


async def test_a_tool_call_unary_and_streamed(gemini):
    request = ask(tools=(WEATHER,))
    completion = await gemini.generate(request, 10)
    assert completion.finish_reason is FinishReason.TOOL_CALLS and completion.text == ""
    assert len(completion.tool_calls) == 1
    assert_weather_call(completion.tool_calls[0])
    assert completion.usage.output_tokens > 0
    events = await streamed(gemini, request)
    pieces = [e for e in events if isinstance(e, ToolCallDelta)]
    done = events[-1]
    assert isinstance(done, StreamDone) and done.finish_reason is FinishReason.TOOL_CALLS
    assert not [e for e in events if isinstance(e, TextChunk)]
    # Gemini sends a call whole: one piece holding all its arguments.
    assert pieces == [ToolCallDelta(0, done.tool_calls[0].id, "get_weather",
                                    done.tool_calls[0].arguments)]
    assert done.tool_calls == completion.tool_calls  # same request: same call, same id


async def test_several_calls_stream_as_several_pieces_with_stable_ids(gemini):
    request = ask(tools=(WEATHER, CLOCK))
    completion = await gemini.generate(request, 10)
    events = await streamed(gemini, request)
    pieces = [e for e in events if isinstance(e, ToolCallDelta)]
    assert [(p.index, p.name) for p in pieces] == [(0, "get_weather"), (1, "get_time")]
    assert len({p.id for p in pieces}) == 2
    assert events[-1].tool_calls == completion.tool_calls
    assert [c.id for c in completion.tool_calls] == [p.id for p in pieces]


async def test_the_turn_after_a_tool_result_quotes_it(gemini):
    first = await gemini.generate(ask(tools=(WEATHER,)), 10)
    follow = ask(ASK, ChatMessage("assistant", "", tool_calls=first.tool_calls),
                 ChatMessage("tool", '{"temperature": 21}',
                             tool_call_id=first.tool_calls[0].id), tools=(WEATHER,))
    final = await gemini.generate(follow, 10)
    assert final.finish_reason is FinishReason.STOP and not final.tool_calls
    assert '{"temperature": 21}' in final.text
    events = await streamed(gemini, follow)
    assert "".join(e.text for e in events if isinstance(e, TextChunk)) == final.text
    assert events[-1].finish_reason is FinishReason.STOP and not events[-1].tool_calls


async def test_tool_choice_none_answers_text_and_a_named_tool_is_called(gemini):
    none = await gemini.generate(ask(tools=(WEATHER,),
                                     tool_choice=ToolChoice(ToolChoiceMode.NONE)), 10)
    assert none.text and not none.tool_calls and none.finish_reason is FinishReason.STOP
    named = await gemini.generate(ask(tools=(WEATHER, CLOCK), tool_choice=ToolChoice(
        ToolChoiceMode.TOOL, "get_time")), 10)
    assert [c.name for c in named.tool_calls] == ["get_time"]
    jsonschema.validate(json.loads(named.tool_calls[0].arguments), CLOCK_SCHEMA)


async def test_a_json_schema_answer_matches_the_schema(gemini):
    request = ask(response_format=ResponseFormat(FormatKind.JSON_SCHEMA, ANSWER_SCHEMA,
                                                 "ticket", strict=True))
    completion = await gemini.generate(request, 10)
    jsonschema.validate(json.loads(completion.text), ANSWER_SCHEMA)
    assert completion.finish_reason is FinishReason.STOP and not completion.tool_calls
    events = await streamed(gemini, request)
    text = "".join(e.text for e in events if isinstance(e, TextChunk))
    assert len([e for e in events if isinstance(e, TextChunk)]) > 1
    jsonschema.validate(json.loads(text), ANSWER_SCHEMA)


async def test_an_image_reaches_the_model_and_counts_prompt_tokens(gemini):
    plain = await gemini.generate(ask(ChatMessage("user", "Describe it")), 10)
    seen = await gemini.generate(ask(ChatMessage("user", "Describe it", images=(
        Image("image/png", PNG),))), 10)
    assert seen.text.endswith("[saw 1 image(s): image/png]")
    assert seen.usage.input_tokens == plain.usage.input_tokens + IMAGE_TOKENS


async def test_an_undeclared_tool_call_is_passed_on(gemini, simulator):
    simulator.set_scenario("gm-undeclared", output_fault="undeclared_tool")
    request = ask(model="gm-undeclared", tools=(WEATHER,))
    completion = await gemini.generate(request, 10)
    events = await streamed(gemini, request)
    assert [c.name for c in completion.tool_calls] == [UNDECLARED_TOOL]
    assert [c.name for c in events[-1].tool_calls] == [UNDECLARED_TOOL]


async def test_malformed_arguments_are_invalid_output(gemini, simulator):
    """Gemini cannot send arguments that are not an object: it ends the answer with
    MALFORMED_FUNCTION_CALL and no call, which the adapter reports as invalid output."""
    simulator.set_scenario("gm-malformed", output_fault="malformed_arguments")
    request = ask(model="gm-malformed", tools=(WEATHER,))
    with pytest.raises(ProviderError) as unary:
        await gemini.generate(request, 10)
    with pytest.raises(ProviderError) as stream:
        await streamed(gemini, request)
    assert unary.value.kind is stream.value.kind is ErrorKind.INVALID_OUTPUT
    assert unary.value.retryable


async def test_the_official_sdk_reads_the_simulated_function_call(simulator):
    client = genai.Client(api_key=simulator.api_key, http_options=types.HttpOptions(
        base_url=simulator.gemini_base_url)).aio
    tool = types.Tool(function_declarations=[types.FunctionDeclaration(
        name="get_weather", description="weather", parameters_json_schema=WEATHER_SCHEMA)])
    response = await client.models.generate_content(
        model=MODEL, contents="Weather in Paris?",
        config=types.GenerateContentConfig(tools=[tool]))
    (call,) = response.function_calls or []
    assert call.name == "get_weather" and call.id and call.id.startswith("call_")
    jsonschema.validate(call.args, WEATHER_SCHEMA)
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
