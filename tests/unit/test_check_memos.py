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
