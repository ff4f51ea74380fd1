"""The memos that keep repeated tool schemas cheap never change a verdict and never grow
past their bound."""

from __future__ import annotations

from google.protobuf import struct_pb2
from llmgateway.v1 import generation_pb2 as pb

from server.generation.validation import SchemaVerdicts
from server.request_checks import CLEAN_STRUCTS, RequestChecker


def tool_request(schema: dict) -> pb.GenerateRequest:
    parameters = struct_pb2.Struct()
    parameters.update(schema)
    return pb.GenerateRequest(model="m", tools=[pb.Tool(name="f", parameters=parameters)])


def test_a_clean_struct_is_remembered_and_a_dirty_one_still_reported():
    checker = RequestChecker()
    clean = tool_request({"type": "object", "properties": {"a": {"type": "string"}}})
    assert checker.violations(clean) == [] and checker.violations(clean) == []
    dirty = tool_request({"type": "object", "properties": {"a\x00": {"type": "string"}}})
    for _ in range(2):  # a bad struct is never remembered as clean
        assert [v.field for v in checker.violations(dirty)] == \
            ["tools[0].parameters[properties][a\\x00]"]
    nan = tool_request({"type": "object", "minimum": float("nan")})
    assert [v.field for v in checker.violations(nan)] == ["tools[0].parameters[minimum]"]


def test_the_struct_memo_is_bounded():
    checker = RequestChecker()
    for i in range(CLEAN_STRUCTS + 50):
        checker.violations(tool_request({"type": "object", "title": f"t{i}"}))
    assert len(checker._clean_structs) == CLEAN_STRUCTS


def test_schema_verdicts_are_bounded_and_exact():
    verdicts = SchemaVerdicts(size=8)
    good = {"type": "object", "properties": {"a": {"type": "string"}}}
    bad = {"type": "object", "properties": {"a": {"type": 5}}}
    assert verdicts.problem(good, "g") == ""
    assert "properties/a/type" in verdicts.problem(bad, "b")
    assert "properties/a/type" in verdicts.problem(bad, "b")  # remembered, same verdict
    for i in range(20):
        verdicts.problem(good, f"g{i}")
    assert len(verdicts._seen) == 8


def test_remembered_conversions_are_shared_exact_and_bounded():
    from server.handlers.generation import Converters, parse
    from server.kernel.config import RagConfig
    from server.generation.validation import CallLimits
    from server.wire import Conversions, struct_dict

    limits = CallLimits(max_prompt_bytes=1 << 20, rag=RagConfig())
    convert = Converters.remembered()
    schema = {"type": "object", "properties": {"a": {"type": "string", "minLength": 3}}}
    request = tool_request(schema)
    request.messages.add(role="user", content="hi")
    first = parse("Generate", request, limits, convert=convert)
    again = parse("Generate", request, limits, convert=convert)
    assert first.tools[0] is again.tools[0]  # one conversion and one JSON encoding
    assert first.tools[0].parameters == schema and first.tools[0].schema_json == \
        '{"properties":{"a":{"minLength":3,"type":"string"}},"type":"object"}'
    other = tool_request({**schema, "required": ["a"]})
    other.messages.add(role="user", content="hi")
    assert parse("Generate", other, limits, convert=convert).tools[0].parameters["required"] \
        == ["a"]  # a different declaration is never served the remembered one

    memo = Conversions(struct_dict, size=4, max_bytes=64)
    for i in range(10):
        value = struct_pb2.Struct()
        value.update({"i": i})
        assert memo(value) == {"i": i}
    assert len(memo._seen) == 4
    big = struct_pb2.Struct()
    big.update({"x": "y" * 100})
    assert memo(big) == {"x": "y" * 100} and len(memo._seen) == 4  # too big to keep
