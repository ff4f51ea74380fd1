"""Vendor embedders (OpenAI, Gemini, Bedrock Titan) through their SDKs against the
simulator, and integer call pricing."""

from __future__ import annotations

import numpy as np
import pytest

from server.config import GatewayConfig
from server.providers.base import ErrorKind, ProviderError, Usage
from server.providers.bedrock import BedrockProvider
from server.providers.embeddings import GeminiEmbedder, OpenAIEmbedder, TitanEmbedder
from server.providers.pricing import PriceTable, TokenPrice, call_cost_micros

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


def test_call_cost_is_integer_and_rounds_up_once():
    price = TokenPrice(input=150_000, output=600_000, cached_input=75_000)
    usage = Usage(input_tokens=1000, output_tokens=500, cached_input_tokens=400)
    # 600 × 0.15 + 400 × 0.075 + 500 × 0.6 = 90 + 30 + 300 = 420 micro-units
    assert call_cost_micros(price, usage) == 420
    assert call_cost_micros(price, Usage(input_tokens=1)) == 1  # 0.15 rounds up
    assert call_cost_micros(TokenPrice(input=100), Usage(input_tokens=10,
                                                         cached_input_tokens=10)) == 1


def test_price_table_prices_the_target_that_served():
    config = GatewayConfig.model_validate({
        "providers": {"a": {"kind": "openai"}, "b": {"kind": "anthropic"}},
        "models": {"m": {"targets": [{"provider": "a", "model": "x"},
                                     {"provider": "b", "model": "y"}],
                         "pricing": {"input_per_million_micros": 2_000_000,
                                     "output_per_million_micros": 8_000_000}}},
    })
    table = PriceTable.from_config(config)
    assert table.cost_micros("b", "y", Usage(input_tokens=1000, output_tokens=1000)) == 10_000
    assert table.cost_micros("a", "unpriced", Usage(input_tokens=5)) is None
    assert table.for_model("m") == TokenPrice(2_000_000, 8_000_000, 0, "USD")
