"""The OpenAI wire protocol: Chat Completions (+ SSE), Embeddings and Models.

Only translation lives here: request JSON → the neutral questions in `scenario`, and
the answers → OpenAI's response, chunk and error shapes, close enough that the official
`openai` SDK works unchanged against `base_url=http://host:port/v1`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
from simulator.scenario_book import WILDCARD_KEY, ScriptedError
from simulator.state import SimulatorState
from simulator.stats import CallScope
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
    """A 400 naming the offending parameter, as OpenAI's `error.param` does."""

    def __init__(self, message: str, param: str | None) -> None:
        super().__init__(message)
        self.param = param


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


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """The parts of a chat.completions request that shape the simulated reply."""

    model: str
    prompt_tokens: int
    max_tokens: int | None
    stop: tuple[str, ...]
    stream: bool
    include_usage: bool

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
        texts = [_message_text(m, i) for i, m in enumerate(messages)]
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
        return cls(
            model=model,
            prompt_tokens=count_prompt_tokens(texts, len(messages)),
            max_tokens=max_tokens,
            stop=_stop_sequences(body.get("stop")),
            stream=stream,
            include_usage=include_usage,
        )


def _message_text(message: Any, index: int) -> str:
    if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
        raise InvalidRequest(f"messages[{index}] must be an object with a role.", "messages")
    content = message.get("content")
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        return " ".join(
            p["text"] for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str)
        )
    raise InvalidRequest(f"messages[{index}].content must be a string or array.", "messages")


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
    return dumps(
        {
            "id": new_id("chatcmpl-"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": completion.text,
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": _finish_reason(completion),
                }
            ],
            "usage": _usage(*reported_usage(behaviour, req.prompt_tokens, len(completion.tokens))),
            "service_tier": "default",
            "system_fingerprint": _FINGERPRINT,
        }
    )


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
                    return scope.responded(error_response(400, str(exc), param=exc.param))
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
        completion = compose_completion(req.model, behaviour, req.max_tokens, req.stop)
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
