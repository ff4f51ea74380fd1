"""Record every successful change made through the API in the audit trail.

Why an interceptor and not a line in each handler: the audited RPCs live in handlers
other teams own, and "who did what" must not depend on each of them remembering to say
so. The list of audited RPCs is here, in one table (``AUDITED``), with for each the kind
of object, its id, and — where a change replaces something — how to read the state
before it (``server/audit/snapshots.py``).

Per audited call: the tenant is resolved and the ``before`` state read, the handler
runs, and only if it returns is one event written (``AuditRecorder``: awaited, so the
event exists when the caller gets its answer; a failed write is logged in full and
counted, never failing a change that was made). A call that fails — INVALID_ARGUMENT,
NOT_FOUND, anything — leaves no event; neither does an idempotent replay, which changed
nothing. Reading ``before`` never decides a call: if it fails, the event has none.

Innermost interceptor: it sees only requests the checks accepted, and the principal the
auth interceptor put in the call context. Credentials (metadata) are never recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from llmgateway.v1 import billing_pb2

from server.audit.events import AuditEvent, shown_names
from server.audit.recorder import AuditRecorder
from server.audit.snapshots import Snapshot, Snapshots
from server.interceptors.wrapping import WrappingInterceptor
from server.kernel.call_context import current_call
from server.kernel.errors import GatewayError
from server.kernel.tenancy import Tenant, TenantClaims
from server.wire import current_tenant

log = logging.getLogger("llmgw.audit")

_CONF = "/llmgateway.v1.ConfigService/"
_BILL = "/llmgateway.v1.BillingService/"

BeforeReader = Callable[[Snapshots, Tenant, Any], Awaitable[Snapshot]]


def _always(_response: Any) -> bool:
    return True


def _not_replayed(response: Any) -> bool:
    """An idempotent replay answers the first call's result and changes nothing."""
    return not response.replayed


@dataclass(frozen=True)
class Audited:
    """How one RPC is recorded: what kind of object, which one (from the request, the
    response and the ``before`` state), how to read ``before``, and whether a successful
    response changed anything."""

    kind: str
    object_id: Callable[[Any, Any, Snapshot], str]
    before: BeforeReader | None = None
    changed: Callable[[Any], bool] = _always


async def _new_prompt_before(snapshots: Snapshots, tenant: Tenant, request: Any) -> Snapshot:
    """CreatePromptVersion replaces the active version only when it activates."""
    if not request.activate:
        return None
    return await snapshots.active_prompt(tenant.own(request.template.key, "template.key"))


async def _activate_prompt_before(snapshots: Snapshots, tenant: Tenant,
                                  request: Any) -> Snapshot:
    return await snapshots.active_prompt(tenant.own(request.key, "key"))


async def _new_config_before(snapshots: Snapshots, tenant: Tenant, request: Any) -> Snapshot:
    """CreateBotConfig replaces the active config only when it activates."""
    if not request.activate:
        return None
    return await snapshots.active_bot_config(tenant.own(request.config.bot, "config.bot"))


async def _activate_config_before(snapshots: Snapshots, tenant: Tenant,
                                  request: Any) -> Snapshot:
    return await snapshots.active_bot_config(tenant.own(request.bot, "bot"))


async def _wallet_before(snapshots: Snapshots, tenant: Tenant, request: Any) -> Snapshot:
    return await snapshots.wallet(tenant.own(request.wallet_id, "wallet_id"))


async def _refunded_wallet_before(snapshots: Snapshots, tenant: Tenant,
                                  request: Any) -> Snapshot:
    value = request.transaction_id
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        return None  # the handler refuses it
    return await snapshots.wallet_of_transaction(int(value))


_PERIODS = {billing_pb2.BUDGET_PERIOD_DAY: "day", billing_pb2.BUDGET_PERIOD_MONTH: "month"}
_METRICS = {billing_pb2.BUDGET_METRIC_TOKENS: "tokens",
            billing_pb2.BUDGET_METRIC_SPEND_MICROS: "spend"}


async def _budget_before(snapshots: Snapshots, tenant: Tenant, request: Any) -> Snapshot:
    period, metric = _PERIODS.get(request.period), _METRICS.get(request.metric)
    if period is None or metric is None:
        return None  # the handler refuses it
    return await snapshots.budget(tenant.own(request.wallet_id, "wallet_id"),
                                  request.end_user_id, period, metric)


def budget_id(request: Any) -> str:
    """``wallet[/end_user]/period/metric``: what identifies a budget."""
    parts = [request.wallet_id, *([request.end_user_id] if request.end_user_id else []),
             _PERIODS.get(request.period, "?"), _METRICS.get(request.metric, "?")]
    return "/".join(parts)


AUDITED: Mapping[str, Audited] = {
    _CONF + "CreatePromptVersion": Audited("prompt", lambda rq, rs, b: rq.template.key,
                                           _new_prompt_before),
    _CONF + "ActivatePrompt": Audited("prompt", lambda rq, rs, b: rq.key,
                                      _activate_prompt_before),
    _CONF + "CreateBot": Audited("bot", lambda rq, rs, b: rq.bot.slug),
    _CONF + "CreateBotConfig": Audited("bot_config", lambda rq, rs, b: rs.config_id,
                                       _new_config_before),
    _CONF + "ActivateBotConfig": Audited("bot_config", lambda rq, rs, b: rq.config_id,
                                         _activate_config_before),
    _BILL + "CreateWallet": Audited("wallet", lambda rq, rs, b: rq.wallet_id),
    _BILL + "CreditWallet": Audited("wallet", lambda rq, rs, b: rq.wallet_id, _wallet_before,
                                    _not_replayed),
    # A refund names the charge, not the wallet: the wallet is found with the `before`.
    _BILL + "Refund": Audited("wallet", lambda rq, rs, b: str((b or {}).get("id") or
                                                              f"transactions/{rq.transaction_id}"),
                              _refunded_wallet_before, _not_replayed),
    _BILL + "SetBudget": Audited("budget", lambda rq, rs, b: budget_id(rq), _budget_before),
}


def as_json(message: Message) -> dict[str, Any]:
    """A message as the JSON object an event stores (proto field names, defaults shown)."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


class AuditInterceptor(WrappingInterceptor):
    """Write one audit event per successful call of an RPC in ``audited``."""

    def __init__(self, recorder: AuditRecorder, snapshots: Snapshots, tenants: TenantClaims,
                 audited: Mapping[str, Audited] = AUDITED) -> None:
        self._recorder = recorder
        self._snapshots = snapshots
        self._tenants = tenants
        self._audited = audited
        super().__init__()

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        spec = self._audited.get(method)
        if spec is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            call = current_call.get()
            principal = call.principal if call else None
            tenant = current_tenant(self._tenants)  # as the handler will resolve it
            before = await self._before(spec, tenant, request, method)
            response = await inner(request, context)
            if spec.changed(response):
                await self._recorder.record(AuditEvent(
                    tenant=tenant.name, service=principal.subject if principal else "anonymous",
                    kind=spec.kind, method=method,
                    object_id=spec.object_id(request, response, before), before=before,
                    after=as_json(response), request=as_json(request),
                    trace_id=call.trace_id if call else ""))
            return response

        return grpc.unary_unary_rpc_method_handler(
            unary, handler.request_deserializer, handler.response_serializer)

    async def _before(self, spec: Audited, tenant: Tenant, request: Any,
                      method: str) -> Snapshot:
        if spec.before is None:
            return None
        try:
            return shown_names(await spec.before(self._snapshots, tenant, request), tenant.shown)
        except GatewayError:
            return None  # a name the handler refuses (with this very error)
        except Exception as exc:  # noqa: BLE001 - the database may be away: the handler will say
            log.warning("audit: reading the state before %s failed (%s); the event will have "
                        "no before", method, type(exc).__name__)
            return None
