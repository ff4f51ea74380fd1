"""The Gemini API wire protocol (generativelanguage): generate, stream, embed.

Only translation lives here: the request JSON → the neutral questions in `scenario`,
and the answers → Gemini's candidates, SSE chunks and Google error bodies, close enough
that the official `google-genai` SDK works unchanged with
`genai.Client(api_key=..., http_options=HttpOptions(base_url="http://host:port"))`.

Routes are `/{version}/models/{model}:{method}` for any version (`v1beta`, `v1`), as
the SDK picks one from its own defaults.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
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
from simulator.scenario_book import ScriptedError
from simulator.state import SimulatorState
from simulator.stats import CallScope
from simulator.tooling import (
    IMAGE_TOKENS,
    PlannedCall,
    ToolSpec,
    answer_after_tools,
    image_note,
    json_answer,
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

VENDOR = "gemini"
INVALID_API_KEY = "sim-invalid-key"
"""Rejected as Google does: 400 INVALID_ARGUMENT with ErrorInfo reason API_KEY_INVALID."""

DEFAULT_EMBEDDING_DIMENSIONS = 768

# HTTP status → (google.rpc.Code name, default message).
_STATUS_NAMES: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
    403: ("PERMISSION_DENIED", "The caller does not have permission."),
    404: ("NOT_FOUND", "Requested entity was not found."),
    409: ("ABORTED", "The operation was aborted."),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    499: ("CANCELLED", "The operation was cancelled."),
    500: ("INTERNAL", "An internal error has occurred. Please retry."),
    501: ("UNIMPLEMENTED", "Method not implemented."),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}

_FINISH_REASONS = {
    FinishReason.END: "STOP",
    FinishReason.STOP_SEQUENCE: "STOP",
    FinishReason.LENGTH: "MAX_TOKENS",
    FinishReason.CONTENT_FILTER: "SAFETY",
}

# A part holds exactly one of these (its `data` oneof).
_PART_DATA = (
    "text",
    "inlineData",
    "functionCall",
    "functionResponse",
    "fileData",
    "executableCode",
    "codeExecutionResult",
)
_FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}")
_CALLING_MODES = ("MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED")
_JSON_MIME_TYPE = "application/json"
_RESPONSE_MIME_TYPES = ("text/plain", _JSON_MIME_TYPE, "text/x.enum")
_CAMEL = re.compile(r"[A-Z]")

_SAFETY_CATEGORIES = (
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
)


def error_body(
    status: int,
    message: str | None = None,
    *,
    code: str | None = None,
    retry_after_s: float | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """Google's `{"error": {code, message, status, details}}`; `code` overrides `status`."""
    default_name = "INTERNAL" if status >= 500 else "FAILED_PRECONDITION"
    name, default_message = _STATUS_NAMES.get(status, (default_name, f"HTTP {status}"))
    details: list[dict[str, Any]] = []
    if reason is not None:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
        )
    if retry_after_s is not None:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": f"{retry_after_s:g}s",
            }
        )
    error: dict[str, Any] = {
        "code": status,
        "message": message or default_message,
        "status": code or name,
    }
    if details:
        error["details"] = details
    return {"error": error}


def error_response(status: int, message: str | None = None, **kwargs: Any) -> web.Response:
    return json_response(error_body(status, message, **kwargs), status=status)


class InvalidRequest(Exception):
    """A 400 INVALID_ARGUMENT with Google-like wording."""


# --------------------------------------------------------------------------- request


@dataclass(frozen=True, slots=True)
class GenerateRequest:
    """The parts of a generateContent request that shape the simulated reply."""

    prompt_tokens: int
    max_tokens: int | None
    stop: tuple[str, ...]
    tools: tuple[ToolSpec, ...] = ()
    choice: str = "auto"  # "auto" | "none" | "required" | a function's name
    answered: bool = False  # the last turn holds function responses
    results: tuple[str, ...] = ()  # ... their texts
    json_mode: bool = False
    schema: Mapping[str, Any] | None = None
    images: tuple[str, ...] = ()  # the MIME types of the images sent
    seed: str = ""

    @classmethod
    def parse(cls, body: Any) -> GenerateRequest:
        if not isinstance(body, Mapping):
            raise InvalidRequest("Invalid JSON payload received.")
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise InvalidRequest("* GenerateContentRequest.contents: contents is not specified")
        conversation = _Conversation()
        for i, content in enumerate(contents):
            conversation.add(content, f"contents[{i}]")
        texts = conversation.texts
        system = _get(body, "systemInstruction")
        if system is not None:
            texts.append(_content_text(system, "system_instruction"))
        config = _get(body, "generationConfig") or {}
        if not isinstance(config, Mapping):
            raise InvalidRequest("* GenerateContentRequest.generation_config: must be an object")
        max_tokens, stop = _check_config(config)
        json_mode, schema = _response_format(config)
        tools, declarations = _tools(body.get("tools"))
        choice, callable_tools = _tool_choice(_get(body, "toolConfig"), tools)
        prompt_tokens = count_prompt_tokens(texts, len(contents)) + IMAGE_TOKENS * len(
            conversation.images
        )
        if declarations:
            prompt_tokens += count_tokens(json.dumps(declarations))
        return cls(
            prompt_tokens,
            max_tokens,
            stop,
            callable_tools,
            choice,
            conversation.answered,
            tuple(conversation.results),
            json_mode,
            schema,
            tuple(conversation.images),
            hashlib.sha256(dumps(contents)).hexdigest()[:16],
        )

    def tool_calls(self, fault: str | None) -> tuple[PlannedCall, ...]:
        """The functions the model calls (Gemini calls several at once when it may)."""
        return plan_tool_calls(
            self.tools,
            self.choice,
            self.answered,
            parallel=True,
            fault=fault,
            seed=self.seed,
            prefix="call_",
        )

    def shaped(self, model: str, behaviour: Behaviour) -> Behaviour:
        """`behaviour` with the reply this request calls for: an answer quoting the
        function responses, JSON in JSON mode, a note on the images seen. Unchanged for a
        plain text request."""
        reply = None
        if self.answered:
            reply = answer_after_tools(self.results)
        elif self.json_mode:
            reply = json_answer(self.schema, behaviour.output_fault)
        if self.images:
            base = reply if reply is not None else "".join(reply_tokens(model, behaviour))
            reply = base + image_note(self.images)
        return behaviour if reply is None else replace(behaviour, reply=reply)


def _get(obj: Mapping[str, Any], name: str) -> Any:
    """A field by its JSON name or its proto name: Google's JSON parsing takes both, and
    the SDK sends nested fields of some parts (``inline_data.mime_type``,
    ``parameters_json_schema``) in their proto spelling."""
    value = obj.get(name)
    return obj.get(_CAMEL.sub(lambda m: "_" + m.group().lower(), name)) if value is None else value


class _Conversation:
    """What the turns of `contents` hold: text to count, images, function responses."""

    __slots__ = ("answered", "images", "results", "texts")

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.images: list[str] = []
        self.results: list[str] = []
        self.answered = False

    def add(self, content: Any, where: str) -> None:
        if not isinstance(content, Mapping):
            raise InvalidRequest(f"* GenerateContentRequest.{where}: must be an object")
        _check_role(content, where)
        parts = _parts(content, where)
        words: list[str] = []
        results: list[str] = []
        for j, part in enumerate(parts):
            self._part(part, f"{where}.parts[{j}]", words, results)
        self.texts.append(" ".join(words))
        self.results, self.answered = results, bool(results)

    def _part(self, part: Any, where: str, words: list[str], results: list[str]) -> None:
        if not isinstance(part, Mapping):
            raise InvalidRequest(f"* GenerateContentRequest.{where}: must be an object")
        present = [name for name in _PART_DATA if _get(part, name) is not None]
        if len(present) != 1:
            raise InvalidRequest(
                f"* GenerateContentRequest.{where}.data: required oneof field 'data' must "
                "have exactly one initialized field"
            )
        kind, value = present[0], _get(part, present[0])
        if kind == "text":
            if not isinstance(value, str):
                raise InvalidRequest(f"* GenerateContentRequest.{where}.text: must be a string")
            words.append(value)
        elif kind == "inlineData":
            mime_type = _inline_data(value, f"{where}.inline_data")
            if mime_type.startswith("image/"):
                self.images.append(mime_type)
        elif kind == "functionCall":
            words.append(_function_call(value, f"{where}.function_call"))
        elif kind == "functionResponse":
            result = _function_response(value, f"{where}.function_response")
            results.append(result)
            words.append(result)


def _check_role(content: Mapping[str, Any], where: str) -> None:
    role = content.get("role")
    if role is not None and role not in ("user", "model", "function"):
        raise InvalidRequest(f"* GenerateContentRequest.{where}.role: Please use a valid role")


def _parts(content: Mapping[str, Any], where: str) -> list[Any]:
    parts = content.get("parts")
    if not isinstance(parts, list) or not parts:
        raise InvalidRequest(
            f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty."
        )
    return parts


def _inline_data(blob: Any, where: str) -> str:
    """The MIME type of an `inlineData` blob whose `data` is base64 (either alphabet)."""
    if not isinstance(blob, Mapping):
        raise InvalidRequest(f"* GenerateContentRequest.{where}: must be an object")
    mime_type, data = _get(blob, "mimeType"), blob.get("data")
    if not isinstance(mime_type, str) or not mime_type:
        raise InvalidRequest(f"* GenerateContentRequest.{where}.mime_type: must be set")
    if not isinstance(data, str) or not _is_base64(data):
        raise InvalidRequest(
            f"Invalid value at '{where}.data' (TYPE_BYTES), Base64 decoding failed"
        )
    return mime_type


def _is_base64(data: str) -> bool:
    """Base64 in the standard or the web-safe alphabet (Google takes both)."""
    try:
        base64.b64decode(data.replace("-", "+").replace("_", "/"), validate=True)
    except ValueError:
        return False
    return True


def _function_call(call: Any, where: str) -> str:
    """A replayed call's text (its name and arguments), for the prompt count."""
    if not isinstance(call, Mapping) or not isinstance(call.get("name"), str):
        raise InvalidRequest(f"* GenerateContentRequest.{where}.name: must be set")
    args = call.get("args", {})
    if not isinstance(args, Mapping):
        raise InvalidRequest(
            f"Invalid value at '{where}.args' (type.googleapis.com/google.protobuf.Struct)"
        )
    return f"{call['name']} {json.dumps(args)}"


def _function_response(response: Any, where: str) -> str:
    """A function response's text: its `result` when that is text, else the JSON of the
    result (or of the whole response when it has no `result`)."""
    if not isinstance(response, Mapping) or not isinstance(response.get("name"), str):
        raise InvalidRequest(f"* GenerateContentRequest.{where}.name: must be set")
    value = response.get("response")
    if not isinstance(value, Mapping):
        raise InvalidRequest(
            f"Invalid value at '{where}.response' (type.googleapis.com/google.protobuf.Struct)"
        )
    result = value.get("result", value)
    return result if isinstance(result, str) else json.dumps(result)


def _tools(value: Any) -> tuple[tuple[ToolSpec, ...], list[Any]]:
    """The declared functions (other tools, such as Google Search, are accepted and not
    used) and their declarations as sent, for the prompt count."""
    if value is None:
        return (), []
    if not isinstance(value, list):
        raise InvalidRequest("* GenerateContentRequest.tools: must be a list")
    specs: list[ToolSpec] = []
    declarations: list[Any] = []
    for i, tool in enumerate(value):
        if not isinstance(tool, Mapping):
            raise InvalidRequest(f"* GenerateContentRequest.tools[{i}]: must be an object")
        found = _get(tool, "functionDeclarations")
        if found is None:
            continue
        if not isinstance(found, list):
            raise InvalidRequest(
                f"* GenerateContentRequest.tools[{i}].function_declarations: must be a list"
            )
        for j, declaration in enumerate(found):
            spec = _declaration(declaration, f"tools[{i}].function_declarations[{j}]")
            if any(s.name == spec.name for s in specs):
                raise InvalidRequest(
                    f"* GenerateContentRequest.tools[{i}].function_declarations[{j}].name: "
                    f"Duplicate function declaration name: {spec.name}"
                )
            specs.append(spec)
            declarations.append(declaration)
    return tuple(specs), declarations


def _declaration(declaration: Any, where: str) -> ToolSpec:
    """One function: a valid name, and at most one of `parameters` (Google's OpenAPI
    subset, upper-case types) and `parametersJsonSchema` (JSON Schema)."""
    if not isinstance(declaration, Mapping):
        raise InvalidRequest(f"* GenerateContentRequest.{where}: must be an object")
    name = declaration.get("name")
    if not isinstance(name, str) or not _FUNCTION_NAME.fullmatch(name):
        raise InvalidRequest(
            f"* GenerateContentRequest.{where}.name: Invalid function name. Must start with "
            "a letter or an underscore. Must be alphameric (a-z, A-Z, 0-9), underscores (_), "
            "dots (.), colons (:) or dashes (-), with a maximum length of 64."
        )
    description = declaration.get("description")
    if description is not None and not isinstance(description, str):
        raise InvalidRequest(f"* GenerateContentRequest.{where}.description: must be a string")
    openapi = declaration.get("parameters")
    schema = _get(declaration, "parametersJsonSchema")
    if openapi is not None and schema is not None:
        raise InvalidRequest(
            f"* GenerateContentRequest.{where}: parameters and parameters_json_schema "
            "cannot both be set"
        )
    chosen = _json_schema(openapi) if openapi is not None else schema
    if chosen is not None and not isinstance(chosen, Mapping):
        raise InvalidRequest(f"* GenerateContentRequest.{where}.parameters: must be an object")
    return ToolSpec(name, chosen or {"type": "object"})


def _json_schema(openapi: Any) -> Any:
    """Google's OpenAPI schema ("OBJECT", "STRING" …) as JSON Schema types (lower case)."""
    if isinstance(openapi, list):
        return [_json_schema(item) for item in openapi]
    if not isinstance(openapi, Mapping):
        return openapi
    out = {key: _json_schema(value) for key, value in openapi.items()}
    if isinstance(out.get("type"), str):
        out["type"] = out["type"].lower()
    return out


def _tool_choice(config: Any, tools: tuple[ToolSpec, ...]) -> tuple[str, tuple[ToolSpec, ...]]:
    """`functionCallingConfig` → the neutral choice and the functions it lets the model
    call: NONE → "none"; ANY → "required", or the name when exactly one is allowed."""
    if config is None:
        return "auto", tools
    where = "* GenerateContentRequest.tool_config.function_calling_config"
    calling = _get(config, "functionCallingConfig") if isinstance(config, Mapping) else None
    calling = {} if calling is None else calling
    if not isinstance(calling, Mapping):
        raise InvalidRequest(f"{where}: must be an object")
    mode = calling.get("mode") or "AUTO"
    if mode not in _CALLING_MODES:
        raise InvalidRequest(
            f"Invalid value at 'tool_config.function_calling_config.mode' "
            f"(type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode),"
            f" \"{mode}\""
        )
    allowed = _get(calling, "allowedFunctionNames") or []
    if not isinstance(allowed, list) or not all(isinstance(n, str) for n in allowed):
        raise InvalidRequest(f"{where}.allowed_function_names: must be a list of strings")
    if allowed and mode not in ("ANY", "VALIDATED"):
        raise InvalidRequest(
            f"{where}.allowed_function_names: should only be set when the mode is ANY"
        )
    unknown = sorted(set(allowed) - {t.name for t in tools})
    if unknown:
        raise InvalidRequest(
            f"{where}.allowed_function_names: {unknown[0]} is not a declared function"
        )
    if mode == "NONE":
        return "none", tools
    if mode != "ANY":
        return "auto", tools
    if len(allowed) == 1:
        return allowed[0], tools
    return "required", tuple(t for t in tools if not allowed or t.name in allowed)


def _response_format(config: Mapping[str, Any]) -> tuple[bool, Mapping[str, Any] | None]:
    """(JSON mode, its schema): `responseMimeType` application/json with at most one of
    `responseSchema` (OpenAPI subset) and `responseJsonSchema` (JSON Schema)."""
    where = "* GenerateContentRequest.generation_config"
    mime_type = _get(config, "responseMimeType")
    if mime_type is not None and mime_type not in _RESPONSE_MIME_TYPES:
        raise InvalidRequest(
            f"{where}.response_mime_type: allowed mimetypes are "
            + ", ".join(f"`{m}`" for m in _RESPONSE_MIME_TYPES)
        )
    openapi, schema = _get(config, "responseSchema"), _get(config, "responseJsonSchema")
    if openapi is not None and schema is not None:
        raise InvalidRequest(
            f"{where}: response_schema and response_json_schema cannot both be set"
        )
    chosen = _json_schema(openapi) if openapi is not None else schema
    if chosen is not None and mime_type not in (_JSON_MIME_TYPE, "text/x.enum"):
        raise InvalidRequest(
            f"{where}.response_mime_type: It should be set to `application/json` when a "
            "response schema is set"
        )
    if chosen is not None and not isinstance(chosen, Mapping):
        raise InvalidRequest(f"{where}.response_schema: must be an object")
    return mime_type == _JSON_MIME_TYPE, chosen


def _check_config(config: Mapping[str, Any]) -> tuple[int | None, tuple[str, ...]]:
    """Check the sampling parameters; (max output tokens, stop sequences)."""
    _check_range(config, "temperature", 0.0, 2.0)
    _check_range(config, "topP", 0.0, 1.0)
    top_k = config.get("topK")
    if top_k is not None and (not isinstance(top_k, int | float) or top_k < 1):
        raise InvalidRequest("* GenerateContentRequest.generation_config.top_k: must be >= 1")
    max_tokens = config.get("maxOutputTokens")
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise InvalidRequest(
            "* GenerateContentRequest.generation_config.max_output_tokens: must be positive"
        )
    stop = config.get("stopSequences") or []
    if not isinstance(stop, list) or len(stop) > 5 or not all(isinstance(s, str) for s in stop):
        raise InvalidRequest(
            "* GenerateContentRequest.generation_config.stop_sequences: "
            "up to 5 strings are allowed"
        )
    return max_tokens, tuple(stop)


def _content_text(content: Any, where: str) -> str:
    """The text of a system instruction or an embedding's content (text parts only)."""
    if not isinstance(content, Mapping):
        raise InvalidRequest(f"* GenerateContentRequest.{where}: must be an object")
    _check_role(content, where)
    parts = _parts(content, where)
    return " ".join(
        p["text"] for p in parts if isinstance(p, Mapping) and isinstance(p.get("text"), str)
    )


def _check_range(config: Mapping[str, Any], name: str, low: float, high: float) -> None:
    value = config.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidRequest(
            f"* GenerateContentRequest.generation_config.{name}: must be in [{low:g}, {high:g}]"
        )


# --------------------------------------------------------------------------- response shapes


def _usage(req: GenerateRequest, behaviour: Behaviour, output_tokens: int) -> dict[str, Any]:
    """Gemini's `cachedContentTokenCount` is a part of `promptTokenCount`, not extra."""
    prompt_tokens, output_tokens = reported_usage(behaviour, req.prompt_tokens, output_tokens)
    usage: dict[str, Any] = {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": output_tokens,
        "totalTokenCount": prompt_tokens + output_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
    }
    cached = min(behaviour.cached_prompt_tokens, prompt_tokens)
    if cached:
        usage["cachedContentTokenCount"] = cached
    return usage


def _safety_ratings(blocked: bool) -> list[dict[str, Any]]:
    return [
        {
            "category": category,
            "probability": "HIGH" if blocked and i == 0 else "NEGLIGIBLE",
            **({"blocked": True} if blocked and i == 0 else {}),
        }
        for i, category in enumerate(_SAFETY_CATEGORIES)
    ]


def _candidate(text: str | None, finish: str | None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"index": 0}
    if text is not None:
        candidate["content"] = {"parts": [{"text": text}], "role": "model"}
    if finish is not None:
        candidate["finishReason"] = finish
        if finish == "SAFETY":
            candidate["safetyRatings"] = _safety_ratings(True)
    return candidate


def _chunk(
    model: str, response_id: str, candidate: dict[str, Any] | None, usage: dict[str, Any]
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if candidate is not None:
        body["candidates"] = [candidate]
    body.update({"usageMetadata": usage, "modelVersion": model, "responseId": response_id})
    return body


def _blocked_prompt(model: str, req: GenerateRequest) -> dict[str, Any]:
    """A refused prompt: no candidates, `promptFeedback.blockReason` says why."""
    usage = {"promptTokenCount": req.prompt_tokens, "totalTokenCount": req.prompt_tokens}
    return {
        "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": _safety_ratings(True)},
        "usageMetadata": usage,
        "modelVersion": model,
        "responseId": new_id(),
    }


def generate_body(
    model: str, req: GenerateRequest, behaviour: Behaviour, completion: Completion
) -> dict[str, Any]:
    if completion.prompt_blocked:
        return _blocked_prompt(model, req)
    candidate = _candidate(completion.text, _FINISH_REASONS[completion.finish])
    return _chunk(model, new_id(), candidate, _usage(req, behaviour, len(completion.tokens)))


def _call_parts(calls: tuple[PlannedCall, ...]) -> list[dict[str, Any]] | None:
    """Each call as a `functionCall` part (`args` an object, with an `id`); None when a
    call's arguments are not an object, which Gemini cannot send: it ends such an answer
    with MALFORMED_FUNCTION_CALL instead."""
    inputs = [call.input for call in calls]
    if not all(isinstance(value, Mapping) for value in inputs):
        return None
    return [
        {"functionCall": {"name": call.name, "args": value, "id": call.id}}
        for call, value in zip(calls, inputs, strict=True)
    ]


def _call_candidates(calls: tuple[PlannedCall, ...]) -> list[dict[str, Any]]:
    """The candidates of a function-calling answer, one per streamed chunk: one call
    each, the last with finishReason STOP (Gemini's finish for calls too); or one
    MALFORMED_FUNCTION_CALL candidate that holds no call, only a `finishMessage`."""
    parts = _call_parts(calls)
    if parts is None:
        shown = "; ".join(f"{call.name}({call.arguments})" for call in calls)
        return [
            {
                "index": 0,
                "finishReason": "MALFORMED_FUNCTION_CALL",
                "finishMessage": f"Malformed function call: {shown}",
            }
        ]
    candidates = [{"index": 0, "content": {"parts": [part], "role": "model"}} for part in parts]
    candidates[-1]["finishReason"] = "STOP"
    return candidates


def _call_tokens(calls: tuple[PlannedCall, ...]) -> list[int]:
    """Output tokens per call: its arguments' words."""
    return [count_tokens(call.arguments) for call in calls]


def calls_body(
    model: str, req: GenerateRequest, behaviour: Behaviour, calls: tuple[PlannedCall, ...]
) -> dict[str, Any]:
    """A unary function-calling answer: every call's part in one candidate."""
    candidates = _call_candidates(calls)
    candidate = candidates[-1]
    if "content" in candidate:
        parts = [part for c in candidates for part in c["content"]["parts"]]
        candidate = {**candidate, "content": {"parts": parts, "role": "model"}}
    return _chunk(model, new_id(), candidate, _usage(req, behaviour, sum(_call_tokens(calls))))


_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


def _sse(data: Mapping[str, Any]) -> bytes:
    return b"data: " + dumps(data) + b"\r\n\r\n"


def _error_chunk(status: int) -> bytes:
    """A chunk holding a Google error body: how Gemini fails a stream after its HTTP 200."""
    return _sse(error_body(status))


# --------------------------------------------------------------------------- routes


class GeminiProtocol:
    """Gemini routes bound to the simulator's shared state (behaviours and stats)."""

    def __init__(self, state: SimulatorState) -> None:
        self._state = state

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/{version}/models/{target:.+}", self.dispatch)]

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["target"].rpartition(":")
        handler = {
            "generateContent": self._generate,
            "streamGenerateContent": self._generate,
            "embedContent": self._embed,
            "batchEmbedContents": self._embed,
        }.get(method)
        if not model or handler is None:
            return error_response(404, f"Method not found: {method or request.path}.")
        with CallScope(self._state.stats, partial(connection_lost, request), VENDOR) as scope:
            try:
                denied = _check_auth(request)
                if denied is not None:
                    return scope.responded(denied)
                scope.model(model)
                try:
                    body = await read_json(request)
                except ValueError:
                    return scope.responded(error_response(400, "Invalid JSON payload received."))
                return await handler(request, model, method, body, scope)
            except InvalidRequest as exc:
                return scope.responded(error_response(400, str(exc)))
            except ConnectionError:
                raise asyncio.CancelledError from None  # client gone mid-write: end quietly

    # -- generate ---------------------------------------------------------------------

    async def _generate(
        self, request: web.Request, model: str, method: str, body: Any, scope: CallScope
    ) -> web.StreamResponse:
        req = GenerateRequest.parse(body)
        plan = self._state.scenarios.plan(model)
        behaviour = plan.behaviour
        await wait_latency(behaviour)
        if plan.error is not None:
            return scope.responded(_scripted_error(plan.error, model))
        if behaviour.timeout:
            await hang()
        calls = req.tool_calls(behaviour.output_fault)
        if calls and behaviour.content_filter != "prompt":
            return await self._calls(request, model, method, req, calls, behaviour, scope)
        completion = compose_completion(
            model, req.shaped(model, behaviour), req.max_tokens, req.stop
        )
        if method == "streamGenerateContent":
            return await self._stream(request, model, req, completion, behaviour, scope)
        script = unary_script(behaviour, len(completion.tokens))
        await unary_generation_delay(behaviour, script.tokens)
        return end_unary(
            request,
            scope,
            script,
            generate_body(model, req, behaviour, completion),
            late_error=partial(_scripted_error, model=model),
        )

    async def _calls(
        self,
        request: web.Request,
        model: str,
        method: str,
        req: GenerateRequest,
        calls: tuple[PlannedCall, ...],
        behaviour: Behaviour,
        scope: CallScope,
    ) -> web.StreamResponse:
        """A function-calling answer, unary or streamed (a blocked prompt answers as
        with text: the model never got to call anything)."""
        if method == "streamGenerateContent":
            return await self._stream_calls(request, model, req, calls, behaviour, scope)
        script = unary_script(behaviour, sum(_call_tokens(calls)))
        await unary_generation_delay(behaviour, script.tokens)
        return end_unary(
            request,
            scope,
            script,
            calls_body(model, req, behaviour, calls),
            late_error=partial(_scripted_error, model=model),
        )

    async def _stream_calls(
        self,
        request: web.Request,
        model: str,
        req: GenerateRequest,
        calls: tuple[PlannedCall, ...],
        behaviour: Behaviour,
        scope: CallScope,
    ) -> web.StreamResponse:
        """One SSE chunk per whole call (Gemini does not stream a call's arguments); the
        last carries finishReason. Stream faults count calls where text counts tokens."""
        resp = web.StreamResponse(headers=_SSE_HEADERS)
        await resp.prepare(request)
        scope.responded(resp)
        scope.stream_started()
        response_id = new_id()
        pacer = TokenPacer(behaviour.tokens_per_second)
        candidates = _call_candidates(calls)
        script = stream_script(behaviour, len(candidates))
        tokens = _call_tokens(calls)
        last = len(candidates) - 1
        for i, candidate in enumerate(candidates[: script.tokens]):
            await pacer.before_token(i)
            if script.ending is not Ending.COMPLETE:
                candidate = {k: v for k, v in candidate.items() if k != "finishReason"}
            usage = _usage(req, behaviour, sum(tokens if i == last else tokens[: i + 1]))
            await resp.write(_sse(_chunk(model, response_id, candidate, usage)))
        if script.ending is not Ending.COMPLETE:
            return await end_stream_early(request, resp, scope, script, _error_chunk)
        await resp.write_eof()
        scope.stream_completed()
        return resp

    async def _stream(
        self,
        request: web.Request,
        model: str,
        req: GenerateRequest,
        completion: Completion,
        behaviour: Behaviour,
        scope: CallScope,
    ) -> web.StreamResponse:
        """One SSE chunk per token; the last carries finishReason and final usage.

        A blocked prompt is one chunk whatever the fault script: there is no text to cut.
        """
        resp = web.StreamResponse(headers=_SSE_HEADERS)
        await resp.prepare(request)
        scope.responded(resp)
        scope.stream_started()
        if completion.prompt_blocked:
            await resp.write(_sse(_blocked_prompt(model, req)))
            await resp.write_eof()
            scope.stream_completed()
            return resp
        response_id = new_id()
        pacer = TokenPacer(behaviour.tokens_per_second)
        tokens = completion.tokens
        script = stream_script(behaviour, len(tokens))
        complete = script.ending is Ending.COMPLETE
        last = len(tokens) - 1
        for i, token in enumerate(tokens[: script.tokens]):
            await pacer.before_token(i)
            finish = _FINISH_REASONS[completion.finish] if i == last and complete else None
            usage = _usage(req, behaviour, i + 1)
            await resp.write(_sse(_chunk(model, response_id, _candidate(token, finish), usage)))
        if not complete:
            return await end_stream_early(request, resp, scope, script, _error_chunk)
        if not tokens:  # nothing generated (e.g. max tokens 0): still report the finish
            finish = _FINISH_REASONS[completion.finish]
            usage = _usage(req, behaviour, 0)
            await resp.write(_sse(_chunk(model, response_id, _candidate("", finish), usage)))
        await resp.write_eof()
        scope.stream_completed()
        return resp

    # -- embeddings -------------------------------------------------------------------

    async def _embed(
        self, request: web.Request, model: str, method: str, body: Any, scope: CallScope
    ) -> web.StreamResponse:
        if not isinstance(body, Mapping):
            raise InvalidRequest("Invalid JSON payload received.")
        if method == "batchEmbedContents":
            items = body.get("requests")
            if not isinstance(items, list) or not items:
                raise InvalidRequest("* BatchEmbedContentsRequest.requests: must not be empty")
        else:
            items = [body]
        inputs = [_embed_input(item, f"requests[{i}]") for i, item in enumerate(items)]
        plan = self._state.scenarios.plan(model)
        await wait_latency(plan.behaviour)
        if plan.error is not None:
            return scope.responded(_scripted_error(plan.error, model))
        if plan.behaviour.timeout:
            await hang()
        if plan.behaviour.drop_after_tokens is not None:
            abort_connection(request, scope)
        vectors = [{"values": embedding_vector(model, text, dims)} for text, dims in inputs]
        out = (
            {"embeddings": vectors} if method == "batchEmbedContents" else {"embedding": vectors[0]}
        )
        return scope.responded(json_response(out))


def _embed_input(item: Any, where: str) -> tuple[str, int]:
    """(text, dimensions) of one embed request; config may be flat or in embedContentConfig."""
    if not isinstance(item, Mapping):
        raise InvalidRequest(f"* {where}: must be an object")
    text = _content_text(item.get("content"), f"{where}.content")
    config = item.get("embedContentConfig")
    config = config if isinstance(config, Mapping) else {}
    dims = item.get("outputDimensionality", config.get("outputDimensionality"))
    if dims is None:
        return text, DEFAULT_EMBEDDING_DIMENSIONS
    if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
        raise InvalidRequest(f"* {where}.output_dimensionality: must be a positive integer")
    return text, dims


def _check_auth(request: web.BaseRequest) -> web.Response | None:
    key = request.headers.get("x-goog-api-key") or request.query.get("key", "")
    if not key:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        key = token.strip() if scheme.lower() == "bearer" else ""
    if not key:
        return error_response(
            403,
            "Method doesn't allow unregistered callers (callers without established "
            "identity). Please use API Key or other form of API consumer identity to call "
            "this API.",
        )
    if key == INVALID_API_KEY:
        return error_response(
            400, "API key not valid. Please pass a valid API key.", reason="API_KEY_INVALID"
        )
    return None


def _scripted_error(error: ScriptedError, model: str) -> web.Response:
    message = error.message
    if message is None and error.status == 404:
        message = f"models/{model} is not found for API version v1beta, or is not supported."
    return error_response(error.status, message, code=error.code, retry_after_s=error.retry_after_s)
