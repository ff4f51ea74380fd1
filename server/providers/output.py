"""Is a vendor's answer in the form the request asked for?

A model may answer with JSON that does not parse or does not match the schema, call a tool
nobody declared, or send tool arguments that are not a JSON object. Vendors do this even
in their strict modes (truncation at the token limit, older models, proxies), and a
caller that asked for structure must never receive it silently. So the router runs every
answer through ``check_answer``: a violation is an ``invalid_output`` attempt (retried or
failed over like any other failed attempt), never a success.

What is checked:

* tool calls: the name is a declared tool and the arguments are the JSON text of an
  object (vendors' argument schemas are advisory unless strict, so arguments are not
  validated against the tool's schema: the caller's tool does that);
* JSON_OBJECT: the text is a JSON object;
* JSON_SCHEMA: the text is JSON; with ``strict`` it also matches the schema (validated
  with the ``jsonschema`` library, Draft 2020-12).

Validators are cached per schema object for the life of one request's attempts (the
router calls ``AnswerCheck.for_request`` once per call).

``jsonschema`` (with referencing, rpds and attrs: ~3 MB resident, ~45 ms to import) is
imported by the first strict JSON-schema request, not at start-up.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from server.providers.base import ErrorKind, ProviderError, ProviderRequest
from server.providers.content import FormatKind, ToolCall

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

_SHOWN_ERRORS = 200


def _invalid(message: str) -> ProviderError:
    return ProviderError(ErrorKind.INVALID_OUTPUT, message)


class AnswerCheck:
    """The checks one request's answers must pass (built once per call)."""

    __slots__ = ("_declared", "_format", "_validator")

    def __init__(self, request: ProviderRequest) -> None:
        self._declared = frozenset(tool.name for tool in request.tools)
        self._format = request.response_format
        self._validator: Draft202012Validator | None = None
        fmt = self._format
        if fmt is not None and fmt.kind is FormatKind.JSON_SCHEMA and fmt.strict:
            from jsonschema import Draft202012Validator

            self._validator = Draft202012Validator(dict(fmt.json_schema()))

    @property
    def needed(self) -> bool:
        """False when the request asks for plain text with no tools: nothing to check."""
        return bool(self._declared) or (self._format is not None and self._format.json)

    @property
    def wants_text(self) -> bool:
        """The answer's text must be checked, so a stream must keep it."""
        return self._format is not None and self._format.json

    def check(self, text: str, tool_calls: Sequence[ToolCall]) -> None:
        """Raise ``invalid_output`` when the answer breaks the request's form."""
        for call in tool_calls:
            self.check_call_name(call.name)
            try:
                arguments = json.loads(call.arguments) if call.arguments else {}
            except ValueError:
                raise _invalid(f"the model's arguments for tool {call.name!r} are not JSON") \
                    from None
            if not isinstance(arguments, Mapping):
                raise _invalid(f"the model's arguments for tool {call.name!r} are not a JSON "
                               "object")
        fmt = self._format
        if fmt is None or not fmt.json or tool_calls:
            return
        try:
            value: Any = json.loads(text)
        except ValueError:
            raise _invalid("the model's answer is not JSON") from None
        if fmt.kind is FormatKind.JSON_OBJECT and not isinstance(value, Mapping):
            raise _invalid("the model's answer is not a JSON object")
        if self._validator is not None:
            error = next(iter(self._validator.iter_errors(value)), None)
            if error is not None:
                where = "/".join(str(p) for p in error.absolute_path) or "(root)"
                raise _invalid(f"the model's answer does not match the schema at {where}: "
                               f"{error.message[:_SHOWN_ERRORS]}")

    def check_call_name(self, name: str) -> None:
        """A call to a tool the request did not declare (checkable from a stream's first
        piece, before anything reaches the caller)."""
        if name not in self._declared:
            raise _invalid(f"the model called a tool the request did not declare: {name!r}")


__all__ = ["AnswerCheck"]
