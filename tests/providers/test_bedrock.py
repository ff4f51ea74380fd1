"""Bedrock specifics: one client per region, region outages, AWS error codes, cache
usage, and boto3 kept off the event loop — through boto3 against the simulator."""

from __future__ import annotations

import asyncio
import time

import pytest

from server.providers.base import (
    ChatMessage,
    ErrorKind,
    FinishReason,
    ProviderError,
    ProviderRequest,
    TextChunk,
)
from server.providers.bedrock import build_request
from tests.providers.conftest import bedrock_vendor


@pytest.fixture
async def bedrock(simulator, bedrock_executor):
    adapter = bedrock_vendor(simulator, bedrock_executor).build("sim-key")
    yield adapter
    await adapter.aclose()


def ask(model: str, region: str = "") -> ProviderRequest:
    return ProviderRequest(model, (ChatMessage("user", "hi"), ChatMessage("user", "again")),
                           system="Be brief.", region=region)


def test_converse_request_has_system_alternating_turns_and_inference_config():
    from server.providers.base import GenerationParams
    body = build_request(ProviderRequest(
        "m", (ChatMessage("user", "a"), ChatMessage("user", "b")), system="S",
        params=GenerationParams(max_output_tokens=5, temperature=0.1, top_p=0.5, stop=("X",))))
    assert body["system"] == [{"text": "S"}]
    assert body["messages"] == [{"role": "user", "content": [{"text": "a\n\nb"}]}]
    assert body["inferenceConfig"] == {"maxTokens": 5, "temperature": 0.1, "topP": 0.5,
                                       "stopSequences": ["X"]}


async def test_each_region_is_called_in_that_region(bedrock, simulator):
    for region in ("ap-south-1", "eu-west-1"):
        completion = await bedrock.generate(ask("br-regions", region), 10)
        assert completion.text.startswith("Hello from br-regions.")
    by_region = simulator.stats()["requests_by_region_model"]
    assert by_region.get("ap-south-1/br-regions") == 1
    assert by_region.get("eu-west-1/br-regions") == 1


async def test_a_region_outage_is_unavailable_only_in_that_region(bedrock, simulator):
    simulator.set_region_down("sa-east-1")
    try:
        with pytest.raises(ProviderError) as caught:
            await bedrock.generate(ask("br-outage", "sa-east-1"), 10)
        assert caught.value.kind is ErrorKind.UNAVAILABLE and caught.value.retryable
        assert (await bedrock.generate(ask("br-outage", "us-west-2"), 10)).text
    finally:
        simulator.set_region_up("sa-east-1")


@pytest.mark.parametrize(("code", "status", "kind"), [
    ("ThrottlingException", 429, ErrorKind.RATE_LIMITED),
    ("ModelNotReadyException", 429, ErrorKind.UNAVAILABLE),
    ("ServiceUnavailableException", 503, ErrorKind.UNAVAILABLE),
    ("ModelTimeoutException", 408, ErrorKind.TIMEOUT),
    ("AccessDeniedException", 403, ErrorKind.PERMISSION),
])
async def test_aws_error_codes_are_classified(bedrock, simulator, code, status, kind):
    model = f"br-code-{code}"
    simulator.set_scenario(model, failures=[{"status": status, "code": code}])
    with pytest.raises(ProviderError) as caught:
        await bedrock.generate(ask(model), 10)
    assert caught.value.kind is kind


async def test_input_too_long_is_context_too_long(bedrock, simulator):
    simulator.set_scenario("br-long", failures=[{
        "status": 400, "message": "Input is too long for requested model."}])
    with pytest.raises(ProviderError) as caught:
        await bedrock.generate(ask("br-long"), 10)
    assert caught.value.kind is ErrorKind.CONTEXT_TOO_LONG


async def test_stream_usage_comes_from_the_metadata_event_with_cache_counts(bedrock, simulator):
    simulator.set_scenario("br-cache", cached_prompt_tokens=3, cache_write_tokens=1)
    unary = await bedrock.generate(ask("br-cache"), 10)
    events = [e async for e in bedrock.stream(ask("br-cache"), 10)]
    done = events[-1]
    assert done.finish_reason is FinishReason.STOP
    assert done.usage == unary.usage
    assert (done.usage.cached_input_tokens, done.usage.cache_write_tokens) == (3, 1)


async def test_slow_streams_do_not_block_the_event_loop(bedrock, simulator):
    simulator.set_scenario("br-slow", reply_tokens=20, tokens_per_second=20)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    tick_task = asyncio.create_task(ticker())
    started = time.monotonic()

    async def one() -> str:
        return "".join([e.text async for e in bedrock.stream(ask("br-slow"), 10)
                        if isinstance(e, TextChunk)])

    texts = await asyncio.gather(*(one() for _ in range(4)))
    elapsed = time.monotonic() - started
    tick_task.cancel()
    assert all(t.startswith("Hello from br-slow.") for t in texts)
    # 4 streams of 1 s each overlapped (one after another would take 4 s), and the loop
    # kept running other tasks meanwhile.
    assert elapsed < 3.0 and ticks >= 10
