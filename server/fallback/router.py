"""The fallback router: try a chain of targets inside the caller's deadline.

Rules (DESIGN.md §3): retry the same target only for retryable errors, with exponential
backoff and full jitter, honouring retry-after; move on when retries are spent or the
error is not retryable; stop at once on errors any vendor would repeat
(invalid_request, context_too_long). No attempt starts with less than
``min_attempt_s`` of the deadline left. Streams fail over only until the first event has
been relayed.

Attempt budgets (why: a vendor that hangs must not eat the whole deadline, and its
breaker must see the failure). An attempt at a target may take at most

    min(provider timeout_s, remaining, max(min_attempt_s, remaining / (1 + k)))

where ``remaining`` is the caller's deadline left when the attempt starts and ``k`` the
number of distinct targets later in the chain whose breaker is not open: the remaining
time is split evenly between this target and the ones that may still have to serve, and
the last target gets all of it. For a stream the budget bounds the wait for the first
event. When the split (not the provider's own cap) cuts an attempt, the router moves on
rather than retrying a silent target with even less time. Trade-off: a healthy target
slower than its share counts timeouts (and may open its breaker) — a longer deadline or a
shorter chain gives it more time.

An attempt cancelled from outside (the caller's deadline or the caller leaving) after
the vendor stayed silent for at least ``SILENT_SHARE`` of its budget counts as a timeout
against the target, so its breaker learns even when the router's own timeout did not fire
first; the cancellation still propagates. An earlier cancellation says nothing about the
vendor (neutral).

``pool_exhausted`` (our HTTP client had no free pooled connection in time) is an outcome
of its own: the vendor never saw the call, so it never feeds the breaker and the same
target is not retried (its pool is still full); the router falls back.

Answers are checked against the request's form (``providers/output.py``): JSON that does
not match the response format, a call to an undeclared tool or tool arguments that are
not a JSON object make an ``invalid_output`` attempt, retried and failed over like any
other. A stream's first tool-call piece is checked before it is relayed (so a call to an
undeclared tool still fails over); the rest of a stream is checked at its end, when it
can only fail (``StreamInterrupted`` with ``invalid_output``).

Targets lacking a capability the request needs (tools, JSON, images: see
``capabilities.py``) are skipped (``skipped_unsupported``); a chain none of whose targets
can serve the request fails FAILED_PRECONDITION ``UNSUPPORTED_CAPABILITY``.

Each target has a circuit breaker (``breaker.py``): an open one is skipped and reported
as ``skipped_circuit_open``. Retries of the same target also spend from a global retry
allowance (``retry_allowance.py``); with none left the router moves to the next target.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import TypeVar

from opentelemetry import trace

from server.kernel.errors import Fault, GatewayError
from server.fallback.attempts import Attempt, Outcome, describe
from server.fallback.breaker import STATE_VALUE, BreakerBoard, BreakerPolicy, BreakerState
from server.fallback.capabilities import Capabilities, Capability, needed
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
from server.providers.content import ToolCall, ToolCallDelta
from server.providers.lazy import LazyProvider
from server.providers.output import AnswerCheck


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
    tool_calls: tuple[ToolCall, ...] = ()


RouterEvent = StreamStarted | TextChunk | ToolCallDelta | StreamFinished


class StreamInterrupted(Exception):
    """The upstream failed after text had reached the caller: no failover is possible.
    ``usage`` is what the vendor reported before failing (none, today): the use case
    estimates the rest rather than trusting a count of chunks."""

    def __init__(self, error: ProviderError, served_by: Target, attempts: list[Attempt],
                 usage: Usage) -> None:
        super().__init__(error.message)
        self.error, self.served_by, self.attempts, self.usage = error, served_by, attempts, usage

    @property
    def invalid_output(self) -> bool:
        """The stream ran to its end but its answer broke the requested form: the caller
        did not get what it asked for (not charged)."""
        return self.error.kind is ErrorKind.INVALID_OUTPUT

    def to_gateway_error(self) -> GatewayError:
        if self.invalid_output:
            return GatewayError(Fault.REFUSED, "INVALID_OUTPUT",
                                f"{self.served_by}: {self.error.message}",
                                metadata=describe(self.attempts))
        return GatewayError(Fault.UNAVAILABLE, "UPSTREAM_STREAM_FAILED",
                            f"{self.served_by} failed mid-stream: {self.error.message}",
                            metadata={"error_reason": self.error.kind.value,
                                      **describe(self.attempts)})


R = TypeVar("R")

# A cancelled attempt whose vendor stayed silent for this share of its budget counts as a
# timeout (see the module docstring).
SILENT_SHARE = 0.9

# No free pooled connection within the attempt's time (None until the adapters have it).
POOL_EXHAUSTED: ErrorKind | None = getattr(ErrorKind, "POOL_EXHAUSTED", None)

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
                 capabilities: Capabilities | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 rng: Callable[[], float] = random.random) -> None:
        self._providers = providers
        # Per provider, the longest one attempt may take (providers.<name>.timeout_s): a
        # slow target then leaves the rest of the deadline to the next one in the chain.
        self._attempt_timeouts = dict(attempt_timeouts or {})
        self._policy = policy
        self._capabilities = capabilities or Capabilities()
        self._metrics = metrics
        self._tracer = tracer
        self._no_spans = isinstance(tracer, trace.NoOpTracer)
        self._clock, self._sleep, self._rng = clock, sleep, rng
        self._breakers: BreakerBoard[Target] = BreakerBoard(
            breaker_policy or BreakerPolicy(), clock, on_change=self._export_state)
        self._retries = retries or RetryAllowance(clock=clock)

    @property
    def breakers(self) -> BreakerBoard[Target]:
        return self._breakers

    def _export_state(self, target: Target, state: BreakerState) -> None:
        """The ``on_change`` hook of a BreakerBoard: the state as a gauge per target."""
        self._metrics.set_breaker_state(target.provider, target.model, target.region,
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
        if error.kind is POOL_EXHAUSTED:
            return None  # our own pool is full: another target has its own
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

    def _budget(self, chain: Sequence[Target], index: int, remaining: float) -> _Budget:
        """The time the attempt at ``chain[index]`` may take (the rule is in the module
        docstring)."""
        target = chain[index]
        later = {t for t in chain[index + 1:]
                 if t != target and not self._breakers.is_open(t)}
        share = max(self._policy.min_attempt_s, remaining / (1 + len(later)))
        cap = self._attempt_timeouts.get(target.provider, remaining)
        seconds = min(remaining, share, cap)
        if seconds >= remaining:
            return _Budget(seconds, "deadline")
        return _Budget(seconds, "provider" if cap <= share else "share")

    def _cancelled(self, target: Target, started: float, budget: _Budget, retry: int) -> None:
        """Book an attempt cut from outside (see SILENT_SHARE); the caller re-raises."""
        breaker = self._breakers.get(target)
        if self._clock() - started < SILENT_SHARE * budget.seconds:
            breaker.record_neutral()
            return
        breaker.record_failure()
        self._record(target, Outcome.FAILED, started, retry, ProviderError(
            ErrorKind.TIMEOUT, "cancelled after the vendor stayed silent for its budget"))

    def _begin(self, target: Target, request_started: float) -> float:
        """An upstream call starts: count it in flight; its start time."""
        now = self._clock()
        provider = self._metrics.known.providers.fold(target.provider)
        self._metrics.child(self._metrics.attempt_wait, provider).observe(now - request_started)
        self._metrics.child(self._metrics.upstream_in_flight, provider).inc()
        return now

    def _end(self, target: Target) -> None:
        self._metrics.child(self._metrics.upstream_in_flight,
                            self._metrics.known.providers.fold(target.provider)).dec()

    def _span(self, name: str, target: Target, retry: int) -> AbstractContextManager[object]:
        """The attempt's client span. Without an exporter the tracer is a NoOpTracer and
        its spans go nowhere: then none is started (its context manager, attribute dict
        and context switch were ~1.5 % of a unary call's CPU)."""
        if self._no_spans:
            return nullcontext()
        return self._tracer.start_as_current_span(name, attributes=_span_attrs(target, retry))

    async def _load(self, target: Target) -> None:
        """Load the target's vendor SDK if it is loaded lazily (``LazyProvider``) and not
        yet, before the attempt's clock starts: importing an SDK (~1.8 s for anthropic on
        a quiet 2-core machine) is not the vendor's latency, so it must neither use up the
        attempt's share of the deadline nor count as the vendor's timeout. The caller's
        deadline still bounds it (the attempt's budget is computed after)."""
        provider = self._providers.get(target.provider)
        if isinstance(provider, LazyProvider) and not provider.loaded:
            await provider.ready()

    def _skip_open(self, target: Target, attempts: list[Attempt]) -> bool:
        """True (and an attempt recorded as skipped) when the target's breaker is open."""
        if self._breakers.get(target).allow():
            return False
        attempts.append(Attempt(target, Outcome.SKIPPED_CIRCUIT_OPEN,
                                error_kind="circuit_open",
                                error_message="skipped: the target's circuit breaker is open"))
        self._metrics.provider_attempts.labels(
            *self._metrics.known.target(target.provider, target.model, target.region),
            Outcome.SKIPPED_CIRCUIT_OPEN.value).inc()
        return True

    def _skip_unsupported(self, target: Target, needs: frozenset[Capability],
                          attempts: list[Attempt]) -> bool:
        """True (and an attempt recorded as skipped) when the target lacks a capability
        the request needs."""
        lacking = self._capabilities.missing(target, needs)
        if not lacking:
            return False
        attempts.append(Attempt(target, Outcome.SKIPPED_UNSUPPORTED, error_kind="unsupported",
                                error_message="skipped: the model has no "
                                + ", ".join(sorted(lacking)) + " capability"))
        return True

    async def generate(self, chain: Sequence[Target], request: ProviderRequest,
                       deadline: float) -> Routed:
        check = AnswerCheck(request)

        async def attempt(target: Target, seconds: float) -> tuple[Completion, Usage]:
            completion = await self._providers[target.provider].generate(
                replace(request, model=target.model, region=target.region), seconds)
            if check.needed:
                check.check(completion.text, completion.tool_calls)
            return completion, completion.usage

        completion, target, attempts = await self.call(chain, attempt, deadline,
                                                       needs=needed(request))
        return Routed(completion, target, attempts)

    async def call(self, chain: Sequence[Target],
                   attempt: Callable[[Target, float], Awaitable[tuple[R, Usage]]],
                   deadline: float, *, needs: frozenset[Capability] = frozenset(),
                   span: str = "provider.generate") -> tuple[R, Target, list[Attempt]]:
        """Any unary vendor call through the chain (Generate, Embed): ``attempt(target,
        seconds)`` makes one try and returns its result and usage, or raises
        ``ProviderError``. Returns the result, the target that served it and every
        attempt."""
        attempts: list[Attempt] = []
        self._retries.on_request()
        request_started = self._clock()
        for index, target in enumerate(chain):
            if self._skip_unsupported(target, needs, attempts) or \
                    self._skip_open(target, attempts):
                continue
            await self._load(target)
            for retry in range(self._policy.max_attempts_per_target):
                remaining = deadline - self._clock()
                if remaining < self._policy.min_attempt_s:
                    self._breakers.get(target).record_neutral()
                    attempts.append(Attempt(target, Outcome.SKIPPED_DEADLINE, retry=retry))
                    raise _deadline_error(attempts)
                budget = self._budget(chain, index, remaining)
                started = self._begin(target, request_started)
                with self._span(span, target, retry):
                    try:
                        async with asyncio.timeout(budget.seconds):
                            result, usage = await attempt(target, budget.seconds)
                    except TimeoutError:
                        error = budget.timeout_error()
                    except ProviderError as exc:
                        error = exc
                    except asyncio.CancelledError:
                        self._cancelled(target, started, budget, retry)
                        raise
                    else:
                        self._breakers.get(target).record_success()
                        attempts.append(self._record(target, Outcome.SUCCESS, started, retry))
                        self._count_tokens(target, usage)
                        if len(attempts) > 1:
                            self._metrics.fallbacks.labels(
                                self._metrics.known.models.fold(chain[0].model)).inc()
                        return result, target, attempts
                    finally:
                        self._end(target)
                attempts.append(self._record(target, Outcome.FAILED, started, retry, error))
                delay = self._after_failure(target, retry, error, attempts, deadline)
                if delay is None or budget.cut_by_share(error):
                    break
                await self._sleep(delay)
        raise _exhausted_error(attempts, deadline - self._clock() < self._policy.min_attempt_s)

    async def stream(self, chain: Sequence[Target], request: ProviderRequest,
                     deadline: float) -> AsyncIterator[RouterEvent]:
        """Yield StreamStarted, then text and tool-call pieces, then StreamFinished (or
        raise)."""
        attempts: list[Attempt] = []
        self._retries.on_request()
        request_started = self._clock()
        needs = needed(request)
        check = AnswerCheck(request)
        for index, target in enumerate(chain):
            provider = self._providers[target.provider]
            if self._skip_unsupported(target, needs, attempts) or \
                    self._skip_open(target, attempts):
                continue
            await self._load(target)
            for retry in range(self._policy.max_attempts_per_target):
                remaining = deadline - self._clock()
                if remaining < self._policy.min_attempt_s:
                    self._breakers.get(target).record_neutral()
                    attempts.append(Attempt(target, Outcome.SKIPPED_DEADLINE, retry=retry))
                    raise _deadline_error(attempts)
                budget = self._budget(chain, index, remaining)  # until the first event
                upstream = provider.stream(
                    replace(request, model=target.model, region=target.region), remaining)
                started = self._begin(target, request_started)
                try:
                    async with asyncio.timeout(budget.seconds):
                        first = await anext(upstream)
                    if isinstance(first, ToolCallDelta):
                        check.check_call_name(first.name)
                    elif isinstance(first, StreamDone) and check.needed:
                        check.check("", first.tool_calls)
                except (ProviderError, TimeoutError, StopAsyncIteration) as exc:
                    await self._close(target, upstream)
                    error = budget.timeout_error() if isinstance(exc, TimeoutError) \
                        else _as_provider_error(exc)
                    attempts.append(self._record(target, Outcome.FAILED, started, retry, error))
                    delay = self._after_failure(target, retry, error, attempts, deadline)
                    if delay is None or budget.cut_by_share(error):
                        break
                    await self._sleep(delay)
                    continue
                except BaseException:
                    # The caller went away (cancelled) while we waited: close upstream now.
                    self._cancelled(target, started, budget, retry)
                    await self._close(target, upstream)
                    raise
                self._breakers.get(target).record_success()
                attempts.append(self._record(target, Outcome.SUCCESS, started, retry))
                if len(attempts) > 1:
                    self._metrics.fallbacks.labels(
                        self._metrics.known.models.fold(chain[0].model)).inc()
                async for event in self._relay(target, first, upstream, attempts, check):
                    yield event
                return
        raise _exhausted_error(attempts, deadline - self._clock() < self._policy.min_attempt_s)

    async def _relay(self, target: Target, first: StreamEvent,
                     upstream: AsyncIterator[StreamEvent], attempts: list[Attempt],
                     check: AnswerCheck) -> AsyncIterator[RouterEvent]:
        event: StreamEvent = first
        # The text is kept only when the answer must be checked as a whole (JSON modes).
        kept: list[str] | None = [] if check.wants_text else None
        try:  # from the first yield: a caller leaving at StreamStarted closes upstream too
            yield StreamStarted(target, list(attempts))
            while True:
                if isinstance(event, StreamDone):
                    self._count_tokens(target, event.usage)
                    if check.needed:
                        try:
                            check.check("".join(kept or ()), event.tool_calls)
                        except ProviderError as error:
                            self._metrics.provider_attempts.labels(
                                *self._metrics.known.target(target.provider, target.model,
                                                            target.region),
                                error.kind.value).inc()
                            raise StreamInterrupted(error, target, attempts,
                                                    event.usage) from None
                    yield StreamFinished(event.finish_reason, event.usage, target, attempts,
                                         event.tool_calls)
                    return
                if kept is not None and isinstance(event, TextChunk):
                    kept.append(event.text)
                yield event
                try:
                    event = await anext(upstream)
                except StopAsyncIteration:
                    event = StreamDone(FinishReason.UNSPECIFIED, Usage())
                except ProviderError as error:
                    self._breakers.get(target).record_failure()
                    self._metrics.provider_attempts.labels(
                        *self._metrics.known.target(target.provider, target.model, target.region),
                        "stream_interrupted").inc()
                    raise StreamInterrupted(error, target, attempts, Usage()) from None
        finally:
            await self._close(target, upstream)

    async def _close(self, target: Target, upstream: AsyncIterator[StreamEvent]) -> None:
        try:
            await upstream.aclose()  # type: ignore[attr-defined]
        finally:
            self._end(target)

    def _record(self, target: Target, outcome: Outcome, started: float, retry: int,
                error: ProviderError | None = None) -> Attempt:
        latency = self._clock() - started
        self._metrics.child(
            self._metrics.provider_attempts,
            *self._metrics.known.target(target.provider, target.model, target.region),
            error.kind.value if error else outcome.value).inc()
        self._metrics.child(
            self._metrics.provider_latency,
            *self._metrics.known.provider_model(target.provider, target.model)).observe(latency)
        return Attempt(target, outcome, latency, retry,
                       error.kind.value if error else "", error.message if error else "")

    def _count_tokens(self, target: Target, usage: Usage) -> None:
        labels = self._metrics.known.provider_model(target.provider, target.model)
        self._metrics.child(self._metrics.tokens, *labels, "input").inc(usage.input_tokens)
        self._metrics.child(self._metrics.tokens, *labels, "output").inc(usage.output_tokens)


def _span_attrs(target: Target, retry: int) -> dict[str, str | int]:
    return {"llm.provider": target.provider, "llm.model": target.model,
            "llm.region": target.region, "llm.retry": retry}


@dataclass(frozen=True)
class _Budget:
    """One attempt's time and what set it: ``provider`` (its timeout_s), ``share`` (its
    part of the remaining deadline) or ``deadline`` (all that is left)."""

    seconds: float
    bound_by: str

    def timeout_error(self) -> ProviderError:
        if self.bound_by == "provider":
            return ProviderError(ErrorKind.TIMEOUT, "no answer within the provider's attempt "
                                 f"timeout ({self.seconds:.3g} s)")
        if self.bound_by == "share":
            return ProviderError(ErrorKind.TIMEOUT, "no answer within the attempt timeout "
                                 f"({self.seconds:.3g} s: this target's share of the deadline)")
        return ProviderError(ErrorKind.TIMEOUT, "the caller's deadline ran out")

    def cut_by_share(self, error: ProviderError) -> bool:
        """A silent target cut to leave time for the rest of the chain: do not retry it."""
        return self.bound_by == "share" and error.kind is ErrorKind.TIMEOUT


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
    failed = [a for a in attempts if a.outcome is Outcome.FAILED]
    if not failed and attempts and all(a.outcome is Outcome.SKIPPED_UNSUPPORTED
                                       for a in attempts):
        lacking = attempts[0].error_message.removeprefix("skipped: the model has no ")
        return GatewayError(Fault.REFUSED, "UNSUPPORTED_CAPABILITY",
                            "no target of the chain can serve this request: "
                            + attempts[0].error_message.removeprefix("skipped: "),
                            metadata={"capability": lacking.removesuffix(" capability"),
                                      **describe(attempts)})
    if failed and all(a.error_kind == ErrorKind.INVALID_OUTPUT.value for a in failed):
        return GatewayError(Fault.REFUSED, "INVALID_OUTPUT",
                            f"no target answered in the requested form ({len(failed)} "
                            f"attempt(s); last: {failed[-1].error_message})",
                            metadata=describe(attempts))
    last = next((a for a in reversed(attempts) if a.outcome is Outcome.FAILED), None)
    summary = f"; last: {last.target}: {last.error_kind}" if last else ""
    return GatewayError(Fault.UNAVAILABLE, "ALL_TARGETS_FAILED",
                        f"every target failed ({len(attempts)} attempt(s){summary})",
                        metadata=describe(attempts))
