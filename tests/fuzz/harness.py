"""What both fuzzers share: every RPC of our four services, a bounded-concurrency sender
of raw request bytes, and the verdict (never INTERNAL/UNKNOWN, never an exception's name).
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.descriptor import Descriptor
from llmgateway.v1 import audit_pb2, billing_pb2, config_pb2, generation_pb2, retrieval_pb2

from tests.fuzz.conftest import RUN
from tests.support.gateway import bearer

IN_FLIGHT = 32
DEADLINE_S = 3.0
METADATA = bearer("admin", subject=RUN)


@dataclass(frozen=True)
class Rpc:
    path: str
    request: Descriptor
    streaming: bool

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def our_rpcs() -> list[Rpc]:
    """Every RPC of GenerationService, RetrievalService, BillingService, ConfigService,
    AuditService."""
    rpcs = []
    for module in (generation_pb2, retrieval_pb2, billing_pb2, config_pb2, audit_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                rpcs.append(Rpc(f"/{service.full_name}/{method.name}", method.input_type,
                                method.server_streaming))
    return rpcs


# An exception's class name or a traceback in a status message means a bug leaked out.
LEAK = re.compile(r"Traceback|\b[A-Z]\w*(?:Error|Exception|Exit|Interrupt)\b|"
                  r"\b(?:asyncpg|sqlalchemy|google\.protobuf)\.")


@dataclass
class Outcome:
    codes: Counter[str] = field(default_factory=Counter)
    by_rpc: dict[str, Counter[str]] = field(default_factory=dict)
    bad: list[str] = field(default_factory=list)

    def record(self, rpc: Rpc, code: grpc.StatusCode, message: str,
               trailers: Iterable[tuple[str, Any]], payload: bytes) -> None:
        self.codes[code.name] += 1
        self.by_rpc.setdefault(rpc.name, Counter())[code.name] += 1
        texts = [message] + [v for k, v in trailers if not k.endswith("-bin")
                             and isinstance(v, str)]
        problem = None
        if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
            problem = code.name
        elif any(LEAK.search(t) for t in texts):
            problem = "leaked exception text"
        if problem and len(self.bad) < 50:
            self.bad.append(f"{rpc.name}: {problem}: {message[:300]!r} "
                            f"(request {payload[:200]!r}{'…' if len(payload) > 200 else ''})")

    def report(self, title: str) -> str:
        lines = [f"{title}: {sum(self.codes.values())} requests",
                 "  " + ", ".join(f"{c}={n}" for c, n in self.codes.most_common())]
        for name, codes in sorted(self.by_rpc.items()):
            lines.append(f"  {name:20} " + ", ".join(f"{c}={n}" for c, n in codes.most_common()))
        return "\n".join(lines)


async def send_all(channel: grpc.aio.Channel, requests: list[tuple[Rpc, bytes]],
                   outcome: Outcome) -> None:
    """Send raw ``requests`` with at most IN_FLIGHT at once and record each status."""
    callables: dict[str, Any] = {}
    for rpc, _ in requests:
        if rpc.path not in callables:
            make = channel.unary_stream if rpc.streaming else channel.unary_unary
            callables[rpc.path] = make(rpc.path, request_serializer=None,
                                       response_deserializer=None)
    queue: asyncio.Queue[tuple[Rpc, bytes]] = asyncio.Queue()
    for item in requests:
        queue.put_nowait(item)

    async def worker() -> None:
        while not queue.empty():
            rpc, payload = queue.get_nowait()
            call = callables[rpc.path](payload, metadata=METADATA, timeout=DEADLINE_S)
            try:
                if rpc.streaming:
                    async for _ in call:
                        pass
                else:
                    await call
                outcome.record(rpc, grpc.StatusCode.OK, "", (), payload)
            except grpc.aio.AioRpcError as error:
                outcome.record(rpc, error.code(), error.details() or "",
                               tuple(error.trailing_metadata() or ()), payload)

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))


def verdict(outcome: Outcome, title: str) -> None:
    print("\n" + outcome.report(title))
    assert not outcome.bad, "\n".join(outcome.bad)
