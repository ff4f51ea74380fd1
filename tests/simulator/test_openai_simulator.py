"""The OpenAI simulator, specified through the official `openai` SDK pointed at it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import openai
import pytest
from openai import AsyncOpenAI

from simulator.testing import SimulatorProcess

MESSAGES = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "say hello to the gateway"},
]
PROMPT_TOKENS = 2 + 5 + 3 * 2  # words in both messages + 3 per message


@pytest.fixture(autouse=True)
def clean(sim: SimulatorProcess) -> None:
    sim.reset()


@pytest.fixture
def client(sim: SimulatorProcess) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=sim.openai_base_url, api_key=sim.api_key, max_retries=0)


# --------------------------------------------------------------------------- replies


async def test_unary_completion_has_deterministic_text_and_usage(
    client: AsyncOpenAI, sim: SimulatorProcess
) -> None:
    result = await client.chat.completions.create(model="any-unknown-model", messages=MESSAGES)

    choice = result.choices[0]
    assert result.object == "chat.completion"
    assert result.model == "any-unknown-model"
    assert choice.message.role == "assistant"
    assert choice.message.content.startswith("Hello from any-unknown-model.")
    assert choice.finish_reason == "stop"
    assert result.usage is not None
    assert result.usage.completion_tokens == 12
    assert result.usage.prompt_tokens == PROMPT_TOKENS
    assert result.usage.total_tokens == PROMPT_TOKENS + 12
    assert result.usage.prompt_tokens_details.cached_tokens == 0
    stats = sim.stats()
    assert stats["requests_by_model"] == {"any-unknown-model": 1}
    assert stats["in_flight"] == 0


async def test_scripted_reply_is_returned_verbatim(
    client: AsyncOpenAI, sim: SimulatorProcess
) -> None:
    sim.set_scenario("scripted", reply="The answer is 42.")

    result = await client.chat.completions.create(model="scripted", messages=MESSAGES)

    assert result.choices[0].message.content == "The answer is 42."
    assert result.usage.completion_tokens == 4


async def test_stream_is_incremental_and_ends_with_usage(
    client: AsyncOpenAI, sim: SimulatorProcess
) -> None:
    sim.set_scenario("paced", tokens_per_second=20, reply_tokens=10)

    started = time.monotonic()
    stream = await client.chat.completions.create(
        model="paced", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    arrivals, chunks = [], []
    async for chunk in stream:
        arrivals.append(time.monotonic() - started)
        chunks.append(chunk)

    assert chunks[0].choices[0].delta.role == "assistant"
    deltas = [
        c.choices[0].delta.content for c in chunks[1:] if c.choices and c.choices[0].delta.content
    ]
    assert len(deltas) == 10  # one chunk per token
    assert "".join(deltas).startswith("Hello from paced.")
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 10
    assert chunks[-1].usage.prompt_tokens == PROMPT_TOKENS
    # 10 tokens at 20/s take ~0.5 s; the first chunk must not wait for them: the chunks
    # arrive spread out, not all at once at the end.
    assert arrivals[-1] - arrivals[0] > 0.35
    stats = sim.stats()
    assert (stats["streams_started"], stats["streams_completed"]) == (1, 1)


async def test_stream_and_unary_produce_the_same_text(client: AsyncOpenAI) -> None:
    unary = await client.chat.completions.create(model="same", messages=MESSAGES)
    stream = await client.chat.completions.create(model="same", messages=MESSAGES, stream=True)
    streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    assert streamed == unary.choices[0].message.content


async def test_max_tokens_caps_output_with_finish_reason_length(client: AsyncOpenAI) -> None:
    unary = await client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=5)
    stream = await client.chat.completions.create(
        model="m",
        messages=MESSAGES,
        max_completion_tokens=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]

    assert unary.choices[0].finish_reason == "length"
    assert unary.usage.completion_tokens == 5
    assert len(unary.choices[0].message.content.split()) == 5
    contents = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(contents) == 3
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 3


async def test_stop_sequence_ends_output_early(client: AsyncOpenAI, sim: SimulatorProcess) -> None:
    sim.set_scenario("stoppy", reply="alpha beta gamma delta")

    result = await client.chat.completions.create(
        model="stoppy", messages=MESSAGES, stop=[" gamma", "zzz"]
    )

    assert result.choices[0].message.content == "alpha beta"
    assert result.choices[0].finish_reason == "stop"
    assert result.usage.completion_tokens == 2


async def test_latency_delays_the_response(client: AsyncOpenAI, sim: SimulatorProcess) -> None:
    sim.set_scenario("laggy", latency_ms=300)

    started = time.monotonic()
    await client.chat.completions.create(model="laggy", messages=MESSAGES)

    assert time.monotonic() - started >= 0.3


# --------------------------------------------------------------------------- errors


async def test_scripted_429s_then_success_carry_retry_after(
    client: AsyncOpenAI, sim: SimulatorProcess
) -> None:
    sim.set_scenario("limited", failures=[{"status": 429, "count": 2, "retry_after_s": 1.5}])

    for _ in range(2):
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model="limited", messages=MESSAGES)
        assert caught.value.response.headers["retry-after"] == "1.5"
        assert caught.value.code == "rate_limit_exceeded"
    result = await client.chat.completions.create(model="limited", messages=MESSAGES)

    assert result.choices[0].message.content
    stats = sim.stats()
    assert stats["requests_by_model"]["limited"] == 3
    assert stats["responses_by_status"] == {"429": 2, "200": 1}


async def test_failures_are_consumed_once_each_under_concurrency(
    client: AsyncOpenAI, sim: SimulatorProcess
) -> None:
    sim.set_scenario("busy", failures=[{"status": 500, "count": 3}, {"status": 503, "count": 2}])

    results = await asyncio.gather(
        *(client.chat.completions.create(model="busy", messages=MESSAGES) for _ in range(20)),
        return_exceptions=True,
    )

    statuses = sorted(r.status_code for r in results if isinstance(r, openai.APIStatusError))
    assert statuses == [500, 500, 500, 503, 503]
    assert sum(not isinstance(r, Exception) for r in results) == 15


async def test_always_status_fails_every_request(
    client: AsyncOpenAI, sim: SimulatorProcess
) -> None:
    sim.set_scenario("down", always_status=503)

    for _ in range(3):
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model="down", messages=MESSAGES)
        assert caught.value.status_code == 503
        assert caught.value.type == "server_error"


async def test_scripted_error_code_reaches_the_sdk(
    client: AsyncOpenAI, sim: SimulatorProcess
) -> None:
    sim.set_scenario(
        "tiny-context",
        failures=[{"status": 400, "code": "context_length_exceeded", "message": "too long"}],
    )

    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="tiny-context", messages=MESSAGES)

    assert caught.value.code == "context_length_exceeded"
    assert caught.value.message.endswith("too long")


async def test_invalid_api_key_is_rejected(sim: SimulatorProcess) -> None:
    client = AsyncOpenAI(base_url=sim.openai_base_url, api_key=sim.invalid_api_key, max_retries=0)

    with pytest.raises(openai.AuthenticationError) as caught:
        await client.chat.completions.create(model="m", messages=MESSAGES)

    assert caught.value.code == "invalid_api_key"


def test_missing_authorization_is_401(sim: SimulatorProcess) -> None:
    response = httpx.post(
        sim.openai_base_url + "/chat/completions", json={"model": "m", "messages": MESSAGES}
    )

    assert response.status_code == 401
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


async def test_unknown_models_are_served_unless_scripted_not_found(
    client: AsyncOpenAI, sim: SimulatorProcess
) -> None:
    sim.set_scenario("retired", not_found=True)

    served = await client.chat.completions.create(model="never-heard-of-it", messages=MESSAGES)
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(model="retired", messages=MESSAGES)

    assert served.choices[0].message.content
    assert caught.value.code == "model_not_found"


async def test_invalid_parameters_name_the_field(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="m", messages=MESSAGES, temperature=3.5)

    assert caught.value.param == "temperature"


# --------------------------------------------------------------------------- connections


async def test_drop_after_tokens_breaks_the_stream_midway(
    client: AsyncOpenAI, sim: SimulatorProcess
) -> None:
    sim.set_scenario("flaky", drop_after_tokens=3)

    received: list[str] = []
    stream = await client.chat.completions.create(model="flaky", messages=MESSAGES, stream=True)
    with pytest.raises(Exception) as caught:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)

    # The SDK surfaces the cut as a connection error (older SDKs: httpx's RemoteProtocolError).
    assert isinstance(caught.value, openai.APIConnectionError) or (
        "RemoteProtocolError" in type(caught.value).__name__
    )
    assert received == ["Hello", " from", " flaky."]
    stats = sim.stats()
    assert stats["connections_dropped"] == 1
    assert stats["streams_completed"] == 0
    assert stats["client_disconnects"] == 0  # our drop is not the client's doing


async def test_drop_on_unary_is_a_connection_error(
    client: AsyncOpenAI, sim: SimulatorProcess
) -> None:
    sim.set_scenario("flaky", drop_after_tokens=0)

    with pytest.raises(openai.APIConnectionError):
        await client.chat.completions.create(model="flaky", messages=MESSAGES)


@pytest.mark.parametrize(
    "behaviour", [{"timeout": True}, {"latency_ms": 5000}], ids=["timeout", "latency"]
)
async def test_a_client_giving_up_on_a_silent_call_is_noticed(
    client: AsyncOpenAI, sim: SimulatorProcess, behaviour: dict[str, object]
) -> None:
    sim.set_scenario("stuck", **behaviour)

    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(model="stuck", messages=MESSAGES, timeout=0.3)
    gave_up_at = time.monotonic()

    # The abandoned call is noticed server-side at once, not left hanging.
    # (2 s: well inside the 5 s the vendor would stay silent, with room for a loaded CI box.)
    stats = sim.wait_for_stats(lambda s: s["client_disconnects"] == 1, timeout=3.0)
    assert time.monotonic() - gave_up_at < 2.0
    assert stats["in_flight"] == 0
    assert stats["responses_by_status"] == {}


def test_scenarios_accept_model_names_with_slashes_and_spaces(sim: SimulatorProcess) -> None:
    sim.set_scenario("meta/llama 3:8b", reply="ok")

    assert sim.scenarios()["meta/llama 3:8b"]["reply"] == "ok"
    sim.remove_scenario("meta/llama 3:8b")
    assert sim.scenarios() == {}


async def test_client_closing_a_stream_is_counted_promptly(
    client: AsyncOpenAI, sim: SimulatorProcess
) -> None:
    sim.set_scenario("long", tokens_per_second=20, reply_tokens=200)

    stream = await client.chat.completions.create(model="long", messages=MESSAGES, stream=True)
    seen = 0
    async for _ in stream:
        seen += 1
        if seen == 3:
            break
    await stream.close()
    closed_at = time.monotonic()

    # (2 s: well inside the 10 s the stream would run, with room for a loaded CI box.)
    stats = sim.wait_for_stats(lambda s: s["client_disconnects"] == 1, timeout=3.0)
    assert time.monotonic() - closed_at < 2.0
    assert stats["streams_started"] == 1
    assert stats["streams_completed"] == 0
    assert stats["in_flight"] == 0


# --------------------------------------------------------------------------- embeddings, models


async def test_embeddings_are_deterministic_unit_vectors(client: AsyncOpenAI) -> None:
    first = await client.embeddings.create(model="text-embedding-3-small", input=["a b c", "d"])
    again = await client.embeddings.create(model="text-embedding-3-small", input="a b c")
    short = await client.embeddings.create(
        model="text-embedding-3-small", input="a b c", dimensions=64
    )

    vec_a, vec_d = first.data[0].embedding, first.data[1].embedding
    assert len(vec_a) == 1536
    assert len(short.data[0].embedding) == 64
    assert sum(v * v for v in vec_a) == pytest.approx(1.0, abs=1e-4)
    assert sum(v * v for v in short.data[0].embedding) == pytest.approx(1.0, abs=1e-4)
    assert again.data[0].embedding == pytest.approx(vec_a, abs=1e-6)
    assert vec_a != pytest.approx(vec_d, abs=1e-3)
    assert first.usage.prompt_tokens == 4


def test_float_and_base64_embeddings_agree(sim: SimulatorProcess) -> None:
    client = openai.OpenAI(base_url=sim.openai_base_url, api_key=sim.api_key, max_retries=0)

    as_float = client.embeddings.create(model="e", input="hi", encoding_format="float")
    as_base64 = client.embeddings.create(model="e", input="hi")  # SDK default: base64

    assert as_base64.data[0].embedding == pytest.approx(as_float.data[0].embedding, abs=1e-6)


async def test_models_list_includes_scripted_models(
    client: AsyncOpenAI, sim: SimulatorProcess
) -> None:
    sim.set_scenario("custom-model", latency_ms=1)

    ids = [m.id async for m in client.models.list()]

    assert "gpt-4o-mini" in ids
    assert "custom-model" in ids


# --------------------------------------------------------------------------- control


def test_control_api_rejects_unknown_behaviour_fields(sim: SimulatorProcess) -> None:
    with pytest.raises(RuntimeError, match="unknown behaviour field"):
        sim.set_scenario("m", latency=5)


def test_reset_clears_scenarios_and_counters(sim: SimulatorProcess) -> None:
    sim.set_scenario("m", always_status=500)
    httpx.post(
        sim.openai_base_url + "/chat/completions",
        json={"model": "m", "messages": MESSAGES},
        headers={"Authorization": f"Bearer {sim.api_key}"},
    )
    assert sim.stats()["requests"] == 1

    sim.reset()

    assert sim.scenarios() == {}
    assert sim.stats()["requests"] == 0


def test_scenario_file_is_loaded_at_startup(tmp_path: Path) -> None:
    path = tmp_path / "scenarios.yaml"
    path.write_text(
        "scenarios:\n"
        "  gpt-4o:\n"
        "    reply: from the file\n"
        "    failures:\n"
        "      - {status: 529, count: 1}\n"
    )

    with SimulatorProcess(scenarios=path) as sim:
        client = openai.OpenAI(base_url=sim.openai_base_url, api_key=sim.api_key, max_retries=0)
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        result = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    assert caught.value.status_code == 529
    assert result.choices[0].message.content == "from the file"


def test_bad_scenario_file_fails_startup_with_its_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"m": {"latency_ms": -1}}')

    with pytest.raises(RuntimeError, match="latency_ms must be >= 0"):
        SimulatorProcess(scenarios=path).start()


# --------------------------------------------------------------------------- tools, images, JSON

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}
TOOL_PROMPT = [{"role": "user", "content": "weather in Paris?"}]
PNG_DATA_URL = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUg=="


def post_chat(sim: SimulatorProcess, **body: object) -> httpx.Response:
    return httpx.post(
        sim.openai_base_url + "/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {sim.api_key}"},
        timeout=10,
    )


def sse_events(response: httpx.Response) -> list[dict]:
    import json

    lines = [line[6:] for line in response.text.split("\n") if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def test_a_tool_call_answer_has_null_content_and_counts_the_declarations(
    sim: SimulatorProcess,
) -> None:
    import json

    plain = post_chat(sim, model="tools", messages=TOOL_PROMPT).json()
    response = post_chat(sim, model="tools", messages=TOOL_PROMPT, tools=[WEATHER_TOOL])

    assert response.status_code == 200
    body = response.json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert set(call) == {"id", "type", "function"}
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "sample", "days": 42}
    declared = len(json.dumps([WEATHER_TOOL]).split())
    assert body["usage"]["prompt_tokens"] == plain["usage"]["prompt_tokens"] + declared
    assert body["usage"]["completion_tokens"] == len(call["function"]["arguments"].split())


def test_tool_calls_stream_as_a_header_then_argument_pieces(sim: SimulatorProcess) -> None:
    response = post_chat(
        sim,
        model="tools",
        messages=TOOL_PROMPT,
        tools=[WEATHER_TOOL],
        stream=True,
        stream_options={"include_usage": True},
    )
    events = sse_events(response)
    unary = post_chat(sim, model="tools", messages=TOOL_PROMPT, tools=[WEATHER_TOOL]).json()
    call = unary["choices"][0]["message"]["tool_calls"][0]

    first = events[0]["choices"][0]["delta"]
    assert first["role"] == "assistant" and first["content"] is None
    assert first["tool_calls"] == [
        {
            "index": 0,
            "id": call["id"],
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        }
    ]
    pieces = [e["choices"][0]["delta"] for e in events[1:] if e["choices"]]
    finish = pieces.pop()
    assert finish == {} and events[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert len(pieces) > 1
    for piece in pieces:
        assert piece == {"tool_calls": [{"index": 0, "function": {"arguments": piece[
            "tool_calls"][0]["function"]["arguments"]}}]}
    streamed = "".join(p["tool_calls"][0]["function"]["arguments"] for p in pieces)
    assert streamed == call["function"]["arguments"]
    assert events[-1]["usage"]["completion_tokens"] == unary["usage"]["completion_tokens"]


def test_a_dropped_tool_call_stream_stops_after_the_scripted_pieces(sim: SimulatorProcess) -> None:
    sim.set_scenario("tools-drop", drop_after_tokens=1)

    with pytest.raises(httpx.HTTPError):
        post_chat(sim, model="tools-drop", messages=TOOL_PROMPT, tools=[WEATHER_TOOL], stream=True)

    assert sim.stats()["connections_dropped"] == 1


def test_content_arrays_tool_history_and_images_are_accepted(sim: SimulatorProcess) -> None:
    text_only = [{"role": "user", "content": [{"type": "text", "text": "look at this"}]}]
    with_image = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look at this"},
                {"type": "image_url", "image_url": {"url": PNG_DATA_URL}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
            ],
        }
    ]
    history = [
        *TOOL_PROMPT,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{}"}},
                {"id": "call_2", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_2", "content": "rainy"},
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "sunny"}]},
    ]

    plain = post_chat(sim, model="parts", messages=text_only).json()
    seen = post_chat(sim, model="parts", messages=with_image).json()
    answered = post_chat(sim, model="parts", messages=history, tools=[WEATHER_TOOL]).json()

    assert seen["choices"][0]["message"]["content"].endswith("[saw 2 image(s): image/png, url]")
    assert seen["usage"]["prompt_tokens"] == plain["usage"]["prompt_tokens"] + 2 * 85
    assert answered["choices"][0]["finish_reason"] == "stop"
    assert answered["choices"][0]["message"]["content"] == (
        "Based on the tool results: rainy; sunny"
    )


def test_json_modes_answer_json(sim: SimulatorProcess) -> None:
    import json

    schema = {"type": "object", "properties": {"title": {"type": "string"}}}
    structured = post_chat(
        sim,
        model="json",
        messages=TOOL_PROMPT,
        response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": schema}},
    ).json()
    loose = post_chat(
        sim,
        model="json",
        messages=[{"role": "user", "content": "reply in JSON"}],
        response_format={"type": "json_object"},
    ).json()

    assert json.loads(structured["choices"][0]["message"]["content"]) == {"title": "sample"}
    assert isinstance(json.loads(loose["choices"][0]["message"]["content"]), dict)


ASSISTANT_CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    ],
}


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        (
            [*TOOL_PROMPT, ASSISTANT_CALL, {"role": "tool", "tool_call_id": "call_9", "content": "x"}],
            "messages.[2].role",
        ),
        ([*TOOL_PROMPT, {"role": "tool", "tool_call_id": "call_1", "content": "x"}],
         "messages.[1].role"),
        ([*TOOL_PROMPT, ASSISTANT_CALL, *TOOL_PROMPT], "messages.[1].role"),
        ([*TOOL_PROMPT, ASSISTANT_CALL], "messages.[1].role"),
    ],
    ids=["unknown-call-id", "no-call-before", "call-not-answered", "call-left-open"],
)
def test_tool_messages_must_answer_the_calls_just_made(
    sim: SimulatorProcess, messages: list[dict], param: str
) -> None:
    response = post_chat(sim, model="m", messages=messages, tools=[WEATHER_TOOL])

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["code"] is None
    assert "tool" in error["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"parallel_tool_calls": True}, "parallel_tool_calls"),
        ({"tools": [WEATHER_TOOL], "tool_choice": "sometimes"}, "tool_choice"),
        (
            {"tools": [WEATHER_TOOL],
             "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice",
        ),
        ({"tools": [{"type": "function", "function": {"name": "bad name"}}]},
         "tools[0].function.name"),
        ({"tools": []}, "tools"),
        ({"response_format": {"type": "json_object"}}, "messages"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        ({"response_format": {"type": "yaml"}}, "response_format.type"),
        (
            {"messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:text/plain;base64,aGk="}}]}]},
            "messages[0].content[0].image_url.url",
        ),
        (
            {"messages": [{"role": "assistant", "content": [
                {"type": "image_url", "image_url": {"url": PNG_DATA_URL}}]}]},
            "messages[0]",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "video"}]}]},
         "messages[0].content[0].type"),
    ],
)
def test_malformed_tool_image_and_format_fields_are_400s(
    sim: SimulatorProcess, body: dict, param: str
) -> None:
    response = post_chat(sim, **{"model": "m", "messages": TOOL_PROMPT, **body})

    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param
