"""Vendor embedders (OpenAI, Gemini, Bedrock Titan) through their SDKs against the
simulator."""

from __future__ import annotations

import numpy as np
import pytest

from server.providers.base import ErrorKind, ProviderError
from server.providers.bedrock import BedrockProvider, TitanEmbedder
from server.providers.gemini import GeminiEmbedder, GeminiProvider
from server.providers.openai import OpenAIEmbedder, OpenAIProvider

TEXTS = ["the cat sat", "on the mat", "the cat sat"]


@pytest.fixture
async def providers(simulator, bedrock_executor):
    """Each vendor's adapter, as the gateway builds it: embedders call through them."""
    made = {
        "openai": OpenAIProvider("openai", base_url=simulator.openai_base_url,
                                 api_key="sim-key", timeout_s=10, max_connections=8),
        "gemini": GeminiProvider("gemini", base_url=simulator.gemini_base_url,
                                 api_key="sim-key", timeout_s=10),
        "bedrock": BedrockProvider("bedrock", default_region="eu-west-1",
                                   endpoint_url=simulator.base_url + "/bedrock/{region}",
                                   timeout_s=10, executor=bedrock_executor, max_connections=8),
    }
    yield made
    for provider in made.values():
        await provider.aclose()


@pytest.fixture
def embedders(providers):
    return {
        "openai": OpenAIEmbedder(providers["openai"], model="text-embedding-3-small",
                                 dimension=256),
        "gemini": GeminiEmbedder(providers["gemini"], model="text-embedding-004", dimension=128),
        "bedrock": TitanEmbedder(providers["bedrock"], dimension=512),
    }


@pytest.mark.parametrize("vendor", ["openai", "gemini", "bedrock"])
async def test_embedders_return_one_unit_vector_per_text_in_order(embedders, vendor):
    embedder = embedders[vendor]
    vectors = await embedder.embed(TEXTS)
    assert vectors.shape == (3, embedder.dimension) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    assert np.allclose(vectors[0], vectors[2]) and not np.allclose(vectors[0], vectors[1])
    assert embedder.name.startswith(f"{vendor}/")


async def test_embedding_failures_are_classified(embedders, simulator):
    simulator.set_scenario("text-embedding-004", failures=[{"status": 429, "count": 1}])
    with pytest.raises(ProviderError) as caught:
        await embedders["gemini"].embed(["x"])
    assert caught.value.kind is ErrorKind.RATE_LIMITED
    simulator.remove_scenario("text-embedding-004")


@pytest.mark.parametrize("vendor", ["openai", "gemini", "bedrock"])
async def test_every_vendor_embedder_classifies_its_failures(embedders, simulator, vendor):
    model = {"openai": "text-embedding-3-small", "gemini": "text-embedding-004",
             "bedrock": "amazon.titan-embed-text-v2:0"}[vendor]
    simulator.set_scenario(model, failures=[{"status": 503, "count": 1}])
    try:
        with pytest.raises(ProviderError) as caught:
            await embedders[vendor].embed(["x"])
    finally:
        simulator.remove_scenario(model)
    assert caught.value.kind is ErrorKind.UNAVAILABLE and caught.value.retryable


async def test_an_embedder_without_an_api_key_fails_as_auth_without_calling(simulator):
    provider = OpenAIProvider("keyless", base_url=simulator.openai_base_url, api_key=None,
                              timeout_s=10, max_connections=2)
    try:
        with pytest.raises(ProviderError) as caught:
            await OpenAIEmbedder(provider, model="text-embedding-3-small",
                                 dimension=8).embed(["x"])
    finally:
        await provider.aclose()
    assert caught.value.kind is ErrorKind.AUTH and "keyless" in caught.value.message


def test_an_embedder_is_named_by_its_vendor_and_model_unless_configured(providers):
    default = OpenAIEmbedder(providers["openai"], model="text-embedding-3-small", dimension=8)
    named = GeminiEmbedder(providers["gemini"], model="m", dimension=8, name="team/small")
    assert (default.name, named.name) == ("openai/text-embedding-3-small", "team/small")
