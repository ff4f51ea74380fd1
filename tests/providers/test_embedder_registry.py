"""``rag.embedders``: configuring vendor embedders on top of configured providers, and what
stops the gateway at start-up when the configuration cannot work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import ValidationError

from server.kernel.config import GatewayConfig
from server.providers.base import Provider
from server.providers.gemini import GeminiEmbedder
from server.providers.openai import OpenAIEmbedder
from server.providers.registry import build_embedders, build_providers, standalone_embedders
from server.rag.embedders import LOCAL_MINILM, UnknownEmbedder

PROVIDERS = {
    "sim": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "requires_api_key": False},
    "gem": {"kind": "gemini", "base_url": "http://127.0.0.1:9", "requires_api_key": False},
    "claude": {"kind": "anthropic", "requires_api_key": False},
}


def config(embedders: dict[str, Any], default: str = LOCAL_MINILM) -> GatewayConfig:
    return GatewayConfig.model_validate({"providers": PROVIDERS, "rag": {
        "embedder": default, "embedders": embedders}})


@pytest.fixture
async def close() -> AsyncIterator[list[dict[str, Provider]]]:
    made: list[dict[str, Provider]] = []
    yield made
    for providers in made:
        for provider in providers.values():
            await provider.aclose()


async def test_vendor_embedders_are_named_as_configured_next_to_the_local_model(close):
    cfg = config({"openai/small": {"provider": "sim", "model": "text-embedding-3-small",
                                   "dimension": 256},
                  "gemini/004": {"provider": "gem", "model": "text-embedding-004",
                                 "dimension": 128}})
    providers = build_providers(cfg, {})
    close.append(providers)
    embedders = build_embedders(cfg, providers)
    assert embedders.names == sorted([LOCAL_MINILM, "gemini/004", "openai/small"])
    small, gemini = embedders.get("openai/small"), embedders.get("gemini/004")
    assert isinstance(small, OpenAIEmbedder) and isinstance(gemini, GeminiEmbedder)
    assert (small.name, small.dimension) == ("openai/small", 256)  # the stored name
    assert embedders.get("openai/small") is small  # made once
    with pytest.raises(UnknownEmbedder):
        embedders.get("openai/large")


@pytest.mark.parametrize(("provider", "problem"), [
    ("claude", r"rag\.embedders\.vendor/x\.provider: 'claude' is of kind anthropic"),
    ("nobody", r"rag\.embedders\.vendor/x\.provider: unknown provider 'nobody'"),
])
async def test_an_embedder_on_a_provider_that_cannot_embed_stops_start_up(close, provider,
                                                                         problem):
    cfg = config({"vendor/x": {"provider": provider, "model": "x", "dimension": 8}})
    providers = build_providers(cfg, {})
    close.append(providers)
    with pytest.raises(ValueError, match=problem):
        build_embedders(cfg, providers)


def test_the_default_embedder_must_be_local_or_configured():
    with pytest.raises(ValidationError, match="neither"):
        config({}, default="openai/text-embedding-3-small")
    with pytest.raises(ValidationError, match="local model"):
        config({LOCAL_MINILM: {"provider": "sim", "model": "m", "dimension": 8}})
    with pytest.raises(ValidationError, match="dimension"):
        config({"openai/huge": {"provider": "sim", "model": "m", "dimension": 3072}})


async def test_standalone_embedders_serve_a_process_without_a_gateway():
    cfg = config({"openai/small": {"provider": "sim", "model": "m", "dimension": 8}},
                 default="openai/small")
    async with standalone_embedders(cfg, {}) as embedders:
        assert embedders.get("openai/small").name == "openai/small"
        assert embedders.names == [LOCAL_MINILM, "openai/small"]
