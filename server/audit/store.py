"""Audit events in Postgres (table ``audit_events``, migration 0009): append and list.

The table is append-only (a trigger refuses UPDATE and DELETE); this class only ever
inserts and reads. Writes are one INSERT each: audited calls are rare administrative
changes, so there is nothing to batch, and a direct write lets the caller know it failed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.audit.events import AuditEvent, bounded
from server.audit.query import AuditQuery

_COLUMNS = "id, at, tenant, service, kind, method, object_id, before, after, request, trace_id"


@dataclass(frozen=True)
class AuditPage:
    events: list[AuditEvent]
    next_page_token: str


def _json(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    return json.loads(value) if isinstance(value, str) else dict(value)


def _event(row: Any) -> AuditEvent:
    return AuditEvent(tenant=row.tenant, service=row.service, kind=row.kind, method=row.method,
                      object_id=row.object_id, before=_json(row.before), after=_json(row.after),
                      request=_json(row.request), trace_id=row.trace_id, event_id=row.id,
                      at=row.at)


def _jsonb(value: dict[str, Any] | None) -> str | None:
    bounded_value = bounded(value)
    return None if bounded_value is None else json.dumps(bounded_value, default=str)


class AuditStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def append(self, event: AuditEvent) -> int:
        """Store ``event`` (its JSON bounded and redacted); returns its id."""
        async with self._engine.begin() as conn:
            return int((await conn.execute(text(
                "INSERT INTO audit_events (tenant, service, kind, method, object_id, before, "
                "after, request, trace_id) VALUES (:tenant, :service, :kind, :method, "
                ":object_id, CAST(:before AS jsonb), CAST(:after AS jsonb), "
                "CAST(:request AS jsonb), :trace_id) RETURNING id"),
                {"tenant": event.tenant, "service": event.service, "kind": event.kind,
                 "method": event.method, "object_id": event.object_id,
                 "before": _jsonb(event.before), "after": _jsonb(event.after),
                 "request": _jsonb(event.request), "trace_id": event.trace_id})).scalar_one())

    async def list(self, query: AuditQuery) -> AuditPage:
        """The events ``query`` asks for, newest first (INVALID_ARGUMENT for bad filters)."""
        query.check()
        where: list[str] = ["true"]
        params: dict[str, Any] = {"limit": query.size + 1}
        for condition, name, value in (
                ("tenant = :tenant", "tenant", query.tenant),
                ("kind = :kind", "kind", query.kind or None),
                ("at >= :start", "start", query.start),
                ("at < :end", "end", query.end),
                ("id < :before_id", "before_id", query.before_id())):
            if value is not None:
                where.append(condition)
                params[name] = value
        async with self._engine.connect() as conn:
            rows = (await conn.execute(text(
                f"SELECT {_COLUMNS} FROM audit_events WHERE {' AND '.join(where)} "
                "ORDER BY id DESC LIMIT :limit"), params)).all()
        events = [_event(r) for r in rows[:query.size]]
        token = query.next_token(events[-1].event_id) if len(rows) > query.size else ""
        return AuditPage(events, token)
