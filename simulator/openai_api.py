"""The OpenAI wire protocol: Chat Completions (+ SSE), Embeddings and Models.

Only translation lives here: request JSON → the neutral questions in `scenario`, and
the answers → OpenAI's response, chunk and error shapes, close enough that the official
`openai` SDK works unchanged against `base_url=http://host:port/v1`.

Tools follow the Chat Completions wire form: `tools: [{"type": "function", "function":
{name, description, parameters}}]`, `tool_choice`, `parallel_tool_calls`, assistant
`tool_calls` (arguments as JSON text) answered by `role: "tool"` messages, user content
arrays with `image_url` parts, and `response_format` (`json_object` / `json_schema`).
What the model does with them is decided in `simulator.tooling`, the same for every vendor.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import re
import time
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
    reply_tokens,
)
from simulator.scenario import Behaviour
from simulator.scenario_book import WILDCARD_KEY, ScriptedError
from simulator.state import SimulatorState
from simulator.stats import CallScope
from simulator.tooling import (
    IMAGE_TOKENS,
    PlannedCall,
    ToolSpec,
    answer_after_tools,
    argument_pieces,
    image_note,
    json_answer,
    plan_tool_calls,
)
from simulator.vectors import embedding_vector, pack_float32
from simulator.wire import (
    abort_connection,
    connection_lost,
    dumps,
    end_stream_early,
    end_unary,
    json_response,
    new_id,
    seconds_header,
)

INVALID_API_KEY = "sim-invalid-key"
"""The one key the simulator rejects, so adapters can test auth-error classification."""

DEFAULT_EMBEDDING_DIMENSIONS = 1536
ADVERTISED_MODELS = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "text-embedding-3-small",
    "text-embedding-3-large",
)
_MODEL_CREATED = 1_700_000_000
_FINGERPRINT = "fp_simulator"


# status → (error.type, error.code, default message), as OpenAI reports them.
_STATUS_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "permission_denied", "You are not allowed to do that."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    408: ("timeout_error", "request_timeout", "Request timed out."),
    409: ("conflict_error", None, "Conflict."),
    422: ("invalid_request_error", None, "Unprocessable request."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    502: ("server_error", "bad_gateway", "Bad gateway."),
    503: ("server_error", "service_unavailable", "The server is overloaded or not ready yet."),
    504: ("server_error", "gateway_timeout", "Gateway timeout."),
    529: ("overloaded_error", "overloaded", "The engine is currently overloaded."),
}


class InvalidRequest(Exception):
    """A 400 naming the offending parameter, as OpenAI's `error.param` does (and its
    `error.code`, null unless given)."""

    def __init__(self, message: str, param: str | None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


_DEFAULT_CODE = "<status default>"


def error_response(
    status: int,
    message: str | None = None,
    *,
    param: str | None = None,
    code: str | None = _DEFAULT_CODE,
    retry_after_s: float | None = None,
) -> web.Response:
    """An error in OpenAI's `{"error": {message, type, param, code}}` shape.

    `code` defaults to what OpenAI sends for the status; pass None for a null code.
    """
    default_type = "server_error" if status >= 500 else "invalid_request_error"
    err_type, default_code, default_message = _STATUS_ERRORS.get(
        status, (default_type, None, f"HTTP {status}")
    )
    body = {
        "error": {
            "message": message or default_message,
            "type": err_type,
            "param": param,
            "code": default_code if code is _DEFAULT_CODE else code,
        }
    }
    headers = {"x-request-id": new_id("req_")}
    if retry_after_s is not None:
        headers["retry-after"] = seconds_header(retry_after_s)
        headers["retry-after-ms"] = str(round(retry_after_s * 1000))
    return json_response(body, status, headers)


# --------------------------------------------------------------------------- request parsing


TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
IMAGE_MIME_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_DATA_URL = re.compile(r"data:([^;,]*);base64,(.*)", re.DOTALL)


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """The parts of a chat.completions request that shape the simulated reply."""

    model: str
    prompt_tokens: int
    max_tokens: int | None
    stop: tuple[str, ...]
    stream: bool
    include_usage: bool
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: str = "none"
    """`plan_tool_calls`' choice: "auto", "none", "required" or a tool's name."""
    parallel: bool = True
    """OpenAI lets the model call tools in parallel unless `parallel_tool_calls` is false."""
    tool_results: tuple[str, ...] | None = None
    """The contents of the tool messages the conversation ends with (None: it does not)."""
    json_mode: bool = False
    json_schema: Mapping[str, Any] | None = None
    image_types: tuple[str, ...] = ()
    seed: str = ""
    """Stable per conversation (model, messages and tools), for deterministic call ids."""

    @classmethod
    def parse(cls, body: Any) -> ChatRequest:
        if not isinstance(body, Mapping):
            raise InvalidRequest("The request body must be a JSON object.", None)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise InvalidRequest("you must provide a model parameter", "model")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidRequest("'messages' must be a non-empty array.", "messages")
        talk = Conversation.read(messages)
        max_tokens = body.get("max_completion_tokens")
        param = "max_completion_tokens"
        if max_tokens is None:
            max_tokens, param = body.get("max_tokens"), "max_tokens"
        if max_tokens is not None and (
            isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
        ):
            raise InvalidRequest(f"'{param}' must be an integer >= 1.", param)
        _check_range(body, "temperature", 0.0, 2.0)
        _check_range(body, "top_p", 0.0, 1.0)
        stream = body.get("stream") or False
        if not isinstance(stream, bool):
            raise InvalidRequest("'stream' must be a boolean.", "stream")
        options = body.get("stream_options")
        if options is not None and not stream:
            raise InvalidRequest(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                "stream_options",
            )
        include_usage = isinstance(options, Mapping) and bool(options.get("include_usage"))
        tools, declared_tokens = _tools(body.get("tools"))
        declared = body.get("tools") is not None
        json_mode, schema = _response_format(body.get("response_format"), talk.texts)
        return cls(
            model=model,
            prompt_tokens=count_prompt_tokens(talk.texts, len(messages))
            + IMAGE_TOKENS * len(talk.image_types)
            + declared_tokens,
            max_tokens=max_tokens,
            stop=_stop_sequences(body.get("stop")),
            stream=stream,
            include_usage=include_usage,
            tools=tools,
            tool_choice=_tool_choice(body.get("tool_choice"), tools, declared),
            parallel=_parallel(body.get("parallel_tool_calls"), declared),
            tool_results=talk.tool_results,
            json_mode=json_mode,
            json_schema=schema,
            image_types=tuple(talk.image_types),
            seed=_seed(model, messages, body.get("tools")) if tools else "",
        )


def _seed(model: str, messages: Any, tools: Any) -> str:
    """The same conversation gets the same call ids, unary or streamed."""
    return hashlib.sha256(dumps([model, messages, tools])).hexdigest()[:16]


@dataclass(slots=True)
class Conversation:
    """What the messages say — their texts (for the token count), the images they carry and
    the tool results they end with — checked as the API checks them: content arrays of
    known part types, images only from the user, and every assistant `tool_calls` answered,
    call by call, by the `tool` messages right after it (and no tool message otherwise)."""

    texts: list[str] = field(default_factory=list)
    image_types: list[str] = field(default_factory=list)
    tool_results: tuple[str, ...] | None = None

    @classmethod
    def read(cls, messages: Sequence[Any]) -> Conversation:
        talk = cls()
        open_calls: list[str] = []  # ids of the last assistant tool_calls not answered yet
        asked_at = -1  # where those calls were made
        results: list[str] = []  # the tool messages since the last other message
        for i, message in enumerate(messages):
            role = _role(message, i)
            if role != "tool" and open_calls:
                raise _unanswered(asked_at, open_calls)
            text = _content_text(message, i, role, talk.image_types)
            if role == "tool":
                _answer(message, i, open_calls, asked_at)
                results.append(text)
            else:
                results = []
            if role == "assistant" and message.get("tool_calls") is not None:
                calls = _assistant_calls(message["tool_calls"], i)
                open_calls, asked_at = [call_id for call_id, _ in calls], i
                text = " ".join([text, *(words for _, words in calls)])
            elif role != "tool":
                asked_at = -1
            talk.texts.append(text)
        if open_calls:
            raise _unanswered(asked_at, open_calls)
        talk.tool_results = tuple(results) if results else None
        return talk


def _role(message: Any, index: int) -> str:
    if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
        raise InvalidRequest(f"messages[{index}] must be an object with a role.", "messages")
    role = message["role"]
    if role not in ROLES:
        raise InvalidRequest(
            f"Invalid value: '{role[:40]}'. Supported values are: 'system', 'assistant', "
            "'user', 'function', 'tool', and 'developer'.",
            f"messages[{index}].role",
            "invalid_value",
        )
    return role


def _unanswered(index: int, ids: Sequence[str]) -> InvalidRequest:
    return InvalidRequest(
        "An assistant message with 'tool_calls' must be followed by tool messages responding "
        "to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
        + ", ".join(ids),
        f"messages.[{index}].role",
    )


def _answer(message: Mapping[str, Any], index: int, open_calls: list[str], asked_at: int) -> None:
    """A tool message must answer one of the calls of the assistant message just before
    (with only other tool messages in between)."""
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str):
        raise InvalidRequest(
            "Missing parameter 'tool_call_id': messages with role 'tool' must have a "
            "'tool_call_id'.",
            f"messages.[{index}].tool_call_id",
        )
    if asked_at < 0 or call_id not in open_calls:
        raise InvalidRequest(
            "Invalid parameter: messages with role 'tool' must be a response to a preceeding "
            "message with 'tool_calls'.",
            f"messages.[{index}].role",
        )
    open_calls.remove(call_id)


def _assistant_calls(value: Any, index: int) -> list[tuple[str, str]]:
    """An assistant message's `tool_calls`, checked: (id, the words it counts as)."""
    where = f"messages[{index}].tool_calls"
    if not isinstance(value, list):
        raise InvalidRequest(
            f"Invalid type for '{where}': expected an array, but got {_kind(value)} instead.",
            where,
            "invalid_type",
        )
    if not value:
        raise InvalidRequest(
            f"Invalid '{where}': empty array. Expected an array with minimum length 1, but got "
            "an empty array instead.",
            where,
            "empty_array",
        )
    calls = []
    for j, call in enumerate(value):
        at = f"{where}[{j}]"
        if not isinstance(call, Mapping):
            raise InvalidRequest(
                f"Invalid type for '{at}': expected an object, but got {_kind(call)} instead.",
                at,
                "invalid_type",
            )
        call_id = _required_string(call, "id", at)
        if call.get("type", "function") != "function":
            raise InvalidRequest(
                f"Invalid value: '{call.get('type')}'. Supported values are: 'function'.",
                f"{at}.type",
                "invalid_value",
            )
        function = call.get("function")
        if not isinstance(function, Mapping):
            raise _missing(f"{at}.function")
        name = _required_string(function, "name", f"{at}.function")
        arguments = _required_string(function, "arguments", f"{at}.function")
        calls.append((call_id, f"{name} {arguments}"))
    return calls


def _required_string(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if value is None:
        raise _missing(f"{where}.{key}")
    if not isinstance(value, str):
        raise InvalidRequest(
            f"Invalid type for '{where}.{key}': expected a string, but got {_kind(value)} "
            "instead.",
            f"{where}.{key}",
            "invalid_type",
        )
    return value


def _missing(param: str) -> InvalidRequest:
    return InvalidRequest(
        f"Missing required parameter: '{param}'.", param, "missing_required_parameter"
    )


def _kind(value: Any) -> str:
    """How OpenAI names a JSON value's type in its `invalid_type` errors."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return "null"


def _content_text(
    message: Mapping[str, Any], index: int, role: str, image_types: list[str]
) -> str:
    """A message's text; the MIME types of its images are added to `image_types`."""
    content = message.get("content")
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise InvalidRequest(f"messages[{index}].content must be a string or array.", "messages")
    texts = []
    for j, part in enumerate(content):
        at = f"messages[{index}].content[{j}]"
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text":
            texts.append(_required_string(part, "text", at))
        elif kind == "image_url":
            if role != "user":
                raise InvalidRequest(
                    f"Invalid 'messages[{index}]'. Image URLs are only allowed for messages "
                    f"with role 'user', but this message with role '{role}' contains an image "
                    "URL.",
                    f"messages[{index}]",
                    "invalid_value",
                )
            image_types.append(_image_type(part.get("image_url"), f"{at}.image_url"))
        elif kind == "refusal" and role == "assistant":
            _required_string(part, "refusal", at)
        elif kind not in ("input_audio", "file"):
            raise InvalidRequest(
                f"Invalid value: '{kind}'. Supported values are: 'text', 'image_url', "
                "'input_audio', 'refusal', 'audio', and 'file'.",
                f"{at}.type",
                "invalid_value",
            )
    return " ".join(texts)


def _image_type(image: Any, where: str) -> str:
    """The MIME type of an `image_url` part ("url" for a web address: the simulator does
    not fetch it), once its URL is one the API takes: http(s), or a base64 data URL of an
    image type the API reads."""
    if not isinstance(image, Mapping):
        raise _missing(f"{where}.url" if image is None else where)
    url = _required_string(image, "url", where)
    detail = image.get("detail", "auto")
    if detail not in ("auto", "low", "high"):
        raise InvalidRequest(
            f"Invalid value: '{detail}'. Supported values are: 'auto', 'low', and 'high'.",
            f"{where}.detail",
            "invalid_value",
        )
    if url.startswith(("https://", "http://")):
        return "url"
    match = _DATA_URL.fullmatch(url)
    expected = (
        f"Invalid image URL: '{where}.url'. Expected a base64-encoded data URL with an image "
        "MIME type (e.g. 'data:image/png;base64,aW1nIGJ5dGVzIGhlcmU='), but got "
    )
    if match is None:
        raise InvalidRequest(expected + "a value that is not one.", f"{where}.url", "invalid_value")
    mime_type, data = match.groups()
    if mime_type not in IMAGE_MIME_TYPES:
        raise InvalidRequest(
            expected + f"an unsupported MIME type '{mime_type[:40]}'.",
            f"{where}.url",
            "invalid_value",
        )
    try:
        if not base64.b64decode(data, validate=True):
            raise InvalidRequest(
                expected + "empty base64-encoded bytes.", f"{where}.url", "invalid_value"
            )
    except (ValueError, binascii.Error):
        raise InvalidRequest(
            "You uploaded an unsupported image. Please make sure your image is valid.",
            f"{where}.url",
            "invalid_image_format",
        ) from None
    return mime_type


def _tools(tools: Any) -> tuple[tuple[ToolSpec, ...], int]:
    """The declared function tools, and the prompt tokens their declarations count.
    Custom (free-form) tools are accepted and never called by this model."""
    if tools is None:
        return (), 0
    if not isinstance(tools, list):
        raise InvalidRequest(
            f"Invalid type for 'tools': expected an array, but got {_kind(tools)} instead.",
            "tools",
            "invalid_type",
        )
    if not tools:
        raise InvalidRequest(
            "Invalid 'tools': empty array. Expected an array with minimum length 1, but got an "
            "empty array instead.",
            "tools",
            "empty_array",
        )
    specs: list[ToolSpec] = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, Mapping):
            raise InvalidRequest(
                f"Invalid type for '{where}': expected an object, but got {_kind(tool)} "
                "instead.",
                where,
                "invalid_type",
            )
        kind = tool.get("type")
        if kind is None:
            raise _missing(f"{where}.type")
        if kind == "custom":
            continue
        if kind != "function":
            raise InvalidRequest(
                f"Invalid value: '{kind}'. Supported values are: 'function' and 'custom'.",
                f"{where}.type",
                "invalid_value",
            )
        specs.append(_function_tool(tool.get("function"), f"{where}.function"))
    return tuple(specs), count_tokens(json.dumps(tools))


def _function_tool(function: Any, where: str) -> ToolSpec:
    if not isinstance(function, Mapping):
        raise _missing(where)
    name = _required_string(function, "name", where)
    if not TOOL_NAME.fullmatch(name):
        raise InvalidRequest(
            f"Invalid '{where}.name': string does not match pattern. Expected a string that "
            "matches the pattern '^[a-zA-Z0-9_-]{1,64}$'.",
            f"{where}.name",
            "invalid_value",
        )
    if "description" in function and not isinstance(function["description"], str):
        _required_string(function, "description", where)
    schema = function.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(schema, Mapping) or schema.get("type", "object") != "object":
        got = schema.get("type") if isinstance(schema, Mapping) else _kind(schema)
        raise InvalidRequest(
            f"Invalid schema for function '{name}': schema must be a JSON Schema of 'type: "
            f"\"object\"', got 'type: \"{got}\"'.",
            f"{where}.parameters",
            "invalid_function_parameters",
        )
    if not isinstance(function.get("strict", False), bool | None):
        raise InvalidRequest(
            f"Invalid type for '{where}.strict': expected a boolean, but got "
            f"{_kind(function['strict'])} instead.",
            f"{where}.strict",
            "invalid_type",
        )
    return ToolSpec(name, schema)


def _tool_choice(choice: Any, tools: Sequence[ToolSpec], declared: bool) -> str:
    """`tool_choice` as `plan_tool_calls`' choice. The default is "auto" with tools and
    "none" without; a choice without tools is refused, as the API does."""
    if choice is None:
        return "auto" if declared else "none"
    if not declared:
        raise InvalidRequest(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
            "specified.",
            "tool_choice",
        )
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise InvalidRequest(
                f"Invalid value: '{choice[:40]}'. Supported values are: 'none', 'auto', and "
                "'required'.",
                "tool_choice",
                "invalid_value",
            )
        return choice
    if not isinstance(choice, Mapping):
        raise InvalidRequest(
            f"Invalid type for 'tool_choice': expected one of a string or an object, but got "
            f"{_kind(choice)} instead.",
            "tool_choice",
            "invalid_type",
        )
    if choice.get("type") != "function":
        raise InvalidRequest(
            f"Invalid value: '{choice.get('type')}'. Supported values are: 'function'.",
            "tool_choice.type",
            "invalid_value",
        )
    function = choice.get("function")
    if not isinstance(function, Mapping):
        raise _missing("tool_choice.function")
    name = _required_string(function, "name", "tool_choice.function")
    if not any(tool.name == name for tool in tools):
        raise InvalidRequest(
            f"Invalid value for 'tool_choice': function '{name[:64]}' is not one of the "
            "functions in 'tools'.",
            "tool_choice",
            "invalid_value",
        )
    return name


def _parallel(value: Any, declared: bool) -> bool:
    if value is None:
        return True
    if not declared:
        raise InvalidRequest(
            "Invalid value for 'parallel_tool_calls': 'parallel_tool_calls' is only allowed "
            "when 'tools' are specified.",
            "parallel_tool_calls",
        )
    if not isinstance(value, bool):
        raise InvalidRequest(
            f"Invalid type for 'parallel_tool_calls': expected a boolean, but got "
            f"{_kind(value)} instead.",
            "parallel_tool_calls",
            "invalid_type",
        )
    return value


def _response_format(fmt: Any, texts: Sequence[str]) -> tuple[bool, Mapping[str, Any] | None]:
    """(JSON mode, its schema) for `response_format`. JSON-object mode needs the word
    "json" somewhere in the messages, as the API insists."""
    if fmt is None:
        return False, None
    if not isinstance(fmt, Mapping):
        raise InvalidRequest(
            f"Invalid type for 'response_format': expected an object, but got {_kind(fmt)} "
            "instead.",
            "response_format",
            "invalid_type",
        )
    kind = fmt.get("type")
    if kind == "text":
        return False, None
    if kind == "json_object":
        if not any("json" in text.lower() for text in texts):
            raise InvalidRequest(
                "'messages' must contain the word 'json' in some form, to use "
                "'response_format' of type 'json_object'.",
                "messages",
            )
        return True, None
    if kind != "json_schema":
        raise InvalidRequest(
            f"Invalid value: '{kind}'. Supported values are: 'json_object', 'json_schema', "
            "and 'text'.",
            "response_format.type",
            "invalid_value",
        )
    spec = fmt.get("json_schema")
    if not isinstance(spec, Mapping):
        raise _missing("response_format.json_schema")
    name = _required_string(spec, "name", "response_format.json_schema")
    if not TOOL_NAME.fullmatch(name):
        raise InvalidRequest(
            "Invalid 'response_format.json_schema.name': string does not match pattern. "
            "Expected a string that matches the pattern '^[a-zA-Z0-9_-]{1,64}$'.",
            "response_format.json_schema.name",
            "invalid_value",
        )
    schema = spec.get("schema")
    if schema is not None and not isinstance(schema, Mapping):
        raise InvalidRequest(
            f"Invalid type for 'response_format.json_schema.schema': expected an object, but "
            f"got {_kind(schema)} instead.",
            "response_format.json_schema.schema",
            "invalid_type",
        )
    if not isinstance(spec.get("strict", False), bool | None):
        raise InvalidRequest(
            "Invalid type for 'response_format.json_schema.strict': expected a boolean.",
            "response_format.json_schema.strict",
            "invalid_type",
        )
    return True, schema


def _check_range(body: Mapping[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidRequest(f"'{name}' must be a number between {low:g} and {high:g}.", name)


def _stop_sequences(stop: Any) -> tuple[str, ...]:
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,)
    if isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) for s in stop):
        return tuple(stop)
    raise InvalidRequest("'stop' must be a string or an array of up to 4 strings.", "stop")


# --------------------------------------------------------------------------- response shapes


def _finish_reason(completion: Completion) -> str:
    return "length" if completion.finish is FinishReason.LENGTH else "stop"


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def chat_completion_body(req: ChatRequest, behaviour: Behaviour, completion: Completion) -> bytes:
    """A non-streaming `chat.completion` object."""
    message = {
        "role": "assistant",
        "content": completion.text,
        "refusal": None,
        "annotations": [],
    }
    usage = reported_usage(behaviour, req.prompt_tokens, len(completion.tokens))
    return _completion_object(req, message, _finish_reason(completion), usage)


def tool_call_body(req: ChatRequest, behaviour: Behaviour, calls: Sequence[PlannedCall]) -> bytes:
    """A non-streaming `chat.completion` whose message calls tools: content null, finish
    reason "tool_calls"."""
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in calls
        ],
        "refusal": None,
        "annotations": [],
    }
    usage = reported_usage(behaviour, req.prompt_tokens, _call_tokens(calls))
    return _completion_object(req, message, "tool_calls", usage)


def _completion_object(
    req: ChatRequest, message: dict[str, Any], finish_reason: str, usage: tuple[int, int]
) -> bytes:
    return dumps(
        {
            "id": new_id("chatcmpl-"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
            "usage": _usage(*usage),
            "service_tier": "default",
            "system_fingerprint": _FINGERPRINT,
        }
    )


def _call_tokens(calls: Sequence[PlannedCall]) -> int:
    """Output tokens of a tool-call answer: its arguments' words."""
    return sum(count_tokens(c.arguments) for c in calls)


class ChunkEncoder:
    """Renders `chat.completion.chunk` SSE events for one stream.

    The envelope (id, created, model …) is serialised once per stream and only the
    delta is encoded per token, so a zero-latency stream costs little more than the
    socket writes.
    """

    __slots__ = ("_head", "_tail", "_usage_head")

    def __init__(self, model: str, include_usage: bool) -> None:
        head = dumps(
            {
                "id": new_id("chatcmpl-"),
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "service_tier": "default",
                "system_fingerprint": _FINGERPRINT,
            }
        )[:-1]
        self._usage_head = b"data: " + head + b',"choices":[],"usage":'
        self._head = b"data: " + head + b',"choices":[{"index":0,"delta":'
        self._tail = b',"logprobs":null,"finish_reason":%s}]'
        self._tail += b',"usage":null}\n\n' if include_usage else b"}\n\n"

    def role(self) -> bytes:
        return (
            self._head + b'{"role":"assistant","content":"","refusal":null}' + self._tail % b"null"
        )

    def token(self, text: str) -> bytes:
        return self._head + b'{"content":' + dumps(text) + b"}" + self._tail % b"null"

    def call_start(self, index: int, call: PlannedCall, first: bool) -> bytes:
        """A tool call's first chunk: its index, id, type and name, no arguments yet. The
        first call's opens the message (role, null content), as OpenAI sends it."""
        head = {
            "index": index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        delta: dict[str, Any] = {"tool_calls": [head]}
        if first:
            delta = {"role": "assistant", "content": None, **delta, "refusal": None}
        return self._head + dumps(delta) + self._tail % b"null"

    def call_arguments(self, index: int, piece: str) -> bytes:
        """A piece of a tool call's arguments: only its index and the text to append."""
        return (
            self._head
            + b'{"tool_calls":[{"index":%d,"function":{"arguments":' % index
            + dumps(piece)
            + b"}}]}"
            + self._tail % b"null"
        )

    def finish(self, reason: str) -> bytes:
        return self._head + b"{}" + self._tail % dumps(reason)

    def usage(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        return self._usage_head + dumps(_usage(prompt_tokens, completion_tokens)) + b"}\n\n"


_DONE = b"data: [DONE]\n\n"
_SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
}


# --------------------------------------------------------------------------- routes


class OpenAIProtocol:
    """OpenAI routes bound to the simulator's shared state (behaviours and stats)."""

    def __init__(self, state: SimulatorState) -> None:
        self._state = state

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/chat/completions", self.chat_completions),
            web.post("/v1/embeddings", self.embeddings),
            web.get("/v1/models", self.list_models),
            web.get("/v1/models/{model:.+}", self.retrieve_model),
        ]

    # -- chat completions -------------------------------------------------------------

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        with CallScope(self._state.stats, lambda: connection_lost(request), "openai") as scope:
            try:
                denied = _check_auth(request)
                if denied is not None:
                    return scope.responded(denied)
                try:
                    req = ChatRequest.parse(json.loads(await request.read()))
                except ValueError:
                    return scope.responded(error_response(400, "Invalid JSON body."))
                except InvalidRequest as exc:
                    return scope.responded(
                        error_response(400, str(exc), param=exc.param, code=exc.code)
                    )
                scope.model(req.model)
                return await self._serve_chat(request, req, scope)
            except ConnectionError:
                raise asyncio.CancelledError from None  # client gone mid-write: end quietly

    async def _serve_chat(
        self, request: web.Request, req: ChatRequest, scope: CallScope
    ) -> web.StreamResponse:
        plan = self._state.scenarios.plan(req.model)
        behaviour = plan.behaviour
        await wait_latency(behaviour)
        if plan.error is not None:
            return scope.responded(_scripted_error(plan.error, req.model))
        if behaviour.timeout:
            await hang()
        calls = _planned_calls(req, behaviour)
        if calls and req.stream:
            return await self._stream_calls(request, req, calls, behaviour, scope)
        if calls:
            script = unary_script(behaviour, _call_tokens(calls), late_errors=False)
            await unary_generation_delay(behaviour, script.tokens)
            return end_unary(
                request,
                scope,
                script,
                tool_call_body(req, behaviour, calls),
                late_error=partial(_scripted_error, model=req.model),
                headers={"x-request-id": new_id("req_")},
            )
        completion = compose_completion(
            req.model, _reply_behaviour(req, behaviour), req.max_tokens, req.stop
        )
        if req.stream:
            return await self._stream_chat(request, req, completion, behaviour, scope)
        # No late error shape here: a `drop_error_status` drop is a cut connection.
        script = unary_script(behaviour, len(completion.tokens), late_errors=False)
        await unary_generation_delay(behaviour, script.tokens)
        return end_unary(
            request,
            scope,
            script,
            chat_completion_body(req, behaviour, completion),
            late_error=partial(_scripted_error, model=req.model),
            headers={"x-request-id": new_id("req_")},
        )

    async def _stream_chat(
        self,
        request: web.Request,
        req: ChatRequest,
        completion: Completion,
        behaviour: Behaviour,
        scope: CallScope,
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={**_SSE_HEADERS, "x-request-id": new_id("req_")})
        await resp.prepare(request)
        scope.responded(resp)
        scope.stream_started()
        encoder = ChunkEncoder(req.model, req.include_usage)
        pacer = TokenPacer(behaviour.tokens_per_second)
        script = stream_script(behaviour, len(completion.tokens), late_errors=False)
        await resp.write(encoder.role())
        for i, token in enumerate(completion.tokens[: script.tokens]):
            await pacer.before_token(i)
            await resp.write(encoder.token(token))
        if script.ending is not Ending.COMPLETE:
            return await end_stream_early(request, resp, scope, script)
        await resp.write(encoder.finish(_finish_reason(completion)))
        if req.include_usage:
            usage = reported_usage(behaviour, req.prompt_tokens, len(completion.tokens))
            await resp.write(encoder.usage(*usage))
        await resp.write(_DONE)
        await resp.write_eof()
        scope.stream_completed()
        return resp

    async def _stream_calls(
        self,
        request: web.Request,
        req: ChatRequest,
        calls: Sequence[PlannedCall],
        behaviour: Behaviour,
        scope: CallScope,
    ) -> web.StreamResponse:
        """Tool calls streamed as OpenAI streams them: each call's first chunk names it
        (the first call's also opens the message), then its arguments in pieces keyed by
        index. The pieces are the stream's "tokens": pacing, drops and truncation count
        them."""
        resp = web.StreamResponse(headers={**_SSE_HEADERS, "x-request-id": new_id("req_")})
        await resp.prepare(request)
        scope.responded(resp)
        scope.stream_started()
        encoder = ChunkEncoder(req.model, req.include_usage)
        pacer = TokenPacer(behaviour.tokens_per_second)
        pieces = [(i, piece) for i, c in enumerate(calls) for piece in argument_pieces(c.arguments)]
        script = stream_script(behaviour, len(pieces), late_errors=False)
        await resp.write(encoder.call_start(0, calls[0], first=True))
        opened = 0
        for n, (index, piece) in enumerate(pieces[: script.tokens]):
            await pacer.before_token(n)
            if index > opened:
                opened = index
                await resp.write(encoder.call_start(index, calls[index], first=False))
            await resp.write(encoder.call_arguments(index, piece))
        if script.ending is not Ending.COMPLETE:
            return await end_stream_early(request, resp, scope, script)
        await resp.write(encoder.finish("tool_calls"))
        if req.include_usage:
            await resp.write(
                encoder.usage(*reported_usage(behaviour, req.prompt_tokens, _call_tokens(calls)))
            )
        await resp.write(_DONE)
        await resp.write_eof()
        scope.stream_completed()
        return resp

    # -- embeddings -------------------------------------------------------------------

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        with CallScope(self._state.stats, lambda: connection_lost(request), "openai") as scope:
            denied = _check_auth(request)
            if denied is not None:
                return scope.responded(denied)
            try:
                body = json.loads(await request.read())
                model, inputs, dimensions, fmt = _parse_embedding_request(body)
            except ValueError:
                return scope.responded(error_response(400, "Invalid JSON body."))
            except InvalidRequest as exc:
                return scope.responded(error_response(400, str(exc), param=exc.param))
            scope.model(model)
            plan = self._state.scenarios.plan(model)
            await wait_latency(plan.behaviour)
            if plan.error is not None:
                return scope.responded(_scripted_error(plan.error, model))
            if plan.behaviour.timeout:
                await hang()
            if plan.behaviour.drop_after_tokens is not None:
                abort_connection(request, scope)
            data = []
            for i, (text, _) in enumerate(inputs):
                vector = embedding_vector(model, text, dimensions)
                encoded: Any = (
                    base64.b64encode(pack_float32(vector)).decode() if fmt == "base64" else vector
                )
                data.append({"object": "embedding", "index": i, "embedding": encoded})
            tokens = sum(n for _, n in inputs)
            body_out = {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
            return scope.responded(json_response(body_out))

    # -- models -----------------------------------------------------------------------

    async def list_models(self, request: web.Request) -> web.Response:
        denied = _check_auth(request)
        if denied is not None:
            return denied
        names = dict.fromkeys(ADVERTISED_MODELS)
        names.update(dict.fromkeys(k for k in self._state.scenarios.names() if k != WILDCARD_KEY))
        body = {"object": "list", "data": [_model_object(n) for n in names]}
        return json_response(body)

    async def retrieve_model(self, request: web.Request) -> web.Response:
        denied = _check_auth(request)
        if denied is not None:
            return denied
        model = request.match_info["model"]
        if self._state.scenarios.behaviour(model).not_found:
            return _scripted_error(ScriptedError(404), model)
        return json_response(_model_object(model))


def _planned_calls(req: ChatRequest, behaviour: Behaviour) -> tuple[PlannedCall, ...]:
    """The tool calls the model makes (none when a content filter is scripted: the refusal
    wins)."""
    if not req.tools or behaviour.content_filter is not None:
        return ()
    return plan_tool_calls(
        req.tools,
        req.tool_choice,
        req.tool_results is not None,
        parallel=req.parallel,
        fault=behaviour.output_fault,
        seed=req.seed,
        prefix="call_",
    )


def _reply_behaviour(req: ChatRequest, behaviour: Behaviour) -> Behaviour:
    """The behaviour whose reply is the text answer: quoting the tool results the
    conversation ends with, or JSON in JSON mode, and noting the images it got. A plain
    request's behaviour is returned as it is."""
    if req.tool_results is not None:
        text = answer_after_tools(req.tool_results)
    elif req.json_mode:
        text = json_answer(req.json_schema, behaviour.output_fault)
    elif req.image_types:
        text = "".join(reply_tokens(req.model, behaviour))
    else:
        return behaviour
    if req.image_types:
        text += image_note(req.image_types)
    return replace(behaviour, reply=text)


def _model_object(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": _MODEL_CREATED, "owned_by": "simulator"}


def _check_auth(request: web.BaseRequest) -> web.Response | None:
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        return error_response(
            401,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            code=None,
        )
    if key == INVALID_API_KEY:
        return error_response(401, f"Incorrect API key provided: {key}.", code="invalid_api_key")
    return None


def _scripted_error(error: ScriptedError, model: str) -> web.Response:
    message = error.message
    if message is None and error.status == 404:
        message = f"The model `{model}` does not exist or you do not have access to it."
    code = _DEFAULT_CODE if error.code is None else error.code
    return error_response(error.status, message, code=code, retry_after_s=error.retry_after_s)


def _parse_embedding_request(body: Any) -> tuple[str, list[tuple[str, int]], int, str]:
    """(model, [(text, tokens)], dimensions, encoding_format) of an embeddings request."""
    if not isinstance(body, Mapping):
        raise InvalidRequest("The request body must be a JSON object.", None)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("you must provide a model parameter", "model")
    inputs = _embedding_inputs(body.get("input"))
    dimensions = body.get("dimensions")
    if dimensions is None:
        dimensions = DEFAULT_EMBEDDING_DIMENSIONS
    elif isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1:
        raise InvalidRequest("'dimensions' must be an integer >= 1.", "dimensions")
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise InvalidRequest("'encoding_format' must be 'float' or 'base64'.", "encoding_format")
    return model, inputs, dimensions, fmt


def _embedding_inputs(value: Any) -> list[tuple[str, int]]:
    """Accept every input form OpenAI does: str, [str], [int] and [[int]] (token arrays)."""
    bad = InvalidRequest("'input' must be a string, array of strings or token arrays.", "input")
    if isinstance(value, str):
        return [(value, count_tokens(value))]
    if not isinstance(value, list) or not value:
        raise bad
    if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return [(_token_key(value), len(value))]
    out = []
    for item in value:
        if isinstance(item, str):
            out.append((item, count_tokens(item)))
        elif isinstance(item, list) and all(isinstance(v, int) for v in item):
            out.append((_token_key(item), len(item)))
        else:
            raise bad
    return out


def _token_key(tokens: Sequence[int]) -> str:
    return "\0tokens:" + ",".join(map(str, tokens))
