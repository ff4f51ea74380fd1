"""Tool calls, JSON answers and images, decided the same way for every vendor protocol.

Each vendor module parses its own wire form (OpenAI ``tools``, Anthropic ``tools`` +
``tool_use``/``tool_result`` blocks, Gemini ``functionDeclarations``, Bedrock
``toolConfig``) into the neutral ``ToolSpec``s and a choice, asks ``plan_tool_calls`` what
the model does, and renders the answer in its own format. So a scripted fault means the
same thing whichever SDK is pointed at the simulator.

The model's rules, deterministic so tests can assert on them:

* tools declared, tool choice not "none", and the conversation does not end with a tool
  result → the model calls one tool: the named one when the choice names one, else the
  first declared; with ``parallel`` and at least two tools (and no named choice) it calls
  the first two. Arguments are ``instance(schema)``: a value valid against the schema.
* the conversation ends with tool results → a text answer quoting them
  (``answer_after_tools``), unless the choice requires a tool.
* a JSON response format → the text is ``json.dumps(instance(schema))``.
* images → each counts ``IMAGE_TOKENS`` prompt tokens, and the reply ends with
  ``image_note`` (how many images of which types arrived), so a test can see that an
  image reached the vendor in that vendor's format.

``output_fault`` (a scripted behaviour) makes the output wrong on purpose:
``malformed_json`` (a JSON answer or tool arguments cut short), ``schema_mismatch`` (valid
JSON, wrong shape), ``undeclared_tool`` (a call to a tool nobody declared),
``malformed_arguments`` (tool arguments that are not JSON).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

IMAGE_TOKENS = 85  # prompt tokens one image counts (OpenAI's low-detail figure)
UNDECLARED_TOOL = "undeclared_tool"
_MAX_DEPTH = 8


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A declared tool: its name and the JSON Schema of its arguments."""

    name: str
    schema: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class PlannedCall:
    """A tool call the model makes; ``arguments`` is JSON text."""

    id: str
    name: str
    arguments: str

    @property
    def input(self) -> Any:
        """The arguments as a value (vendors that send objects, not text); the raw text
        when it does not parse (a scripted ``malformed_arguments``)."""
        try:
            return json.loads(self.arguments)
        except ValueError:
            return self.arguments


def instance(schema: Any, depth: int = 0) -> Any:
    """A deterministic value valid against ``schema`` (the subset tools use: type,
    properties, required, items, enum, const, anyOf/oneOf, numeric and length bounds)."""
    if not isinstance(schema, Mapping) or depth > _MAX_DEPTH:
        return {}
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return instance(schema[key][0], depth + 1)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: instance(sub, depth + 1) for name, sub in props.items()} \
            if isinstance(props, Mapping) else {}
    if kind == "array":
        count = max(1, int(schema.get("minItems", 1) or 1))
        return [instance(schema.get("items") or {}, depth + 1) for _ in range(count)]
    if kind in ("integer", "number"):
        value: float = 42 if kind == "integer" else 1.5
        low, high = schema.get("minimum"), schema.get("maximum")
        if isinstance(low, (int, float)) and value < low:
            value = low
        if isinstance(high, (int, float)) and value > high:
            value = high
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    text = "sample"
    length = int(schema.get("minLength", 0) or 0)
    text = (text * (length // len(text) + 1))[:max(length, len(text))]
    if "maxLength" in schema:
        text = text[:max(0, int(schema["maxLength"]))]
    return text


def call_id(prefix: str, seed: str, index: int) -> str:
    """A stable id in the vendor's style (``call_``, ``toolu_``, ``tooluse_``)."""
    digest = hashlib.sha256(f"{seed}:{index}".encode()).hexdigest()[:24]
    return f"{prefix}{digest}"


def _arguments(schema: Mapping[str, Any], fault: str | None) -> str:
    if fault == "malformed_arguments":
        return '{"unterminated": '
    if fault == "malformed_json":
        text = json.dumps(instance(schema))
        return text[: max(1, len(text) // 2)]
    if fault == "schema_mismatch":
        return json.dumps({"unexpected_field": [1, 2, 3]})
    return json.dumps(instance(schema))


def plan_tool_calls(tools: Sequence[ToolSpec], choice: str, answered: bool, *,
                    parallel: bool = False, fault: str | None = None, seed: str = "",
                    prefix: str = "call_") -> tuple[PlannedCall, ...]:
    """The calls the model makes, or () when it answers with text.

    ``choice`` is "auto", "none", "required" or a tool's name; ``answered`` is true when
    the conversation ends with tool results."""
    if not tools or choice == "none":
        return ()
    named = next((t for t in tools if t.name == choice), None)
    if answered and named is None and choice != "required":
        return ()
    chosen = [named] if named else list(tools[:2] if parallel and len(tools) > 1 else tools[:1])
    calls = []
    for i, tool in enumerate(chosen):
        name = UNDECLARED_TOOL if fault == "undeclared_tool" else tool.name
        calls.append(PlannedCall(call_id(prefix, f"{seed}:{tool.name}", i), name,
                                 _arguments(tool.schema, fault)))
    return tuple(calls)


def answer_after_tools(results: Sequence[str]) -> str:
    """The final text once tool results arrived: it quotes them (bounded)."""
    quoted = "; ".join(r[:200] for r in results)
    return f"Based on the tool results: {quoted}"


def json_answer(schema: Mapping[str, Any] | None, fault: str | None = None) -> str:
    """The JSON text a model in JSON mode answers (an object when there is no schema)."""
    value = instance(schema) if schema else {"answer": "sample"}
    text = json.dumps(value)
    if fault == "malformed_json":
        return text[: max(1, len(text) // 2)]
    if fault == "schema_mismatch":
        return json.dumps({"unexpected_field": [1, 2, 3]})
    return text


def image_note(mime_types: Sequence[str]) -> str:
    """What the model says about the images it got (appended to its reply)."""
    kinds = ", ".join(sorted(set(mime_types)))
    return f" [saw {len(mime_types)} image(s): {kinds}]"


def argument_pieces(arguments: str, size: int = 8) -> list[str]:
    """Tool arguments cut into the pieces a stream sends (at least one, maybe empty)."""
    return [arguments[i:i + size] for i in range(0, len(arguments), size)] or [""]


__all__ = ["IMAGE_TOKENS", "UNDECLARED_TOOL", "PlannedCall", "ToolSpec", "answer_after_tools",
           "argument_pieces", "call_id", "image_note", "instance", "json_answer",
           "plan_tool_calls"]
