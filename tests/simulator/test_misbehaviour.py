"""Silent misbehaviour: replies that look successful but are incomplete or lie.

For every vendor protocol the raw HTTP response is read byte for byte to show the
property really holds on the wire (a body that ends cleanly without the vendor's
terminal event; a 200 JSON body that does not parse; usage that lies), and the official
SDK is shown to see a clean end of stream without the terminal event — which is what a
gateway has to catch itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anthropic
import boto3
import httpx
import openai
import pytest
from botocore.config import Config
from botocore.eventstream import EventStreamBuffer
from google import genai
from google.genai import types

from simulator import ctl
from simulator.faults import HUGE_TOKEN_COUNT
from simulator.scenario import Behaviour, ScenarioError
from simulator.testing import SimulatorProcess

MODEL = "m-misbehaving"
PROMPT = "say hello to the gateway"
REPLY_TOKENS = 12  # the default reply: "Hello", " from", " m-misbehaving.", " lorem", …
FIRST_THREE = f"Hello from {MODEL}."


@pytest.fixture(autouse=True)
def clean(sim: SimulatorProcess) -> None:
    sim.reset()


# --------------------------------------------------------------------------- the wire, raw


@dataclass(frozen=True, slots=True)
class Event:
    """One stream event, classified: `text` (carries output), `terminal` (the vendor's end
    marker: finish reason, final usage, [DONE] …) or `other` (openers such as the role chunk)."""

    kind: str
    text: str = ""


@dataclass(frozen=True, slots=True)
class Wire:
    """How to call one vendor protocol with plain HTTP and read its answer."""

    name: str
    path: Callable[[bool], str]  # stream? → path
    headers: dict[str, str]
    body: Callable[[bool], dict[str, Any]]  # stream? → JSON body
    split: Callable[[bytes], list[Any]]  # stream body → its events' payloads
    classify: Callable[[Any], Event]
    usage: Callable[[dict[str, Any]], tuple[int, int]]  # unary body → (prompt, output)

    def events(self, body: bytes) -> list[Event]:
        return [self.classify(payload) for payload in self.split(body)]


def sse_payloads(body: bytes) -> list[Any]:
    """The `data:` payloads of an SSE body as JSON (LF or CRLF framing); `[DONE]` as is."""
    lines = re.split(rb"\r?\n", body)
    data = [line[len(b"data: ") :].decode() for line in lines if line.startswith(b"data: ")]
    return [d if d == "[DONE]" else json.loads(d) for d in data]


def eventstream_payloads(body: bytes) -> list[Any]:
    """AWS event-stream messages as (event type, JSON payload), checksums verified."""
    buffer = EventStreamBuffer()
    buffer.add_data(body)
    return [(m.headers[":event-type"], json.loads(m.payload)) for m in buffer]


def openai_event(data: Any) -> Event:
    if data == "[DONE]" or not data["choices"] or data["choices"][0]["finish_reason"]:
        return Event("terminal")  # [DONE], the usage chunk, the finish chunk
    content = data["choices"][0]["delta"].get("content")
    return Event("text", content) if content else Event("other")


def anthropic_event(data: Any) -> Event:
    if data["type"] in ("message_delta", "message_stop"):
        return Event("terminal")
    if data["type"] == "content_block_delta":
        return Event("text", data["delta"]["text"])
    return Event("other")


def gemini_event(data: Any) -> Event:
    candidate = data["candidates"][0]
    if "finishReason" in candidate:
        return Event("terminal")
    return Event("text", candidate["content"]["parts"][0]["text"])


def bedrock_event(message: tuple[str, Any]) -> Event:
    kind, payload = message
    if kind in ("messageStop", "metadata"):
        return Event("terminal")
    if kind == "contentBlockDelta":
        return Event("text", payload["delta"]["text"])
    return Event("other")


def _chat(stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}]}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return body


def _messages(stream: bool) -> dict[str, Any]:
    body = {"model": MODEL, "max_tokens": 100, "messages": [{"role": "user", "content": PROMPT}]}
    return {**body, "stream": True} if stream else body


WIRES = [
    Wire(
        "openai",
        lambda stream: "/v1/chat/completions",
        {"Authorization": "Bearer sim-key"},
        _chat,
        sse_payloads,
        openai_event,
        lambda b: (b["usage"]["prompt_tokens"], b["usage"]["completion_tokens"]),
    ),
    Wire(
        "anthropic",
        lambda stream: "/v1/messages",
        {"x-api-key": "sim-key", "anthropic-version": "2023-06-01"},
        _messages,
        sse_payloads,
        anthropic_event,
        lambda b: (b["usage"]["input_tokens"], b["usage"]["output_tokens"]),
    ),
    Wire(
        "gemini",
        lambda stream: (
            f"/v1beta/models/{MODEL}:"
            + ("streamGenerateContent?alt=sse" if stream else "generateContent")
        ),
        {"x-goog-api-key": "sim-key"},
        lambda stream: {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]},
        sse_payloads,
        gemini_event,
        lambda b: (
            b["usageMetadata"]["promptTokenCount"],
            b["usageMetadata"]["candidatesTokenCount"],
        ),
    ),
    Wire(
        "bedrock",
        lambda stream: (
            f"/bedrock/us-east-1/model/{MODEL}/" + ("converse-stream" if stream else "converse")
        ),
        {"Authorization": "Bearer sim-key"},
        lambda stream: {"messages": [{"role": "user", "content": [{"text": PROMPT}]}]},
        eventstream_payloads,
        bedrock_event,
        lambda b: (b["usage"]["inputTokens"], b["usage"]["outputTokens"]),
    ),
]


@pytest.fixture(params=WIRES, ids=[w.name for w in WIRES])
def wire(request: pytest.FixtureRequest) -> Wire:
    return request.param  # type: ignore[no-any-return]


def read_stream(sim: SimulatorProcess, wire: Wire) -> tuple[httpx.Response, list[Event]]:
    """POST a streaming call and read the body to its end.

    httpx raises `RemoteProtocolError` if the body is not ended properly (a cut
    connection, a chunked body without its last chunk), so returning at all proves a
    clean end.
    """
    with (
        httpx.Client(base_url=sim.base_url, timeout=10) as client,
        client.stream("POST", wire.path(True), headers=wire.headers, json=wire.body(True)) as r,
    ):
        body = r.read()
    return r, wire.events(body)


def test_an_untouched_stream_ends_with_its_terminal_event(
    sim: SimulatorProcess, wire: Wire
) -> None:
    """The control case: the classifier above does see each vendor's end marker."""
    _, events = read_stream(sim, wire)

    assert events[-1].kind == "terminal"
    assert "".join(e.text for e in events).startswith(FIRST_THREE)


def test_truncated_stream_ends_cleanly_after_n_chunks_without_terminal_event(
    sim: SimulatorProcess, wire: Wire
) -> None:
    sim.set_scenario(MODEL, truncate_after_chunks=3)

    response, events = read_stream(sim, wire)

    assert response.status_code == 200
    assert response.headers["transfer-encoding"] == "chunked"  # and it was terminated
    assert [e.kind for e in events if e.kind != "other"] == ["text"] * 3
    assert "".join(e.text for e in events) == FIRST_THREE
    assert all(e.kind != "terminal" for e in events)
    stats = sim.stats()
    assert stats["responses_truncated"] == 1
    assert stats["streams_completed"] == 0
    assert stats["connections_dropped"] == 0
    assert stats["client_disconnects"] == 0


def test_stream_can_close_before_the_first_token(sim: SimulatorProcess, wire: Wire) -> None:
    sim.set_scenario(MODEL, truncate_after_chunks=0)

    response, events = read_stream(sim, wire)

    assert response.status_code == 200
    assert [e.kind for e in events if e.kind != "other"] == []  # at most the openers


def test_omitted_terminal_event_keeps_all_the_text(sim: SimulatorProcess, wire: Wire) -> None:
    sim.set_scenario(MODEL, omit_terminal_event=True)

    response, events = read_stream(sim, wire)

    assert response.status_code == 200
    assert [e.kind for e in events if e.kind != "other"] == ["text"] * REPLY_TOKENS
    assert events[-1].kind == "text"


def test_truncated_body_is_a_200_json_reply_that_does_not_parse(
    sim: SimulatorProcess, wire: Wire
) -> None:
    sim.set_scenario(MODEL, truncate_body=True)

    with httpx.Client(base_url=sim.base_url, timeout=10) as client:
        response = client.post(wire.path(False), headers=wire.headers, json=wire.body(False))

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert int(response.headers["content-length"]) == len(response.content) > 0
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)
    assert sim.stats()["responses_truncated"] == 1


@pytest.mark.parametrize(("mode", "expected"), [("zero", 0), ("huge", HUGE_TOKEN_COUNT)])
def test_usage_can_lie(sim: SimulatorProcess, wire: Wire, mode: str, expected: int) -> None:
    sim.set_scenario(MODEL, misreport_usage=mode)

    with httpx.Client(base_url=sim.base_url, timeout=10) as client:
        response = client.post(wire.path(False), headers=wire.headers, json=wire.body(False))

    assert wire.usage(response.json()) == (expected, expected)


# --------------------------------------------------------------------------- the SDKs


async def test_openai_sdk_sees_a_clean_end_without_finish_reason(sim: SimulatorProcess) -> None:
    sim.set_scenario(MODEL, truncate_after_chunks=3)
    client = openai.AsyncOpenAI(base_url=sim.openai_base_url, api_key=sim.api_key, max_retries=0)

    stream = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]  # no exception: the stream just ends

    assert "".join(c.choices[0].delta.content or "" for c in chunks) == FIRST_THREE
    assert all(c.choices[0].finish_reason is None for c in chunks)
    assert all(c.usage is None for c in chunks)


async def test_openai_sdk_fails_to_parse_a_truncated_body(sim: SimulatorProcess) -> None:
    sim.set_scenario(MODEL, truncate_body=True)
    client = openai.AsyncOpenAI(base_url=sim.openai_base_url, api_key=sim.api_key, max_retries=0)

    with pytest.raises(json.JSONDecodeError):  # not a transport (APIConnectionError) error
        await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": PROMPT}]
        )


async def test_anthropic_sdk_sees_a_clean_end_without_message_stop(
    sim: SimulatorProcess,
) -> None:
    sim.set_scenario(MODEL, truncate_after_chunks=3)
    client = anthropic.AsyncAnthropic(
        base_url=sim.anthropic_base_url, api_key=sim.api_key, max_retries=0
    )

    stream = await client.messages.create(
        model=MODEL, max_tokens=100, messages=[{"role": "user", "content": PROMPT}], stream=True
    )
    events = [event async for event in stream]

    kinds = [e.type for e in events]
    assert kinds[0] == "message_start"
    assert kinds.count("content_block_delta") == 3
    assert "message_delta" not in kinds and "message_stop" not in kinds


async def test_gemini_sdk_sees_a_clean_end_without_finish_reason(sim: SimulatorProcess) -> None:
    sim.set_scenario(MODEL, omit_terminal_event=True)
    options = types.HttpOptions(base_url=sim.gemini_base_url)
    client = genai.Client(api_key=sim.api_key, http_options=options).aio

    chunks = [
        c async for c in await client.models.generate_content_stream(model=MODEL, contents=PROMPT)
    ]

    assert len(chunks) == REPLY_TOKENS
    assert "".join(c.text or "" for c in chunks).startswith(FIRST_THREE)
    assert all(c.candidates and c.candidates[0].finish_reason is None for c in chunks)


def test_boto3_sees_a_clean_end_without_message_stop(sim: SimulatorProcess) -> None:
    sim.set_scenario(MODEL, truncate_after_chunks=3)
    client = boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=sim.bedrock_endpoint_url("us-east-1"),
        aws_access_key_id="AKIDSIMULATOR",
        aws_secret_access_key="simulator-secret",
        config=Config(retries={"total_max_attempts": 1}),
    )

    response = client.converse_stream(
        modelId=MODEL, messages=[{"role": "user", "content": [{"text": PROMPT}]}]
    )
    events = list(response["stream"])

    assert [next(iter(e)) for e in events] == ["messageStart"] + ["contentBlockDelta"] * 3


# --------------------------------------------------------------------------- scripting


def test_misbehaviour_fields_are_validated() -> None:
    with pytest.raises(ScenarioError, match="truncate_after_chunks"):
        Behaviour.from_mapping({"truncate_after_chunks": -1})
    with pytest.raises(ScenarioError, match="exclude each other"):
        Behaviour.from_mapping({"truncate_after_chunks": 1, "drop_after_tokens": 1})
    with pytest.raises(ScenarioError, match="truncate_body"):
        Behaviour.from_mapping({"truncate_body": "yes"})
    with pytest.raises(ScenarioError, match="misreport_usage"):
        Behaviour.from_mapping({"misreport_usage": "a little"})


def test_ctl_flags_script_the_misbehaviour(
    sim: SimulatorProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--url", sim.base_url, "scenario", MODEL, "--truncate-after", "2"]
    argv += ["--omit-terminal-event", "--truncate-body", "--misreport-usage", "huge"]

    assert ctl.main(argv) == 0
    capsys.readouterr()

    scripted = sim.scenarios()[MODEL]
    assert scripted["truncate_after_chunks"] == 2
    assert scripted["omit_terminal_event"] is True
    assert scripted["truncate_body"] is True
    assert scripted["misreport_usage"] == "huge"
