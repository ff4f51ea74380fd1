"""BillingService over gRPC: the contract's codes, reasons, field names and scopes."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from llmgateway.v1 import billing_pb2 as pb
from llmgateway.v1 import billing_pb2_grpc as pb_grpc

from tests.billing.conftest import unique
from tests.support.gateway import bearer

SCOPES = ("billing:admin", "billing:charge", "billing:read")


def details(error: grpc.aio.AioRpcError) -> tuple[str, list[str]]:
    """ErrorInfo reason and the BadRequest field names."""
    raw = dict(error.trailing_metadata())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(raw)
    reason, fields = "", []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields = [v.field for v in bad.field_violations]
    return reason, fields


@pytest.fixture
def md() -> tuple[tuple[str, str]]:
    """Credentials of a fresh calling service, so tests never share idempotency keys."""
    return bearer(*SCOPES, subject=unique("svc"))


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> pb_grpc.BillingServiceStub:
    return pb_grpc.BillingServiceStub(channel)


async def new_wallet(stub: pb_grpc.BillingServiceStub, balance: int, md) -> str:
    wallet_id = unique("rpc")
    await stub.CreateWallet(pb.CreateWalletRequest(wallet_id=wallet_id, currency_code="USD"),
                            metadata=md)
    if balance:
        await stub.CreditWallet(pb.CreditWalletRequest(wallet_id=wallet_id, amount_micros=balance,
                                                       idempotency_key=unique("seed")),
                                metadata=md)
    return wallet_id


async def test_charge_credit_balance_and_history(md, stub):
    wallet = await new_wallet(stub, 10_000, md)
    charge = await stub.Charge(pb.ChargeRequest(wallet_id=wallet, idempotency_key="c1",
                                                amount_micros=2_500, description="call"),
                               metadata=md)
    assert (charge.amount_micros, charge.balance_after_micros, charge.replayed) == \
        (2_500, 7_500, False)
    replay = await stub.Charge(pb.ChargeRequest(wallet_id=wallet, idempotency_key="c1",
                                                amount_micros=2_500, description="call"),
                               metadata=md)
    assert replay.replayed and replay.transaction_id == charge.transaction_id
    balance = await stub.GetBalance(pb.GetBalanceRequest(wallet_id=wallet), metadata=md)
    assert (balance.balance_micros, balance.available_micros, balance.currency_code) == \
        (7_500, 7_500, "USD")
    history = await stub.ListTransactions(pb.ListTransactionsRequest(wallet_id=wallet),
                                          metadata=md)
    assert [(t.kind, t.amount_micros) for t in history.transactions] == [
        (pb.TRANSACTION_KIND_CHARGE, -2_500), (pb.TRANSACTION_KIND_CREDIT, 10_000)]


async def test_usage_charge_at_the_model_price(md, stub):
    wallet = await new_wallet(stub, 1_000_000, md)
    # sim-chat: 150,000 input / 600,000 output micros per million tokens
    charge = await stub.Charge(pb.ChargeRequest(
        wallet_id=wallet, idempotency_key="u1",
        usage=pb.UsageAmount(model="sim-chat", input_tokens=1_000, output_tokens=1_000)),
        metadata=md)
    assert charge.amount_micros == 150 + 600


async def test_refund_once(md, stub):
    wallet = await new_wallet(stub, 1_000, md)
    charge = await stub.Charge(pb.ChargeRequest(wallet_id=wallet, idempotency_key="c",
                                                amount_micros=400), metadata=md)
    refund = await stub.Refund(pb.RefundRequest(transaction_id=charge.transaction_id,
                                                idempotency_key="r", reason="oops"),
                               metadata=md)
    assert (refund.amount_micros, refund.balance_after_micros) == (400, 1_000)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Refund(pb.RefundRequest(transaction_id=charge.transaction_id,
                                           idempotency_key="r2"), metadata=md)
    assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert details(err.value)[0] == "ALREADY_REFUNDED"


async def test_insufficient_funds_is_failed_precondition(md, stub, gateway):
    refused = {"kind": "charge", "status": "insufficient_funds"}
    before = gateway.metric("llmgw_ledger_operations_total", refused)
    wallet = await new_wallet(stub, 100, md)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Charge(pb.ChargeRequest(wallet_id=wallet, idempotency_key="c",
                                           amount_micros=101), metadata=md)
    assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert details(err.value)[0] == "INSUFFICIENT_FUNDS"
    assert gateway.metric("llmgw_ledger_operations_total", refused) == before + 1


async def test_key_reuse_with_another_body_is_already_exists(md, stub):
    wallet = await new_wallet(stub, 1_000, md)
    await stub.Charge(pb.ChargeRequest(wallet_id=wallet, idempotency_key="k", amount_micros=1),
                      metadata=md)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Charge(pb.ChargeRequest(wallet_id=wallet, idempotency_key="k",
                                           amount_micros=2), metadata=md)
    assert err.value.code() is grpc.StatusCode.ALREADY_EXISTS
    assert details(err.value) == ("IDEMPOTENCY_KEY_REUSED", ["idempotency_key"])


@pytest.mark.parametrize("request_, code, reason, field", [
    (pb.ChargeRequest(wallet_id="WALLET", amount_micros=5), grpc.StatusCode.INVALID_ARGUMENT,
     "INVALID_ARGUMENT", "idempotency_key"),
    (pb.ChargeRequest(wallet_id="WALLET", idempotency_key="k", amount_micros=0),
     grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "amount_micros"),
    (pb.ChargeRequest(wallet_id="WALLET", idempotency_key="k", amount_micros=-3),
     grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "amount_micros"),
    (pb.ChargeRequest(wallet_id="WALLET", idempotency_key="k"),
     grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "amount"),
    (pb.ChargeRequest(wallet_id="no-such-wallet-x", idempotency_key="k", amount_micros=1),
     grpc.StatusCode.NOT_FOUND, "WALLET_NOT_FOUND", "wallet_id"),
    (pb.ChargeRequest(wallet_id="WALLET", idempotency_key="k", amount_micros=1,
                      currency_code="EUR"),
     grpc.StatusCode.FAILED_PRECONDITION, "CURRENCY_MISMATCH", "currency_code"),
    (pb.ChargeRequest(wallet_id="WALLET", idempotency_key="k",
                      usage=pb.UsageAmount(model="unpriced-model", input_tokens=1)),
     grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "usage.model"),
])
async def test_bad_charges_get_precise_codes_and_fields(md, stub, request_, code, reason, field):
    if request_.wallet_id == "WALLET":
        request_.wallet_id = await new_wallet(stub, 1_000, md)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Charge(request_, metadata=md)
    assert err.value.code() is code
    assert details(err.value) == (reason, [field])


async def test_bad_wallet_creation_and_refund_ids(md, stub):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateWallet(pb.CreateWalletRequest(wallet_id="ok-id", currency_code="dollars"),
                                metadata=md)
    assert details(err.value) == ("INVALID_ARGUMENT", ["currency_code"])
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Refund(pb.RefundRequest(transaction_id="abc", idempotency_key="r"),
                          metadata=md)
    assert details(err.value) == ("INVALID_ARGUMENT", ["transaction_id"])


async def test_crediting_needs_the_admin_scope(md, stub):
    wallet = await new_wallet(stub, 0, md)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreditWallet(pb.CreditWalletRequest(wallet_id=wallet, amount_micros=5,
                                                       idempotency_key="k"),
                                metadata=bearer("billing:charge"))
    assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("key", ["gen:order-1", "gen-hold:abc"])
async def test_the_gateways_own_key_space_is_refused_to_clients(md, stub, key):
    """A client key like ``gen:K`` would collide with the charge of a billed Generate whose
    key is K (the gateway posts it as ``gen:K``): refused before the ledger sees it."""
    wallet = await new_wallet(stub, 1_000, md)
    calls = [
        stub.Charge(pb.ChargeRequest(wallet_id=wallet, idempotency_key=key, amount_micros=1),
                    metadata=md),
        stub.CreditWallet(pb.CreditWalletRequest(wallet_id=wallet, idempotency_key=key,
                                                 amount_micros=1), metadata=md),
        stub.Refund(pb.RefundRequest(transaction_id="1", idempotency_key=key), metadata=md),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert details(err.value) == ("INVALID_ARGUMENT", ["idempotency_key"])
    balance = await stub.GetBalance(pb.GetBalanceRequest(wallet_id=wallet), metadata=md)
    assert balance.balance_micros == 1_000
