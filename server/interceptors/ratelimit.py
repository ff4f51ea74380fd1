"""Rate limits per calling service (JWT subject) and per end user.

Rules come from configuration: requests/minute and tokens/minute, optionally only for a
scope, a model, a tenant or a tier (a tenant's limit set: server/kernel/tenancy.py).
Buckets are per service *within its tenant*, so two tenants' services never share one. Token limits are charged with an estimate taken before the call (prompt
characters / 4 + max output tokens), because the real count is only known afterwards
and the point of the limit is to stop the spend before it happens. Once the answer
reports its usage (a Generate response, a stream's end event), the bucket is corrected
by the difference — in the background, so the answer is not held up — so a limit in
tokens/minute means tokens actually used, not guesses.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from server.interceptors.auth import METHOD_SCOPES
from server.interceptors.wrapping import WrappingInterceptor, wrap_before
from server.kernel.call_context import current_call
from server.kernel.config import LimitRule
from server.kernel.errors import Fault, GatewayError, QuotaViolation
from server.kernel.metrics import Metrics
from server.kernel.tenancy import TenantClaims
from server.kernel.tokens import CHARS_PER_TOKEN, IMAGE_PROMPT_TOKENS, estimate_tokens_of_chars
from server.ratelimit.rules import RateLimiter, Rule

DEFAULT_OUTPUT_ESTIMATE = 256


@dataclass(frozen=True)
class _Check:
    config: LimitRule
    rule: Rule
    tokens: bool  # True: cost is the token estimate; False: cost 1 request


def compile_rules(rules: list[LimitRule]) -> list[_Check]:
    """One GCRA rule per configured limit (a config rule may set both kinds)."""
    checks = []
    for cfg in rules:
        if cfg.requests_per_minute:
            checks.append(_Check(cfg, Rule(f"{cfg.name}", cfg.requests_per_minute, 60.0,
                                           cfg.burst), tokens=False))
        if cfg.tokens_per_minute:
            checks.append(_Check(cfg, Rule(f"{cfg.name}-tokens", cfg.tokens_per_minute, 60.0,
                                           cfg.burst), tokens=True))
    return checks


def request_tokens(request: Any) -> int:
    """The request's expected tokens (server/kernel/tokens.py's policy) plus its output cap
    (an Embed request: its inputs only; an image: the most one is billed as)."""
    if "inputs" in request.DESCRIPTOR.fields_by_name:
        return estimate_tokens_of_chars(sum(len(text) for text in request.inputs))
    chars = len(getattr(request, "system_instruction", ""))
    images = 0
    for message in getattr(request, "messages", ()):
        chars += len(message.content) + sum(len(p.text) for p in message.parts)
        images += sum(1 for p in message.parts if p.HasField("image"))
    if images:
        chars += images * IMAGE_PROMPT_TOKENS * CHARS_PER_TOKEN
    for tool in getattr(request, "tools", ()):  # declarations count as prompt
        chars += len(tool.name) + len(tool.description) + tool.parameters.ByteSize()
    config = getattr(request, "config", None)
    output = DEFAULT_OUTPUT_ESTIMATE
    if config is not None and config.HasField("max_output_tokens"):
        output = max(config.max_output_tokens, 0)
    return estimate_tokens_of_chars(chars) + output


class RateLimitInterceptor(WrappingInterceptor):
    """Refuse calls over their limits with RESOURCE_EXHAUSTED + RetryInfo + retry-after."""

    def __init__(self, limiter: RateLimiter, rules: list[LimitRule], metrics: Metrics,
                 tenants: TenantClaims = TenantClaims()) -> None:
        self._limiter = limiter
        self._tenants = tenants
        self._checks = compile_rules(rules)
        self._metrics = metrics
        self._pending: set[asyncio.Future[None]] = set()  # corrections in flight
        super().__init__()

    def _active(self) -> bool:
        return bool(self._checks)

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        scope = METHOD_SCOPES.get(method)
        checks = [c for c in self._checks if c.config.scope in (None, scope)]
        if not checks:
            return handler

        async def enforce(request: Any) -> list[_Taken]:
            """Check every rule; the token charges taken, to correct after the call."""
            call = current_call.get()
            subject = call.subject if call else "anonymous"
            claims = call.principal.claims if call and call.principal else None
            tenant = self._tenants.tenant_of(claims, call.acting_tenant if call else None)
            tier = self._tenants.tier_of(claims, tenant)
            who = tenant.scope(subject)
            end_user = getattr(request, "end_user_id", "")
            model = getattr(request, "model", "")
            tokens = None
            taken: list[_Taken] = []
            for check in checks:
                cfg = check.config
                if cfg.model is not None and cfg.model != model:
                    continue
                if (cfg.tenant is not None and cfg.tenant != tenant.name) or \
                        (cfg.tier is not None and cfg.tier != tier):
                    continue
                if cfg.per == "end_user":
                    if not end_user:
                        continue
                    key = f"{check.rule.name}:{who}:{end_user}"
                else:
                    key = f"{check.rule.name}:{who}"
                cost = 1
                if check.tokens:
                    tokens = request_tokens(request) if tokens is None else tokens
                    cost = max(tokens, 1)
                decision = await self._limiter.check(key, check.rule, cost)
                if not decision.allowed:
                    self._metrics.rate_limited.labels(cfg.name).inc()
                    raise _rejection(cfg, check, subject if cfg.per == "service" else end_user,
                                     decision.retry_after_s)
                if check.tokens:
                    taken.append(_Taken(key, check.rule, cost))
            return taken

        if not any(c.tokens for c in checks):
            async def before(request: Any, _context: grpc.aio.ServicerContext) -> None:
                await enforce(request)
            return wrap_before(handler, before)
        return _reconciling(handler, enforce, self._correct)

    def _correct(self, taken: list[_Taken], used: int) -> None:
        """Settle the estimate against the usage the answer reported (background)."""
        for charge in taken:
            if used != charge.estimate:
                task = asyncio.ensure_future(
                    self._limiter.adjust(charge.key, charge.rule, used - charge.estimate))
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)


@dataclass(frozen=True)
class _Taken:
    key: str
    rule: Rule
    estimate: int


def _used_tokens(response: Any) -> int | None:
    """The tokens an answer reports: a GenerateResponse's usage or a stream's end event."""
    if "end" in response.DESCRIPTOR.fields_by_name:
        if not response.HasField("end"):
            return None
        response = response.end
    if "usage" not in response.DESCRIPTOR.fields_by_name or not response.HasField("usage"):
        return None
    return response.usage.input_tokens + response.usage.output_tokens


def _reconciling(handler: grpc.RpcMethodHandler,
                 enforce: Callable[[Any], Awaitable[list[_Taken]]],
                 correct: Callable[[list[_Taken], int], None]) -> grpc.RpcMethodHandler:
    """``handler`` behind ``enforce``, with its token charges corrected by the usage the
    answer reports. A call that fails keeps its estimate (no usage is known)."""
    if handler.unary_unary:
        inner_uu = handler.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            taken = await enforce(request)
            response = await inner_uu(request, context)
            if taken and (used := _used_tokens(response)) is not None:
                correct(taken, used)
            return response

        return grpc.unary_unary_rpc_method_handler(
            unary_unary, handler.request_deserializer, handler.response_serializer)
    if handler.unary_stream:
        inner_us = handler.unary_stream

        async def unary_stream(request: Any,
                               context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            taken = await enforce(request)
            async for item in inner_us(request, context):
                if taken and (used := _used_tokens(item)) is not None:
                    correct(taken, used)
                yield item

        return grpc.unary_stream_rpc_method_handler(
            unary_stream, handler.request_deserializer, handler.response_serializer)

    async def client_streaming(_request: Any, _context: grpc.aio.ServicerContext) -> None:
        await enforce(None)
    return wrap_before(handler, client_streaming)


def _rejection(cfg: LimitRule, check: _Check, who: str, retry_after_s: float) -> GatewayError:
    unit = "tokens" if check.tokens else "requests"
    limit = cfg.tokens_per_minute if check.tokens else cfg.requests_per_minute
    if retry_after_s == float("inf"):  # the request alone is larger than the burst
        return GatewayError(
            Fault.EXHAUSTED, "RATE_LIMITED",
            f"this request alone exceeds rate limit {cfg.name!r} ({limit} {unit}/minute)",
            quota_violations=[QuotaViolation(f"{cfg.per}:{who}", f"{cfg.name}: {limit} "
                                             f"{unit}/minute")], metadata={"rule": cfg.name})
    return GatewayError(
        Fault.EXHAUSTED, "RATE_LIMITED",
        f"rate limit {cfg.name!r} exceeded ({limit} {unit}/minute per {cfg.per}); "
        f"retry in {retry_after_s:.2f}s",
        retry_after_s=retry_after_s,
        quota_violations=[QuotaViolation(f"{cfg.per}:{who}", f"{cfg.name}: {limit} {unit}/minute")],
        metadata={"rule": cfg.name},
    )
