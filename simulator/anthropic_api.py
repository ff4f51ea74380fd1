"""The Anthropic wire protocol: Messages API, unary and SSE-streamed.

Only translation lives here: the request JSON → the neutral questions in `scenario`,
and the answers → Anthropic's message object, stream events and error bodies, close
enough that the official `anthropic` SDK works unchanged with
`AsyncAnthropic(base_url="http://host:port")`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from aiohttp import web

from simulator.faults import Ending, reported_usage, stream_script, unary_script
from simulator.pacing import TokenPacer, hang, unary_generation_delay, wait_latency
from simulator.replies import Completion, FinishReason, compose_completion, count_prompt_tokens
from simulator.scenario import Behaviour
from simulator.scenario_book import ScriptedError
from simulator.state import SimulatorState
from simulator.stats import CallScope
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


@dataclass(frozen=True, slots=True)
class MessagesRequest:
    """The parts of a Messages request that shape the simulated reply."""

    model: str
    prompt_tokens: int
    max_tokens: int
    stop: tuple[str, ...]
    stream: bool

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
        texts = [_message_text(m, i) for i, m in enumerate(messages)]
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
        all_texts = texts + ([system] if system else [])
        return cls(
            model=model,
            prompt_tokens=count_prompt_tokens(all_texts, len(messages)),
            max_tokens=max_tokens,
            stop=tuple(stop),
            stream=stream,
        )


def _message_text(message: Any, index: int) -> str:
    where = f"messages.{index}"
    if not isinstance(message, Mapping) or message.get("role") not in ("user", "assistant"):
        raise InvalidRequest(f"{where}.role: Input should be 'user' or 'assistant'")
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(_block_text(b) for b in content)
    raise InvalidRequest(f"{where}.content: Input should be a valid string or list of blocks")


def _block_text(block: Any) -> str:
    if isinstance(block, Mapping) and block.get("type") == "text":
        text = block.get("text")
        return text if isinstance(text, str) else ""
    if isinstance(block, Mapping) and block.get("type") == "tool_result":
        content = block.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return " ".join(_block_text(b) for b in content)
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
    completion: Completion | None,
    output_tokens: int,
) -> dict[str, Any]:
    """A `message` object; with completion None, the empty shell `message_start` carries."""
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
    if completion is not None:
        if not completion.prompt_blocked:
            body["content"] = [{"type": "text", "text": completion.text}]
        body["stop_reason"] = _STOP_REASONS[completion.finish]
        body["stop_sequence"] = completion.stop_sequence
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
        completion = compose_completion(req.model, behaviour, req.max_tokens, req.stop)
        if req.stream:
            return await self._stream(request, req, completion, behaviour, scope)
        tokens = len(completion.tokens)
        script = unary_script(behaviour, tokens)
        await unary_generation_delay(behaviour, script.tokens)
        return end_unary(
            request,
            scope,
            script,
            message_object(new_id("msg_"), req, behaviour, completion, tokens),
            late_error=partial(_scripted_error, model=req.model),
            headers={"request-id": new_id("req_")},
        )

    async def _stream(
        self,
        request: web.Request,
        req: MessagesRequest,
        completion: Completion,
        behaviour: Behaviour,
        scope: CallScope,
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={**_SSE_HEADERS, "request-id": new_id("req_")})
        await resp.prepare(request)
        scope.responded(resp)
        scope.stream_started()
        shell = message_object(new_id("msg_"), req, behaviour, None, 1)
        await resp.write(_event("message_start", {"type": "message_start", "message": shell}))
        await resp.write(
            _event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            )
        )
        await resp.write(_event("ping", {"type": "ping"}))
        pacer = TokenPacer(behaviour.tokens_per_second)
        script = stream_script(behaviour, len(completion.tokens))
        for i, token in enumerate(completion.tokens[: script.tokens]):
            await pacer.before_token(i)
            delta = {"type": "text_delta", "text": token}
            await resp.write(
                _event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": delta},
                )
            )
        if script.ending is not Ending.COMPLETE:
            return await end_stream_early(request, resp, scope, script, _error_event)
        await resp.write(_event("content_block_stop", {"type": "content_block_stop", "index": 0}))
        usage = _usage(req, behaviour, len(completion.tokens))
        await resp.write(
            _event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {
                        "stop_reason": _STOP_REASONS[completion.finish],
                        "stop_sequence": completion.stop_sequence,
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
