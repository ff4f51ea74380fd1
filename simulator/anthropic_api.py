"""The Anthropic wire protocol: Messages API, unary and SSE-streamed.

Only translation lives here: the request JSON → the neutral questions in `scenario`,
and the answers → Anthropic's message object, stream events and error bodies, close
enough that the official `anthropic` SDK works unchanged with
`AsyncAnthropic(base_url="http://host:port")`.

Tools arrive as `tools` + `tool_choice`, calls and results as `tool_use` blocks in
assistant turns and `tool_result` blocks in user turns, images as `image` blocks (base64
or URL source); they are checked as the API checks them and answered by the rules of
`simulator.tooling`: tool calls as `tool_use` blocks with stop reason "tool_use", streamed
as `input_json_delta` pieces. (Anthropic has no JSON mode: clients force a tool instead.)
"""

from __future__ import annotations

import asyncio
import binascii
import hashlib
import json
import re
from base64 import b64decode
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from aiohttp import web

from simulator.faults import Ending, reported_usage, stream_script, unary_script
from simulator.pacing import TokenPacer, hang, unary_generation_delay, wait_latency
from simulator.replies import (
    Completion,
    FinishReason,
    compose_completion,
    count_prompt_tokens,
    count_tokens,
)
from simulator.scenario import Behaviour
from simulator.scenario_book import ScriptedError
from simulator.state import SimulatorState
from simulator.stats import CallScope
from simulator.tooling import (
    IMAGE_TOKENS,
    PlannedCall,
    ToolSpec,
    answer_after_tools,
    argument_pieces,
    image_note,
    plan_tool_calls,
)
from simulator.wire import (
    connection_lost,
    dumps,
    end_stream_early,
    end_unary,
    new_id,
    read_json,
    seconds_header,
)

VENDOR = "anthropic"
INVALID_API_KEY = "sim-invalid-key"
"""The one key the simulator rejects (401 authentication_error)."""

# status → (error.type, default message), as Anthropic reports them.
_STATUS_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use this resource."),
    404: ("not_found_error", "Not found."),
    408: ("timeout_error", "Request timed out."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    503: ("api_error", "Service unavailable"),
    504: ("timeout_error", "Request timed out."),
    529: ("overloaded_error", "Overloaded"),
}

_STOP_REASONS = {
    FinishReason.END: "end_turn",
    FinishReason.LENGTH: "max_tokens",
    FinishReason.STOP_SEQUENCE: "stop_sequence",
    FinishReason.CONTENT_FILTER: "refusal",
}


def _error_type(status: int, code: str | None) -> tuple[str, str]:
    default = ("api_error", f"HTTP {status}") if status >= 500 else ("invalid_request_error", "")
    err_type, message = _STATUS_ERRORS.get(status, default)
    return code or err_type, message or f"HTTP {status}"


def error_body(status: int, message: str | None = None, code: str | None = None) -> bytes:
    """Anthropic's `{"type": "error", "error": {type, message}}`; `code` overrides the type."""
    err_type, default_message = _error_type(status, code)
    return dumps(
        {
            "type": "error",
            "error": {"type": err_type, "message": message or default_message},
            "request_id": new_id("req_"),
        }
    )


def error_response(
    status: int,
    message: str | None = None,
    *,
    code: str | None = None,
    retry_after_s: float | None = None,
) -> web.Response:
    headers = {"request-id": new_id("req_")}
    if retry_after_s is not None:
        headers["retry-after"] = seconds_header(retry_after_s)
    return web.Response(
        status=status,
        body=error_body(status, message, code),
        content_type="application/json",
        headers=headers,
    )


class InvalidRequest(Exception):
    """A 400 invalid_request_error with Anthropic-like wording."""


# --------------------------------------------------------------------------- request


TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
TOOL_USE_ID = re.compile(r"[a-zA-Z0-9_-]+")
IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_TOOL_CHOICE_TYPES = ("auto", "any", "tool", "none")
_CHOICE_MODES = {"auto": "auto", "any": "required", "none": "none"}
_NOTE_WORDS = re.compile(r"\s*\S+")


@dataclass(frozen=True, slots=True)
class MessagesRequest:
    """The parts of a Messages request that shape the simulated reply."""

    model: str
    prompt_tokens: int
    max_tokens: int
    stop: tuple[str, ...]
    stream: bool
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: str = "auto"
    """`plan_tool_calls`' choice: "auto", "none", "required" or a tool's name."""
    parallel: bool = True
    """Anthropic lets the model call tools in parallel unless `disable_parallel_tool_use`."""
    tool_results: tuple[str, ...] | None = None
    """The texts of the tool results the conversation ends with (None: it does not)."""
    image_types: tuple[str, ...] = ()
    seed: str = ""

    @classmethod
    def parse(cls, body: Any) -> MessagesRequest:
        if not isinstance(body, Mapping):
            raise InvalidRequest("The request body must be a JSON object.")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise InvalidRequest("model: Field required")
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            raise InvalidRequest("max_tokens: Field required")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise InvalidRequest("max_tokens: Input should be an integer greater than 0")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidRequest("messages: at least one message is required")
        talk = Conversation.read(messages)
        if messages[0].get("role") != "user":
            raise InvalidRequest('messages: first message must use the "user" role')
        system = _system_text(body.get("system"))
        _check_range(body, "temperature", 0.0, 1.0)
        _check_range(body, "top_p", 0.0, 1.0)
        top_k = body.get("top_k")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)):
            raise InvalidRequest("top_k: Input should be a valid integer")
        stop = body.get("stop_sequences") or []
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise InvalidRequest("stop_sequences: Input should be a valid list of strings")
        stream = body.get("stream") or False
        if not isinstance(stream, bool):
            raise InvalidRequest("stream: Input should be a valid boolean")
        tools, declared_tokens = _tools(body.get("tools"))
        choice, parallel = _tool_choice(body.get("tool_choice"), tools, "tools" in body)
        if talk.uses_tools and "tools" not in body:
            raise InvalidRequest("Requests which include `tool_use` or `tool_result` blocks "
                                 "must define tools.")
        all_texts = talk.texts + ([system] if system else [])
        return cls(
            model=model,
            prompt_tokens=count_prompt_tokens(all_texts, len(messages))
            + IMAGE_TOKENS * len(talk.image_types) + declared_tokens,
            max_tokens=max_tokens,
            stop=tuple(stop),
            stream=stream,
            tools=tools,
            tool_choice=choice,
            parallel=parallel,
            tool_results=talk.tool_results,
            image_types=tuple(talk.image_types),
            seed=hashlib.sha256(dumps([model, messages])).hexdigest()[:16],
        )


def _tools(tools: Any) -> tuple[tuple[ToolSpec, ...], int]:
    """The declared client tools, and the prompt tokens their declarations count."""
    if tools is None:
        return (), 0
    if not isinstance(tools, list):
        raise InvalidRequest("tools: Input should be a valid list")
    specs: list[ToolSpec] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, Mapping):
            raise InvalidRequest(f"tools.{i}: Input should be a valid dictionary")
        if tool.get("type", "custom") != "custom":
            continue  # a server tool (web search …): declared, never called by this model
        where = f"tools.{i}.custom"
        name = tool.get("name")
        if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
            raise InvalidRequest(f"{where}.name: String should match pattern "
                                 "'^[a-zA-Z0-9_-]{1,64}$'")
        if "description" in tool and not isinstance(tool["description"], str):
            raise InvalidRequest(f"{where}.description: Input should be a valid string")
        schema = tool.get("input_schema")
        if schema is None:
            raise InvalidRequest(f"{where}.input_schema: Field required")
        if not isinstance(schema, Mapping):
            raise InvalidRequest(f"{where}.input_schema: Input should be a valid dictionary")
        if schema.get("type") != "object":
            raise InvalidRequest(f"{where}.input_schema.type: Input should be 'object'")
        if any(spec.name == name for spec in specs):
            raise InvalidRequest("tools: Tool names must be unique.")
        specs.append(ToolSpec(name, schema))
    return tuple(specs), count_tokens(json.dumps(tools)) if tools else 0


def _tool_choice(choice: Any, tools: Sequence[ToolSpec], declared: bool) -> tuple[str, bool]:
    """`tool_choice` as (plan_tool_calls' choice, whether parallel calls are allowed)."""
    if choice is None:
        return "auto", True
    if not isinstance(choice, Mapping):
        raise InvalidRequest("tool_choice: Input should be a valid dictionary")
    kind = choice.get("type")
    if kind not in _TOOL_CHOICE_TYPES:
        raise InvalidRequest(f"tool_choice: Input tag '{kind}' found using 'type' does not match "
                             "any of the expected tags: 'auto', 'any', 'tool', 'none'")
    if not declared:
        raise InvalidRequest("tool_choice: tool_choice may only be specified while providing "
                             "tools.")
    disable = choice.get("disable_parallel_tool_use", False)
    if kind == "none" and "disable_parallel_tool_use" in choice:
        raise InvalidRequest("tool_choice.none.disable_parallel_tool_use: Extra inputs are not "
                             "permitted")
    if not isinstance(disable, bool):
        raise InvalidRequest(f"tool_choice.{kind}.disable_parallel_tool_use: Input should be a "
                             "valid boolean")
    if kind != "tool":
        return _CHOICE_MODES[kind], not disable
    name = choice.get("name")
    if not isinstance(name, str):
        raise InvalidRequest("tool_choice.tool.name: Field required")
    if not any(tool.name == name for tool in tools):
        raise InvalidRequest(f"tool_choice.tool.name: Tool '{name}' not found in `tools`.")
    return name, not disable


@dataclass(slots=True)
class Conversation:
    """What the messages say: their texts (for the token count), the images they carry,
    and the tool results the conversation ends with — checked the way the API checks
    them: every `tool_use` answered by a `tool_result` in the next (user) turn, every
    `tool_result` answering a `tool_use` of the turn before, results before other blocks."""

    texts: list[str] = field(default_factory=list)
    image_types: list[str] = field(default_factory=list)
    tool_results: tuple[str, ...] | None = None
    uses_tools: bool = False

    @classmethod
    def read(cls, messages: Sequence[Any]) -> Conversation:
        talk = cls()
        calls: list[str] = []  # the tool_use ids of the turn before
        for i, message in enumerate(messages):
            where = f"messages.{i}"
            if not isinstance(message, Mapping) or message.get("role") not in ("user",
                                                                               "assistant"):
                raise InvalidRequest(f"{where}.role: Input should be 'user' or 'assistant'")
            blocks = _blocks(message.get("content"), where)
            answered = talk._read_turn(message["role"], blocks, where)
            missing = [c for c in calls if c not in answered]
            if missing:
                raise InvalidRequest(
                    f"{where}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(missing)}. Each `tool_use` block must "
                    "have a corresponding `tool_result` block in the next message.")
            unexpected = [a for a in answered if a not in calls]
            if unexpected:
                raise InvalidRequest(
                    f"{where}: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{', '.join(unexpected)}. Each `tool_result` block must have a "
                    "corresponding `tool_use` block in the previous message.")
            calls = [b["id"] for b in blocks if b.get("type") == "tool_use"]
            last_results = [_result_text(b) for b in blocks if b.get("type") == "tool_result"]
            talk.tool_results = tuple(last_results) if last_results else None
        if calls:
            raise InvalidRequest(
                f"messages.{len(messages) - 1}: `tool_use` ids were found without "
                f"`tool_result` blocks immediately after: {', '.join(calls)}. Each `tool_use` "
                "block must have a corresponding `tool_result` block in the next message.")
        return talk

    def _read_turn(self, role: str, blocks: list[Mapping[str, Any]], where: str) -> list[str]:
        """Check one turn's blocks, note its text and images; the tool_use ids its
        tool results answer."""
        answered: list[str] = []
        texts: list[str] = []
        others = False
        for j, block in enumerate(blocks):
            at = f"{where}.content.{j}"
            kind = block.get("type")
            if kind == "tool_result":
                if role != "user":
                    raise InvalidRequest(f"{at}: tool_result blocks are only allowed in user "
                                         "messages")
                if others:
                    raise InvalidRequest(f"{where}: tool_result blocks must come first in the "
                                         "content, before any other block")
                answered.append(self._read_result(block, at))
                texts.append(_result_text(block))
                continue
            others = True
            if kind == "text":
                if not isinstance(block.get("text"), str):
                    raise InvalidRequest(f"{at}.text: Input should be a valid string")
                texts.append(block["text"])
            elif kind == "image":
                self.image_types.append(_image_type(block, at))
            elif kind == "tool_use":
                texts.append(self._read_call(role, block, at))
        self.texts.append(" ".join(texts))
        return answered

    def _read_call(self, role: str, block: Mapping[str, Any], at: str) -> str:
        if role != "assistant":
            raise InvalidRequest(f"{at}: tool_use blocks are only allowed in assistant messages")
        if not isinstance(block.get("id"), str) or not TOOL_USE_ID.fullmatch(block["id"]):
            raise InvalidRequest(f"{at}.tool_use.id: String should match pattern "
                                 "'^[a-zA-Z0-9_-]+$'")
        if not isinstance(block.get("name"), str) or not block["name"]:
            raise InvalidRequest(f"{at}.tool_use.name: Field required")
        if not isinstance(block.get("input"), Mapping):
            raise InvalidRequest(f"{at}.tool_use.input: Input should be a valid dictionary")
        self.uses_tools = True
        return json.dumps(block["input"])

    def _read_result(self, block: Mapping[str, Any], at: str) -> str:
        tool_use_id = block.get("tool_use_id")
        if not isinstance(tool_use_id, str) or not TOOL_USE_ID.fullmatch(tool_use_id):
            raise InvalidRequest(f"{at}.tool_result.tool_use_id: String should match pattern "
                                 "'^[a-zA-Z0-9_-]+$'")
        content = block.get("content", "")
        if isinstance(content, list):
            for k, part in enumerate(_blocks(content, f"{at}.tool_result")):
                if part.get("type") == "image":
                    self.image_types.append(_image_type(part, f"{at}.tool_result.content.{k}"))
                elif part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise InvalidRequest(f"{at}.tool_result.content.{k}: Input should be a "
                                         "text or image block")
        elif not isinstance(content, str):
            raise InvalidRequest(f"{at}.tool_result.content: Input should be a valid string or "
                                 "list of blocks")
        if not isinstance(block.get("is_error", False), bool):
            raise InvalidRequest(f"{at}.tool_result.is_error: Input should be a valid boolean")
        self.uses_tools = True
        return tool_use_id


def _blocks(content: Any, where: str) -> list[Mapping[str, Any]]:
    """A message's content as blocks (a string is one text block)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not all(isinstance(b, Mapping) for b in content):
        raise InvalidRequest(f"{where}.content: Input should be a valid string or list of blocks")
    return content


def _image_type(block: Mapping[str, Any], at: str) -> str:
    """An image block's media type, once its source is one the API takes."""
    source = block.get("source")
    if not isinstance(source, Mapping) or source.get("type") not in ("base64", "url"):
        raise InvalidRequest(f"{at}.image.source: Input tag '{_tag(source)}' found using 'type' "
                             "does not match any of the expected tags: 'base64', 'url'")
    if source["type"] == "url":
        url = source.get("url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise InvalidRequest(f"{at}.image.source.url.url: Input should be a valid URL")
        return "url"
    media_type = source.get("media_type")
    if media_type not in IMAGE_MEDIA_TYPES:
        raise InvalidRequest(f"{at}.image.source.base64.media_type: Input should be "
                             "'image/jpeg', 'image/png', 'image/gif' or 'image/webp'")
    data = source.get("data")
    try:
        if not isinstance(data, str) or not data:
            raise ValueError
        b64decode(data, validate=True)
    except (ValueError, binascii.Error):
        raise InvalidRequest(f"{at}.image.source.base64.data: The image data is not valid "
                             "base64") from None
    return media_type


def _tag(value: Any) -> str:
    return str(value.get("type")) if isinstance(value, Mapping) else ""


def _result_text(block: Mapping[str, Any]) -> str:
    content = block.get("content", "")
    if isinstance(content, str):
        return content
    return " ".join(b["text"] for b in content if b.get("type") == "text")


def _block_text(block: Any) -> str:
    if isinstance(block, Mapping) and block.get("type") == "text":
        text = block.get("text")
        return text if isinstance(text, str) else ""
    return ""


def _system_text(system: Any) -> str:
    if system is None or isinstance(system, str):
        return system or ""
    if isinstance(system, list):
        return " ".join(_block_text(b) for b in system)
    raise InvalidRequest("system: Input should be a valid string or list of text blocks")


def _check_range(body: Mapping[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidRequest(f"{name}: Input should be between {low:g} and {high:g}")


# --------------------------------------------------------------------------- response shapes


@dataclass(frozen=True, slots=True)
class Reply:
    """What the simulated model answers: text (`completion`) or tool calls (`calls`)."""

    completion: Completion
    calls: tuple[PlannedCall, ...] = ()

    @property
    def output_tokens(self) -> int:
        if self.calls:
            return sum(count_tokens(call.arguments) for call in self.calls)
        return len(self.completion.tokens)

    @property
    def stop_reason(self) -> str:
        return "tool_use" if self.calls else _STOP_REASONS[self.completion.finish]

    @property
    def stop_sequence(self) -> str | None:
        return None if self.calls else self.completion.stop_sequence

    def content(self) -> list[dict[str, Any]]:
        """The message's content blocks. A call's input is an object — or, for scripted
        unreadable arguments, the text itself (what a broken proxy might pass on)."""
        if self.calls:
            return [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.input}
                    for c in self.calls]
        if self.completion.prompt_blocked:
            return []
        return [{"type": "text", "text": self.completion.text}]

    def blocks(self) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """The streamed content blocks: each block's `content_block_start` shell and its
        deltas (text tokens, or a call's arguments in `input_json_delta` pieces)."""
        if self.calls:
            return [({"type": "tool_use", "id": c.id, "name": c.name, "input": {}},
                     [{"type": "input_json_delta", "partial_json": piece}
                      for piece in argument_pieces(c.arguments)])
                    for c in self.calls]
        return [({"type": "text", "text": ""},
                 [{"type": "text_delta", "text": token} for token in self.completion.tokens])]


def compose_reply(req: MessagesRequest, behaviour: Behaviour) -> Reply:
    """The model's answer (see `simulator.tooling`): tool calls when tools are declared
    and the choice allows them (a scripted refusal refuses instead); after tool results,
    text quoting them; otherwise the usual reply. Images add a note to any text."""
    if not behaviour.content_filter:
        calls = plan_tool_calls(req.tools, req.tool_choice, req.tool_results is not None,
                                parallel=req.parallel, fault=behaviour.output_fault,
                                seed=req.seed, prefix="toolu_")
        if calls:
            return Reply(Completion((), FinishReason.END), calls)
        if req.tool_results is not None:
            behaviour = replace(behaviour, reply=answer_after_tools(req.tool_results))
    completion = compose_completion(req.model, behaviour, req.max_tokens, req.stop)
    if req.image_types and not completion.prompt_blocked:
        note = tuple(_NOTE_WORDS.findall(image_note(req.image_types)))
        completion = replace(completion, tokens=completion.tokens + note)
    return Reply(completion)


def _usage(req: MessagesRequest, behaviour: Behaviour, output_tokens: int) -> dict[str, Any]:
    """Anthropic counts cache reads/writes apart from (not inside) `input_tokens`."""
    prompt_tokens, output_tokens = reported_usage(behaviour, req.prompt_tokens, output_tokens)
    cached = min(behaviour.cached_prompt_tokens, prompt_tokens)
    written = min(behaviour.cache_write_tokens, prompt_tokens - cached)
    return {
        "input_tokens": prompt_tokens - cached - written,
        "output_tokens": output_tokens,
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": written,
        "service_tier": "standard",
    }


def message_object(
    msg_id: str,
    req: MessagesRequest,
    behaviour: Behaviour,
    reply: Reply | None,
    output_tokens: int,
) -> dict[str, Any]:
    """A `message` object; with reply None, the empty shell `message_start` carries."""
    body: dict[str, Any] = {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": req.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": _usage(req, behaviour, output_tokens),
    }
    if reply is not None:
        body["content"] = reply.content()
        body["stop_reason"] = reply.stop_reason
        body["stop_sequence"] = reply.stop_sequence
    return body


def _event(name: str, data: Mapping[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + dumps(data) + b"\n\n"


def _error_event(status: int) -> bytes:
    """The in-stream `error` event: how Anthropic fails a stream after its HTTP 200."""
    err_type, message = _error_type(status, None)
    return _event("error", {"type": "error", "error": {"type": err_type, "message": message}})


_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}


# --------------------------------------------------------------------------- routes


class AnthropicProtocol:
    """Anthropic routes bound to the simulator's shared state (behaviours and stats)."""

    def __init__(self, state: SimulatorState) -> None:
        self._state = state

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/messages", self.messages)]

    async def messages(self, request: web.Request) -> web.StreamResponse:
        lost = partial(connection_lost, request)
        with CallScope(self._state.stats, lost, VENDOR) as scope:
            try:
                denied = _check_headers(request)
                if denied is not None:
                    return scope.responded(denied)
                try:
                    req = MessagesRequest.parse(await read_json(request))
                except ValueError:
                    return scope.responded(error_response(400, "Invalid JSON body."))
                except InvalidRequest as exc:
                    return scope.responded(error_response(400, str(exc)))
                scope.model(req.model)
                return await self._serve(request, req, scope)
            except ConnectionError:
                raise asyncio.CancelledError from None  # client gone mid-write: end quietly

    async def _serve(
        self, request: web.Request, req: MessagesRequest, scope: CallScope
    ) -> web.StreamResponse:
        plan = self._state.scenarios.plan(req.model)
        behaviour = plan.behaviour
        await wait_latency(behaviour)
        if plan.error is not None:
            return scope.responded(_scripted_error(plan.error, req.model))
        if behaviour.timeout:
            await hang()
        reply = compose_reply(req, behaviour)
        if req.stream:
            return await self._stream(request, req, reply, behaviour, scope)
        tokens = reply.output_tokens
        script = unary_script(behaviour, tokens)
        await unary_generation_delay(behaviour, script.tokens)
        return end_unary(
            request,
            scope,
            script,
            message_object(new_id("msg_"), req, behaviour, reply, tokens),
            late_error=partial(_scripted_error, model=req.model),
            headers={"request-id": new_id("req_")},
        )

    async def _stream(
        self,
        request: web.Request,
        req: MessagesRequest,
        reply: Reply,
        behaviour: Behaviour,
        scope: CallScope,
    ) -> web.StreamResponse:
        """Anthropic's SSE: `message_start`, then per content block `content_block_start`
        (a `ping` after the first), its deltas and `content_block_stop`; then
        `message_delta` (stop reason, output usage) and `message_stop`. Faults count the
        deltas sent across blocks (text tokens or argument pieces)."""
        resp = web.StreamResponse(headers={**_SSE_HEADERS, "request-id": new_id("req_")})
        await resp.prepare(request)
        scope.responded(resp)
        scope.stream_started()
        shell = message_object(new_id("msg_"), req, behaviour, None, 1)
        await resp.write(_event("message_start", {"type": "message_start", "message": shell}))
        pacer = TokenPacer(behaviour.tokens_per_second)
        blocks = reply.blocks()
        script = stream_script(behaviour, sum(len(deltas) for _, deltas in blocks))
        complete = script.ending is Ending.COMPLETE
        sent = 0
        for index, (block, deltas) in enumerate(blocks):
            if index and not complete and sent >= script.tokens:
                break
            await resp.write(_event("content_block_start", {
                "type": "content_block_start", "index": index, "content_block": block}))
            if index == 0:
                await resp.write(_event("ping", {"type": "ping"}))
            for delta in deltas[: max(0, script.tokens - sent)]:
                await pacer.before_token(sent)
                await resp.write(_event("content_block_delta", {
                    "type": "content_block_delta", "index": index, "delta": delta}))
                sent += 1
            if not complete and sent >= script.tokens:
                break
            await resp.write(_event("content_block_stop",
                                    {"type": "content_block_stop", "index": index}))
        if not complete:
            return await end_stream_early(request, resp, scope, script, _error_event)
        usage = _usage(req, behaviour, reply.output_tokens)
        await resp.write(
            _event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {
                        "stop_reason": reply.stop_reason,
                        "stop_sequence": reply.stop_sequence,
                    },
                    "usage": {"output_tokens": usage["output_tokens"]},
                },
            )
        )
        await resp.write(_event("message_stop", {"type": "message_stop"}))
        await resp.write_eof()
        scope.stream_completed()
        return resp


def _check_headers(request: web.BaseRequest) -> web.Response | None:
    """x-api-key (or a bearer token) and anthropic-version, as the real API insists."""
    key = request.headers.get("x-api-key", "").strip()
    if not key:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        key = token.strip() if scheme.lower() == "bearer" else ""
    if not key:
        return error_response(401, "x-api-key header is required")
    if key == INVALID_API_KEY:
        return error_response(401, "invalid x-api-key")
    if not request.headers.get("anthropic-version"):
        return error_response(400, "anthropic-version: header is required")
    return None


def _scripted_error(error: ScriptedError, model: str) -> web.Response:
    message = error.message
    if message is None and error.status == 404:
        message = f"model: {model}"
    return error_response(error.status, message, code=error.code, retry_after_s=error.retry_after_s)
