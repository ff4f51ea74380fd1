"""Vendor embedders (OpenAI, Gemini, Bedrock Titan) through their SDKs against the
simulator."""

from __future__ import annotations

import numpy as np
import pytest

from server.providers.base import ErrorKind, ProviderError
from server.providers.bedrock import BedrockProvider
from server.providers.embeddings import GeminiEmbedder, OpenAIEmbedder, TitanEmbedder

TEXTS = ["the cat sat", "on the mat", "the cat sat"]


@pytest.fixture
async def embedders(simulator, bedrock_executor):
    bedrock = BedrockProvider("bedrock", default_region="eu-west-1",
                              endpoint_url=simulator.base_url + "/bedrock/{region}",
                              timeout_s=10, executor=bedrock_executor, max_connections=8)
    made = {
        "openai": OpenAIEmbedder(model="text-embedding-3-small", dimension=256,
                                 base_url=simulator.openai_base_url, api_key="sim-key"),
        "gemini": GeminiEmbedder(model="text-embedding-004", dimension=128,
                                 base_url=simulator.gemini_base_url, api_key="sim-key"),
        "bedrock": TitanEmbedder(bedrock, dimension=512),
    }
    yield made
    await made["openai"].aclose()
    await made["gemini"].aclose()
    await bedrock.aclose()


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
