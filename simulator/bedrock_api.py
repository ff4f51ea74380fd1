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
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class ConverseRequest:
    """The parts of a Converse request that shape the simulated reply."""

    prompt_tokens: int
    max_tokens: int | None
    stop: tuple[str, ...]

    @classmethod
    def parse(cls, body: Any) -> ConverseRequest:
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
        texts = [_message_text(m, i) for i, m in enumerate(messages)]
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
        return cls(count_prompt_tokens(texts, len(messages)), max_tokens, tuple(stop))


def _message_text(message: Any, index: int) -> str:
    if not isinstance(message, Mapping) or message.get("role") not in ("user", "assistant"):
        raise InvalidRequest(
            f"1 validation error detected: Value at 'messages.{index + 1}.member.role' failed "
            "to satisfy constraint: Member must satisfy enum value set: [user, assistant]"
        )
    content = message.get("content")
    if not isinstance(content, list):
        raise InvalidRequest(f"messages.{index + 1}.content: expected a list of content blocks")
    return " ".join(
        b["text"] for b in content if isinstance(b, Mapping) and isinstance(b.get("text"), str)
    )


# --------------------------------------------------------------------------- response shapes


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
    req: ConverseRequest, behaviour: Behaviour, completion: Completion, started: float
) -> dict[str, Any]:
    content = [] if completion.prompt_blocked else [{"text": completion.text}]
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": _STOP_REASONS[completion.finish],
        "usage": _usage(req, behaviour, len(completion.tokens)),
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
        req = ConverseRequest.parse(call.body)
        behaviour, failed = await self._prepare(call)
        if failed is not None:
            return call.scope.responded(failed)
        completion = compose_completion(call.model, behaviour, req.max_tokens, req.stop)
        script = unary_script(behaviour, len(completion.tokens))
        await unary_generation_delay(behaviour, script.tokens)
        return end_unary(
            call.request,
            call.scope,
            script,
            converse_body(req, behaviour, completion, call.started),
            late_error=partial(_scripted_error, model=call.model),
            headers={"x-amzn-RequestId": new_id()},
        )

    async def _converse_stream(self, call: _Call) -> web.StreamResponse:
        req = ConverseRequest.parse(call.body)
        behaviour, failed = await self._prepare(call)
        if failed is not None:
            return call.scope.responded(failed)
        completion = compose_completion(call.model, behaviour, req.max_tokens, req.stop)
        resp = web.StreamResponse(
            headers={"Content-Type": _EVENTSTREAM, "x-amzn-RequestId": new_id()}
        )
        await resp.prepare(call.request)
        call.scope.responded(resp)
        call.scope.stream_started()
        await resp.write(event_message("messageStart", dumps({"role": "assistant"})))
        pacer = TokenPacer(behaviour.tokens_per_second)
        script = stream_script(behaviour, len(completion.tokens))
        for i, token in enumerate(completion.tokens[: script.tokens]):
            await pacer.before_token(i)
            delta = {"contentBlockIndex": 0, "delta": {"text": token}}
            await resp.write(event_message("contentBlockDelta", dumps(delta)))
        if script.ending is not Ending.COMPLETE:
            return await end_stream_early(call.request, resp, call.scope, script, _stream_exception)
        await resp.write(event_message("contentBlockStop", dumps({"contentBlockIndex": 0})))
        stop = {"stopReason": _STOP_REASONS[completion.finish]}
        await resp.write(event_message("messageStop", dumps(stop)))
        metadata = {
            "usage": _usage(req, behaviour, len(completion.tokens)),
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
