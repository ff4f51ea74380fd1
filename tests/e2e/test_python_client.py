"""The Python client against the real gateway: typed results, streaming, typed errors
with field violations, and the sync client."""

from __future__ import annotations

import asyncio

import pytest
from llmgateway_client import (
    Gateway,
    GatewayClient,
    InvalidArgument,
    StreamFinished,
    StreamStarted,
    TextChunk,
    TokenMinter,
    Unauthenticated,
)

from tests.support.gateway import AUDIENCE, ISSUER, TEST_SECRET


def minter(*scopes: str) -> TokenMinter:
    return TokenMinter(TEST_SECRET, subject="client-test", scopes=list(scopes or ["generate"]),
                       issuer=ISSUER, audience=AUDIENCE)


async def test_generate_and_stream_through_the_async_client(gateway):
    async with GatewayClient(gateway.target, token_source=minter(), timeout_s=10) as client:
        result = await client.generate("sim-chat", "Hello", max_output_tokens=5)
        events = [e async for e in client.stream_generate(
            "sim-chat", [{"role": "user", "content": "Hi"}])]
    assert result.text.startswith("Hello from sim-chat.")
    assert result.finish_reason == "length" and result.usage.output_tokens == 5
    assert result.served_by is not None and result.served_by.provider == "simulator"
    assert len(result.trace_id) == 32
    assert isinstance(events[0], StreamStarted) and isinstance(events[-1], StreamFinished)
    chunks = [e.text for e in events if isinstance(e, TextChunk)]
    # (12 tokens; those that arrive in one upstream read come as one chunk)
    assert 1 <= len(chunks) <= 12 and events[-1].text == "".join(chunks)
    assert events[-1].usage.output_tokens == 12


async def test_errors_are_typed_with_reason_and_fields(gateway):
    async with GatewayClient(gateway.target, token_source=minter(), timeout_s=10) as client:
        with pytest.raises(InvalidArgument) as caught:
            await client.generate("no-such-model", "Hello", temperature=9.0)
    # Field checks come first; the model name is checked once the fields are valid.
    assert [field for field, _ in caught.value.field_violations] == ["config.temperature"]
    assert caught.value.trace_id
    async with GatewayClient(gateway.target, token_source=minter(), timeout_s=10) as client:
        with pytest.raises(InvalidArgument) as caught:
            await client.generate("no-such-model", "Hello")
    assert caught.value.reason == "UNKNOWN_MODEL"
    wrong_key = TokenMinter("another-secret-that-is-long-enough-000", subject="x",
                            scopes=["generate"], issuer=ISSUER, audience=AUDIENCE)
    async with GatewayClient(gateway.target, token_source=wrong_key, timeout_s=10) as client:
        with pytest.raises(Unauthenticated) as caught:
            await client.list_models()
    assert caught.value.reason == "INVALID_TOKEN"


async def test_sync_client(gateway):
    def call() -> tuple[str, int]:
        with Gateway(gateway.target, token_source=minter(), timeout_s=10) as client:
            result = client.generate("sim-chat", "Hello")
            streamed = list(client.stream_generate("sim-chat", "Hello"))
            return result.text, sum(isinstance(e, TextChunk) for e in streamed)

    text, chunks = await asyncio.to_thread(call)
    assert text.startswith("Hello from sim-chat.") and 1 <= chunks <= 12
