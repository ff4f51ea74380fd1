"""AuditService: ListAuditEvents, the read side of the audit trail.

Thin: which tenant the caller may see, protobuf in, ``AuditStore.list``, protobuf out.
A caller sees its own tenant's events; only ``platform:admin`` (the operators of the
whole deployment, not a tenant's admins — hence not implied by ``admin``) sees every
tenant's and may filter by any (acting within a tenant, ``x-llmgw-tenant``, it sees that
tenant's unless it names another). With auth disabled there are no callers to tell apart.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

import grpc
from google.protobuf import struct_pb2, timestamp_pb2
from llmgateway.v1 import audit_pb2 as pb
from llmgateway.v1 import audit_pb2_grpc as pb_grpc

from server.audit.events import AuditEvent
from server.audit.query import AuditQuery
from server.audit.store import AuditStore
from server.kernel.call_context import current_call
from server.kernel.errors import Fault, GatewayError
from server.kernel.tenancy import TENANT_NAME, TenantClaims
from server.wire import current_tenant

PLATFORM_SCOPE = "platform:admin"


def _struct(value: dict[str, Any] | None) -> struct_pb2.Struct | None:
    if value is None:
        return None
    out = struct_pb2.Struct()
    out.update(value)
    return out


def event_pb(event: AuditEvent) -> pb.AuditEvent:
    created = timestamp_pb2.Timestamp()
    if event.at is not None:
        created.FromDatetime(event.at)
    return pb.AuditEvent(event_id=str(event.event_id), create_time=created, tenant=event.tenant,
                         service=event.service, kind=event.kind, method=event.method,
                         object_id=event.object_id, before=_struct(event.before),
                         after=_struct(event.after), request=_struct(event.request),
                         trace_id=event.trace_id)


class AuditService(pb_grpc.AuditServiceServicer):
    def __init__(self, store: AuditStore, tenants: TenantClaims) -> None:
        self._store = store
        self._tenants = tenants

    async def ListAuditEvents(self, request: pb.ListAuditEventsRequest,
                              context: grpc.aio.ServicerContext) -> pb.ListAuditEventsResponse:
        query = AuditQuery(
            tenant=self._visible_tenant(request.tenant), kind=request.kind,
            start=request.start_time.ToDatetime(tzinfo=UTC) if request.HasField("start_time")
            else None,
            end=request.end_time.ToDatetime(tzinfo=UTC) if request.HasField("end_time")
            else None,
            page_size=request.page_size, page_token=request.page_token)
        page = await self._store.list(query)
        return pb.ListAuditEventsResponse(audit_events=[event_pb(e) for e in page.events],
                                          next_page_token=page.next_page_token)

    def _visible_tenant(self, asked: str) -> str | None:
        """The tenant filter the caller may use (None: every tenant)."""
        call = current_call.get()
        principal = call.principal if call else None
        if principal is None or PLATFORM_SCOPE in principal.scopes:
            return asked or (call.acting_tenant if call else None)
        own = current_tenant(self._tenants).name
        if asked and asked != own and TENANT_NAME.fullmatch(asked):  # a bad name: the
            raise GatewayError(                                     # query names the field
                Fault.FORBIDDEN, "MISSING_SCOPE",
                f"only {PLATFORM_SCOPE} may list another tenant's events",
                metadata={"scope": PLATFORM_SCOPE})
        return asked or own
