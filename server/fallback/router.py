"""The fallback router: try a chain of targets inside the caller's deadline.

Rules (DESIGN.md §3): retry the same target only for retryable errors, with exponential
backoff and full jitter, honouring retry-after; move on when retries are spent or the
error is not retryable; stop at once on errors any vendor would repeat
(invalid_request, context_too_long). No attempt starts with less than
``min_attempt_s`` of the deadline left, and each attempt gets the remaining time as its
timeout. Streams fail over only until the first event has been relayed.

Each target has a circuit breaker (``breaker.py``): an open one is skipped and reported
as ``skipped_circuit_open``. Retries of the same target also spend from a global retry
allowance (``retry_allowance.py``); with none left the router moves to the next target.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from opentelemetry import trace

from server.kernel.errors import Fault, GatewayError
from server.fallback.attempts import Attempt, Outcome, describe
from server.fallback.breaker import STATE_VALUE, BreakerBoard, BreakerPolicy, BreakerState
from server.fallback.retry_allowance import RetryAllowance
from server.fallback.chain import Target
from server.kernel.metrics import Metrics
from server.providers.base import (
    FINAL_KINDS,
    Completion,
    ErrorKind,
    FinishReason,
    Provider,
    ProviderError,
    ProviderRequest,
    StreamDone,
    StreamEvent,
    TextChunk,
    Usage,
)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts_per_target: int = 2
    base_delay_s: float = 0.05
    max_delay_s: float = 2.0
    max_retry_after_s: float = 5.0
    min_attempt_s: float = 0.02

    def backoff(self, retry: int, error: ProviderError, rng: Callable[[], float]) -> float | None:
        """Delay before retry number ``retry + 1``, or None to move to the next target."""
        if retry + 1 >= self.max_attempts_per_target or not error.retryable:
            return None
        delay = rng() * min(self.max_delay_s, self.base_delay_s * (2 ** retry))
        if error.retry_after_s is not None:
            if error.retry_after_s > self.max_retry_after_s:
                return None
            delay = max(delay, error.retry_after_s)
        return delay


@dataclass(frozen=True)
class Routed:
    """A served unary request."""

    completion: Completion
    served_by: Target
    attempts: list[Attempt]


@dataclass(frozen=True)
class StreamStarted:
    """The stream's target produced its first event; no failover after this."""

    served_by: Target
    attempts: list[Attempt]


@dataclass(frozen=True)
class StreamFinished:
    finish_reason: FinishReason
    usage: Usage
    served_by: Target
    attempts: list[Attempt]


RouterEvent = StreamStarted | TextChunk | StreamFinished


class StreamInterrupted(Exception):
    """The upstream failed after text had reached the caller: no failover is possible."""

    def __init__(self, error: ProviderError, served_by: Target, attempts: list[Attempt],
                 usage: Usage) -> None:
        super().__init__(error.message)
        self.error, self.served_by, self.attempts, self.usage = error, served_by, attempts, usage

    def to_gateway_error(self) -> GatewayError:
        return GatewayError(Fault.UNAVAILABLE, "UPSTREAM_STREAM_FAILED",
                            f"{self.served_by} failed mid-stream: {self.error.message}",
                            metadata={"error_reason": self.error.kind.value,
                                      **describe(self.attempts)})


# Failures that say the target is unhealthy (they count towards opening its breaker).
# invalid_request / context_too_long / content_filtered are about the request instead.
BREAKER_KINDS = frozenset({ErrorKind.RATE_LIMITED, ErrorKind.OVERLOADED, ErrorKind.TIMEOUT,
                           ErrorKind.UNAVAILABLE, ErrorKind.AUTH, ErrorKind.PERMISSION,
                           ErrorKind.NOT_FOUND})


class Router:
    """Serves requests from a chain of targets; holds no per-request state (breakers and
    the retry allowance are shared health state, passed in)."""

    def __init__(self, providers: Mapping[str, Provider], policy: RetryPolicy, metrics: Metrics,
                 tracer: trace.Tracer, *, breaker_policy: BreakerPolicy | None = None,
                 retries: RetryAllowance | None = None,
                 attempt_timeouts: Mapping[str, float] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 rng: Callable[[], float] = random.random) -> None:
        self._providers = providers
        # Per provider, the longest one attempt may take (providers.<name>.timeout_s): a
        # slow target then leaves the rest of the deadline to the next one in the chain.
        self._attempt_timeouts = dict(attempt_timeouts or {})
        self._policy = policy
        self._metrics = metrics
        self._tracer = tracer
        self._clock, self._sleep, self._rng = clock, sleep, rng
        self._breakers: BreakerBoard[Target] = BreakerBoard(
            breaker_policy or BreakerPolicy(), clock, on_change=self._export_state)
        self._retries = retries or RetryAllowance(clock=clock)

    @property
    def breakers(self) -> BreakerBoard[Target]:
        return self._breakers

    def _export_state(self, target: Target, state: BreakerState) -> None:
        """The ``on_change`` hook of a BreakerBoard: the state as a gauge per target."""
        self._metrics.circuit_state.labels(target.provider, target.model, target.region).set(
            STATE_VALUE[state])

    def _after_failure(self, target: Target, retry: int, error: ProviderError,
                       attempts: list[Attempt], deadline: float) -> float | None:
        """Book a failed attempt; the delay before retrying the same target, or None to
        move on. Raises at once on errors every vendor would repeat."""
        breaker = self._breakers.get(target)
        if error.kind in BREAKER_KINDS:
            breaker.record_failure()
        else:
            breaker.record_neutral()
        if error.kind in FINAL_KINDS:
            raise _final_error(error, attempts)
        delay = self._policy.backoff(retry, error, self._rng)
        if delay is None or self._clock() + delay + self._policy.min_attempt_s > deadline:
            return None
        if not breaker.allow():
            return None
        if not self._retries.try_spend():
            self._metrics.retries_denied.inc()
            breaker.record_neutral()
            return None
        return delay

    def _attempt_timeout(self, target: Target, remaining: float) -> float:
        cap = self._attempt_timeouts.get(target.provider)
        return remaining if cap is None else min(remaining, cap)

    def _skip_open(self, target: Target, attempts: list[Attempt]) -> bool:
        """True (and an attempt recorded as skipped) when the target's breaker is open."""
        if self._breakers.get(target).allow():
            return False
        attempts.append(Attempt(target, Outcome.SKIPPED_CIRCUIT_OPEN,
                                error_kind="circuit_open",
                                error_message="skipped: the target's circuit breaker is open"))
        self._metrics.provider_attempts.labels(
            target.provider, target.model, target.region, Outcome.SKIPPED_CIRCUIT_OPEN.value).inc()
        return True

    async def generate(self, chain: Sequence[Target], request: ProviderRequest,
                       deadline: float) -> Routed:
        attempts: list[Attempt] = []
        self._retries.on_request()
        for target in chain:
            provider = self._providers[target.provider]
            if self._skip_open(target, attempts):
                continue
            for retry in range(self._policy.max_attempts_per_target):
                remaining = deadline - self._clock()
                if remaining < self._policy.min_attempt_s:
                    self._breakers.get(target).record_neutral()
                    attempts.append(Attempt(target, Outcome.SKIPPED_DEADLINE, retry=retry))
                    raise _deadline_error(attempts)
                started = self._clock()
                attempt_s = self._attempt_timeout(target, remaining)
                with self._tracer.start_as_current_span("provider.generate",
                                                        attributes=_span_attrs(target, retry)):
                    try:
                        async with asyncio.timeout(attempt_s):
                            completion = await provider.generate(
                                replace(request, model=target.model, region=target.region),
                                attempt_s)
                    except TimeoutError:
                        error = _timeout_error(attempt_s, remaining)
                    except ProviderError as exc:
                        error = exc
                    else:
                        self._breakers.get(target).record_success()
                        attempts.append(self._record(target, Outcome.SUCCESS, started, retry))
                        self._count_tokens(target, completion.usage)
                        if len(attempts) > 1:
                            self._metrics.fallbacks.labels(chain[0].model).inc()
                        return Routed(completion, target, attempts)
                attempts.append(self._record(target, Outcome.FAILED, started, retry, error))
                delay = self._after_failure(target, retry, error, attempts, deadline)
                if delay is None:
                    break
                await self._sleep(delay)
        raise _exhausted_error(attempts, deadline - self._clock() < self._policy.min_attempt_s)

    async def stream(self, chain: Sequence[Target], request: ProviderRequest,
                     deadline: float) -> AsyncIterator[RouterEvent]:
        """Yield StreamStarted, then text, then StreamFinished (or raise)."""
        attempts: list[Attempt] = []
        self._retries.on_request()
        for target in chain:
            provider = self._providers[target.provider]
            if self._skip_open(target, attempts):
                continue
            for retry in range(self._policy.max_attempts_per_target):
                remaining = deadline - self._clock()
                if remaining < self._policy.min_attempt_s:
                    self._breakers.get(target).record_neutral()
                    attempts.append(Attempt(target, Outcome.SKIPPED_DEADLINE, retry=retry))
                    raise _deadline_error(attempts)
                started = self._clock()
                upstream = provider.stream(
                    replace(request, model=target.model, region=target.region), remaining)
                attempt_s = self._attempt_timeout(target, remaining)  # until the first event
                try:
                    async with asyncio.timeout(attempt_s):
                        first = await anext(upstream)
                except (ProviderError, TimeoutError, StopAsyncIteration) as exc:
                    await upstream.aclose()  # type: ignore[attr-defined]
                    error = _timeout_error(attempt_s, remaining) if isinstance(exc, TimeoutError) \
                        else _as_provider_error(exc)
                    attempts.append(self._record(target, Outcome.FAILED, started, retry, error))
                    delay = self._after_failure(target, retry, error, attempts, deadline)
                    if delay is None:
                        break
                    await self._sleep(delay)
                    continue
                except BaseException:
                    # The caller went away (cancelled) while we waited: close upstream now.
                    self._breakers.get(target).record_neutral()
                    await upstream.aclose()  # type: ignore[attr-defined]
                    raise
                self._breakers.get(target).record_success()
                attempts.append(self._record(target, Outcome.SUCCESS, started, retry))
                if len(attempts) > 1:
                    self._metrics.fallbacks.labels(chain[0].model).inc()
                async for event in self._relay(target, first, upstream, attempts):
                    yield event
                return
        raise _exhausted_error(attempts, deadline - self._clock() < self._policy.min_attempt_s)

    async def _relay(self, target: Target, first: StreamEvent,
                     upstream: AsyncIterator[StreamEvent],
                     attempts: list[Attempt]) -> AsyncIterator[RouterEvent]:
        yield StreamStarted(target, list(attempts))
        chunks = 0
        event: StreamEvent = first
        try:
            while True:
                if isinstance(event, StreamDone):
                    self._count_tokens(target, event.usage)
                    yield StreamFinished(event.finish_reason, event.usage, target, attempts)
                    return
                chunks += 1
                yield event
                try:
                    event = await anext(upstream)
                except StopAsyncIteration:
                    event = StreamDone(FinishReason.UNSPECIFIED, Usage(output_tokens=chunks))
                except ProviderError as error:
                    self._breakers.get(target).record_failure()
                    self._metrics.provider_attempts.labels(
                        target.provider, target.model, target.region, "stream_interrupted").inc()
                    raise StreamInterrupted(error, target, attempts,
                                            Usage(output_tokens=chunks)) from None
        finally:
            await upstream.aclose()  # type: ignore[attr-defined]

    def _record(self, target: Target, outcome: Outcome, started: float, retry: int,
                error: ProviderError | None = None) -> Attempt:
        latency = self._clock() - started
        self._metrics.provider_attempts.labels(
            target.provider, target.model, target.region,
            error.kind.value if error else outcome.value).inc()
        self._metrics.provider_latency.labels(target.provider, target.model).observe(latency)
        return Attempt(target, outcome, latency, retry,
                       error.kind.value if error else "", error.message if error else "")

    def _count_tokens(self, target: Target, usage: Usage) -> None:
        self._metrics.tokens.labels(target.provider, target.model, "input").inc(usage.input_tokens)
        self._metrics.tokens.labels(target.provider, target.model, "output").inc(
            usage.output_tokens)


def _span_attrs(target: Target, retry: int) -> dict[str, str | int]:
    return {"llm.provider": target.provider, "llm.model": target.model,
            "llm.region": target.region, "llm.retry": retry}


def _timeout_error(attempt_s: float, remaining: float) -> ProviderError:
    if attempt_s < remaining:
        return ProviderError(ErrorKind.TIMEOUT,
                             f"no answer within the provider's attempt timeout ({attempt_s:g} s)")
    return ProviderError(ErrorKind.TIMEOUT, "the caller's deadline ran out")


def _as_provider_error(exc: BaseException) -> ProviderError:
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, TimeoutError):
        return ProviderError(ErrorKind.TIMEOUT, "the caller's deadline ran out")
    return ProviderError(ErrorKind.UNAVAILABLE, "the vendor closed the stream without output")


def _final_error(error: ProviderError, attempts: list[Attempt]) -> GatewayError:
    reason = "CONTEXT_TOO_LONG" if error.kind is ErrorKind.CONTEXT_TOO_LONG \
        else "UPSTREAM_INVALID_REQUEST"
    return GatewayError(Fault.INVALID_INPUT, reason, error.message,
                        metadata=describe(attempts))


def _deadline_error(attempts: list[Attempt]) -> GatewayError:
    return GatewayError(Fault.OUT_OF_TIME, "DEADLINE_EXCEEDED",
                        f"the deadline ran out after {len(attempts)} attempt(s)",
                        metadata=describe(attempts))


def _exhausted_error(attempts: list[Attempt], out_of_time: bool) -> GatewayError:
    if out_of_time:
        return _deadline_error(attempts)
    last = next((a for a in reversed(attempts) if a.outcome is Outcome.FAILED), None)
    summary = f"; last: {last.target}: {last.error_kind}" if last else ""
    return GatewayError(Fault.UNAVAILABLE, "ALL_TARGETS_FAILED",
                        f"every target failed ({len(attempts)} attempt(s){summary})",
                        metadata=describe(attempts))
