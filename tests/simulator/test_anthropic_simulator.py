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
