"""The Anthropic Messages simulator, specified through the official `anthropic` SDK."""

from __future__ import annotations

import asyncio
import time

import anthropic
import httpx2
import pytest
from anthropic import AsyncAnthropic

from simulator.testing import SimulatorProcess

MESSAGES = [{"role": "user", "content": "say hello to the gateway"}]
SYSTEM = "be brief"
PROMPT_TOKENS = 5 + 2 + 3  # words in the message and the system prompt + 3 per message


@pytest.fixture(autouse=True)
def clean(sim: SimulatorProcess) -> None:
    sim.reset()


@pytest.fixture
def client(sim: SimulatorProcess) -> AsyncAnthropic:
    return AsyncAnthropic(base_url=sim.anthropic_base_url, api_key=sim.api_key, max_retries=0)


async def create(client: AsyncAnthropic, model: str, **kwargs: object) -> anthropic.types.Message:
    params: dict[str, object] = {"max_tokens": 100, "system": SYSTEM, "messages": MESSAGES}
    params.update(kwargs)
    return await client.messages.create(model=model, **params)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- replies


async def test_unary_message_has_text_usage_and_end_turn(
    client: AsyncAnthropic, sim: SimulatorProcess
) -> None:
    message = await create(client, "claude-sim")

    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == "claude-sim"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text.startswith("Hello from claude-sim.")
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == PROMPT_TOKENS
    assert message.usage.output_tokens == 12
    assert message.usage.cache_read_input_tokens == 0
    assert message.usage.cache_creation_input_tokens == 0
    stats = sim.stats()
    assert stats["requests_by_model"] == {"claude-sim": 1}
    assert stats["requests_by_vendor"] == {"anthropic": 1}


async def test_scripted_cache_tokens_are_reported_apart_from_input(
    client: AsyncAnthropic, sim: SimulatorProcess
) -> None:
    sim.set_scenario("claude-cache", cached_prompt_tokens=4, cache_write_tokens=2)

    message = await create(client, "claude-cache")

    assert message.usage.cache_read_input_tokens == 4
    assert message.usage.cache_creation_input_tokens == 2
    assert message.usage.input_tokens == PROMPT_TOKENS - 6


async def test_max_tokens_cuts_the_reply(client: AsyncAnthropic) -> None:
    message = await create(client, "claude-sim", max_tokens=3)

    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 3
    assert message.content[0].text == "Hello from claude-sim."


async def test_stop_sequence_is_reported(client: AsyncAnthropic, sim: SimulatorProcess) -> None:
    sim.set_scenario("claude-stop", reply="one two three STOP four")

    message = await create(client, "claude-stop", stop_sequences=["STOP"])

    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == "STOP"
    assert message.content[0].text == "one two three "


async def test_scripted_refusal_is_a_refusal_stop_reason(
    client: AsyncAnthropic, sim: SimulatorProcess
) -> None:
    sim.set_scenario("claude-refuses", content_filter="prompt")

    message = await create(client, "claude-refuses")

    assert message.stop_reason == "refusal"
    assert message.content == []
    assert message.usage.output_tokens == 0


async def test_out_of_range_temperature_is_an_invalid_request(client: AsyncAnthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        await create(client, "claude-sim", extra_body={"temperature": 1.5})

    assert info.value.status_code == 400
    assert info.value.body["error"]["type"] == "invalid_request_error"
    assert "temperature" in info.value.body["error"]["message"]


# --------------------------------------------------------------------------- streaming


async def test_stream_events_are_incremental_and_end_with_usage(
    client: AsyncAnthropic, sim: SimulatorProcess
) -> None:
    sim.set_scenario("claude-paced", tokens_per_second=20, reply_tokens=6)

    arrivals: list[float] = []
    types: list[str] = []
    async with client.messages.stream(
        model="claude-paced", max_tokens=100, system=SYSTEM, messages=MESSAGES
    ) as stream:
        async for event in stream:
            types.append(event.type)
            if event.type == "content_block_delta":
                arrivals.append(time.monotonic())
        final = await stream.get_final_message()

    assert types[:2] == ["message_start", "content_block_start"]
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert len(arrivals) == 6
    assert arrivals[-1] - arrivals[0] > 0.1  # 5 gaps of 50 ms: spread out, not one burst
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 6
    assert final.usage.input_tokens == PROMPT_TOKENS
    assert final.content[0].text.startswith("Hello from claude-paced.")
    assert sim.stats()["streams_completed"] == 1


async def test_streamed_max_tokens_stop_reason_arrives_in_message_delta(
    client: AsyncAnthropic,
) -> None:
    stream = await client.messages.create(
        model="claude-sim", max_tokens=2, messages=MESSAGES, stream=True
    )
    deltas = [event async for event in stream if event.type == "message_delta"]

    assert len(deltas) == 1
    assert deltas[0].delta.stop_reason == "max_tokens"
    assert deltas[0].usage.output_tokens == 2


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "error_class", "error_type"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (403, anthropic.PermissionDeniedError, "permission_error"),
        (404, anthropic.NotFoundError, "not_found_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.InternalServerError, "overloaded_error"),
    ],
)
async def test_scripted_status_surfaces_as_the_sdk_error_class(
    client: AsyncAnthropic,
    sim: SimulatorProcess,
    status: int,
    error_class: type[anthropic.APIStatusError],
    error_type: str,
) -> None:
    sim.set_scenario("claude-failing", always_status=status)

    with pytest.raises(error_class) as info:
        await create(client, "claude-failing")

    assert info.value.status_code == status
    assert info.value.body["type"] == "error"
    assert info.value.body["error"]["type"] == error_type


async def test_rate_limit_carries_retry_after_and_then_succeeds(
    client: AsyncAnthropic, sim: SimulatorProcess
) -> None:
    sim.set_scenario("claude-429", failures=[{"status": 429, "count": 2, "retry_after_s": 7}])

    for _ in range(2):
        with pytest.raises(anthropic.RateLimitError) as info:
            await create(client, "claude-429")
        assert info.value.response.headers["retry-after"] == "7"
    message = await create(client, "claude-429")

    assert message.stop_reason == "end_turn"
    assert sim.stats()["responses_by_status"] == {"429": 2, "200": 1}


async def test_invalid_api_key_is_an_authentication_error(sim: SimulatorProcess) -> None:
    client = AsyncAnthropic(
        base_url=sim.anthropic_base_url, api_key=sim.invalid_api_key, max_retries=0
    )

    with pytest.raises(anthropic.AuthenticationError) as info:
        await create(client, "claude-sim")

    assert info.value.body["error"]["type"] == "authentication_error"


async def test_drop_mid_stream_breaks_the_sdk_stream(
    client: AsyncAnthropic, sim: SimulatorProcess
) -> None:
    sim.set_scenario("claude-drop", drop_after_tokens=3)
    received: list[str] = []

    # The SDK lets the transport's own error through once the stream has started.
    with pytest.raises((anthropic.APIConnectionError, httpx2.TransportError)):
        stream = await create(client, "claude-drop", stream=True)
        async for event in stream:
            if event.type == "content_block_delta":
                received.append(event.delta.text)

    assert len(received) == 3
    assert sim.stats()["connections_dropped"] == 1


async def test_drop_as_error_event_raises_overloaded_mid_stream(
    client: AsyncAnthropic, sim: SimulatorProcess
) -> None:
    sim.set_scenario("claude-overload", drop_after_tokens=2, drop_error_status=529)
    received: list[str] = []

    with pytest.raises(anthropic.APIStatusError) as info:
        stream = await create(client, "claude-overload", stream=True)
        async for event in stream:
            if event.type == "content_block_delta":
                received.append(event.delta.text)

    assert received == ["Hello", " from"]
    assert info.value.body["error"]["type"] == "overloaded_error"


async def test_client_closing_a_stream_is_counted(
    client: AsyncAnthropic, sim: SimulatorProcess
) -> None:
    sim.set_scenario("claude-slow", tokens_per_second=20, reply_tokens=200)

    stream = await create(client, "claude-slow", stream=True)
    async for event in stream:
        if event.type == "content_block_delta":
            break
    await stream.close()

    stats = await asyncio.to_thread(sim.wait_for_stats, lambda s: s["client_disconnects"] == 1)
    assert stats["streams_completed"] == 0
    assert stats["in_flight"] == 0


async def test_timeout_scenario_never_answers(
    client: AsyncAnthropic, sim: SimulatorProcess
) -> None:
    sim.set_scenario("claude-hang", timeout=True)

    with pytest.raises(anthropic.APITimeoutError):
        await client.with_options(timeout=0.3).messages.create(
            model="claude-hang", max_tokens=10, messages=MESSAGES
        )

    await asyncio.to_thread(sim.wait_for_stats, lambda s: s["client_disconnects"] == 1)


# --------------------------------------------------------------------------- tools and images
# (imports of this section kept with it: the section is appended to the module)

import base64
import json

from simulator.replies import count_tokens
from simulator.tooling import IMAGE_TOKENS

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
        "required": ["city"],
    },
}
TIME_TOOL = {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}
PNG_B64 = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16).decode()


async def test_sdk_parses_a_unary_tool_use_answer(client: AsyncAnthropic) -> None:
    message = await create(client, "claude-tools", tools=[WEATHER_TOOL])

    assert message.stop_reason == "tool_use"
    [block] = message.content
    assert isinstance(block, anthropic.types.ToolUseBlock)
    assert block.name == "get_weather"
    assert block.id.startswith("toolu_")
    assert block.input == {"city": "sample", "days": 42}
    assert message.usage.output_tokens == count_tokens(json.dumps(block.input))
    declared = count_tokens(json.dumps([WEATHER_TOOL]))
    assert message.usage.input_tokens == PROMPT_TOKENS + declared


async def test_sdk_assembles_a_streamed_tool_use_from_input_json_deltas(
    client: AsyncAnthropic,
) -> None:
    params: dict[str, object] = {"tools": [WEATHER_TOOL],
                                 "tool_choice": {"type": "tool", "name": "get_weather"}}
    raw = await create(client, "claude-tools", stream=True, **params)
    events = [event async for event in raw]
    async with client.messages.stream(
        model="claude-tools", max_tokens=100, system=SYSTEM, messages=MESSAGES,
        **params,  # type: ignore[arg-type]
    ) as stream:
        final = await stream.get_final_message()

    types = [e.type for e in events]
    deltas = [e for e in events if e.type == "content_block_delta"]
    assert types[:2] == ["message_start", "content_block_start"]  # (the SDK skips pings)
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(types[2:-3]) == {"content_block_delta"}
    assert events[1].content_block.type == "tool_use" and events[1].content_block.input == {}
    assert len(deltas) > 1
    assert all(d.delta.type == "input_json_delta" and d.index == 0 for d in deltas)
    assert json.loads("".join(d.delta.partial_json for d in deltas)) == final.content[0].input
    assert events[-2].delta.stop_reason == "tool_use"
    assert events[-2].usage.output_tokens == count_tokens(json.dumps(final.content[0].input))
    assert final.stop_reason == "tool_use"
    assert final.content[0].id == events[1].content_block.id
    assert final.content[0].input == {"city": "sample", "days": 42}


async def test_parallel_tool_use_unless_disabled(client: AsyncAnthropic) -> None:
    both = await create(client, "claude-tools", tools=[WEATHER_TOOL, TIME_TOOL])
    one = await create(client, "claude-tools", tools=[WEATHER_TOOL, TIME_TOOL],
                       tool_choice={"type": "any", "disable_parallel_tool_use": True})
    none = await create(client, "claude-tools", tools=[WEATHER_TOOL, TIME_TOOL],
                        tool_choice={"type": "none"})

    assert [b.name for b in both.content] == ["get_weather", "get_time"]
    assert [b.name for b in one.content] == ["get_weather"]
    assert none.stop_reason == "end_turn" and none.content[0].type == "text"


async def test_tool_result_turn_is_answered_with_text_quoting_it(client: AsyncAnthropic) -> None:
    first = await create(client, "claude-tools", tools=[WEATHER_TOOL])
    call = first.content[0]
    messages = [
        *MESSAGES,
        {"role": "assistant", "content": [call.model_dump(include={"type", "id", "name",
                                                                   "input"})]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 18C"},
            {"type": "text", "text": "thanks"},
        ]},
    ]
    message = await create(client, "claude-tools", tools=[WEATHER_TOOL], messages=messages)

    assert message.stop_reason == "end_turn"
    assert message.content[0].text == "Based on the tool results: sunny, 18C"


async def test_images_count_tokens_and_are_noted_in_the_reply(client: AsyncAnthropic) -> None:
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": PNG_B64}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
        {"type": "text", "text": "say hello to the gateway"},
    ]
    message = await create(client, "claude-sim", messages=[{"role": "user", "content": content}])

    assert message.content[0].text.endswith("[saw 2 image(s): image/png, url]")
    assert message.usage.input_tokens == PROMPT_TOKENS + 2 * IMAGE_TOKENS


async def test_scripted_malformed_arguments_stream_as_sent(
    client: AsyncAnthropic, sim: SimulatorProcess
) -> None:
    sim.set_scenario("claude-bad-args", output_fault="malformed_arguments")
    stream = await create(client, "claude-bad-args", tools=[WEATHER_TOOL], stream=True)
    pieces = [e.delta.partial_json async for e in stream if e.type == "content_block_delta"]

    assert "".join(pieces) == '{"unterminated": '


async def test_truncated_tool_use_stream_ends_without_terminal_events(
    client: AsyncAnthropic, sim: SimulatorProcess
) -> None:
    sim.set_scenario("claude-tool-cut", truncate_after_chunks=1)
    stream = await create(client, "claude-tool-cut", tools=[WEATHER_TOOL], stream=True)
    types = [e.type async for e in stream]

    assert types == ["message_start", "content_block_start", "content_block_delta"]


def _tool_turns(tool_use_id: str = "toolu_1", result_id: str = "toolu_1") -> list[dict]:
    return [
        *MESSAGES,
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": tool_use_id, "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": result_id, "content": "ok"}]},
    ]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"tools": [{**WEATHER_TOOL, "name": "get weather"}]}, "tools.0.custom.name"),
        ({"tools": [{"name": "x"}]}, "tools.0.custom.input_schema: Field required"),
        ({"tools": [{"name": "x", "input_schema": {"type": "array"}}]}, "input_schema.type"),
        ({"tools": [WEATHER_TOOL, WEATHER_TOOL]}, "unique"),
        ({"tools": [WEATHER_TOOL], "tool_choice": {"type": "tool", "name": "nope"}}, "nope"),
        ({"tools": [WEATHER_TOOL], "tool_choice": {"type": "some"}}, "tool_choice"),
        ({"tool_choice": {"type": "auto"}}, "only be specified while providing tools"),
        ({"tools": [WEATHER_TOOL],
          "tool_choice": {"type": "none", "disable_parallel_tool_use": True}}, "Extra inputs"),
        ({"messages": _tool_turns()}, "must define tools"),
        ({"tools": [WEATHER_TOOL], "messages": _tool_turns(result_id="toolu_2")},
         "without `tool_result` blocks"),
        ({"tools": [WEATHER_TOOL], "messages": _tool_turns()[:2]},
         "without `tool_result` blocks"),
        ({"tools": [WEATHER_TOOL], "messages": [*MESSAGES, {"role": "assistant",
                                                           "content": "hi"},
                                                {"role": "user", "content": [
                                                    {"type": "tool_result",
                                                     "tool_use_id": "toolu_9"}]}]},
         "unexpected `tool_use_id`"),
        ({"tools": [WEATHER_TOOL], "messages": [
            *_tool_turns()[:2], {"role": "user", "content": [
                {"type": "text", "text": "first"},
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]}]},
         "must come first"),
        ({"messages": [{"role": "user", "content": [{"type": "image", "source": {
            "type": "base64", "media_type": "image/bmp", "data": PNG_B64}}]}]}, "media_type"),
        ({"messages": [{"role": "user", "content": [{"type": "image", "source": {
            "type": "base64", "media_type": "image/png", "data": "not base64!"}}]}]},
         "base64"),
    ],
)
async def test_malformed_tools_and_tool_turns_are_invalid_requests(
    client: AsyncAnthropic, kwargs: dict, fragment: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        await create(client, "claude-sim", extra_body=kwargs)

    assert info.value.body["error"]["type"] == "invalid_request_error"
    assert fragment in info.value.body["error"]["message"]
