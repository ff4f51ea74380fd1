"""Adapters under test, each built exactly as the gateway builds it, pointed at the shared
simulator. ``vendor`` parametrizes the common adapter contract over every vendor whose
adapter exists; each vendor's own quirks are tested in its own module."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from server.providers.base import Provider
from simulator.testing import SimulatorProcess

# boto3 reads credentials from the standard chain; the simulator accepts any SigV4 key.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "sim-access-key")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "sim-secret-key")


@dataclass
class Vendor:
    """A vendor adapter plus what its tests need to know about it."""

    name: str
    build: Callable[[str], Provider]  # api key → provider
    region: str = ""
    in_stream_error: bool = True  # the vendor reports mid-stream failures in the stream
    coalesces: bool = False  # the tokens of one network read come as one TextChunk

    def pieces_ok(self, pieces: int, tokens: int) -> bool:
        """``pieces`` text chunks can carry ``tokens`` tokens."""
        return pieces == tokens or (self.coalesces and 0 < pieces <= tokens)


def openai_vendor(sim: SimulatorProcess, transport: str = "sdk") -> Vendor:
    """``transport`` "sdk" (the official SDK) or "direct" (vendor "openai-direct")."""
    from server.providers.openai import OpenAIProvider

    # Chat Completions has no error event: a failure mid-stream is a cut connection.
    return Vendor("openai" if transport == "sdk" else f"openai-{transport}",
                  lambda key: OpenAIProvider(
                      "openai", base_url=sim.openai_base_url, api_key=key, timeout_s=10,
                      max_connections=20, transport=transport),
                  in_stream_error=False, coalesces=transport == "direct")


def anthropic_vendor(sim: SimulatorProcess) -> Vendor:
    from server.providers.anthropic import AnthropicProvider

    return Vendor("anthropic", lambda key: AnthropicProvider(
        "anthropic", base_url=sim.anthropic_base_url, api_key=key, timeout_s=10,
        max_connections=20, default_max_tokens=1024))


def gemini_vendor(sim: SimulatorProcess) -> Vendor:
    from server.providers.gemini import GeminiProvider

    return Vendor("gemini", lambda key: GeminiProvider(
        "gemini", base_url=sim.gemini_base_url, api_key=key, timeout_s=10))


# The regions the test Bedrock adapter is configured for (any other is refused).
BEDROCK_REGIONS = ("us-east-1", "us-west-2", "ap-south-1", "eu-west-1", "sa-east-1")


def bedrock_vendor(sim: SimulatorProcess, executor: ThreadPoolExecutor) -> Vendor:
    from server.providers.bedrock import BedrockProvider

    def build(key: str) -> Provider:
        return BedrockProvider(
            "bedrock", default_region="us-east-1",
            endpoint_url=sim.base_url + "/bedrock/{region}", timeout_s=10,
            executor=executor, max_connections=20,
            credentials=None if key == SimulatorProcess.api_key else (key, "secret"),
            regions=BEDROCK_REGIONS)

    return Vendor("bedrock", build, region="us-east-1")


VENDORS = ["openai", "openai-direct", "anthropic", "gemini", "bedrock"]


@pytest.fixture(scope="session")
def bedrock_executor() -> AsyncIterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="test-bedrock")
    yield pool
    pool.shutdown(wait=False, cancel_futures=True)


@pytest.fixture(params=VENDORS)
def vendor(request: pytest.FixtureRequest, simulator: SimulatorProcess,
           bedrock_executor: ThreadPoolExecutor) -> Vendor:
    name = request.param
    try:
        if name == "openai":
            return openai_vendor(simulator)
        if name == "openai-direct":
            return openai_vendor(simulator, "direct")
        if name == "anthropic":
            return anthropic_vendor(simulator)
        if name == "gemini":
            return gemini_vendor(simulator)
        return bedrock_vendor(simulator, bedrock_executor)
    except ImportError as exc:
        pytest.skip(f"{name} adapter not available: {exc}")


@pytest.fixture
async def provider(vendor: Vendor) -> AsyncIterator[Provider]:
    adapter = vendor.build(SimulatorProcess.api_key)
    yield adapter
    await adapter.aclose()
