"""What a request may carry besides text — tools, a tool choice, a response format, images —
and what a model may answer besides text: tool calls, whole or streamed in pieces.

These are the vendor-neutral values every adapter maps to its vendor's native form
(OpenAI ``tools``/``tool_calls``/``response_format``; Anthropic ``tool_use``/``tool_result``
blocks; Gemini ``functionDeclarations``/``functionCall``/``functionResponse``; Bedrock
Converse ``toolConfig``/``toolUse``/``toolResult``). They are validated at the edge
(``server/generation/validation.py``), so adapters may rely on them: tool names are unique
and declared, schemas are JSON objects, tool results answer a call made earlier.

Tool-call ids cross vendors (a conversation may continue on another vendor after a
fallback), so the ids we hand out and accept are the subset every vendor takes:
``[A-Za-z0-9_-]{1,64}`` (``wire_id`` maps any vendor id into it, the same way every time).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from enum import StrEnum
from typing import Any, NamedTuple

# The id alphabet every vendor accepts (Anthropic and Bedrock are the strictest).
TOOL_CALL_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_NOT_ID = re.compile(r"[^A-Za-z0-9_-]")


def wire_id(vendor_id: str, *, salt: str = "") -> str:
    """A vendor's tool-call id as one every vendor accepts: unchanged when it already is
    one; otherwise its disallowed characters replaced and, when too long or empty, a
    stable digest — the same input always maps to the same id, so a conversation that
    replays our ids stays consistent. ``salt`` makes ids for id-less vendors (Gemini)
    distinct per call position."""
    if vendor_id and TOOL_CALL_ID.fullmatch(vendor_id):
        return vendor_id
    cleaned = _NOT_ID.sub("_", vendor_id)
    if cleaned and len(cleaned) <= 64:
        return cleaned
    digest = hashlib.blake2b(f"{vendor_id}\x00{salt}".encode(), digest_size=12).hexdigest()
    return f"call_{digest}"


class ToolChoiceMode(StrEnum):
    AUTO = "auto"          # the model decides (the default when tools are given)
    NONE = "none"          # tools are declared but must not be called
    REQUIRED = "required"  # some tool must be called
    TOOL = "tool"          # the named tool must be called


@dataclass(frozen=True)
class Tool:
    """A function the model may call. ``parameters`` is a JSON Schema of type object."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})

    @cached_property
    def schema_json(self) -> str:
        """``parameters`` as compact, key-sorted JSON, encoded once per Tool: the size
        limits, the schema verdict memo and the prompt-size estimate read it, and the edge
        hands out the same Tool for a declaration it has seen (``wire.Conversions``).
        Raises ``TypeError``/``ValueError`` for values JSON cannot carry."""
        return json.dumps(self.parameters, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class ToolChoice:
    mode: ToolChoiceMode = ToolChoiceMode.AUTO
    name: str = ""  # the tool, for mode TOOL


class FormatKind(StrEnum):
    TEXT = "text"
    JSON_OBJECT = "json_object"  # any JSON object
    JSON_SCHEMA = "json_schema"  # a JSON value matching ``schema``


@dataclass(frozen=True)
class ResponseFormat:
    kind: FormatKind = FormatKind.TEXT
    schema: Mapping[str, Any] | None = None
    name: str = "response"
    strict: bool = False

    @property
    def json(self) -> bool:
        return self.kind is not FormatKind.TEXT

    def json_schema(self) -> Mapping[str, Any]:
        """The schema a JSON answer must match ({"type": "object"} for JSON_OBJECT)."""
        return self.schema if self.schema is not None else {"type": "object"}


@dataclass(frozen=True)
class Image:
    """An image in a message: inline bytes with their MIME type, or a URL."""

    mime_type: str = ""
    data: bytes = b""
    url: str = ""


@dataclass(frozen=True)
class ToolCall:
    """A call the model made: ``arguments`` is the JSON text of an object."""

    id: str
    name: str
    arguments: str


class ToolCallDelta(NamedTuple):
    """A piece of a streamed tool call. ``index`` orders the calls of one answer; ``id``
    and ``name`` are repeated on every piece of a call (stable across the stream), and
    ``arguments`` is the JSON text to append."""

    index: int
    id: str
    name: str
    arguments: str = ""


class ToolCallAssembler:
    """Gathers a stream's tool-call pieces into whole calls, in index order.

    Vendors send a call's id and name once (with its first piece) and then only argument
    text, keyed by index (OpenAI, Anthropic's block index, Bedrock's content block index);
    ``piece`` returns the delta to send on with id and name filled in, so every delta the
    caller sees names its call."""

    __slots__ = ("_calls", "_salt")

    def __init__(self, salt: str = "") -> None:
        # vendor index → [our index, id, name, arguments so far]; our index is the call's
        # ordinal (Anthropic and Bedrock number text blocks too).
        self._calls: dict[int, list[Any]] = {}
        self._salt = salt

    def piece(self, vendor_index: int, vendor_id: str | None, name: str | None,
              arguments: str) -> ToolCallDelta:
        call = self._calls.get(vendor_index)
        if call is None:
            ordinal = len(self._calls)
            call = self._calls[vendor_index] = [
                ordinal, wire_id(vendor_id or "", salt=f"{self._salt}:{ordinal}"), name or "", ""]
        elif name and not call[2]:
            call[2] = name
        call[3] += arguments
        return ToolCallDelta(call[0], call[1], call[2], arguments)

    def __bool__(self) -> bool:
        return bool(self._calls)

    def calls(self) -> tuple[ToolCall, ...]:
        return tuple(ToolCall(c[1], c[2], c[3]) for c in sorted(self._calls.values(),
                                                                  key=lambda c: c[0]))


__all__ = ["TOOL_CALL_ID", "FormatKind", "Image", "ResponseFormat", "Tool", "ToolCall",
           "ToolCallAssembler", "ToolCallDelta", "ToolChoice", "ToolChoiceMode", "wire_id"]
