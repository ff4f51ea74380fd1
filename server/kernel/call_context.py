"""Per-call facts shared by the interceptors and handlers of one RPC.

A ``contextvars.ContextVar`` is used because grpc.aio runs each RPC in its own task and
offers no per-call attribute bag: the tracing interceptor sets the ``CallContext`` at the
start of the call and everything downstream in that task (auth, rate limit, handler,
router, error mapping) reads the same object. It holds no state shared between calls.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass, field

from server.auth.tokens import Principal


@dataclass
class CallContext:
    """What the gateway knows about the current call."""

    method: str
    trace_id: str
    started: float = field(default_factory=time.monotonic)
    principal: Principal | None = None
    # A platform administrator acting within another tenant (x-llmgw-tenant), else None.
    acting_tenant: str | None = None
    # Extra trailing metadata (e.g. retry-after) merged into the call's trailers.
    trailers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def subject(self) -> str:
        return self.principal.subject if self.principal else "anonymous"


current_call: ContextVar[CallContext | None] = ContextVar("llmgw_call", default=None)


def trace_trailers(call: CallContext | None) -> tuple[tuple[str, str], ...]:
    """The trailing metadata every response carries: the trace id plus anything added."""
    if call is None:
        return ()
    return (("x-trace-id", call.trace_id), *call.trailers)
