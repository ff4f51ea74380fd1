"""The Python client's tools, JSON output, images and embeddings, specified without the
gateway server: request building and result parsing directly, and the calls over the
wire against a small scripted `grpc.aio` GenerationService started here."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message as ProtoMessage
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from llmgateway.v1 import generation_pb2 as pb
from llmgateway_client import (
    Backoff,
    ChatMessage,
    EmbedResult,
    FailedPrecondition,
    Gateway,
    GatewayClient,
    Image,
    InvalidOutput,
    ResponseFormat,
    StaticToken,
    StreamFinished,
    StreamStarted,
    Target,
    TextChunk,
    Tool,
    ToolCall,
    ToolCallChunk,
    UnsupportedCapability,
    results,
    tool_result,
)
from llmgateway_client import requests as build
from llmgateway_client.errors import error_from_status

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
PNG = b"\x89PNG\r\n\x1a\nnot-really-a-png"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def as_dict(message: ProtoMessage) -> dict[str, Any]:
    return json_format.MessageToDict(message)


# --- tools, tool choice, response format ------------------------------------------------


def test_tools_choice_parallel_and_json_schema_map_to_their_fields() -> None:
    request = build.build_generate_request(
        "sim-chat",
        "weather?",
        tools=[
            Tool("get_weather", "Weather in a city", WEATHER_SCHEMA),
            {"name": "get_time", "description": "The time"},
            pb.Tool(name="raw_tool"),
        ],
        tool_choice="get_weather",
        parallel_tool_calls=False,
        response_format=ResponseFormat(
            {"type": "object", "properties": {"n": {"type": "integer"}}}, name="out", strict=True
        ),
    )

    weather, clock, raw = request.tools
    assert (weather.name, weather.description) == ("get_weather", "Weather in a city")
    assert as_dict(weather.parameters) == WEATHER_SCHEMA
    assert (clock.name, clock.description) == ("get_time", "The time")
    assert not clock.HasField("parameters")  # no arguments: nothing sent, not an empty schema
    assert raw.name == "raw_tool"
    assert request.tool_choice == pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_TOOL, name="get_weather")
    assert request.HasField("parallel_tool_calls") and request.parallel_tool_calls is False
    response_format = request.response_format
    assert response_format.type == pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA
    assert as_dict(response_format.schema)["properties"] == {"n": {"type": "integer"}}
    assert (response_format.name, response_format.strict) == ("out", True)


@pytest.mark.parametrize(
    "choice, expected",
    [
        ("auto", pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_AUTO)),
        ("none", pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_NONE)),
        ("required", pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_REQUIRED)),
        ("lookup", pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_TOOL, name="lookup")),
        (
            pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_REQUIRED),
            pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_REQUIRED),
        ),
    ],
)
def test_tool_choice_is_a_mode_or_a_tool_name(choice: Any, expected: pb.ToolChoice) -> None:
    request = build.build_generate_request("m", "x", tools=[Tool("lookup")], tool_choice=choice)
    assert request.tool_choice == expected


@pytest.mark.parametrize(
    "response_format, expected_type",
    [
        ("text", pb.RESPONSE_FORMAT_TYPE_TEXT),
        ("json_object", pb.RESPONSE_FORMAT_TYPE_JSON_OBJECT),
        ({"schema": {"type": "object"}}, pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA),
        (
            pb.ResponseFormat(type=pb.RESPONSE_FORMAT_TYPE_JSON_OBJECT),
            pb.RESPONSE_FORMAT_TYPE_JSON_OBJECT,
        ),
    ],
)
def test_response_format_forms(response_format: Any, expected_type: int) -> None:
    request = build.build_generate_request("m", "x", response_format=response_format)
    assert request.response_format.type == expected_type


def test_unset_tool_options_leave_the_fields_unset() -> None:
    request = build.build_generate_request("m", "x")
    assert not request.tools
    for name in ("tool_choice", "parallel_tool_calls", "response_format"):
        assert not request.HasField(name)


def test_what_the_proto_cannot_express_is_rejected_at_the_call() -> None:
    with pytest.raises(ValueError, match="json_object"):
        build.build_generate_request("m", "x", response_format="json")
    with pytest.raises(TypeError):
        build.build_generate_request("m", "x", response_format={"shema": {}})
    with pytest.raises(TypeError):
        build.build_generate_request("m", "x", tools=[{"name": "f", "params": {}}])
    with pytest.raises(TypeError):
        build.build_generate_request("m", "x", tools=["get_weather"])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        build.build_generate_request("m", "x", tool_choice=3)  # type: ignore[arg-type]


def test_the_stream_request_carries_the_tool_fields_too() -> None:
    options: dict[str, Any] = {
        "tools": [{"name": "get_weather", "parameters": WEATHER_SCHEMA}],
        "tool_choice": "required",
        "parallel_tool_calls": True,
        "response_format": "json_object",
    }
    messages = [
        {"role": "user", "content": "hi", "images": [Image(url="https://x.test/a.png")]},
        {"role": "assistant", "tool_calls": [ToolCall("c1", "get_weather", '{"city":"Oslo"}')]},
        tool_result("c1", {"temp": 21}),
    ]
    unary = build.build_generate_request("m", messages, **options)
    stream = build.build_stream_generate_request("m", messages, **options)
    assert stream.SerializeToString(deterministic=True) == unary.SerializeToString(
        deterministic=True
    )


# --- messages: tool calls, tool results, images -------------------------------------------


def test_assistant_tool_calls_and_tool_results_become_message_fields() -> None:
    request = build.build_generate_request(
        "m",
        [
            {"role": "user", "content": "weather in Oslo and Rome?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    ToolCall("call_1", "get_weather", '{"city": "Oslo"}'),
                    {"id": "call_2", "name": "get_weather", "arguments": {"city": "Rome"}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
            tool_result("call_2", {"temp": 25}),
        ],
    )

    _, assistant, first, second = request.messages
    assert [(c.id, c.name, json.loads(c.arguments)) for c in assistant.tool_calls] == [
        ("call_1", "get_weather", {"city": "Oslo"}),
        ("call_2", "get_weather", {"city": "Rome"}),
    ]
    assert (first.role, first.tool_call_id, first.content) == ("tool", "call_1", '{"temp": 21}')
    assert (second.role, second.tool_call_id, json.loads(second.content)) == (
        "tool",
        "call_2",
        {"temp": 25},
    )


def test_tool_result_sends_text_as_is_and_values_as_json() -> None:
    assert tool_result("c", "sunny") == ChatMessage("tool", "sunny", tool_call_id="c")
    assert json.loads(tool_result("c", [1, 2]).content) == [1, 2]


def test_a_result_continues_the_conversation_as_the_assistant_turn() -> None:
    response = pb.GenerateResponse(
        finish_reason=pb.FINISH_REASON_TOOL_CALLS,
        tool_calls=[pb.ToolCall(id="call_9", name="get_weather", arguments='{"city":"Oslo"}')],
    )
    result = results.parse_generate_response(response)

    as_message = build.to_messages([result.as_message()])[0]
    as_dict_message = build.to_messages([{"role": "assistant", "tool_calls": result.tool_calls}])[0]
    assert as_message == as_dict_message
    assert as_message.role == "assistant"
    assert list(as_message.tool_calls) == list(response.tool_calls)


def test_images_become_image_parts_after_the_content() -> None:
    message = ChatMessage(
        "user",
        "what is in these?",
        images=[
            Image(data=PNG, mime_type="image/png"),
            Image(url="https://example.test/cat.jpg"),
        ],
    )
    request = build.build_generate_request(
        "m",
        [message, {"role": "user", "images": [{"url": "https://example.test/dog.webp"}]}],
    )

    first, second = request.messages
    assert first.content == "what is in these?"
    assert [part.WhichOneof("part") for part in first.parts] == ["image", "image"]
    assert (first.parts[0].image.data, first.parts[0].image.mime_type) == (PNG, "image/png")
    assert first.parts[1].image.url == "https://example.test/cat.jpg"
    assert second.content == "" and second.parts[0].image.url.endswith("dog.webp")


def test_image_from_file_guesses_the_mime_type(tmp_path: Path) -> None:
    path = tmp_path / "pixel.png"
    path.write_bytes(PNG)
    image = Image.from_file(path)
    assert (image.data, image.mime_type, image.url) == (PNG, "image/png", "")
    assert "not-really" not in repr(image)  # bytes stay out of logs
    with pytest.raises(ValueError, match="mime_type"):
        Image.from_file(tmp_path / "blob.unknownext")
    assert Image.from_file(path, mime_type="image/webp").mime_type == "image/webp"


def test_message_shapes_that_cannot_be_meant_are_rejected() -> None:
    with pytest.raises(ValueError, match="tool_calls"):
        build.to_messages([{"role": "user", "content": "x", "tool_call": "c1"}])
    with pytest.raises(TypeError, match="list"):
        build.to_messages(
            [{"role": "assistant", "tool_calls": {"id": "c", "name": "f", "arguments": "{}"}}]
        )
    with pytest.raises(TypeError, match="list"):
        build.to_messages([{"role": "user", "images": Image(url="https://x.test/a.png")}])
    with pytest.raises(TypeError, match="image"):
        build.to_messages([{"role": "user", "images": [PNG]}])


def test_chat_message_freezes_its_lists() -> None:
    calls = [ToolCall("c", "f")]
    message = ChatMessage("assistant", tool_calls=calls)
    calls.append(ToolCall("d", "g"))
    assert message.tool_calls == (ToolCall("c", "f"),)
    assert hash(message) == hash(ChatMessage("assistant", tool_calls=(ToolCall("c", "f"),)))


# --- results ------------------------------------------------------------------------------


def test_a_tool_call_answer_is_typed() -> None:
    response = pb.GenerateResponse(
        finish_reason=pb.FINISH_REASON_TOOL_CALLS,
        tool_calls=[
            pb.ToolCall(id="a", name="get_weather", arguments='{"city": "Oslo"}'),
            pb.ToolCall(id="b", name="get_time", arguments="{}"),
        ],
        attempts=[
            pb.Attempt(
                target=pb.Target(provider="simulator", model="sim-text"),
                outcome=pb.ATTEMPT_OUTCOME_SKIPPED_UNSUPPORTED,
                error_message="skipped: the model has no tools capability",
            ),
            pb.Attempt(
                target=pb.Target(provider="simulator", model="sim-chat"),
                outcome=pb.ATTEMPT_OUTCOME_SUCCESS,
            ),
        ],
    )
    result = results.parse_generate_response(response)

    assert result.finish_reason == "tool_calls"
    assert result.tool_calls == (
        ToolCall("a", "get_weather", '{"city": "Oslo"}'),
        ToolCall("b", "get_time", "{}"),
    )
    assert result.tool_calls[0].parse_arguments() == {"city": "Oslo"}
    assert [a.outcome for a in result.attempts] == ["skipped_unsupported", "success"]
    assert results.parse_generate_response(pb.GenerateResponse(text="hi")).tool_calls == ()


def tool_call_event(index: int, call_id: str, name: str, piece: str) -> pb.StreamGenerateResponse:
    return pb.StreamGenerateResponse(
        tool_call=pb.ToolCallDelta(index=index, id=call_id, name=name, arguments_delta=piece)
    )


TOOL_STREAM = [
    pb.StreamGenerateResponse(
        start=pb.StreamStart(served_by=pb.Target(provider="simulator", model="sim-chat"))
    ),
    tool_call_event(0, "a", "get_weather", '{"city":'),
    tool_call_event(1, "b", "get_time", ""),
    tool_call_event(0, "a", "get_weather", ' "Oslo"}'),
    tool_call_event(1, "b", "get_time", "{}"),
]


def test_the_stream_assembler_yields_tool_call_chunks_and_assembles_the_calls() -> None:
    assembler = results.StreamAssembler()
    events = [assembler.feed(event) for event in TOOL_STREAM]
    end = pb.StreamEnd(
        finish_reason=pb.FINISH_REASON_TOOL_CALLS,
        tool_calls=[
            pb.ToolCall(id="a", name="get_weather", arguments='{"city": "Oslo"}'),
            pb.ToolCall(id="b", name="get_time", arguments="{}"),
        ],
    )
    assert assembler.feed(pb.StreamGenerateResponse(end=end)) is None
    finished = assembler.finish()

    assert isinstance(events[0], StreamStarted)
    assert events[1] == ToolCallChunk(
        index=0, id="a", name="get_weather", arguments_delta='{"city":'
    )
    assert all(isinstance(event, ToolCallChunk) for event in events[1:])
    assert finished.finish_reason == "tool_calls" and finished.text == ""
    assert finished.tool_calls == (
        ToolCall("a", "get_weather", '{"city": "Oslo"}'),
        ToolCall("b", "get_time", "{}"),
    )
    assert finished.as_message().tool_calls == finished.tool_calls


def test_without_calls_in_the_end_event_the_pieces_are_put_together() -> None:
    assembler = results.StreamAssembler()
    for event in reversed(TOOL_STREAM[1:]):  # whatever order the indexes arrive in
        assembler.feed(event)
    finished = assembler.finish()  # a stream cut before its end event
    assert [(c.id, c.name) for c in finished.tool_calls] == [
        ("a", "get_weather"),
        ("b", "get_time"),
    ]
    assert finished.tool_calls[0].arguments == ' "Oslo"}{"city":'  # pieces in arrival order
    assert results.StreamAssembler().finish().tool_calls == ()


def test_models_list_their_capabilities() -> None:
    listing = results.parse_list_models_response(
        pb.ListModelsResponse(
            models=[
                pb.Model(name="sim-chat", capabilities=["tools", "json", "images"]),
                pb.Model(name="sim-embed", capabilities=["embeddings"]),
                pb.Model(name="old"),
            ]
        )
    )
    assert [m.capabilities for m in listing.models] == [
        ("tools", "json", "images"),
        ("embeddings",),
        (),
    ]


# --- embeddings -------------------------------------------------------------------------


def test_embed_request_maps_every_argument() -> None:
    request = build.build_embed_request(
        "sim-embed",
        ["a", "b"],
        dimensions=256,
        billing={"wallet_id": "w", "idempotency_key": "k"},
        end_user_id="alice",
        metadata={"job": "index"},
    )
    assert (request.model, list(request.inputs), request.dimensions) == (
        "sim-embed",
        ["a", "b"],
        256,
    )
    assert (request.billing.wallet_id, request.billing.idempotency_key) == ("w", "k")
    assert (request.end_user_id, dict(request.metadata)) == ("alice", {"job": "index"})

    lone = build.build_embed_request("sim-embed", "one text")
    assert list(lone.inputs) == ["one text"]  # a str is one input, not characters
    assert not lone.HasField("dimensions") and not lone.HasField("billing")


def embed_response(trace_id: str = TRACE_ID) -> pb.EmbedResponse:
    return pb.EmbedResponse(
        embeddings=[
            pb.Embedding(index=1, values=[0.0, 1.0]),
            pb.Embedding(index=0, values=[1.0, 0.0]),
        ],
        usage=pb.Usage(input_tokens=7),
        served_by=pb.Target(provider="simulator", model="text-embedding-3-small"),
        attempts=[
            pb.Attempt(
                target=pb.Target(provider="simulator", model="text-embedding-3-small"),
                outcome=pb.ATTEMPT_OUTCOME_SUCCESS,
            )
        ],
        trace_id=trace_id,
        dimensions=2,
    )


def test_embed_response_becomes_vectors_in_input_order() -> None:
    result = results.parse_embed_response(embed_response())

    assert isinstance(result, EmbedResult)
    assert result.vectors == ((1.0, 0.0), (0.0, 1.0))
    assert (result.dimensions, result.usage.input_tokens) == (2, 7)
    assert result.served_by == Target("simulator", "text-embedding-3-small")
    assert [a.outcome for a in result.attempts] == ["success"]
    assert result.charge is None and result.trace_id == TRACE_ID
    from_trailer = results.parse_embed_response(embed_response(""), (("x-trace-id", "t1"),))
    assert from_trailer.trace_id == "t1"


# --- the new error reasons ----------------------------------------------------------------


def status_trailers(code: grpc.StatusCode, reason: str, **metadata: str) -> Any:
    status = status_pb2.Status(code=code.value[0], message="no")
    status.details.add().Pack(
        error_details_pb2.ErrorInfo(reason=reason, domain="llmgateway.v1", metadata=metadata)
    )
    return rpc_status.to_status(status).trailing_metadata


@pytest.mark.parametrize(
    "reason, error_type",
    [("INVALID_OUTPUT", InvalidOutput), ("UNSUPPORTED_CAPABILITY", UnsupportedCapability)],
)
def test_new_reasons_are_failed_preconditions_of_their_own(
    reason: str, error_type: type[FailedPrecondition]
) -> None:
    code = grpc.StatusCode.FAILED_PRECONDITION
    error = error_from_status(code, "no", status_trailers(code, reason, capability="tools"))
    assert type(error) is error_type and isinstance(error, FailedPrecondition)
    assert error.reason == reason and error.error_metadata["capability"] == "tools"


# --- over the wire ------------------------------------------------------------------------

Behaviour = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


@dataclass
class ScriptedService:
    """Embed, Generate and StreamGenerate answering from per-test scripts (the last repeats)."""

    embed_script: list[Behaviour] = field(default_factory=list)
    generate_script: list[Behaviour] = field(default_factory=list)
    stream_events: list[pb.StreamGenerateResponse] = field(default_factory=list)
    requests: list[tuple[str, ProtoMessage]] = field(default_factory=list)

    @staticmethod
    def _next(script: list[Behaviour]) -> Behaviour:
        return script.pop(0) if len(script) > 1 else script[0]

    async def embed(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self.requests.append(("Embed", request))
        return await self._next(self.embed_script)(request, context)

    async def generate(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self.requests.append(("Generate", request))
        return await self._next(self.generate_script)(request, context)

    async def stream_generate(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        self.requests.append(("StreamGenerate", request))
        for event in self.stream_events:
            yield event

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            "llmgateway.v1.GenerationService",
            {
                "Embed": grpc.unary_unary_rpc_method_handler(
                    self.embed,
                    request_deserializer=pb.EmbedRequest.FromString,
                    response_serializer=pb.EmbedResponse.SerializeToString,
                ),
                "Generate": grpc.unary_unary_rpc_method_handler(
                    self.generate,
                    request_deserializer=pb.GenerateRequest.FromString,
                    response_serializer=pb.GenerateResponse.SerializeToString,
                ),
                "StreamGenerate": grpc.unary_stream_rpc_method_handler(
                    self.stream_generate,
                    request_deserializer=pb.StreamGenerateRequest.FromString,
                    response_serializer=pb.StreamGenerateResponse.SerializeToString,
                ),
            },
        )


def answer(response: ProtoMessage) -> Behaviour:
    async def behaviour(request: Any, context: grpc.aio.ServicerContext) -> Any:
        return response

    return behaviour


def fail(code: grpc.StatusCode, reason: str) -> Behaviour:
    async def behaviour(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, "scripted failure", status_trailers(code, reason))

    return behaviour


@pytest.fixture
async def service() -> AsyncIterator[tuple[ScriptedService, str]]:
    scripted = ScriptedService()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((scripted.handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield scripted, f"127.0.0.1:{port}"
    await server.stop(grace=None)


FAST = Backoff(initial_s=0.01, max_s=0.02)


async def test_embed_is_retried_on_unavailable_by_both_clients(
    service: tuple[ScriptedService, str],
) -> None:
    scripted, address = service
    unavailable = fail(grpc.StatusCode.UNAVAILABLE, "ALL_TARGETS_FAILED")
    scripted.embed_script.extend([unavailable, answer(embed_response()), unavailable])
    scripted.embed_script.append(answer(embed_response()))

    async with GatewayClient(address, token_source=StaticToken("t"), backoff=FAST) as client:
        result = await client.embed("sim-embed", ["x", "y"], dimensions=2)

    def sync_embed() -> EmbedResult:
        with Gateway(address, token_source=StaticToken("t"), backoff=FAST) as gateway:
            return gateway.embed("sim-embed", "x", end_user_id="bob")

    sync_result = await asyncio.to_thread(sync_embed)

    assert result.vectors == sync_result.vectors == ((1.0, 0.0), (0.0, 1.0))
    assert [name for name, _ in scripted.requests] == ["Embed"] * 4
    first, _, third, _ = (request for _, request in scripted.requests)
    assert (list(first.inputs), first.dimensions) == (["x", "y"], 2)
    assert (list(third.inputs), third.end_user_id) == (["x"], "bob")


async def test_unsupported_capability_is_not_retried(service: tuple[ScriptedService, str]) -> None:
    scripted, address = service
    scripted.generate_script.append(
        fail(grpc.StatusCode.FAILED_PRECONDITION, "UNSUPPORTED_CAPABILITY")
    )
    async with GatewayClient(address, backoff=FAST) as client:
        with pytest.raises(UnsupportedCapability):
            await client.generate("sim-text", "x", tools=[Tool("f")])
    assert len(scripted.requests) == 1


async def test_tool_calls_round_trip_through_the_clients(
    service: tuple[ScriptedService, str],
) -> None:
    scripted, address = service
    scripted.generate_script.append(
        answer(
            pb.GenerateResponse(
                finish_reason=pb.FINISH_REASON_TOOL_CALLS,
                tool_calls=[pb.ToolCall(id="a", name="get_weather", arguments='{"city":"Oslo"}')],
            )
        )
    )
    end = pb.StreamEnd(
        finish_reason=pb.FINISH_REASON_TOOL_CALLS,
        tool_calls=[pb.ToolCall(id="a", name="get_weather", arguments='{"city": "Oslo"}')],
    )
    scripted.stream_events = [
        *TOOL_STREAM[:2],
        TOOL_STREAM[3],
        pb.StreamGenerateResponse(end=end),
    ]
    tools = [Tool("get_weather", parameters=WEATHER_SCHEMA)]

    async with GatewayClient(address, backoff=FAST) as client:
        result = await client.generate("sim-chat", "weather?", tools=tools, tool_choice="auto")
        events = [e async for e in client.stream_generate("sim-chat", "weather?", tools=tools)]

    def sync_stream() -> list[Any]:
        with Gateway(address, backoff=FAST) as gateway:
            return list(gateway.stream_generate("sim-chat", "weather?", tools=tools))

    sync_events = await asyncio.to_thread(sync_stream)

    assert result.finish_reason == "tool_calls"
    assert result.tool_calls[0].parse_arguments() == {"city": "Oslo"}
    for streamed in (events, sync_events):
        assert [type(e) for e in streamed] == [
            StreamStarted,
            ToolCallChunk,
            ToolCallChunk,
            StreamFinished,
        ]
        assert streamed[-1].tool_calls == (ToolCall("a", "get_weather", '{"city": "Oslo"}'),)
        assert not any(isinstance(e, TextChunk) for e in streamed)
    sent = scripted.requests[0][1]
    assert [t.name for t in sent.tools] == ["get_weather"]
    assert sent.tool_choice.mode == pb.TOOL_CHOICE_MODE_AUTO
