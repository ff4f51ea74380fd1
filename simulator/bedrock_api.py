"""The Bedrock Runtime wire protocol: Converse, ConverseStream and (Titan) InvokeModel.

Only translation lives here: the REST-JSON request → the neutral questions in
`scenario`, and the answers → Bedrock's response, event-stream events and AWS error
shapes, close enough that an unchanged boto3 `bedrock-runtime` client works.

Every region is served by this one process. A call's region is, in order:
  1. the path prefix `/bedrock/{region}` — use `endpoint_url=http://host:port/bedrock/R`
     (botocore keeps an endpoint URL's path and appends `/model/...` to it);
  2. the region of the SigV4 credential scope in `Authorization`
     (`Credential=AKID/DATE/REGION/bedrock/aws4_request`) — so a plain
     `endpoint_url=http://host:port` with `region_name=R` works too;
  3. `us-east-1`.
Signatures are accepted, never verified; the access key `sim-invalid-key` is rejected.

Tools: `toolConfig` (`toolSpec` declarations, `toolChoice` auto / any / tool), `toolUse` /
`toolResult` and `image` content blocks are read and checked as Converse checks them (a 400
ValidationException otherwise); what the model does with them is `simulator.tooling`'s
decision. A tool call is a `toolUse` block (unary) or `contentBlockStart` + its input in
`contentBlockDelta.toolUse.input` pieces (streamed), with stop reason `tool_use`.
"""

from __future__ import annotations

import asyncio
import binascii
import hashlib
import json
import re
import time
from base64 import b64decode
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from simulator.eventstream import event_message, exception_message
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
from simulator.vectors import embedding_vector
from simulator.wire import (
    abort_connection,
    connection_lost,
    dumps,
    end_stream_early,
    end_unary,
    json_response,
    new_id,
    read_json,
)

VENDOR = "bedrock"
DEFAULT_REGION = "us-east-1"
INVALID_ACCESS_KEY = "sim-invalid-key"
"""The access key id (or bearer token) rejected with 403 UnrecognizedClientException."""

TITAN_DEFAULT_DIMENSIONS = 1024
_TITAN_DIMENSIONS = (256, 512, 1024)
_CREDENTIAL_SCOPE = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/,\s]+)/")
_EVENTSTREAM = "application/vnd.amazon.eventstream"
_ERROR_TYPE_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.bedrock/"

# status → (error type for x-amzn-ErrorType, default message).
_STATUS_ERRORS: dict[int, tuple[str, str]] = {
    400: ("ValidationException", "Invalid request."),
    403: (
        "AccessDeniedException",
        "You don't have access to the model with the specified model ID.",
    ),
    404: ("ResourceNotFoundException", "The requested resource could not be found."),
    408: ("ModelTimeoutException", "The model took too long to respond."),
    424: ("ModelErrorException", "The model returned an error."),
    429: ("ThrottlingException", "Too many requests, please wait before trying again."),
    500: ("InternalServerException", "The server encountered an internal error."),
    503: ("ServiceUnavailableException", "Bedrock is unable to process your request."),
}

# status → ConverseStream union member for an in-stream exception.
_STREAM_EXCEPTIONS = {
    400: "validationException",
    429: "throttlingException",
    500: "internalServerException",
    503: "serviceUnavailableException",
}

_STOP_REASONS = {
    FinishReason.END: "end_turn",
    FinishReason.LENGTH: "max_tokens",
    FinishReason.STOP_SEQUENCE: "stop_sequence",
    FinishReason.CONTENT_FILTER: "content_filtered",
}


def error_response(
    status: int, message: str | None = None, code: str | None = None
) -> web.Response:
    """An AWS REST-JSON error: the type in `x-amzn-ErrorType`, `{"message"}` in the body."""
    default_type = "InternalServerException" if status >= 500 else "ValidationException"
    err_type, default_message = _STATUS_ERRORS.get(status, (default_type, f"HTTP {status}"))
    headers = {
        "x-amzn-ErrorType": f"{code or err_type}:{_ERROR_TYPE_NAMESPACE}",
        "x-amzn-RequestId": new_id(),
    }
    return json_response({"message": message or default_message}, status=status, headers=headers)


class InvalidRequest(Exception):
    """A 400 ValidationException."""


# --------------------------------------------------------------------------- request


TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
TOOL_USE_ID = re.compile(r"[a-zA-Z0-9_.:-]{1,64}")
IMAGE_FORMATS = ("gif", "jpeg", "png", "webp")
_TOOL_CHOICES = ("auto", "any", "tool")
_NOTE_WORDS = re.compile(r"\s*\S+")
TOOL_CONFIG_REQUIRED = (
    "The toolConfig field must be defined when using toolUse and toolResult content blocks."
)


@dataclass(frozen=True, slots=True)
class ConverseRequest:
    """The parts of a Converse request that shape the simulated reply."""

    prompt_tokens: int
    max_tokens: int | None
    stop: tuple[str, ...]
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: str = "auto"
    """`plan_tool_calls`' choice: "auto", "required" (Converse's `any`) or a tool's name."""
    tool_results: tuple[str, ...] | None = None
    """The texts of the tool results the conversation ends with (None: it does not)."""
    image_types: tuple[str, ...] = ()
    """The MIME type of every image sent (`image/png` …), for the reply's image note."""
    seed: str = ""

    @classmethod
    def parse(cls, body: Any, model: str = "") -> ConverseRequest:
        if not isinstance(body, Mapping):
            raise InvalidRequest(
                "Malformed input request, please reformat your input and try again."
            )
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidRequest(
                "A conversation must start with a user message. "
                "Try again with a conversation that starts with a user message."
            )
        talk = Conversation.read(messages)
        texts = list(talk.texts)
        system = body.get("system") or []
        if not isinstance(system, list):
            raise InvalidRequest("system: expected a list of system content blocks")
        texts += [
            b["text"] for b in system if isinstance(b, Mapping) and isinstance(b.get("text"), str)
        ]
        config = body.get("inferenceConfig") or {}
        if not isinstance(config, Mapping):
            raise InvalidRequest("inferenceConfig: expected an object")
        max_tokens = config.get("maxTokens")
        if max_tokens is not None and (
            isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
        ):
            raise InvalidRequest(
                "1 validation error detected: Value at 'inferenceConfig.maxTokens' failed to "
                "satisfy constraint: Member must have value greater than or equal to 1"
            )
        for name in ("temperature", "topP"):
            value = config.get(name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1
            ):
                raise InvalidRequest(
                    f"1 validation error detected: Value at 'inferenceConfig.{name}' failed to "
                    "satisfy constraint: Member must be between 0 and 1"
                )
        stop = config.get("stopSequences") or []
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise InvalidRequest("inferenceConfig.stopSequences: expected a list of strings")
        tools, choice, declared_tokens = _tool_config(body.get("toolConfig"))
        if talk.uses_tools and body.get("toolConfig") is None:
            raise InvalidRequest(TOOL_CONFIG_REQUIRED)
        return cls(
            count_prompt_tokens(texts, len(messages))
            + IMAGE_TOKENS * len(talk.image_types)
            + declared_tokens,
            max_tokens,
            tuple(stop),
            tools=tools,
            tool_choice=choice,
            tool_results=talk.tool_results,
            image_types=tuple(talk.image_types),
            seed=hashlib.sha256(dumps([model, messages])).hexdigest()[:16],
        )


def _tool_config(config: Any) -> tuple[tuple[ToolSpec, ...], str, int]:
    """`toolConfig` as (declared tools, `plan_tool_calls`' choice, the prompt tokens the
    declarations count). Only `toolSpec` tools can be called; `cachePoint` and
    `systemTool` entries are accepted and never called."""
    if config is None:
        return (), "auto", 0
    if not isinstance(config, Mapping):
        raise InvalidRequest("toolConfig: expected an object")
    tools = config.get("tools")
    if not isinstance(tools, list) or not tools:
        raise InvalidRequest(
            "1 validation error detected: Value at 'toolConfig.tools' failed to satisfy "
            "constraint: Member must have length greater than or equal to 1"
        )
    specs: list[ToolSpec] = []
    for i, tool in enumerate(tools):
        where = f"toolConfig.tools.{i + 1}.member"
        member = _union_member(tool, where, ("toolSpec", "systemTool", "cachePoint"))
        if member != "toolSpec":
            continue
        spec = _tool_spec(tool["toolSpec"], f"{where}.toolSpec")
        if any(s.name == spec.name for s in specs):
            raise InvalidRequest(
                f"The tool name {spec.name} is duplicated in toolConfig.tools. "
                "Tool names must be unique."
            )
        specs.append(spec)
    choice = _tool_choice(config.get("toolChoice"), specs)
    return tuple(specs), choice, count_tokens(json.dumps(tools))


def _tool_spec(spec: Any, where: str) -> ToolSpec:
    if not isinstance(spec, Mapping):
        raise InvalidRequest(f"{where}: expected an object")
    name = spec.get("name")
    if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
        raise InvalidRequest(
            f"1 validation error detected: Value at '{where}.name' failed to satisfy "
            "constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_-]+"
        )
    description = spec.get("description")
    if description is not None and (not isinstance(description, str) or not description):
        raise InvalidRequest(
            f"1 validation error detected: Value at '{where}.description' failed to satisfy "
            "constraint: Member must have length greater than or equal to 1"
        )
    schema_union = spec.get("inputSchema")
    _union_member(schema_union, f"{where}.inputSchema", ("json",))
    schema = schema_union["json"]
    if not isinstance(schema, Mapping) or schema.get("type") != "object":
        raise InvalidRequest(
            f"The value at {where}.inputSchema.json.type must be one of the following: object."
        )
    return ToolSpec(name, schema)


def _tool_choice(choice: Any, tools: Sequence[ToolSpec]) -> str:
    """`toolChoice` (a union of `auto`, `any`, `tool`; no "none") as plan_tool_calls'."""
    if choice is None:
        return "auto"
    kind = _union_member(choice, "toolConfig.toolChoice", _TOOL_CHOICES)
    if kind == "auto":
        return "auto"
    if kind == "any":
        return "required"
    named = choice["tool"]
    name = named.get("name") if isinstance(named, Mapping) else None
    if not isinstance(name, str) or not name:
        raise InvalidRequest(
            "1 validation error detected: Value null at 'toolConfig.toolChoice.tool.name' "
            "failed to satisfy constraint: Member must not be null"
        )
    if not any(tool.name == name for tool in tools):
        raise InvalidRequest(
            f"The tool {name} named in toolConfig.toolChoice is not defined in toolConfig.tools."
        )
    return name


def _union_member(value: Any, where: str, members: Sequence[str]) -> str:
    """The one member a union value sets (AWS unions set exactly one)."""
    if not isinstance(value, Mapping):
        raise InvalidRequest(f"{where}: expected an object")
    present = [key for key in value if value[key] is not None]
    if len(present) != 1:
        raise InvalidRequest(
            f"Invalid number of parameters set for tagged union structure {where}. "
            f"Can only set one of the following keys: {', '.join(members)}."
        )
    if present[0] not in members:
        raise InvalidRequest(f"{where}: unknown member {present[0]}")
    return present[0]


@dataclass(slots=True)
class Conversation:
    """What the messages say: one text per message (for the token count), the images
    they carry, and the tool results the conversation ends with — checked the way
    Converse checks them: `toolUse` only in assistant turns, `toolResult` only in user
    turns, each result answering a `toolUse` of the turn before, and every `toolUse`
    answered in the (user) turn that follows it."""

    texts: list[str] = field(default_factory=list)
    image_types: list[str] = field(default_factory=list)
    tool_results: tuple[str, ...] | None = None
    uses_tools: bool = False

    @classmethod
    def read(cls, messages: Sequence[Any]) -> Conversation:
        talk = cls()
        calls: list[str] = []  # the toolUse ids of the turn before
        for i, message in enumerate(messages):
            if not isinstance(message, Mapping) or message.get("role") not in (
                "user",
                "assistant",
            ):
                raise InvalidRequest(
                    f"1 validation error detected: Value at 'messages.{i + 1}.member.role' "
                    "failed to satisfy constraint: Member must satisfy enum value set: "
                    "[user, assistant]"
                )
            content = message.get("content")
            if not isinstance(content, list):
                raise InvalidRequest(f"messages.{i + 1}.content: expected a list of content blocks")
            uses, results = talk._read_turn(message["role"], content, i)
            unexpected = [r for r, _ in results if r not in calls]
            if unexpected:
                raise InvalidRequest(
                    f"messages.{i}.content: the toolUseId {', '.join(unexpected)} of a "
                    "toolResult block matches no toolUse block of the previous turn."
                )
            missing = [c for c in calls if c not in {r for r, _ in results}]
            if missing:
                raise InvalidRequest(
                    f"Expected toolResult blocks at messages.{i}.content for the following "
                    f"Ids: {', '.join(missing)}"
                )
            calls = uses
            talk.tool_results = tuple(text for _, text in results) if results else None
        return talk

    def _read_turn(
        self, role: str, content: list[Any], index: int
    ) -> tuple[list[str], list[tuple[str, str]]]:
        """Check one turn's blocks and note their text and images; the turn's toolUse
        ids and its tool results as (toolUseId, text)."""
        texts: list[str] = []
        uses: list[str] = []
        results: list[tuple[str, str]] = []
        for j, block in enumerate(content):
            at = f"messages.{index + 1}.member.content.{j + 1}.member"
            if not isinstance(block, Mapping) or len(block) != 1:
                raise InvalidRequest(
                    f"Invalid number of parameters set for tagged union structure {at}. "
                    "Can only set one of the content block types."
                )
            if isinstance(block.get("text"), str):
                texts.append(block["text"])
            elif "text" in block:
                raise InvalidRequest(f"{at}.text: expected a string")
            if "image" in block:
                self.image_types.append(_image_type(block["image"], f"{at}.image"))
            if "toolUse" in block:
                if role != "assistant":
                    raise InvalidRequest(
                        f"messages.{index}.content.{j}: toolUse blocks are only allowed in "
                        "assistant messages"
                    )
                use_id, arguments = _tool_use(block["toolUse"], f"{at}.toolUse")
                uses.append(use_id)
                texts.append(arguments)
            if "toolResult" in block:
                if role != "user":
                    raise InvalidRequest(
                        f"messages.{index}.content.{j}: toolResult blocks are only allowed in "
                        "user messages"
                    )
                result = self._tool_result(block["toolResult"], f"{at}.toolResult")
                results.append(result)
                texts.append(result[1])
        self.texts.append(" ".join(texts))
        if uses or results:
            self.uses_tools = True
        return uses, results

    def _tool_result(self, result: Any, at: str) -> tuple[str, str]:
        """A toolResult block as (toolUseId, its text): text and json parts (json as its
        text); images in it count like any image."""
        if not isinstance(result, Mapping):
            raise InvalidRequest(f"{at}: expected an object")
        use_id = _use_id(result.get("toolUseId"), f"{at}.toolUseId")
        status = result.get("status")
        if status is not None and status not in ("success", "error"):
            raise InvalidRequest(
                f"1 validation error detected: Value '{status}' at '{at}.status' failed to "
                "satisfy constraint: Member must satisfy enum value set: [success, error]"
            )
        parts = result.get("content")
        if not isinstance(parts, list):
            raise InvalidRequest(
                f"1 validation error detected: Value null at '{at}.content' failed to satisfy "
                "constraint: Member must not be null"
            )
        if status == "error" and not parts:
            raise InvalidRequest(
                f"The content field at {at} cannot be empty when status value is error."
            )
        texts: list[str] = []
        for k, part in enumerate(parts):
            where = f"{at}.content.{k + 1}.member"
            member = _union_member(
                part, where, ("json", "text", "image", "document", "video", "searchResult")
            )
            if member == "text":
                if not isinstance(part["text"], str):
                    raise InvalidRequest(f"{where}.text: expected a string")
                texts.append(part["text"])
            elif member == "json":
                texts.append(json.dumps(part["json"]))
            elif member == "image":
                self.image_types.append(_image_type(part["image"], f"{where}.image"))
        return use_id, " ".join(texts)


def _use_id(value: Any, at: str) -> str:
    if not isinstance(value, str) or not TOOL_USE_ID.fullmatch(value):
        raise InvalidRequest(
            f"1 validation error detected: Value at '{at}' failed to satisfy constraint: "
            "Member must satisfy regular expression pattern: [a-zA-Z0-9_.:-]+"
        )
    return value


def _tool_use(use: Any, at: str) -> tuple[str, str]:
    """A toolUse block as (toolUseId, its input as JSON text)."""
    if not isinstance(use, Mapping):
        raise InvalidRequest(f"{at}: expected an object")
    use_id = _use_id(use.get("toolUseId"), f"{at}.toolUseId")
    name = use.get("name")
    if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
        raise InvalidRequest(
            f"1 validation error detected: Value at '{at}.name' failed to satisfy "
            "constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_-]+"
        )
    if "input" not in use:
        raise InvalidRequest(
            f"1 validation error detected: Value null at '{at}.input' failed to satisfy "
            "constraint: Member must not be null"
        )
    return use_id, json.dumps(use["input"])


def _image_type(image: Any, at: str) -> str:
    """An image block's MIME type (`image/png` …), once its format and source are ones
    Converse takes: inline bytes (base64 on the wire) or an S3 location."""
    if not isinstance(image, Mapping):
        raise InvalidRequest(f"{at}: expected an object")
    fmt = image.get("format")
    if fmt not in IMAGE_FORMATS:
        raise InvalidRequest(
            f"1 validation error detected: Value '{fmt}' at '{at}.format' failed to satisfy "
            f"constraint: Member must satisfy enum value set: [{', '.join(IMAGE_FORMATS)}]"
        )
    source = image.get("source")
    if _union_member(source, f"{at}.source", ("bytes", "s3Location")) == "bytes":
        data = source["bytes"]
        try:
            if not isinstance(data, str) or not data:
                raise ValueError
            b64decode(data, validate=True)
        except (ValueError, binascii.Error):
            raise InvalidRequest(
                f"{at}.source.bytes: the image bytes are not valid base64"
            ) from None
    return f"image/{fmt}"


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

    def content(self) -> list[dict[str, Any]]:
        """The message's content blocks. A call's input is a JSON value (a document) —
        or, for scripted unreadable arguments, the text itself."""
        if self.calls:
            return [
                {"toolUse": {"toolUseId": c.id, "name": c.name, "input": c.input}}
                for c in self.calls
            ]
        if self.completion.prompt_blocked:
            return []
        return [{"text": self.completion.text}]

    def blocks(self) -> list[tuple[dict[str, Any] | None, list[dict[str, Any]]]]:
        """The streamed content blocks: each block's `contentBlockStart` payload (None for
        text, which Converse starts with its first delta) and its deltas — text tokens,
        or a call's input in `toolUse.input` JSON-text pieces."""
        if self.calls:
            return [
                (
                    {"toolUse": {"toolUseId": c.id, "name": c.name}},
                    [{"toolUse": {"input": piece}} for piece in argument_pieces(c.arguments)],
                )
                for c in self.calls
            ]
        return [(None, [{"text": token} for token in self.completion.tokens])]


def compose_reply(req: ConverseRequest, model: str, behaviour: Behaviour) -> Reply:
    """The model's answer (see `simulator.tooling`): tool calls when tools are declared
    and the choice allows them (a scripted refusal refuses instead); after tool results,
    text quoting them; otherwise the usual reply. Images add a note to any text.
    Converse has no parallel-calls knob: this model calls one tool at a time."""
    if not behaviour.content_filter:
        calls = plan_tool_calls(
            req.tools,
            req.tool_choice,
            req.tool_results is not None,
            fault=behaviour.output_fault,
            seed=req.seed,
            prefix="tooluse_",
        )
        if calls:
            return Reply(Completion((), FinishReason.END), calls)
        if req.tool_results is not None:
            behaviour = replace(behaviour, reply=answer_after_tools(req.tool_results))
    completion = compose_completion(model, behaviour, req.max_tokens, req.stop)
    if req.image_types and not completion.prompt_blocked:
        note = tuple(_NOTE_WORDS.findall(image_note(req.image_types)))
        completion = replace(completion, tokens=completion.tokens + note)
    return Reply(completion)


def _usage(req: ConverseRequest, behaviour: Behaviour, output_tokens: int) -> dict[str, Any]:
    """Like Anthropic, Bedrock counts cache reads/writes apart from `inputTokens`."""
    prompt_tokens, output_tokens = reported_usage(behaviour, req.prompt_tokens, output_tokens)
    cached = min(behaviour.cached_prompt_tokens, prompt_tokens)
    written = min(behaviour.cache_write_tokens, prompt_tokens - cached)
    usage = {
        "inputTokens": prompt_tokens - cached - written,
        "outputTokens": output_tokens,
        "totalTokens": prompt_tokens + output_tokens,
    }
    if cached or written:
        usage["cacheReadInputTokens"] = cached
        usage["cacheWriteInputTokens"] = written
    return usage


def _elapsed_ms(started: float) -> int:
    return max(1, round((time.monotonic() - started) * 1000))


def converse_body(
    req: ConverseRequest, behaviour: Behaviour, reply: Reply, started: float
) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": reply.content()}},
        "stopReason": reply.stop_reason,
        "usage": _usage(req, behaviour, reply.output_tokens),
        "metrics": {"latencyMs": _elapsed_ms(started)},
    }


def _stream_exception(status: int) -> bytes:
    member = _STREAM_EXCEPTIONS.get(status, "modelStreamErrorException")
    _, message = _STATUS_ERRORS.get(status, ("", "The model stream failed."))
    payload: dict[str, Any] = {"message": message}
    if member == "modelStreamErrorException":
        payload.update(originalStatusCode=status, originalMessage=message)
    return exception_message(member, dumps(payload))


# --------------------------------------------------------------------------- routes


class BedrockProtocol:
    """Bedrock Runtime routes (every region) bound to the simulator's shared state."""

    def __init__(self, state: SimulatorState) -> None:
        self._state = state

    def routes(self) -> list[web.RouteDef]:
        out = []
        for prefix in ("/bedrock/{region}", ""):
            out += [
                web.post(prefix + "/model/{model_id:.+}/converse", self.converse),
                web.post(prefix + "/model/{model_id:.+}/converse-stream", self.converse_stream),
                web.post(prefix + "/model/{model_id:.+}/invoke", self.invoke_model),
            ]
        return out

    async def converse(self, request: web.Request) -> web.StreamResponse:
        return await self._call(request, self._converse)

    async def converse_stream(self, request: web.Request) -> web.StreamResponse:
        return await self._call(request, self._converse_stream)

    async def invoke_model(self, request: web.Request) -> web.StreamResponse:
        return await self._call(request, self._invoke_model)

    async def _call(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        """What every operation shares: auth, region, model, body, plan, errors."""
        started = time.monotonic()
        with CallScope(self._state.stats, partial(connection_lost, request), VENDOR) as scope:
            try:
                denied = _check_auth(request)
                if denied is not None:
                    return scope.responded(denied)
                region = call_region(request)
                model = unquote(request.match_info["model_id"])
                scope.model(model, region)
                try:
                    body = await read_json(request)
                except ValueError:
                    return scope.responded(
                        error_response(
                            400,
                            "Malformed input request, please reformat your input and try again.",
                        )
                    )
                call = _Call(request, model, region, body, scope, started)
                return await handler(call)
            except InvalidRequest as exc:
                return scope.responded(error_response(400, str(exc)))
            except ConnectionError:
                raise asyncio.CancelledError from None  # client gone mid-write: end quietly

    async def _prepare(self, call: _Call) -> tuple[Behaviour, web.Response | None]:
        plan = self._state.scenarios.plan(call.model, call.region)
        await wait_latency(plan.behaviour)
        if plan.error is not None:
            return plan.behaviour, _scripted_error(plan.error, call.model)
        if plan.behaviour.timeout:
            await hang()
        return plan.behaviour, None

    # -- converse ---------------------------------------------------------------------

    async def _converse(self, call: _Call) -> web.StreamResponse:
        req = ConverseRequest.parse(call.body, call.model)
        behaviour, failed = await self._prepare(call)
        if failed is not None:
            return call.scope.responded(failed)
        reply = compose_reply(req, call.model, behaviour)
        script = unary_script(behaviour, reply.output_tokens)
        await unary_generation_delay(behaviour, script.tokens)
        return end_unary(
            call.request,
            call.scope,
            script,
            converse_body(req, behaviour, reply, call.started),
            late_error=partial(_scripted_error, model=call.model),
            headers={"x-amzn-RequestId": new_id()},
        )

    async def _converse_stream(self, call: _Call) -> web.StreamResponse:
        """ConverseStream's events: `messageStart`; per content block a
        `contentBlockStart` (tool calls only: it names the call), its
        `contentBlockDelta`s and `contentBlockStop`; then `messageStop` and `metadata`
        (usage). Faults count the deltas sent across blocks (text tokens or argument
        pieces)."""
        req = ConverseRequest.parse(call.body, call.model)
        behaviour, failed = await self._prepare(call)
        if failed is not None:
            return call.scope.responded(failed)
        reply = compose_reply(req, call.model, behaviour)
        resp = web.StreamResponse(
            headers={"Content-Type": _EVENTSTREAM, "x-amzn-RequestId": new_id()}
        )
        await resp.prepare(call.request)
        call.scope.responded(resp)
        call.scope.stream_started()
        await resp.write(event_message("messageStart", dumps({"role": "assistant"})))
        pacer = TokenPacer(behaviour.tokens_per_second)
        blocks = reply.blocks()
        script = stream_script(behaviour, sum(len(deltas) for _, deltas in blocks))
        complete = script.ending is Ending.COMPLETE
        sent = 0
        for index, (start, deltas) in enumerate(blocks):
            if index and not complete and sent >= script.tokens:
                break
            if start is not None:
                payload = {"start": start, "contentBlockIndex": index}
                await resp.write(event_message("contentBlockStart", dumps(payload)))
            for delta in deltas[: max(0, script.tokens - sent)]:
                await pacer.before_token(sent)
                payload = {"contentBlockIndex": index, "delta": delta}
                await resp.write(event_message("contentBlockDelta", dumps(payload)))
                sent += 1
            if not complete and sent >= script.tokens:
                break
            stop_block = {"contentBlockIndex": index}
            await resp.write(event_message("contentBlockStop", dumps(stop_block)))
        if not complete:
            return await end_stream_early(call.request, resp, call.scope, script, _stream_exception)
        await resp.write(event_message("messageStop", dumps({"stopReason": reply.stop_reason})))
        metadata = {
            "usage": _usage(req, behaviour, reply.output_tokens),
            "metrics": {"latencyMs": _elapsed_ms(call.started)},
        }
        await resp.write(event_message("metadata", dumps(metadata)))
        await resp.write_eof()
        call.scope.stream_completed()
        return resp

    # -- invoke model (Titan text embeddings) -----------------------------------------

    async def _invoke_model(self, call: _Call) -> web.StreamResponse:
        if "embed" not in call.model:
            raise InvalidRequest(
                "The simulator's InvokeModel speaks only Titan text embeddings; "
                "use Converse for text generation."
            )
        text, dimensions = _titan_input(call.body)
        behaviour, failed = await self._prepare(call)
        if failed is not None:
            return call.scope.responded(failed)
        if behaviour.drop_after_tokens is not None:
            abort_connection(call.request, call.scope)
        vector = embedding_vector(call.model, text, dimensions)
        tokens = count_tokens(text)
        body = {
            "embedding": vector,
            "embeddingsByType": {"float": vector},
            "inputTextTokenCount": tokens,
        }
        headers = {
            "x-amzn-RequestId": new_id(),
            "X-Amzn-Bedrock-Input-Token-Count": str(tokens),
            "X-Amzn-Bedrock-Invocation-Latency": str(_elapsed_ms(call.started)),
        }
        return call.scope.responded(json_response(body, headers=headers))


@dataclass(frozen=True, slots=True)
class _Call:
    request: web.Request
    model: str
    region: str
    body: Any
    scope: CallScope
    started: float


_Handler = Callable[[_Call], Awaitable[web.StreamResponse]]


def _titan_input(body: Any) -> tuple[str, int]:
    if not isinstance(body, Mapping) or not isinstance(body.get("inputText"), str):
        raise InvalidRequest("Malformed input request: #: required key [inputText] not found")
    dims = body.get("dimensions", TITAN_DEFAULT_DIMENSIONS)
    if dims not in _TITAN_DIMENSIONS:
        raise InvalidRequest(
            f"Malformed input request: #/dimensions: {dims} is not a valid enum value"
        )
    return body["inputText"], dims


def call_region(request: web.Request) -> str:
    """The region a call addresses: path prefix, else SigV4 scope, else the default."""
    region = request.match_info.get("region")
    if region:
        return region
    match = _CREDENTIAL_SCOPE.search(request.headers.get("Authorization", ""))
    return match.group(2) if match else DEFAULT_REGION


def _check_auth(request: web.BaseRequest) -> web.Response | None:
    """SigV4 or a Bedrock API key (bearer) must be present; neither is verified."""
    header = request.headers.get("Authorization", "")
    match = _CREDENTIAL_SCOPE.search(header)
    scheme, _, token = header.partition(" ")
    if match:
        key = match.group(1)
    elif scheme.lower() == "bearer" and token.strip():
        key = token.strip()
    else:
        return error_response(
            403, "Missing Authentication Token", "MissingAuthenticationTokenException"
        )
    if key == INVALID_ACCESS_KEY:
        return error_response(
            403,
            "The security token included in the request is invalid.",
            "UnrecognizedClientException",
        )
    return None


def _scripted_error(error: ScriptedError, model: str) -> web.Response:
    message = error.message
    if message is None and error.status == 404:
        message = f"Could not resolve the foundation model from the model identifier {model}."
    return error_response(error.status, message, error.code)
