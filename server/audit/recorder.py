"""Write audit events so that none is lost silently.

The change an event describes has already happened when it is recorded, so a failed
write must not fail the call (the caller would retry a change that was made). Instead
the write is counted (``on_outcome("failed")``, a metric in the gateway) and the whole
event is logged at ERROR, from where it can be recovered. A write is shielded from the
call's cancellation: a client that hangs up just after its change still leaves the event.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import asdict

from server.audit.events import AuditEvent, bounded
from server.audit.store import AuditStore

log = logging.getLogger("llmgw.audit")


def _no_count(outcome: str) -> None:
    """The default outcome hook: nothing to count (tools, tests)."""


class AuditRecorder:
    """Appends events to an ``AuditStore``; ``on_outcome`` sees "written" or "failed"."""

    def __init__(self, store: AuditStore, *,
                 on_outcome: Callable[[str], None] = _no_count) -> None:
        self._store = store
        self._on_outcome = on_outcome
        self._pending: set[asyncio.Task[bool]] = set()

    async def record(self, event: AuditEvent) -> bool:
        """Write ``event``; False when it could not be written (then it is logged)."""
        task = asyncio.ensure_future(self._write(event))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return await asyncio.shield(task)

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Wait for writes whose callers were cancelled (before closing the database)."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=timeout_s)

    async def _write(self, event: AuditEvent) -> bool:
        try:
            await self._store.append(event)
        except Exception as exc:  # noqa: BLE001 - any failure: count it, keep the event in the log
            self._on_outcome("failed")
            log.error("audit event not written (%s: %s); the event: %s", type(exc).__name__,
                      getattr(exc, "orig", None) or exc, _as_json(event), extra={"trace_id": event.trace_id})
            return False
        self._on_outcome("written")
        return True


def _as_json(event: AuditEvent) -> str:
    fields = asdict(event)
    for name in ("before", "after", "request"):
        fields[name] = bounded(fields[name])
    return json.dumps(fields, default=str, sort_keys=True)
