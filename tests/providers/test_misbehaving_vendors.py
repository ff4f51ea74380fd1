"""Vendors that misbehave without saying so, and transports that fail, classified the
same way for every vendor: a stream that ends without the vendor's final event and a
unary body that does not parse are ``unavailable`` (retryable, never a success and never
an internal error); a refused connection is ``unavailable`` "connection refused", never a
timeout; no free pooled connection is ``pool_exhausted``."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from server.providers.anthropic import AnthropicProvider
from server.providers.base import (
    CONNECTION_REFUSED,
    FINAL_KINDS,
    INCOMPLETE_STREAM,
    UNREADABLE_ANSWER,
    ChatMessage,
    ErrorKind,
    FinishReason,
    Provider,
    ProviderError,
    ProviderRequest,
    TextChunk,
)
from server.providers.gemini import GeminiProvider
from server.providers.openai import OpenAIProvider
from simulator.testing import SimulatorProcess
from tests.providers import conftest
from tests.providers.conftest import Vendor
from tests.providers.test_adapter_contract import ask, collect, model_name
from tests.support.gateway import free_port


def hello(model: str) -> ProviderRequest:
    return ProviderRequest(model, (ChatMessage("user", "Hello there"),))


async def read_all(stream) -> tuple[list[str], ProviderError]:
    """The text chunks a stream sent before it failed, and its error."""
    texts: list[str] = []
    with pytest.raises(ProviderError) as caught:
        async for event in stream:
            if isinstance(event, TextChunk):
                texts.append(event.text)
    return texts, caught.value


@pytest.mark.parametrize(("scenario", "chunks"), [
    ({"truncate_after_chunks": 0}, 0),
    ({"truncate_after_chunks": 3}, 3),
    ({"omit_terminal_event": True}, 12),
], ids=["before-first-token", "after-3-chunks", "all-text-no-end"])
async def test_a_stream_without_its_final_event_is_unavailable(provider, vendor, simulator,
                                                               scenario, chunks):
    model = model_name(vendor, f"trunc-{next(iter(scenario))}-{chunks}")
    simulator.set_scenario(model, **scenario)
    texts, error = await read_all(provider.stream(ask(model, vendor), timeout_s=10))
    assert vendor.pieces_ok(len(texts), chunks)
    assert error.kind is ErrorKind.UNAVAILABLE and error.retryable
    assert error.message == INCOMPLETE_STREAM


async def test_a_whole_stream_still_ends_with_its_finish(provider, vendor):
    text, done = await collect(provider.stream(ask(model_name(vendor, "whole"), vendor), 10))
    assert text and done.finish_reason is FinishReason.STOP


async def test_a_unary_body_cut_mid_json_is_unavailable_not_internal(provider, vendor,
                                                                     simulator):
    model = model_name(vendor, "cutbody")
    simulator.set_scenario(model, truncate_body=True)
    with pytest.raises(ProviderError) as caught:
        await provider.generate(ask(model, vendor), timeout_s=10)
    assert caught.value.kind is ErrorKind.UNAVAILABLE and caught.value.retryable
    assert caught.value.message == UNREADABLE_ANSWER


def refused_vendor(vendor: Vendor, simulator: SimulatorProcess,
                   executor: ThreadPoolExecutor) -> Vendor:
    """The same vendor's adapter pointed at a port nobody listens on."""
    dead, live = f"http://127.0.0.1:{free_port()}", simulator.base_url
    nobody = SimpleNamespace(
        base_url=dead, openai_base_url=simulator.openai_base_url.replace(live, dead),
        anthropic_base_url=simulator.anthropic_base_url.replace(live, dead),
        gemini_base_url=simulator.gemini_base_url.replace(live, dead))
    builders = {"openai": conftest.openai_vendor, "anthropic": conftest.anthropic_vendor,
                "gemini": conftest.gemini_vendor}
    if vendor.name in builders:
        return builders[vendor.name](nobody)  # type: ignore[arg-type]
    return conftest.bedrock_vendor(nobody, executor)  # type: ignore[arg-type]


async def test_a_refused_connection_is_unavailable_never_a_timeout(vendor, simulator,
                                                                   bedrock_executor):
    adapter = refused_vendor(vendor, simulator, bedrock_executor).build(SimulatorProcess.api_key)
    try:
        with pytest.raises(ProviderError) as unary:
            await adapter.generate(ask("refused", vendor), timeout_s=5)
        with pytest.raises(ProviderError) as streamed:
            await collect(adapter.stream(ask("refused", vendor), timeout_s=5))
    finally:
        await adapter.aclose()
    for caught in (unary, streamed):
        assert caught.value.kind is ErrorKind.UNAVAILABLE, caught.value
        assert caught.value.message == CONNECTION_REFUSED


def single_connection_adapters(simulator: SimulatorProcess) -> list[Provider]:
    """The HTTP vendors' adapters, each allowed one connection (Bedrock's botocore pool
    blocks instead of timing out: its calls are bounded by the thread pool)."""
    return [
        OpenAIProvider("openai", base_url=simulator.openai_base_url, api_key="sim-key",
                       timeout_s=10, max_connections=1),
        AnthropicProvider("anthropic", base_url=simulator.anthropic_base_url,
                          api_key="sim-key", timeout_s=10, max_connections=1,
                          default_max_tokens=100),
        GeminiProvider("gemini", base_url=simulator.gemini_base_url, api_key="sim-key",
                       timeout_s=10, max_connections=1),
    ]


async def test_no_free_pooled_connection_is_pool_exhausted(simulator):
    """One connection allowed, held by a long stream: the next call waits for the pool
    past its time and fails as pool_exhausted (not retryable: the router falls back)."""
    simulator.set_scenario("pc-pool-hold", reply_tokens=100, tokens_per_second=20)
    for adapter in single_connection_adapters(simulator):
        held = adapter.stream(hello("pc-pool-hold"), 10)
        try:
            assert isinstance(await anext(held), TextChunk)
            with pytest.raises(ProviderError) as caught:
                await adapter.generate(hello("pc-pool-next"), timeout_s=0.3)
            assert caught.value.kind is ErrorKind.POOL_EXHAUSTED, (adapter.name, caught.value)
            assert not caught.value.retryable and caught.value.kind not in FINAL_KINDS
        finally:
            await held.aclose()  # type: ignore[attr-defined]
            await adapter.aclose()


async def test_a_slow_answer_is_still_a_timeout(provider, vendor, simulator):
    model = model_name(vendor, "slowread")
    simulator.set_scenario(model, latency_ms=2000)
    with pytest.raises(ProviderError) as caught:
        await asyncio.wait_for(provider.generate(ask(model, vendor), timeout_s=0.3), 5)
    assert caught.value.kind is ErrorKind.TIMEOUT
