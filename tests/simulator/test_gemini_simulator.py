"""The Gemini simulator, specified through the official `google-genai` SDK (async client)."""

from __future__ import annotations

import asyncio
import math
import time

import aiohttp
import httpx
import pytest
from google import genai
from google.genai import errors, types

from simulator.testing import SimulatorProcess

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
