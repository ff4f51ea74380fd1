"""Anthropic specifics: overload (529), role alternation, cache token counts, refusals,
context-window errors — through the anthropic SDK against the simulator."""

from __future__ import annotations

import pytest

from server.providers.anthropic import alternate, build_request
from server.providers.base import (
    ChatMessage,
    ErrorKind,
    FinishReason,
    GenerationParams,
    ProviderError,
    ProviderRequest,
)
from tests.providers.conftest import anthropic_vendor


@pytest.fixture
async def claude(simulator):
    adapter = anthropic_vendor(simulator).build("sim-key")
    yield adapter
    await adapter.aclose()


def test_body_puts_system_on_top_merges_roles_and_always_sets_max_tokens():
    request = ProviderRequest(
        model="claude", system="Be brief.",
        messages=(ChatMessage("user", "a"), ChatMessage("user", "b"),
                  ChatMessage("assistant", "c")),
        params=GenerationParams(temperature=1.7, top_k=5, stop=("END",)))
    body = build_request(request, default_max_tokens=321)
    assert body["system"] == "Be brief." and body["max_tokens"] == 321
    assert body["messages"] == [{"role": "user", "content": "a\n\nb"},
                                {"role": "assistant", "content": "c"}]
    assert body["temperature"] == 1.0 and body["top_k"] == 5
    assert body["stop_sequences"] == ["END"]
    assert alternate(()) == []


async def test_overloaded_529_is_retryable_overload(claude, simulator):
    simulator.set_scenario("an-529", failures=[{"status": 529, "count": 1}])
    with pytest.raises(ProviderError) as caught:
        await claude.generate(ProviderRequest("an-529", (ChatMessage("user", "hi"),)), 10)
    assert caught.value.kind is ErrorKind.OVERLOADED and caught.value.retryable


async def test_consecutive_user_messages_are_accepted_after_merging(claude):
    request = ProviderRequest("an-merge", (ChatMessage("user", "one"), ChatMessage("user", "two"),
                                           ChatMessage("assistant", "ok"),
                                           ChatMessage("user", "three")))
    completion = await claude.generate(request, 10)
    assert completion.finish_reason is FinishReason.STOP


async def test_cache_reads_and_writes_are_reported(claude, simulator):
    simulator.set_scenario("an-cache", cached_prompt_tokens=4, cache_write_tokens=2)
    request = ProviderRequest("an-cache", (ChatMessage("user", "one two three four five six"),))
    unary = await claude.generate(request, 10)
    assert (unary.usage.cached_input_tokens, unary.usage.cache_write_tokens) == (4, 2)
    done = [e async for e in claude.stream(request, 10)][-1]
    assert done.usage == unary.usage
    assert unary.usage.input_tokens >= 6


async def test_refusal_is_a_content_filter_finish(claude, simulator):
    simulator.set_scenario("an-refuse", content_filter="response")
    completion = await claude.generate(ProviderRequest("an-refuse", (ChatMessage("user", "x"),)),
                                       10)
    assert completion.finish_reason is FinishReason.CONTENT_FILTER


async def test_prompt_too_long_is_context_too_long_and_final(claude, simulator):
    simulator.set_scenario("an-long", failures=[{
        "status": 400, "message": "prompt is too long: 210000 tokens > 200000 maximum"}])
    with pytest.raises(ProviderError) as caught:
        await claude.generate(ProviderRequest("an-long", (ChatMessage("user", "x"),)), 10)
    assert caught.value.kind is ErrorKind.CONTEXT_TOO_LONG
    assert "prompt is too long" in caught.value.message
