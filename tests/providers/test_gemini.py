"""Gemini specifics: generation config mapping, safety blocks (blocked prompt → error,
SAFETY finish → content_filter) — through google-genai against the simulator."""

from __future__ import annotations

import pytest

from server.providers.base import (
    ChatMessage,
    ErrorKind,
    FinishReason,
    GenerationParams,
    ProviderError,
    ProviderRequest,
    TextChunk,
)
from server.providers.gemini import build_config, build_contents
from tests.providers.conftest import gemini_vendor


@pytest.fixture
async def gemini(simulator):
    adapter = gemini_vendor(simulator).build("sim-key")
    yield adapter
    await adapter.aclose()


def test_config_carries_system_instruction_and_every_parameter():
    request = ProviderRequest(
        "gemini-2.5-pro", (ChatMessage("user", "hi"), ChatMessage("assistant", "yo")),
        system="Be brief.", params=GenerationParams(max_output_tokens=64, temperature=0.2,
                                                     top_p=0.9, top_k=40, stop=("END",)))
    config = build_config(request, timeout_s=1.5)
    assert config.system_instruction == "Be brief."
    assert (config.max_output_tokens, config.temperature, config.top_p, config.top_k) == \
        (64, 0.2, 0.9, 40)
    assert config.stop_sequences == ["END"] and config.http_options.timeout == 1500
    assert [c.role for c in build_contents(request)] == ["user", "model"]


async def test_blocked_prompt_is_a_content_filtered_error(gemini, simulator):
    simulator.set_scenario("gm-block", content_filter="prompt")
    request = ProviderRequest("gm-block", (ChatMessage("user", "x"),))
    with pytest.raises(ProviderError) as unary:
        await gemini.generate(request, 10)
    with pytest.raises(ProviderError) as streamed:
        [e async for e in gemini.stream(request, 10)]
    assert unary.value.kind is streamed.value.kind is ErrorKind.CONTENT_FILTERED
    assert not unary.value.retryable


async def test_safety_stop_mid_answer_is_a_content_filter_finish(gemini, simulator):
    simulator.set_scenario("gm-safety", content_filter="response")
    request = ProviderRequest("gm-safety", (ChatMessage("user", "x"),))
    completion = await gemini.generate(request, 10)
    assert completion.finish_reason is FinishReason.CONTENT_FILTER
    events = [e async for e in gemini.stream(request, 10)]
    assert events[-1].finish_reason is FinishReason.CONTENT_FILTER
    assert "".join(e.text for e in events if isinstance(e, TextChunk)) == completion.text
