"""Tools, response formats, images and tool results: bad input is INVALID_ARGUMENT naming
the field (every bad field at once), before any vendor is called; never INTERNAL."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import struct_pb2
from llmgateway.v1 import generation_pb2 as pb
from llmgateway.v1 import generation_pb2_grpc as pb_grpc

from tests.e2e.test_bad_input import details
from tests.support.gateway import bearer

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


def schema(value: dict) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(value)
    return out


WEATHER = pb.Tool(name="get_weather", description="Weather in a city",
                  parameters=schema({"type": "object",
                                     "properties": {"city": {"type": "string"}},
                                     "required": ["city"]}))


def user(text: str = "Hi", *parts: pb.ContentPart) -> pb.Message:
    return pb.Message(role="user", content=text, parts=list(parts))


def image(data: bytes = PNG, mime: str = "image/png", url: str = "") -> pb.ContentPart:
    return pb.ContentPart(image=pb.ImagePart(data=data, mime_type=mime, url=url))


def req(**kw) -> pb.GenerateRequest:
    kw.setdefault("model", "sim-chat")
    kw.setdefault("messages", [user()])
    return pb.GenerateRequest(**kw)


CASES = [
    ("undeclared tool in tool_choice",
     req(tools=[WEATHER], tool_choice=pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_TOOL,
                                                    name="get_time")),
     "tool_choice.name"),
    ("named choice without tools", req(tool_choice=pb.ToolChoice(name="get_time")),
     "tool_choice.name"),
    ("required without tools",
     req(tool_choice=pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_REQUIRED)), "tool_choice"),
    ("unknown tool choice mode", req(tools=[WEATHER], tool_choice=pb.ToolChoice(mode=42)),
     "tool_choice.mode"),
    ("non-object schema",
     req(tools=[pb.Tool(name="f", parameters=schema({"type": "string"}))]),
     "tools[0].parameters"),
    ("invalid JSON Schema",
     req(tools=[pb.Tool(name="f", parameters=schema({"type": "object",
                                                      "properties": {"a": {"type": 5}}}))]),
     "tools[0].parameters"),
    ("129 tools", req(tools=[pb.Tool(name=f"tool_{i}") for i in range(129)]), "tools"),
    ("bad tool name", req(tools=[pb.Tool(name="get weather!")]), "tools[0].name"),
    ("duplicate tool", req(tools=[WEATHER, WEATHER]), "tools[1].name"),
    ("tool result without a matching call",
     req(messages=[user(), pb.Message(role="tool", tool_call_id="call_nope", content="42")]),
     "messages[1].tool_call_id"),
    ("tool result without an id",
     req(messages=[user(), pb.Message(role="tool", content="42")]), "messages[1].tool_call_id"),
    ("tool call arguments not an object",
     req(tools=[WEATHER], messages=[user(), pb.Message(role="assistant", tool_calls=[
         pb.ToolCall(id="call_1", name="get_weather", arguments="[1, 2]")])]),
     "messages[1].tool_calls[0].arguments"),
    ("tool call id with bad characters",
     req(tools=[WEATHER], messages=[user(), pb.Message(role="assistant", tool_calls=[
         pb.ToolCall(id="call 1/2", name="get_weather", arguments="{}")])]),
     "messages[1].tool_calls[0].id"),
    ("tool calls on a user message",
     req(messages=[pb.Message(role="user", content="x", tool_calls=[
         pb.ToolCall(id="call_1", name="f", arguments="{}")])]), "messages[0].tool_calls"),
    ("oversized image", req(messages=[user("look", image(b"\x89PNG" + b"\0" * (3 << 20)))]),
     "messages[0].parts[0].image.data"),
    ("unsupported mime type", req(messages=[user("look", image(mime="image/tiff"))]),
     "messages[0].parts[0].image.mime_type"),
    ("image with data and url",
     req(messages=[user("look", image(url="https://example.com/a.png"))]),
     "messages[0].parts[0].image"),
    ("plain-http image url",
     req(messages=[user("look", image(data=b"", mime="", url="http://example.com/a.png"))]),
     "messages[0].parts[0].image.url"),
    ("image on an assistant message",
     req(messages=[user(), pb.Message(role="assistant", content="x", parts=[image()])]),
     "messages[1].parts"),
    ("json schema without a schema",
     req(response_format=pb.ResponseFormat(type=pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA)),
     "response_format.schema"),
    ("json schema not an object",
     req(response_format=pb.ResponseFormat(type=pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
                                           schema=schema({"type": "array"}))),
     "response_format.schema"),
    ("strict json object",
     req(response_format=pb.ResponseFormat(type=pb.RESPONSE_FORMAT_TYPE_JSON_OBJECT,
                                           strict=True)), "response_format.strict"),
    ("bad format name",
     req(response_format=pb.ResponseFormat(type=pb.RESPONSE_FORMAT_TYPE_JSON_OBJECT,
                                           name="a b")), "response_format.name"),
]


@pytest.mark.parametrize("name,request_,field", CASES, ids=[c[0] for c in CASES])
async def test_bad_tool_and_image_input_names_the_field(channel, name, request_, field):
    stub = pb_grpc.GenerationServiceStub(channel)
    for call in (stub.Generate(request_, metadata=bearer("generate"), timeout=10),):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        error = caught.value
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        info, violations = details(error)
        assert info.reason == "INVALID_ARGUMENT"
        assert field in [f for f, _ in violations], violations
        assert "Traceback" not in error.details()


async def test_streamed_requests_are_checked_the_same_way(channel):
    stub = pb_grpc.GenerationServiceStub(channel)
    bad = pb.StreamGenerateRequest(
        model="sim-chat", messages=[user("look", image(mime="image/bmp"))],
        tools=[WEATHER], tool_choice=pb.ToolChoice(name="nope"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in stub.StreamGenerate(bad, metadata=bearer("generate"), timeout=10):
            pass
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = {f for f, _ in details(caught.value)[1]}
    assert fields == {"messages[0].parts[0].image.mime_type", "tool_choice.name"}


async def test_text_only_chain_refuses_tools_before_any_vendor(channel):
    """sim-text has no tools capability and falls back to sim-chat: the text-only target
    is skipped with an outcome that says why. With targets of only text-only models,
    FAILED_PRECONDITION UNSUPPORTED_CAPABILITY."""
    stub = pb_grpc.GenerationServiceStub(channel)
    only_text = req(model="", targets=[pb.Target(provider="simulator", model="sim-text")],
                    tools=[WEATHER])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Generate(only_text, metadata=bearer("generate"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info, _ = details(caught.value)
    assert info.reason == "UNSUPPORTED_CAPABILITY"
    assert info.metadata["capability"] == "tools"


async def test_list_models_shows_capabilities(channel):
    stub = pb_grpc.GenerationServiceStub(channel)
    models = {m.name: m for m in (await stub.ListModels(
        pb.ListModelsRequest(page_size=1000), metadata=bearer("generate"), timeout=10)).models}
    assert list(models["sim-text"].capabilities) == []
    assert list(models["sim-chat"].capabilities) == ["images", "json", "tools"]
    assert list(models["sim-embed"].capabilities) == ["embeddings"]
    assert models["sim-embed"].attributes["dimensions"] == 256


async def test_every_tool_call_must_be_answered_right_after_its_turn(channel):
    calls = [pb.ToolCall(id="call_a", name="get_weather", arguments='{"city": "Paris"}'),
             pb.ToolCall(id="call_b", name="get_weather", arguments='{"city": "Rome"}')]
    history = [user(), pb.Message(role="assistant", tool_calls=calls),
               pb.Message(role="tool", tool_call_id="call_a", content="21"),
               user("and?")]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await pb_grpc.GenerationServiceStub(channel).Generate(
            req(messages=history, tools=[WEATHER]), metadata=bearer("generate"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in details(caught.value)[1]] == ["messages[1].tool_calls[1].id"]
