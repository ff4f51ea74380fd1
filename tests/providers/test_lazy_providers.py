"""Configured providers are built (their vendor SDK imported) on first use, once, and then
serve exactly like the adapter itself — against the simulator, through the real
adapters."""

from __future__ import annotations

import asyncio

from server.kernel.config import GatewayConfig
from server.providers.base import ChatMessage, ProviderRequest, StreamDone, TextChunk
from server.providers.lazy import LazyProvider
from server.providers.openai import OpenAIProvider
from server.providers.registry import build_embedders, build_providers
from simulator.testing import SimulatorProcess


def config(simulator: SimulatorProcess) -> GatewayConfig:
    return GatewayConfig.model_validate({"providers": {
        "sim": {"kind": "openai", "base_url": simulator.openai_base_url,
                "requires_api_key": False},
        "gem": {"kind": "gemini", "base_url": simulator.gemini_base_url,
                "requires_api_key": False},
    }, "rag": {"embedders": {"openai/small": {
        "provider": "sim", "model": "text-embedding-3-small", "dimension": 64}}}})


def ask(model: str) -> ProviderRequest:
    return ProviderRequest(model=model, messages=[ChatMessage("user", "Hello there")])


async def test_nothing_is_built_until_used_and_the_first_calls_build_once(simulator):
    providers = build_providers(config(simulator), {})
    try:
        sim, gem = providers["sim"], providers["gem"]
        assert isinstance(sim, LazyProvider) and not sim.loaded and not gem.loaded
        simulator.set_scenario("lazy-first", reply="built on demand")
        answers = await asyncio.gather(*(sim.generate(ask("lazy-first"), 10) for _ in range(8)))
        assert {a.text for a in answers} == {"built on demand"}
        assert sim.loaded and not gem.loaded  # one vendor used, one SDK loaded
        adapter = await sim.ready()
        assert isinstance(adapter, OpenAIProvider) and await sim.ready() is adapter

        events = [e async for e in gem.stream(ask("lazy-stream"), 10)]  # first use: a stream
        assert gem.loaded and isinstance(events[-1], StreamDone)
        assert "".join(e.text for e in events if isinstance(e, TextChunk))
    finally:
        for provider in providers.values():
            await provider.aclose()


async def test_an_embedder_builds_its_provider_when_it_is_first_needed(simulator):
    cfg = config(simulator)
    providers = build_providers(cfg, {})
    try:
        embedders = build_embedders(cfg, providers)  # start-up: nothing built yet
        assert not providers["sim"].loaded
        vectors = await embedders.get("openai/small").embed(["a", "b"])
        assert vectors.shape == (2, 64) and providers["sim"].loaded
    finally:
        for provider in providers.values():
            await provider.aclose()
