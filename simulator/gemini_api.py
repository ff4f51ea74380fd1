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

    @classmethod
    def parse(cls, body: Any) -> GenerateRequest:
        if not isinstance(body, Mapping):
            raise InvalidRequest("Invalid JSON payload received.")
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise InvalidRequest("* GenerateContentRequest.contents: contents is not specified")
        texts = [_content_text(c, f"contents[{i}]") for i, c in enumerate(contents)]
        system = body.get("systemInstruction")
        if system is not None:
            texts.append(_content_text(system, "system_instruction"))
        config = body.get("generationConfig") or {}
        if not isinstance(config, Mapping):
            raise InvalidRequest("* GenerateContentRequest.generation_config: must be an object")
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
        return cls(count_prompt_tokens(texts, len(contents)), max_tokens, tuple(stop))


def _content_text(content: Any, where: str) -> str:
    if not isinstance(content, Mapping):
        raise InvalidRequest(f"* GenerateContentRequest.{where}: must be an object")
    role = content.get("role")
    if role is not None and role not in ("user", "model", "function"):
        raise InvalidRequest(f"* GenerateContentRequest.{where}.role: Please use a valid role")
    parts = content.get("parts")
    if not isinstance(parts, list) or not parts:
        raise InvalidRequest(
            f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty."
        )
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
        completion = compose_completion(model, behaviour, req.max_tokens, req.stop)
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
