"""The Gemini simulator, specified through the official `google-genai` SDK (async client)."""

from __future__ import annotations

import asyncio
import json
import math
import time

import aiohttp
import httpx
import pytest
from google import genai
from google.genai import errors, types

from simulator.testing import SimulatorProcess
from simulator.tooling import IMAGE_TOKENS

PROMPT = "say hello to the gateway"
SYSTEM = "be brief"
PROMPT_TOKENS = 5 + 2 + 3  # words in the prompt and the system instruction + 3 per content


@pytest.fixture(autouse=True)
def clean(sim: SimulatorProcess) -> None:
    sim.reset()


def make_client(sim: SimulatorProcess, api_key: str | None = None) -> genai.client.AsyncClient:
    options = types.HttpOptions(base_url=sim.gemini_base_url)
    return genai.Client(api_key=api_key or sim.api_key, http_options=options).aio


@pytest.fixture
def client(sim: SimulatorProcess) -> genai.client.AsyncClient:
    return make_client(sim)


def config(**kwargs: object) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(system_instruction=SYSTEM, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- replies


async def test_unary_reply_has_text_finish_reason_and_usage(
    client: genai.client.AsyncClient, sim: SimulatorProcess
) -> None:
    response = await client.models.generate_content(
        model="gemini-sim",
        contents=PROMPT,
        config=config(temperature=0.2, top_p=0.9, top_k=20),
    )

    assert response.text.startswith("Hello from gemini-sim.")
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    usage = response.usage_metadata
    assert usage.prompt_token_count == PROMPT_TOKENS
    assert usage.candidates_token_count == 12
    assert usage.total_token_count == PROMPT_TOKENS + 12
    assert usage.cached_content_token_count is None
    assert sim.stats()["requests_by_vendor"] == {"gemini": 1}


async def test_cached_tokens_are_part_of_the_prompt_count(
    client: genai.client.AsyncClient, sim: SimulatorProcess
) -> None:
    sim.set_scenario("gemini-cache", cached_prompt_tokens=6)

    response = await client.models.generate_content(
        model="gemini-cache", contents=PROMPT, config=config()
    )

    assert response.usage_metadata.cached_content_token_count == 6
    assert response.usage_metadata.prompt_token_count == PROMPT_TOKENS


async def test_max_output_tokens_ends_with_max_tokens(client: genai.client.AsyncClient) -> None:
    response = await client.models.generate_content(
        model="gemini-sim", contents=PROMPT, config=config(max_output_tokens=3)
    )

    assert response.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert response.text == "Hello from gemini-sim."
    assert response.usage_metadata.candidates_token_count == 3


async def test_stop_sequence_cuts_the_reply(
    client: genai.client.AsyncClient, sim: SimulatorProcess
) -> None:
    sim.set_scenario("gemini-stop", reply="alpha beta END gamma")

    response = await client.models.generate_content(
        model="gemini-stop", contents=PROMPT, config=config(stop_sequences=["END"])
    )

    assert response.text == "alpha beta "
    assert response.candidates[0].finish_reason == types.FinishReason.STOP


async def test_prompt_block_is_reported_in_prompt_feedback(
    client: genai.client.AsyncClient, sim: SimulatorProcess
) -> None:
    sim.set_scenario("gemini-unsafe", content_filter="prompt")

    response = await client.models.generate_content(model="gemini-unsafe", contents=PROMPT)

    assert response.prompt_feedback.block_reason == types.BlockedReason.SAFETY
    assert not response.candidates
    assert response.text is None


async def test_response_block_ends_with_safety(
    client: genai.client.AsyncClient, sim: SimulatorProcess
) -> None:
    sim.set_scenario("gemini-unsafe", content_filter="response")

    response = await client.models.generate_content(model="gemini-unsafe", contents=PROMPT)

    assert response.candidates[0].finish_reason == types.FinishReason.SAFETY
    assert any(r.blocked for r in response.candidates[0].safety_ratings)


# --------------------------------------------------------------------------- streaming


async def test_stream_is_incremental_and_ends_with_finish_and_usage(
    client: genai.client.AsyncClient, sim: SimulatorProcess
) -> None:
    sim.set_scenario("gemini-paced", tokens_per_second=20, reply_tokens=6)

    arrivals: list[float] = []
    chunks = []
    async for chunk in await client.models.generate_content_stream(
        model="gemini-paced", contents=PROMPT, config=config()
    ):
        arrivals.append(time.monotonic())
        chunks.append(chunk)

    assert len(chunks) == 6
    assert arrivals[-1] - arrivals[0] > 0.1  # 5 gaps of 50 ms: spread out, not one burst
    assert "".join(c.text for c in chunks).startswith("Hello from gemini-paced.")
    assert [c.candidates[0].finish_reason for c in chunks[:-1]] == [None] * 5
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.candidates_token_count == 6
    assert chunks[-1].usage_metadata.prompt_token_count == PROMPT_TOKENS
    assert sim.stats()["streams_completed"] == 1


async def test_drop_mid_stream_breaks_the_sdk_stream(
    client: genai.client.AsyncClient, sim: SimulatorProcess
) -> None:
    sim.set_scenario("gemini-drop", drop_after_tokens=2)
    received: list[str] = []

    with pytest.raises(aiohttp.ClientError):
        async for chunk in await client.models.generate_content_stream(
            model="gemini-drop", contents=PROMPT
        ):
            received.append(chunk.text)

    assert received == ["Hello", " from"]
    assert sim.stats()["connections_dropped"] == 1


async def test_drop_as_error_chunk_raises_server_error(
    client: genai.client.AsyncClient, sim: SimulatorProcess
) -> None:
    sim.set_scenario("gemini-overload", drop_after_tokens=1, drop_error_status=503)
    received: list[str] = []

    with pytest.raises(errors.ServerError) as info:
        async for chunk in await client.models.generate_content_stream(
            model="gemini-overload", contents=PROMPT
        ):
            received.append(chunk.text)

    assert received == ["Hello"]
    assert info.value.code == 503
    assert info.value.status == "UNAVAILABLE"


async def test_client_closing_a_stream_is_counted(
    client: genai.client.AsyncClient, sim: SimulatorProcess
) -> None:
    sim.set_scenario("gemini-slow", tokens_per_second=20, reply_tokens=200)

    stream = await client.models.generate_content_stream(model="gemini-slow", contents=PROMPT)
    async for _ in stream:
        break
    await stream.aclose()

    stats = await asyncio.to_thread(sim.wait_for_stats, lambda s: s["client_disconnects"] == 1)
    assert stats["streams_completed"] == 0


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "error_class", "status_name"),
    [
        (400, errors.ClientError, "INVALID_ARGUMENT"),
        (401, errors.ClientError, "UNAUTHENTICATED"),
        (403, errors.ClientError, "PERMISSION_DENIED"),
        (404, errors.ClientError, "NOT_FOUND"),
        (429, errors.ClientError, "RESOURCE_EXHAUSTED"),
        (500, errors.ServerError, "INTERNAL"),
        (503, errors.ServerError, "UNAVAILABLE"),
    ],
)
async def test_scripted_status_surfaces_with_google_status(
    client: genai.client.AsyncClient,
    sim: SimulatorProcess,
    status: int,
    error_class: type[errors.APIError],
    status_name: str,
) -> None:
    sim.set_scenario("gemini-failing", always_status=status)

    with pytest.raises(error_class) as info:
        await client.models.generate_content(model="gemini-failing", contents=PROMPT)

    assert info.value.code == status
    assert info.value.status == status_name
    assert info.value.message


async def test_rate_limit_twice_then_ok_carries_retry_info(
    client: genai.client.AsyncClient, sim: SimulatorProcess
) -> None:
    sim.set_scenario("gemini-429", failures=[{"status": 429, "count": 2, "retry_after_s": 3}])

    for _ in range(2):
        with pytest.raises(errors.ClientError) as info:
            await client.models.generate_content(model="gemini-429", contents=PROMPT)
        details = info.value.details["error"]["details"]
        assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"} in details
    response = await client.models.generate_content(model="gemini-429", contents=PROMPT)

    assert response.text


async def test_invalid_api_key_is_reported_like_google(sim: SimulatorProcess) -> None:
    client = make_client(sim, api_key=sim.invalid_api_key)

    with pytest.raises(errors.ClientError) as info:
        await client.models.generate_content(model="gemini-sim", contents=PROMPT)

    assert info.value.code == 400
    assert info.value.status == "INVALID_ARGUMENT"
    assert info.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"


async def test_out_of_range_temperature_is_invalid_argument(
    client: genai.client.AsyncClient,
) -> None:
    with pytest.raises(errors.ClientError) as info:
        await client.models.generate_content(
            model="gemini-sim", contents=PROMPT, config=config(temperature=3.0)
        )

    assert info.value.status == "INVALID_ARGUMENT"
    assert "temperature" in info.value.message


# --------------------------------------------------------------------------- embeddings


async def test_embeddings_are_deterministic_unit_vectors(
    client: genai.client.AsyncClient,
) -> None:
    cfg = types.EmbedContentConfig(output_dimensionality=16)

    first = await client.models.embed_content(
        model="gemini-embedding-001", contents=["alpha", "beta"], config=cfg
    )
    again = await client.models.embed_content(
        model="gemini-embedding-001", contents=["alpha"], config=cfg
    )

    vectors = [e.values for e in first.embeddings]
    assert [len(v) for v in vectors] == [16, 16]
    assert vectors[0] != vectors[1]
    assert again.embeddings[0].values == vectors[0]
    assert math.isclose(math.sqrt(sum(x * x for x in vectors[0])), 1.0, rel_tol=1e-6)


async def test_single_embed_content_matches_the_batch_vector(
    client: genai.client.AsyncClient, sim: SimulatorProcess
) -> None:
    """`:embedContent` (used by older SDKs and REST callers) agrees with the batch form."""
    batch = await client.models.embed_content(
        model="text-embedding-004",
        contents="alpha",
        config=types.EmbedContentConfig(output_dimensionality=8),
    )
    async with httpx.AsyncClient(base_url=sim.gemini_base_url) as http:
        response = await http.post(
            "/v1beta/models/text-embedding-004:embedContent",
            headers={"x-goog-api-key": sim.api_key},
            json={"content": {"parts": [{"text": "alpha"}]}, "outputDimensionality": 8},
        )

    assert response.status_code == 200
    assert response.json()["embedding"]["values"] == batch.embeddings[0].values


# --------------------------------------------------------------------------- function calling

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
}


def weather_tool(**declaration: object) -> types.Tool:
    fields = {"parameters_json_schema": WEATHER_SCHEMA, **declaration}
    return types.Tool(
        function_declarations=[
            types.FunctionDeclaration(name="get_weather", description="weather", **fields)
        ]
    )


CLOCK_TOOL = types.Tool(
    function_declarations=[
        types.FunctionDeclaration(
            name="get_time",
            parameters=types.Schema(
                type=types.Type.OBJECT,
                properties={"zone": types.Schema(type=types.Type.STRING)},
                required=["zone"],
            ),
        )
    ]
)


def calling(mode: str, *names: str) -> types.ToolConfig:
    return types.ToolConfig(
        function_calling_config=types.FunctionCallingConfig(
            mode=mode, allowed_function_names=list(names) or None
        )
    )


async def raw_generate(
    sim: SimulatorProcess, body: dict, model: str = "gemini-sim"
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=sim.gemini_base_url) as http:
        return await http.post(
            f"/v1beta/models/{model}:generateContent",
            headers={"x-goog-api-key": sim.api_key},
            json=body,
        )


async def test_a_declared_function_is_called_with_an_id_and_stop(
    client: genai.client.AsyncClient,
) -> None:
    response = await client.models.generate_content(
        model="gemini-sim", contents=PROMPT, config=config(tools=[weather_tool()])
    )

    (call,) = response.function_calls
    assert call.name == "get_weather" and call.id.startswith("call_")
    assert call.args == {"city": "sample", "unit": "celsius"}
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    assert response.usage_metadata.candidates_token_count == 4  # the arguments' words
    again = await client.models.generate_content(
        model="gemini-sim", contents=PROMPT, config=config(tools=[weather_tool()])
    )
    assert again.function_calls[0].id == call.id  # the same request: the same call


async def test_declarations_count_as_prompt_tokens(client: genai.client.AsyncClient) -> None:
    response = await client.models.generate_content(
        model="gemini-sim", contents=PROMPT, config=config(tools=[weather_tool()])
    )
    assert response.usage_metadata.prompt_token_count > PROMPT_TOKENS


async def test_several_functions_are_called_together_and_streamed_whole(
    client: genai.client.AsyncClient,
) -> None:
    chunks = [
        chunk
        async for chunk in await client.models.generate_content_stream(
            model="gemini-sim", contents=PROMPT, config=config(tools=[weather_tool(), CLOCK_TOOL])
        )
    ]

    assert [[c.name for c in chunk.function_calls] for chunk in chunks] == [
        ["get_weather"],
        ["get_time"],
    ]
    assert chunks[1].function_calls[0].args == {"zone": "sample"}  # OpenAPI types read
    assert [c.candidates[0].finish_reason for c in chunks] == [None, types.FinishReason.STOP]
    assert chunks[0].function_calls[0].id != chunks[1].function_calls[0].id


@pytest.mark.parametrize(
    ("tool_config", "called"),
    [
        (calling("NONE"), []),
        (calling("AUTO"), ["get_weather", "get_time"]),
        (calling("ANY", "get_time"), ["get_time"]),
        (calling("ANY", "get_weather", "get_time"), ["get_weather", "get_time"]),
    ],
)
async def test_the_calling_mode_decides_the_calls(
    client: genai.client.AsyncClient, tool_config: types.ToolConfig, called: list[str]
) -> None:
    response = await client.models.generate_content(
        model="gemini-sim",
        contents=PROMPT,
        config=config(tools=[weather_tool(), CLOCK_TOOL], tool_config=tool_config),
    )

    assert [c.name for c in response.function_calls or ()] == called
    if not called:
        assert response.text.startswith("Hello from gemini-sim.")


async def test_a_function_response_is_answered_with_text_quoting_it(
    client: genai.client.AsyncClient,
) -> None:
    call = types.Part(
        function_call=types.FunctionCall(id="call_1", name="get_weather", args={"city": "x"})
    )
    result = types.Part.from_function_response(
        name="get_weather", response={"result": {"temperature": 21}}
    )
    contents = [
        types.Content(role="user", parts=[types.Part(text=PROMPT)]),
        types.Content(role="model", parts=[call]),
        types.Content(role="user", parts=[result]),
    ]
    response = await client.models.generate_content(
        model="gemini-sim", contents=contents, config=config(tools=[weather_tool()])
    )

    assert response.function_calls is None
    assert response.text == 'Based on the tool results: {"temperature": 21}'
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    required = await client.models.generate_content(
        model="gemini-sim",
        contents=contents,
        config=config(tools=[weather_tool()], tool_config=calling("ANY")),
    )
    assert [c.name for c in required.function_calls] == ["get_weather"]


async def test_json_mode_answers_json_matching_either_schema_form(
    client: genai.client.AsyncClient,
) -> None:
    json_schema = await client.models.generate_content(
        model="gemini-sim",
        contents=PROMPT,
        config=config(response_mime_type="application/json", response_json_schema=WEATHER_SCHEMA),
    )
    openapi = await client.models.generate_content(
        model="gemini-sim",
        contents=PROMPT,
        config=config(
            response_mime_type="application/json",
            response_schema=types.Schema(
                type=types.Type.OBJECT,
                properties={"n": types.Schema(type=types.Type.INTEGER, minimum=50)},
            ),
        ),
    )
    plain_json = await client.models.generate_content(
        model="gemini-sim", contents=PROMPT, config=config(response_mime_type="application/json")
    )

    assert json.loads(json_schema.text) == {"city": "sample", "unit": "celsius"}
    assert json.loads(openapi.text) == {"n": 50}
    assert isinstance(json.loads(plain_json.text), dict)


async def test_an_inline_image_is_seen_and_counted(client: genai.client.AsyncClient) -> None:
    image = types.Part.from_bytes(data=b"\x89PNG\r\n\x1a\n", mime_type="image/png")
    response = await client.models.generate_content(
        model="gemini-sim", contents=[PROMPT, image], config=config()
    )

    assert response.text.endswith("[saw 1 image(s): image/png]")
    assert response.usage_metadata.prompt_token_count == PROMPT_TOKENS + IMAGE_TOKENS


async def test_malformed_arguments_end_with_malformed_function_call(
    client: genai.client.AsyncClient, sim: SimulatorProcess
) -> None:
    sim.set_scenario("gemini-malformed", output_fault="malformed_arguments")
    response = await client.models.generate_content(
        model="gemini-malformed", contents=PROMPT, config=config(tools=[weather_tool()])
    )
    chunks = [
        c
        async for c in await client.models.generate_content_stream(
            model="gemini-malformed", contents=PROMPT, config=config(tools=[weather_tool()])
        )
    ]

    for answer in (response, chunks[-1]):
        assert answer.function_calls is None
        assert answer.candidates[0].finish_reason == types.FinishReason.MALFORMED_FUNCTION_CALL
    raw = await raw_generate(
        sim,
        {
            "contents": [{"parts": [{"text": PROMPT}]}],
            "tools": [{"functionDeclarations": [{"name": "f"}]}],
        },
        model="gemini-malformed",
    )
    (candidate,) = raw.json()["candidates"]
    assert "content" not in candidate  # the SDK drops finishMessage; the wire has it
    assert candidate["finishMessage"] == 'Malformed function call: f({"unterminated": )'


async def test_a_truncated_call_stream_ends_without_the_finish(
    client: genai.client.AsyncClient, sim: SimulatorProcess
) -> None:
    sim.set_scenario("gemini-cut-calls", truncate_after_chunks=1)
    chunks = [
        c
        async for c in await client.models.generate_content_stream(
            model="gemini-cut-calls",
            contents=PROMPT,
            config=config(tools=[weather_tool(), CLOCK_TOOL]),
        )
    ]

    assert [c.function_calls[0].name for c in chunks] == ["get_weather"]
    assert chunks[0].candidates[0].finish_reason is None
    assert sim.stats()["responses_truncated"] == 1


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (
            {"contents": [{"parts": [{"text": "x"}]}],
             "tools": [{"functionDeclarations": [{"name": "bad name"}]}]},
            "Invalid function name",
        ),
        (
            {"contents": [{"parts": [{"text": "x"}]}],
             "tools": [{"functionDeclarations": [
                 {"name": "f", "parameters": {"type": "OBJECT"},
                  "parametersJsonSchema": {"type": "object"}}]}]},
            "cannot both be set",
        ),
        (
            {"contents": [{"parts": [{"text": "x"}]}],
             "toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}}},
            "mode",
        ),
        (
            {"contents": [{"parts": [{"text": "x"}]}],
             "tools": [{"functionDeclarations": [{"name": "f"}]}],
             "toolConfig": {"functionCallingConfig": {
                 "mode": "ANY", "allowedFunctionNames": ["g"]}}},
            "not a declared function",
        ),
        (
            {"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "@@"}}]}]},
            "Base64 decoding failed",
        ),
        (
            {"contents": [{"parts": [{"functionResponse": {"name": "f", "response": "x"}}]}]},
            "response",
        ),
        (
            {"contents": [{"parts": [{}]}]},
            "oneof field 'data'",
        ),
        (
            {"contents": [{"parts": [{"text": "x"}]}],
             "generationConfig": {"responseSchema": {"type": "OBJECT"}}},
            "application/json",
        ),
    ],
)
async def test_malformed_tool_json_and_image_fields_are_invalid_argument(
    sim: SimulatorProcess, body: dict, complaint: str
) -> None:
    response = await raw_generate(sim, body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and complaint in error["message"]
