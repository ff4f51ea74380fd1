"""Bad input gets INVALID_ARGUMENT naming the field, with google.rpc details; never
INTERNAL, never a stack trace."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from llmgateway.v1 import generation_pb2 as pb
from llmgateway.v1 import generation_pb2_grpc as pb_grpc

from tests.support.gateway import bearer


def details(error: grpc.aio.AioRpcError) -> tuple[error_details_pb2.ErrorInfo,
                                                 list[tuple[str, str]]]:
    """ErrorInfo and BadRequest field violations from the status details trailer."""
    raw = dict(error.trailing_metadata())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(raw)
    info, violations = error_details_pb2.ErrorInfo(), []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations = [(v.field, v.description) for v in bad.field_violations]
    return info, violations


def user(text: str = "Hi") -> pb.Message:
    return pb.Message(role="user", content=text)


CASES = [
    ("no messages", pb.GenerateRequest(model="sim-chat"), "messages"),
    ("unknown model", pb.GenerateRequest(model="no-such-model", messages=[user()]), "model"),
    ("no model", pb.GenerateRequest(messages=[user()]), "model"),
    ("bad role", pb.GenerateRequest(model="sim-chat", messages=[pb.Message(role="robot",
                                                                           content="x")]),
     "messages[0].role"),
    ("empty content", pb.GenerateRequest(model="sim-chat", messages=[user(""), ]),
     "messages[0].content"),
    ("negative max tokens", pb.GenerateRequest(model="sim-chat", messages=[user()],
                                               config=pb.GenerationConfig(max_output_tokens=-5)),
     "config.max_output_tokens"),
    ("temperature", pb.GenerateRequest(model="sim-chat", messages=[user()],
                                       config=pb.GenerationConfig(temperature=3.5)),
     "config.temperature"),
    ("top_p", pb.GenerateRequest(model="sim-chat", messages=[user()],
                                 config=pb.GenerationConfig(top_p=0)), "config.top_p"),
    ("empty stop", pb.GenerateRequest(model="sim-chat", messages=[user()],
                                      config=pb.GenerationConfig(stop_sequences=["ok", ""])),
     "config.stop_sequences[1]"),
    ("unknown target provider", pb.GenerateRequest(
        messages=[user()], targets=[pb.Target(provider="nope", model="m")]),
     "targets[0].provider"),
    ("oversized prompt", pb.GenerateRequest(model="sim-chat", messages=[user("x" * 1_200_000)]),
     "messages"),
]


@pytest.mark.parametrize("name,req,field", CASES, ids=[c[0] for c in CASES])
async def test_invalid_request_names_the_field(channel, name, req, field):
    stub = pb_grpc.GenerationServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Generate(req, metadata=bearer("generate"), timeout=10)
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    info, violations = details(error)
    assert info.domain == "llmgateway.v1"
    assert info.reason in ("INVALID_ARGUMENT", "UNKNOWN_MODEL")
    assert field in [f for f, _ in violations], violations
    assert "Traceback" not in error.details() and field in error.details()


async def test_stream_validates_before_streaming(channel):
    stub = pb_grpc.GenerationServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in stub.StreamGenerate(pb.StreamGenerateRequest(model="sim-chat"),
                                           metadata=bearer("generate"), timeout=10):
            pass
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ("messages", "at least one message is required") in details(caught.value)[1]


async def test_every_problem_is_reported_at_once(channel):
    stub = pb_grpc.GenerationServiceStub(channel)
    req = pb.GenerateRequest(model="sim-chat", messages=[pb.Message(role="x", content="")],
                             config=pb.GenerationConfig(top_k=-1))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Generate(req, metadata=bearer("generate"), timeout=10)
    fields = {f for f, _ in details(caught.value)[1]}
    assert fields == {"messages[0].role", "messages[0].content", "config.top_k"}


async def test_message_over_the_transport_limit_is_refused_cleanly(channel):
    stub = pb_grpc.GenerationServiceStub(channel)
    req = pb.GenerateRequest(model="sim-chat", messages=[user("y" * (5 * 1024 * 1024))])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Generate(req, metadata=bearer("generate"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "Traceback" not in (caught.value.details() or "")
