"""``llmgw audit``: read the audit trail from the database, newest first.

    llmgw audit [--tenant T] [--since 2026-12-01T00:00] [--kind route] [--limit N] [--json]

A table by default (one event a line: when, tenant, who, kind, object, method); ``--json``
prints every event in full, one JSON object a line. Reads the database directly, like the
other operator tools, so it sees every tenant (``--tenant`` narrows it).

Also what the other commands use to record their own changes (``record_cli_change``):
``llmgw routes set/delete`` write an event with ``service`` = ``cli:<os user>``.

Exit status: 0 listed, 2 a bad argument (checked before the database is touched).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from server.cli.options import database_url, load, with_config

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from server.audit.events import AuditEvent
    from server.audit.query import AuditQuery

CLI_TENANT = "default"
"""Changes made from the command line (routes) are deployment-wide: filed under the
default tenant, which single-tenant deployments and platform operators read."""


def register(commands: argparse._SubParsersAction) -> None:
    audit = with_config(commands.add_parser("audit", help="list the audit trail, newest first"))
    audit.add_argument("--tenant", help="only this tenant's events (default: every tenant)")
    audit.add_argument("--since", help="only events at or after this ISO time (UTC if no zone)")
    audit.add_argument("--kind", help="only this kind: prompt, bot, bot_config, route, "
                                      "wallet or budget")
    audit.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    audit.add_argument("--json", action="store_true", help="full events, one JSON a line")
    audit.set_defaults(func=run)


def cli_actor() -> str:
    """Who runs this command: ``cli:<os user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no user name in the environment or the password database
        return "cli:unknown"


def _query(ns: argparse.Namespace) -> AuditQuery:
    """The listing asked for; SystemExit(2) naming the bad argument."""
    from server.audit.query import AuditQuery
    from server.kernel.errors import GatewayError

    if ns.limit <= 0:
        raise SystemExit("llmgw: --limit must be positive")
    since = None
    if ns.since:
        try:
            since = datetime.fromisoformat(ns.since)
        except ValueError:
            raise SystemExit(f"llmgw: --since {ns.since!r}: not an ISO date or time") from None
        since = since if since.tzinfo else since.replace(tzinfo=UTC)
    query = AuditQuery(tenant=ns.tenant or None, kind=ns.kind or "", start=since,
                       page_size=min(ns.limit, 500))
    try:
        query.check()
    except GatewayError as exc:
        names = {"tenant": "--tenant", "kind": "--kind", "end_time": "--since"}
        raise SystemExit("llmgw: " + "; ".join(
            f"{names.get(v.field, v.field)}: {v.description}" for v in exc.violations)) from None
    return query


def run(ns: argparse.Namespace) -> int:
    query = _query(ns)  # before loading anything: a typo costs no database start
    events = asyncio.run(_list(database_url(load(ns)), query, ns.limit))
    if ns.json:
        for event in events:
            print(json.dumps(_event_dict(event), default=str, sort_keys=True))
    else:
        print(table(events))
    return 0


async def _list(url: str, query: AuditQuery, limit: int) -> list[AuditEvent]:
    from dataclasses import replace

    from server.audit.store import AuditStore
    from server.kernel.db.engine import create_engine

    engine = create_engine(url, pool_size=1)
    try:
        store, events = AuditStore(engine), []
        while len(events) < limit:
            page = await store.list(query)
            events += page.events
            if not page.next_page_token:
                break
            query = replace(query, page_token=page.next_page_token)
        return events[:limit]
    finally:
        await engine.dispose()


def _event_dict(event: AuditEvent) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(event)


_HEADERS = ("TIME (UTC)", "TENANT", "SERVICE", "KIND", "OBJECT", "METHOD")


def table(events: list[AuditEvent]) -> str:
    """Aligned columns, one event a line (the method without its package)."""
    rows = [_HEADERS] + [(
        e.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if e.at else "",
        e.tenant, e.service, e.kind, e.object_id, e.method.rsplit(".", 1)[-1].lstrip("/"))
        for e in events]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADERS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    if not events:
        lines.append("(no events)")
    return "\n".join(lines)


async def record_cli_change(engine: AsyncEngine, *, kind: str, method: str, object_id: str,
                            before: dict[str, Any] | None, after: dict[str, Any] | None,
                            request: dict[str, Any]) -> None:
    """Record a change a command made (warns on stderr if the event could not be
    written: the change stands, and the event is in the log)."""
    from server.audit.events import AuditEvent
    from server.audit.recorder import AuditRecorder
    from server.audit.store import AuditStore

    written = await AuditRecorder(AuditStore(engine)).record(AuditEvent(
        tenant=CLI_TENANT, service=cli_actor(), kind=kind, method=method, object_id=object_id,
        before=before, after=after, request=request))
    if not written:
        print("llmgw: warning: the change was made but its audit event could not be "
              "written (logged above)", file=sys.stderr)
