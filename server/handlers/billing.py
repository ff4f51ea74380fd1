"""BillingService: Charge, CreateWallet, CreditWallet, GetBalance, ListTransactions, Refund.

Thin: protobuf in, ``server.billing.Ledger`` call, protobuf out. Idempotency keys are
scoped to the calling service (the JWT subject) within its tenant, so two services cannot
collide. Every wallet id is the caller's tenant's (server/kernel/tenancy.py): another
tenant's wallet is not found, and a transaction is refundable only within its tenant.
"""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
from google.protobuf import timestamp_pb2
from llmgateway.v1 import billing_pb2 as pb
from llmgateway.v1 import billing_pb2_grpc as pb_grpc

from server.billing.budgets import Budget, Budgets
from server.billing.ledger import Ledger, Wallet
from server.billing.pricing import Metered
from server.billing.validation import RESERVED_KEY_PREFIXES, Checks
from server.kernel.call_context import current_call
from server.kernel.errors import Fault, FieldViolation, GatewayError, bad_field
from server.kernel.tenancy import Tenant, TenantClaims
from server.wire import current_tenant

_KIND_TO_PB = {"charge": pb.TRANSACTION_KIND_CHARGE, "settle": pb.TRANSACTION_KIND_CHARGE,
               "credit": pb.TRANSACTION_KIND_CREDIT, "refund": pb.TRANSACTION_KIND_REFUND,
               "hold": pb.TRANSACTION_KIND_HOLD, "void": pb.TRANSACTION_KIND_HOLD,
               "expire": pb.TRANSACTION_KIND_HOLD}
_KIND_FROM_PB = {pb.TRANSACTION_KIND_UNSPECIFIED: "", pb.TRANSACTION_KIND_CHARGE: "charge",
                 pb.TRANSACTION_KIND_CREDIT: "credit", pb.TRANSACTION_KIND_REFUND: "refund",
                 pb.TRANSACTION_KIND_HOLD: "hold"}


_PERIOD_TO_PB = {"day": pb.BUDGET_PERIOD_DAY, "month": pb.BUDGET_PERIOD_MONTH}
_PERIOD_FROM_PB = {v: k for k, v in _PERIOD_TO_PB.items()}
_METRIC_TO_PB = {"tokens": pb.BUDGET_METRIC_TOKENS, "spend": pb.BUDGET_METRIC_SPEND_MICROS}
_METRIC_FROM_PB = {v: k for k, v in _METRIC_TO_PB.items()}


def _budget(budget: Budget, tenant: Tenant) -> pb.Budget:
    return pb.Budget(wallet_id=tenant.shown(budget.wallet_id), end_user_id=budget.end_user_id,
                     period=_PERIOD_TO_PB[budget.period], metric=_METRIC_TO_PB[budget.metric],
                     limit=budget.limit, used=budget.used,
                     period_start_time=_timestamp(budget.period_start),
                     reset_time=_timestamp(budget.reset_at))


def caller_scope(tenant: Tenant) -> str:
    """Whose idempotency keys these are: the authenticated service, in its tenant."""
    call = current_call.get()
    return tenant.scope(call.subject if call else "anonymous")


def _timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def _wallet(wallet: Wallet, tenant: Tenant) -> pb.Wallet:
    return pb.Wallet(wallet_id=tenant.shown(wallet.wallet_id), currency_code=wallet.currency_code,
                     balance_micros=wallet.balance, held_micros=wallet.held,
                     available_micros=wallet.available,
                     overdraft_limit_micros=wallet.overdraft_limit,
                     create_time=_timestamp(wallet.created_at))


def _transaction_id(value: str, field: str = "transaction_id") -> int:
    if not value:
        raise bad_field(field, "required")
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise bad_field(field, "not a transaction id")
    return int(value)


def _client_key(key: str) -> None:
    """Refuse the gateway's reserved key space before the ledger sees the key."""
    if key.startswith(RESERVED_KEY_PREFIXES):
        checks = Checks()
        checks.client_idempotency_key(key)
        checks.raise_if_any()


_NO_SUCH_TRANSACTION = GatewayError(Fault.NOT_FOUND, "NOT_FOUND", "no such transaction",
                                    violations=[FieldViolation("transaction_id",
                                                               "no such transaction")])


class BillingService(pb_grpc.BillingServiceServicer):
    def __init__(self, ledger: Ledger, budgets: Budgets,
                 tenants: TenantClaims = TenantClaims()) -> None:
        self._ledger = ledger
        self._budgets = budgets
        self._tenants = tenants

    async def Charge(self, request: pb.ChargeRequest,
                     context: grpc.aio.ServicerContext) -> pb.ChargeResponse:
        _client_key(request.idempotency_key)
        which = request.WhichOneof("amount")
        usage = None
        if which == "usage":
            u = request.usage
            usage = Metered(input_tokens=u.input_tokens, output_tokens=u.output_tokens,
                            cached_input_tokens=u.cached_input_tokens)
        tenant = current_tenant(self._tenants)
        posted = await self._ledger.charge(
            caller_scope(tenant), tenant.own(request.wallet_id, "wallet_id"),
            request.idempotency_key,
            amount=request.amount_micros if which == "amount_micros" else None,
            usage=usage, model=request.usage.model if usage else "",
            currency_code=request.currency_code,
            session_id=tenant.own(request.session_id, "session_id"),
            description=request.description)
        return pb.ChargeResponse(transaction_id=str(posted.transaction_id),
                                 amount_micros=-posted.amount,
                                 balance_after_micros=posted.balance_after,
                                 replayed=posted.replayed)

    async def CreateWallet(self, request: pb.CreateWalletRequest,
                           context: grpc.aio.ServicerContext) -> pb.Wallet:
        tenant = current_tenant(self._tenants)
        return _wallet(await self._ledger.create_wallet(
            tenant.own(request.wallet_id, "wallet_id"), request.currency_code,
            request.overdraft_limit_micros), tenant)

    async def CreditWallet(self, request: pb.CreditWalletRequest,
                           context: grpc.aio.ServicerContext) -> pb.CreditWalletResponse:
        _client_key(request.idempotency_key)
        tenant = current_tenant(self._tenants)
        posted = await self._ledger.credit(caller_scope(tenant),
                                           tenant.own(request.wallet_id, "wallet_id"),
                                           request.idempotency_key, request.amount_micros,
                                           request.currency_code, request.description)
        return pb.CreditWalletResponse(transaction_id=str(posted.transaction_id),
                                       balance_after_micros=posted.balance_after,
                                       replayed=posted.replayed)

    async def GetBalance(self, request: pb.GetBalanceRequest,
                         context: grpc.aio.ServicerContext) -> pb.Wallet:
        tenant = current_tenant(self._tenants)
        return _wallet(await self._ledger.wallet(tenant.own(request.wallet_id, "wallet_id")),
                       tenant)

    async def ListTransactions(self, request: pb.ListTransactionsRequest,
                               context: grpc.aio.ServicerContext) -> pb.ListTransactionsResponse:
        if request.kind not in _KIND_FROM_PB:
            raise bad_field("kind", "unknown transaction kind")
        tenant = current_tenant(self._tenants)
        page = await self._ledger.transactions(
            tenant.own(request.wallet_id, "wallet_id"), page_size=request.page_size, page_token=request.page_token,
            kind=_KIND_FROM_PB[request.kind],
            start=request.start_time.ToDatetime(tzinfo=UTC) if request.HasField("start_time")
            else None,
            end=request.end_time.ToDatetime(tzinfo=UTC) if request.HasField("end_time")
            else None)
        return pb.ListTransactionsResponse(
            transactions=[pb.Transaction(transaction_id=str(t.transaction_id),
                                         kind=_KIND_TO_PB[t.kind], amount_micros=t.amount,
                                         description=t.description,
                                         create_time=_timestamp(t.created_at))
                          for t in page.transactions],
            next_page_token=page.next_page_token)

    async def Refund(self, request: pb.RefundRequest,
                     context: grpc.aio.ServicerContext) -> pb.RefundResponse:
        _client_key(request.idempotency_key)
        tenant = current_tenant(self._tenants)
        transaction_id = _transaction_id(request.transaction_id)
        wallet = await self._ledger.wallet_of(transaction_id)
        if wallet is None or not tenant.owns(wallet):
            raise _NO_SUCH_TRANSACTION
        posted = await self._ledger.refund(caller_scope(tenant), transaction_id,
                                           request.idempotency_key, request.reason)
        return pb.RefundResponse(transaction_id=str(posted.transaction_id),
                                 amount_micros=posted.amount,
                                 balance_after_micros=posted.balance_after,
                                 replayed=posted.replayed)

    async def SetBudget(self, request: pb.SetBudgetRequest,
                        context: grpc.aio.ServicerContext) -> pb.Budget:
        tenant = current_tenant(self._tenants)
        budget = await self._budgets.set(
            tenant.own(request.wallet_id, "wallet_id"), request.end_user_id, _PERIOD_FROM_PB.get(request.period, ""),
            _METRIC_FROM_PB.get(request.metric, ""), request.limit)
        if budget is None:  # removed: echo what was asked, with nothing used
            return pb.Budget(wallet_id=request.wallet_id, end_user_id=request.end_user_id,
                             period=request.period, metric=request.metric)
        return _budget(budget, tenant)

    async def ListBudgets(self, request: pb.ListBudgetsRequest,
                          context: grpc.aio.ServicerContext) -> pb.ListBudgetsResponse:
        tenant = current_tenant(self._tenants)
        wallet = tenant.own(request.wallet_id, "wallet_id")
        await self._ledger.wallet(wallet)  # validates; NOT_FOUND when unknown
        return pb.ListBudgetsResponse(
            budgets=[_budget(b, tenant) for b in await self._budgets.all_for(wallet)])
