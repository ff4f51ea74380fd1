"""The contract every vendor adapter keeps, checked through the vendor's official SDK
against the simulator over real HTTP: text, usage, finish reasons, streaming, the error
taxonomy, timeouts and cancellation."""

from __future__ import annotations

import asyncio
import time

import pytest

from server.providers.base import (
    ChatMessage,
    ErrorKind,
    FinishReason,
    GenerationParams,
    ProviderError,
    ProviderRequest,
    StreamDone,
    TextChunk,
)
from simulator.testing import SimulatorProcess
from tests.providers.conftest import Vendor


def ask(model: str, vendor: Vendor, text: str = "Hello there", **params: object) -> ProviderRequest:
    return ProviderRequest(model=model, messages=(ChatMessage("user", text),),
                           params=GenerationParams(**params), region=vendor.region)  # type: ignore[arg-type]


def model_name(vendor: Vendor, test: str) -> str:
    return f"pc-{vendor.name}-{test}"


async def collect(stream) -> tuple[str, StreamDone]:
    text, done = "", None
    async for event in stream:
        if isinstance(event, TextChunk):
            text += event.text
        else:
            done = event
    assert isinstance(done, StreamDone)
    return text, done


async def wait_for_stats(simulator: SimulatorProcess, predicate, timeout_s: float = 3) -> dict:
    deadline = time.monotonic() + timeout_s
    while not predicate(stats := simulator.stats()):
        assert time.monotonic() < deadline, f"simulator stats never matched: {stats}"
        await asyncio.sleep(0.02)
    return stats


async def test_unary_text_usage_and_stop(provider, vendor):
    model = model_name(vendor, "unary")
    completion = await provider.generate(ask(model, vendor), timeout_s=10)
    assert completion.text.startswith(f"Hello from {model}.")
    assert completion.finish_reason is FinishReason.STOP
    assert completion.usage.output_tokens == 12
    assert completion.usage.input_tokens >= 2


async def test_max_output_tokens_caps_the_answer_with_length_finish(provider, vendor):
    completion = await provider.generate(
        ask(model_name(vendor, "cap"), vendor, max_output_tokens=3), timeout_s=10)
    assert completion.finish_reason is FinishReason.LENGTH
    assert completion.usage.output_tokens == 3


async def test_system_instruction_reaches_the_vendor(provider, vendor):
    model = model_name(vendor, "system")
    plain = await provider.generate(ask(model, vendor), timeout_s=10)
    system = ProviderRequest(model=model, system="Be brief. " * 10,
                             messages=(ChatMessage("user", "Hello there"),), region=vendor.region)
    with_system = await provider.generate(system, timeout_s=10)
    assert with_system.usage.input_tokens >= plain.usage.input_tokens + 20


async def test_stream_yields_the_same_text_then_usage(provider, vendor):
    model = model_name(vendor, "stream")
    text, done = await collect(provider.stream(ask(model, vendor), timeout_s=10))
    assert text.startswith(f"Hello from {model}.")
    assert done.finish_reason is FinishReason.STOP
    assert done.usage.output_tokens == 12 and done.usage.input_tokens >= 2


@pytest.mark.parametrize(("status", "kind"), [
    (429, ErrorKind.RATE_LIMITED), (500, ErrorKind.UNAVAILABLE), (503, ErrorKind.UNAVAILABLE),
    (403, ErrorKind.PERMISSION), (400, ErrorKind.INVALID_REQUEST),
    (504, ErrorKind.TIMEOUT),
])
async def test_error_statuses_are_classified(provider, vendor, simulator, status, kind):
    model = model_name(vendor, f"err{status}")
    simulator.set_scenario(model, failures=[{"status": status, "count": 2}])
    with pytest.raises(ProviderError) as unary:
        await provider.generate(ask(model, vendor), timeout_s=10)
    with pytest.raises(ProviderError) as streamed:
        await collect(provider.stream(ask(model, vendor), timeout_s=10))
    assert unary.value.kind is kind and streamed.value.kind is kind
    assert unary.value.retryable == (kind in {ErrorKind.RATE_LIMITED, ErrorKind.UNAVAILABLE,
                                              ErrorKind.TIMEOUT})


async def test_unknown_model_is_not_found(provider, vendor, simulator):
    model = model_name(vendor, "missing")
    simulator.set_scenario(model, not_found=True)
    with pytest.raises(ProviderError) as caught:
        await provider.generate(ask(model, vendor), timeout_s=10)
    assert caught.value.kind is ErrorKind.NOT_FOUND


async def test_rejected_credentials_are_auth(vendor):
    adapter = vendor.build(SimulatorProcess.invalid_api_key)
    try:
        with pytest.raises(ProviderError) as caught:
            await adapter.generate(ask(model_name(vendor, "auth"), vendor), timeout_s=10)
    finally:
        await adapter.aclose()
    assert caught.value.kind in (ErrorKind.AUTH, ErrorKind.PERMISSION)
    assert SimulatorProcess.invalid_api_key not in caught.value.message


async def test_rate_limit_carries_retry_after(provider, vendor, simulator):
    model = model_name(vendor, "retryafter")
    simulator.set_scenario(model, failures=[{"status": 429, "count": 1, "retry_after_s": 2}])
    with pytest.raises(ProviderError) as caught:
        await provider.generate(ask(model, vendor), timeout_s=10)
    assert caught.value.kind is ErrorKind.RATE_LIMITED
    if vendor.name != "bedrock":  # Bedrock sends no Retry-After
        assert caught.value.retry_after_s == pytest.approx(2, abs=0.01)


async def test_slow_vendor_times_out_within_the_given_time(provider, vendor, simulator):
    model = model_name(vendor, "slow")
    simulator.set_scenario(model, latency_ms=3000)
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        await provider.generate(ask(model, vendor), timeout_s=0.3)
    assert caught.value.kind is ErrorKind.TIMEOUT
    assert time.monotonic() - started < 2.5


async def test_stream_cut_after_tokens_raises_after_the_text(provider, vendor, simulator):
    model = model_name(vendor, "cut")
    simulator.set_scenario(model, drop_after_tokens=3)
    seen = []
    with pytest.raises(ProviderError) as caught:
        async for event in provider.stream(ask(model, vendor), timeout_s=10):
            seen.append(event)
    assert all(type(e) is TextChunk for e in seen) and vendor.pieces_ok(len(seen), 3)
    assert caught.value.kind is ErrorKind.UNAVAILABLE


async def test_in_stream_vendor_error_is_classified(provider, vendor, simulator):
    model = model_name(vendor, "instream")
    simulator.set_scenario(model, drop_after_tokens=2, drop_error_status=429)
    seen = []
    with pytest.raises(ProviderError) as caught:
        async for event in provider.stream(ask(model, vendor), timeout_s=10):
            seen.append(event)
    assert vendor.pieces_ok(len(seen), 2)
    cut = ErrorKind.UNAVAILABLE  # a vendor with no in-stream error event just drops
    assert caught.value.kind is (ErrorKind.RATE_LIMITED if vendor.in_stream_error else cut)


async def test_closing_the_stream_closes_the_upstream_connection(provider, vendor, simulator):
    model = model_name(vendor, "cancel")
    simulator.set_scenario(model, reply_tokens=200, tokens_per_second=50)
    before = simulator.stats()["client_disconnects"]
    stream = provider.stream(ask(model, vendor), timeout_s=10)
    received = [await anext(stream), await anext(stream)]
    assert all(isinstance(e, TextChunk) for e in received)
    await stream.aclose()
    await wait_for_stats(simulator, lambda s: s["client_disconnects"] > before)


async def test_cancelling_the_reader_of_a_stream_closes_the_upstream_connection(
        provider, vendor, simulator):
    model = model_name(vendor, "cancel-reader")
    simulator.set_scenario(model, reply_tokens=200, tokens_per_second=20)
    before = simulator.stats()["client_disconnects"]
    first = asyncio.Event()

    async def read() -> None:
        async for _ in provider.stream(ask(model, vendor), timeout_s=10):
            first.set()

    task = asyncio.create_task(read())
    await asyncio.wait_for(first.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_for_stats(simulator, lambda s: s["client_disconnects"] > before)


async def test_a_keyless_provider_fails_as_auth_before_calling(vendor, simulator):
    if vendor.name == "bedrock":
        pytest.skip("Bedrock signs with the AWS credential chain, not an API key")
    adapter = vendor.build(None)  # type: ignore[arg-type]
    model = model_name(vendor, "keyless")
    try:
        for call in (adapter.generate(ask(model, vendor), timeout_s=10),
                     collect(adapter.stream(ask(model, vendor), timeout_s=10))):
            with pytest.raises(ProviderError) as caught:
                await call
            assert caught.value.kind is ErrorKind.AUTH and not caught.value.retryable
    finally:
        await adapter.aclose()
    assert model not in simulator.stats()["requests_by_model"]


async def test_cancelling_a_unary_call_closes_the_upstream_connection(provider, vendor, simulator):
    model = model_name(vendor, "cancel-unary")
    simulator.set_scenario(model, latency_ms=5000)
    before = simulator.stats()["client_disconnects"]
    task = asyncio.create_task(provider.generate(ask(model, vendor), timeout_s=10))
    await wait_for_stats(simulator, lambda s: s["requests_by_model"].get(model, 0) >= 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_for_stats(simulator, lambda s: s["client_disconnects"] > before)
