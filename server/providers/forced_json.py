"""JSON mode where a vendor has none: a forced tool whose input is the answer.

Anthropic's Messages API and Bedrock Converse constrain output only through tool input
schemas, so a JSON response format is sent as one more tool (named after the format,
described as "give the answer by calling this tool", its input schema the format's
schema) that the model is made to call. Its input comes back as the answer's text, and
no tool call is reported for it. Both adapters use this module, so the emulation behaves
the same on both vendors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from server.providers.base import NO_UPDATE, ProviderRequest, StreamUpdate
from server.providers.content import ToolCallDelta

# The tool-name rule of both vendors; the JSON tool's name is made to fit it.
TOOL_NAME_LENGTH = 64
_NOT_TOOL_NAME = re.compile(r"[^A-Za-z0-9_-]")
JSON_TOOL_DESCRIPTION = ("Give the answer by calling this tool: its input is the response, "
                         "in the requested JSON form.")


def json_tool_name(request: ProviderRequest) -> str:
    """The name of the tool that carries a JSON answer ("" without a JSON response
    format): the format's name fitted to the tool-name rule, and kept apart from the
    caller's tools so a call to it is never mistaken for one of theirs."""
    fmt = request.response_format
    if fmt is None or not fmt.json:
        return ""
    base = _NOT_TOOL_NAME.sub("_", fmt.name)
    name = base[:TOOL_NAME_LENGTH] or "response"
    taken = {tool.name for tool in request.tools}
    suffix = 0
    while name in taken:
        suffix += 1
        tail = f"_json{suffix}"
        name = base[:TOOL_NAME_LENGTH - len(tail)] + tail
    return name


@dataclass(slots=True)
class StreamTools:
    """What a stream's event translation must remember, since a delta names only its
    block's index: which blocks are the JSON tool's (their input is streamed as text),
    and whether a real tool was called (else a "tool use" stop finishes as STOP)."""

    json_tool: str = ""
    json_blocks: set[int] = field(default_factory=set)
    called: bool = False

    def start(self, index: int, vendor_id: str, name: str, first: str = "") -> StreamUpdate:
        """A tool block opening: a call's first piece (id, name and any input sent up
        front), or, for the JSON tool, the start of the answer's text."""
        if self.json_tool and name == self.json_tool:
            self.json_blocks.add(index)
            return StreamUpdate(first) if first else NO_UPDATE
        self.called = True
        return StreamUpdate(tools=(ToolCallDelta(index, vendor_id, name, first),))

    def piece(self, index: int, text: str) -> StreamUpdate:
        """A piece of a tool block's input JSON: the JSON tool's is the answer's text."""
        if not text:
            return NO_UPDATE
        if index in self.json_blocks:
            return StreamUpdate(text)
        return StreamUpdate(tools=(ToolCallDelta(index, "", "", text),))


__all__ = ["JSON_TOOL_DESCRIPTION", "StreamTools", "json_tool_name"]
