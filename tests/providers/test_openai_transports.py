"""The two OpenAI transports (``sdk`` through the official SDK, ``direct`` over our own
HTTP session) are interchangeable: the same bodies reach the vendor, and the same
answers, stream contents, usage and classified errors come back — against the simulator,
for every fault it can script, and against a socket nobody listens on.

Streams may differ only in how text is split: the direct transport passes on together
the events that arrived in one network read, so the assembled text, tool calls, finish
reason and usage are compared, not the pieces."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from server.providers.base import (
    CONNECTION_FAILED,
    READ_TIMEOUT,
    ChatMessage,
    ErrorKind,
    GenerationParams,
    ProviderError,
    ProviderRequest,
    StreamDone,
    TextChunk,
)
from server.providers.content import (
    FormatKind, Image, ResponseFormat, Tool, ToolCall, ToolCallDelta, ToolChoice, ToolChoiceMode,
)
from server.providers.openai import OpenAIProvider
from simulator.testing import SimulatorProcess

TRANSPORTS = ("sdk", "direct")
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
PNG = bytes.fromhex("89504e470d0a1a0a") + b"\x00" * 24

REQUESTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "params": {"params": GenerationParams(temperature=0.3, top_p=0.9, max_output_tokens=40,
                                          stop=("END",))},
    "system": {"system": "Answer briefly."},
    "tools": {"tools": (Tool("weather", "The weather in a city", SCHEMA),),
              "tool_choice": ToolChoice(ToolChoiceMode.REQUIRED)},
    "tool-result": {
        "tools": (Tool("weather", "", SCHEMA),),
        "messages": (ChatMessage("user", "Weather in Oslo?"),
                     ChatMessage("assistant", "", tool_calls=(
                         ToolCall("call_1", "weather", '{"city":"Oslo"}'),)),
                     ChatMessage("tool", "12 C and rain", tool_call_id="call_1"))},
    "json-schema": {"response_format": ResponseFormat(FormatKind.JSON_SCHEMA, SCHEMA, "city",
                                                      strict=True)},
    "image": {"messages": (ChatMessage("user", "What is this?",
                                       images=(Image("image/png", PNG),)),)},
}

FAULTS: dict[str, dict[str, Any]] = {
    "429-retry-after": {"failures": [{"status": 429, "count": 1, "retry_after_s": 7}]},
    "500": {"always_status": 500},
    "503": {"always_status": 503},
    "529-overloaded": {"always_status": 529},
    "400-context": {"failures": [{"status": 400, "count": 1, "code": "context_length_exceeded",
                                  "message": "This model's maximum context length is 8192"}]},
    "404": {"not_found": True},
    "timeout": {"timeout": True},
    "truncated-body": {"truncate_body": True},
    "cut-mid-stream": {"drop_after_tokens": 3},
    "clean-close-mid-stream": {"truncate_after_chunks": 3},
    "no-terminal-event": {"omit_terminal_event": True},
}


# The one known difference, where the direct transport is the accurate one: a vendor that
# cuts the connection before any response byte of a unary call is a connection failure,
# which the SDK's aiohttp shim files under its timeout class (both are retryable and fail
# over; only the attempt's outcome label differs).
SDK_MISFILES = {("cut-mid-stream", "unary"): ("error", ErrorKind.TIMEOUT, READ_TIMEOUT)}


def request(model: str, name: str) -> ProviderRequest:
    fields = {"messages": (ChatMessage("user", "Hello there"),), **REQUESTS[name]}
    return ProviderRequest(model=model, **fields)


@pytest.fixture
async def adapters(simulator: SimulatorProcess) -> AsyncIterator[dict[str, OpenAIProvider]]:
    made = {t: OpenAIProvider(f"sim-{t}", base_url=simulator.openai_base_url,
                              api_key=simulator.api_key, timeout_s=2, max_connections=20,
                              transport=t) for t in TRANSPORTS}
    yield made
    for adapter in made.values():
        await adapter.aclose()


def outcome_of(error: ProviderError) -> tuple[Any, ...]:
    return ("error", error.kind, error.message, error.retry_after_s, error.status)


async def unary(adapter: OpenAIProvider, req: ProviderRequest) -> tuple[Any, ...]:
    try:
        c = await adapter.generate(req, timeout_s=1.0)
    except ProviderError as error:
        return outcome_of(error)
    return ("ok", c.text, c.finish_reason, c.usage, c.tool_calls)


async def streamed(adapter: OpenAIProvider, req: ProviderRequest) -> tuple[Any, ...]:
    text, pieces, done = "", {}, None
    try:
        async for event in adapter.stream(req, timeout_s=1.0):
            if isinstance(event, TextChunk):
                text += event.text
            elif isinstance(event, ToolCallDelta):
                pieces[event.index] = pieces.get(event.index, "") + event.arguments
            else:
                assert isinstance(event, StreamDone)
                done = event
    except ProviderError as error:
        return (*outcome_of(error), text)
    assert done is not None
    return ("ok", text, pieces, done.finish_reason, done.usage,
            [(c.name, c.arguments) for c in done.tool_calls])


@pytest.mark.parametrize("name", list(REQUESTS))
async def test_the_same_requests_get_the_same_answers(adapters, simulator, name):
    for call in (unary, streamed):
        results = {}
        for transport, adapter in adapters.items():
            model = f"tp-{name}"
            simulator.set_scenario(model, reply="Twelve words of text to compare between the "
                                   "two transports exactly here.")
            results[transport] = await call(adapter, request(model, name))
        assert results["sdk"][0] == "ok", results["sdk"]
        assert results["direct"] == results["sdk"], call.__name__


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_every_scripted_fault_is_classified_the_same(adapters, simulator, fault):
    for call in (unary, streamed):
        results = {}
        for transport, adapter in adapters.items():
            model = f"tf-{fault}-{call.__name__}"  # set afresh for each transport
            simulator.set_scenario(model, **FAULTS[fault])
            results[transport] = await call(adapter, request(model, "plain"))
            simulator.remove_scenario(model)
        sdk, direct = results["sdk"], results["direct"]
        if (fault, call.__name__) in SDK_MISFILES:
            assert sdk[:3] == SDK_MISFILES[fault, call.__name__], sdk
            assert direct[:3] == ("error", ErrorKind.UNAVAILABLE, CONNECTION_FAILED), direct
            continue
        # Stream text before a fault may be split at other read boundaries: compare all
        # but the text, then check one is a prefix of the other.
        assert direct[:-1] == sdk[:-1] if sdk[0] == "error" and call is streamed \
            else direct == sdk, (call.__name__, results)
        if sdk[0] == "error" and call is streamed:
            assert direct[-1].startswith(sdk[-1]) or sdk[-1].startswith(direct[-1])


async def test_a_refused_connection_is_classified_the_same():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    results = {}
    for transport in TRANSPORTS:
        adapter = OpenAIProvider("closed", base_url=f"http://127.0.0.1:{port}/v1",
                                 api_key="k", timeout_s=2, max_connections=4,
                                 transport=transport)
        try:
            results[transport] = (await unary(adapter, request("m", "plain")),
                                  await streamed(adapter, request("m", "plain")))
        finally:
            await adapter.aclose()
    assert results["direct"] == results["sdk"]
    assert results["sdk"][0][1].value == "unavailable"


async def test_the_same_bodies_reach_the_vendor():
    """A recording endpoint answering like Chat Completions: both transports POST the same
    JSON to the same path with the key as a bearer token."""
    seen: list[tuple[str, str, Any]] = []
    answer = {"id": "x", "object": "chat.completion", "choices": [{
        "index": 0, "message": {"role": "assistant", "content": "ok"},
        "finish_reason": "stop"}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}

    async def handle(http: web.Request) -> web.Response:
        seen.append((http.path, http.headers.get("Authorization", ""), await http.json()))
        return web.json_response(answer)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        for name in REQUESTS:
            bodies = []
            for transport in TRANSPORTS:
                adapter = OpenAIProvider("rec", base_url=f"http://127.0.0.1:{port}/v1",
                                         api_key="sk-test", timeout_s=2, max_connections=4,
                                         transport=transport)
                try:
                    assert (await adapter.generate(request("m", name), 2)).text == "ok"
                finally:
                    await adapter.aclose()
                bodies.append(seen.pop())
            assert bodies[0] == bodies[1], name
            assert bodies[0][:2] == ("/v1/chat/completions", "Bearer sk-test")
            json.dumps(bodies[0][2])  # plain JSON
    finally:
        await runner.cleanup()


async def test_a_burst_of_tokens_leaves_in_fewer_pieces_and_a_slow_one_at_once(
        adapters, simulator):
    simulator.set_scenario("tp-burst", reply_tokens=64)
    pieces = {}
    for transport, adapter in adapters.items():
        pieces[transport] = [e for e in [x async for x in adapter.stream(
            request("tp-burst", "plain"), 5)] if isinstance(e, TextChunk)]
    assert "".join(p.text for p in pieces["direct"]) == "".join(p.text for p in pieces["sdk"])
    assert len(pieces["direct"]) < len(pieces["sdk"])  # one piece per read, not per token

    simulator.set_scenario("tp-paced", reply_tokens=5, tokens_per_second=20)
    stream = adapters["direct"].stream(request("tp-paced", "plain"), 5)
    arrivals = []
    loop = asyncio.get_running_loop()
    async for event in stream:
        if isinstance(event, TextChunk):
            arrivals.append(loop.time())
    assert len(arrivals) >= 4  # tokens 50 ms apart are each passed on when they arrive


async def test_a_batch_window_joins_paced_tokens_but_never_holds_the_first(simulator):
    simulator.set_scenario("tp-batched", reply_tokens=8, tokens_per_second=20)

    async def texts(batch_s: float) -> list[str]:
        adapter = OpenAIProvider("sim-batched", base_url=simulator.openai_base_url,
                                 api_key=simulator.api_key, timeout_s=2, max_connections=4,
                                 transport="direct", stream_batch_s=batch_s)
        try:
            return [e.text async for e in adapter.stream(request("tp-batched", "plain"), 5)
                    if isinstance(e, TextChunk)]
        finally:
            await adapter.aclose()

    pieces, unbatched = await texts(0.16), await texts(0.0)
    assert "".join(pieces) == "".join(unbatched)
    assert len(unbatched) == 8  # 50 ms apart: one read each
    # The first token leaves alone (it did not wait for the window); the seven others,
    # arriving over 350 ms, leave in at most four reads spaced 160 ms apart.
    assert pieces[0] == unbatched[0]
    assert 2 <= len(pieces) <= 5, pieces


async def test_a_batch_window_never_holds_an_answer_that_came_in_one_burst(simulator):
    simulator.set_scenario("tp-batched-burst", reply_tokens=64)
    adapter = OpenAIProvider("sim-batched", base_url=simulator.openai_base_url,
                             api_key=simulator.api_key, timeout_s=2, max_connections=4,
                             transport="direct", stream_batch_s=1.0)
    try:
        started = time.monotonic()
        events = [e async for e in adapter.stream(request("tp-batched-burst", "plain"), 5)]
        elapsed = time.monotonic() - started
    finally:
        await adapter.aclose()
    assert isinstance(events[-1], StreamDone) and events[-1].usage.output_tokens == 64
    assert elapsed < 0.5  # one window (1 s) would have been spent on its end



async def test_a_burst_of_tool_arguments_leaves_in_fewer_pieces(adapters, simulator):
    simulator.set_scenario("tp-tool-burst", latency_ms=0)  # the call's pieces in one burst
    calls = {}
    for transport, adapter in adapters.items():
        pieces = [e async for e in adapter.stream(request("tp-tool-burst", "tools"), 5)
                  if isinstance(e, ToolCallDelta)]
        done_args = "".join(p.arguments for p in pieces)
        calls[transport] = (len(pieces), done_args, {(p.index, p.id, p.name) for p in pieces})
    assert calls["direct"][1] == calls["sdk"][1] and json.loads(calls["direct"][1])
    assert calls["direct"][2] == calls["sdk"][2]  # every piece names its call, same ids
    assert 1 <= calls["direct"][0] < calls["sdk"][0]


async def test_the_direct_transport_goes_through_the_environments_proxy(monkeypatch):
    """HTTP_PROXY (with its credentials) is honoured as the SDK honours it; the environment
    is read once, when the session is made, not on every call."""
    seen: list[tuple[str, str | None]] = []

    async def proxy(http: web.Request) -> web.Response:
        seen.append((str(http.url), http.headers.get("Proxy-Authorization")))
        return web.json_response({
            "id": "x", "object": "chat.completion", "model": "m", "created": 0,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "via proxy"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    monkeypatch.setenv("HTTP_PROXY", f"http://user:secret@127.0.0.1:{port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    adapter = OpenAIProvider("proxied", base_url="http://vendor.invalid/v1", api_key="k",
                             timeout_s=2, max_connections=4, transport="direct")
    try:
        first = await adapter.generate(request("m", "plain"), timeout_s=1.0)
        monkeypatch.delenv("HTTP_PROXY")
        second = await adapter.generate(request("m", "plain"), timeout_s=1.0)
    finally:
        await adapter.aclose()
        await runner.cleanup()
    assert first.text == second.text == "via proxy"
    assert seen == [("http://vendor.invalid/v1/chat/completions", "Basic dXNlcjpzZWNyZXQ=")] * 2
