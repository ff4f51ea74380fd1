"""The vendor-neutral tool pieces: ids every vendor accepts, streamed calls assembled in
order, answers checked against the request's form, capabilities a request needs."""

from __future__ import annotations

import json

import pytest

from server.fallback.capabilities import Capabilities, Capability, needed
from server.fallback.chain import Target
from server.providers.base import ChatMessage, ErrorKind, ProviderError, ProviderRequest
from server.providers.content import (
    TOOL_CALL_ID,
    FormatKind,
    Image,
    ResponseFormat,
    Tool,
    ToolCall,
    ToolCallAssembler,
    wire_id,
)
from server.providers.output import AnswerCheck

SCHEMA = {"type": "object", "properties": {"label": {"enum": ["a", "b"]}},
          "required": ["label"], "additionalProperties": False}


@pytest.mark.parametrize("vendor_id", ["call_abc123", "toolu_01A-b", "x" * 64])
def test_ids_every_vendor_accepts_pass_unchanged(vendor_id):
    assert wire_id(vendor_id) == vendor_id


@pytest.mark.parametrize("vendor_id", ["call.1:2", "", "é" * 10, "y" * 65, "a b/c"])
def test_other_ids_are_mapped_stably_into_the_common_alphabet(vendor_id):
    mapped = wire_id(vendor_id)
    assert TOOL_CALL_ID.fullmatch(mapped)
    assert wire_id(vendor_id) == mapped  # the same id always maps the same way


def test_assembler_numbers_calls_by_arrival_and_names_every_piece():
    calls = ToolCallAssembler()
    # Anthropic-style block indexes: text at 0, tool calls at 1 and 3
    first = calls.piece(1, "toolu_1", "get_weather", "")
    assert (first.index, first.id, first.name) == (0, "toolu_1", "get_weather")
    assert calls.piece(1, None, None, '{"city":').name == "get_weather"
    assert calls.piece(3, "toolu_2", "get_time", "{}").index == 1
    calls.piece(1, None, None, ' "Paris"}')
    assert calls.calls() == (ToolCall("toolu_1", "get_weather", '{"city": "Paris"}'),
                             ToolCall("toolu_2", "get_time", "{}"))


def request(**kw) -> ProviderRequest:
    return ProviderRequest(model="m", messages=(ChatMessage("user", "hi"),), **kw)


def invalid(check: AnswerCheck, text: str, calls=()) -> str:
    with pytest.raises(ProviderError) as caught:
        check.check(text, calls)
    assert caught.value.kind is ErrorKind.INVALID_OUTPUT
    return caught.value.message


def test_plain_requests_need_no_check():
    assert not AnswerCheck(request()).needed


def test_tool_calls_must_name_a_declared_tool_and_carry_an_object():
    check = AnswerCheck(request(tools=(Tool("get_weather"),)))
    check.check("", (ToolCall("c1", "get_weather", '{"city": "Paris"}'),))
    check.check("", (ToolCall("c1", "get_weather", ""),))  # no arguments: {}
    assert "did not declare" in invalid(check, "", (ToolCall("c1", "rm_rf", "{}"),))
    assert "not JSON" in invalid(check, "", (ToolCall("c1", "get_weather", '{"city": '),))
    assert "not a JSON object" in invalid(check, "", (ToolCall("c1", "get_weather", "[1]"),))


def test_json_object_answers_must_be_objects():
    check = AnswerCheck(request(response_format=ResponseFormat(FormatKind.JSON_OBJECT)))
    check.check('{"a": 1}', ())
    assert "not JSON" in invalid(check, '{"a": ')
    assert "not a JSON object" in invalid(check, "[1, 2]")


def test_strict_schema_answers_are_validated_where_loose_ones_only_parse():
    strict = AnswerCheck(request(response_format=ResponseFormat(
        FormatKind.JSON_SCHEMA, SCHEMA, "x", strict=True)))
    strict.check(json.dumps({"label": "a"}), ())
    assert "label" in invalid(strict, json.dumps({"label": "c"}))
    assert "(root)" in invalid(strict, json.dumps({"label": "a", "extra": 1}))
    loose = AnswerCheck(request(response_format=ResponseFormat(
        FormatKind.JSON_SCHEMA, SCHEMA, "x", strict=False)))
    loose.check(json.dumps({"label": "c"}), ())
    invalid(loose, "not json")


def test_a_request_needs_what_it_uses():
    assert needed(request()) == frozenset()
    assert needed(request(tools=(Tool("f"),))) == {Capability.TOOLS}
    history = (ChatMessage("user", "hi"),
               ChatMessage("assistant", "", tool_calls=(ToolCall("c1", "f", "{}"),)),
               ChatMessage("tool", "42", tool_call_id="c1"))
    assert needed(ProviderRequest(model="m", messages=history)) == {Capability.TOOLS}
    assert needed(request(response_format=ResponseFormat(FormatKind.JSON_OBJECT))) \
        == {Capability.JSON}
    assert needed(request(response_format=ResponseFormat(FormatKind.TEXT))) == frozenset()
    image = ProviderRequest(model="m", messages=(
        ChatMessage("user", "look", images=(Image("image/png", b"x"),)),))
    assert needed(image) == {Capability.IMAGES}


def test_listed_models_have_only_their_capabilities():
    caps = Capabilities({"simulator": {"sim-text": [], "sim-json": ["json"]}})
    needs = frozenset({Capability.TOOLS, Capability.JSON})
    assert caps.missing(Target("simulator", "sim-text"), needs) == needs
    assert caps.missing(Target("simulator", "sim-json"), needs) == {Capability.TOOLS}
    assert caps.missing(Target("simulator", "other"), needs) == frozenset()
