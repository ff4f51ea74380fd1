"""Billing inside Generate / StreamGenerate: funds checked before any vendor call, the
worst case held, the vendor's actual usage settled (streams cut early included), the hold
voided on failure, retries charged once, and a usage record for every call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import grpc
import pytest
from llmgateway.v1 import billing_pb2 as bpb
from llmgateway.v1 import billing_pb2_grpc as bpb_grpc
from llmgateway.v1 import generation_pb2 as pb
from llmgateway.v1 import generation_pb2_grpc as pb_grpc

from server.billing.runtime import asyncpg_url
from tests.billing.conftest import unique
from tests.support.gateway import RunningGateway, bearer, raw_test_config, running_gateway

IN_PRICE, OUT_PRICE = 3_000_000, 15_000_000  # micros per million tokens
PRICING = {"input_per_million_micros": IN_PRICE, "output_per_million_micros": OUT_PRICE}
MODELS = {name: {"targets": [{"provider": "simulator", "model": name}], "pricing": PRICING}
          for name in ("bill-ok", "bill-fail", "bill-drop", "bill-slow", "bill-stream")}


def cost(usage: pb.Usage) -> int:
    return -(-(usage.input_tokens * IN_PRICE + usage.output_tokens * OUT_PRICE) // 1_000_000)


@pytest.fixture(scope="module")
async def billed_gateway(simulator, pg_url: str, data_dir: Path) -> AsyncIterator[RunningGateway]:
    simulator.set_scenario("bill-fail", always_status=400)
    simulator.set_scenario("bill-drop", reply_tokens=30, drop_after_tokens=5,
                           drop_error_status=500)
    simulator.set_scenario("bill-slow", reply_tokens=400, tokens_per_second=100)
    simulator.set_scenario("bill-stream", reply_tokens=25)
    raw = raw_test_config(simulator.base_url, data_dir, models=MODELS,
                          billing={"sweep_interval_s": 0.2})
    async with running_gateway(raw, pg_url) as gw:
        yield gw


@pytest.fixture
def md() -> tuple[tuple[str, str]]:
    return bearer("generate", "billing:admin", "billing:read", subject=unique("svc"))


@pytest.fixture
async def channel_to(billed_gateway) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(billed_gateway.target) as ch:
        yield ch


async def wallet_with(channel, md, balance: int) -> str:
    stub = bpb_grpc.BillingServiceStub(channel)
    wallet = unique("gen")
    await stub.CreateWallet(bpb.CreateWalletRequest(wallet_id=wallet, currency_code="USD"),
                            metadata=md)
    if balance:
        await stub.CreditWallet(bpb.CreditWalletRequest(wallet_id=wallet, amount_micros=balance,
                                                        idempotency_key=unique("seed")),
                                metadata=md)
    return wallet


async def balance_of(channel, md, wallet: str) -> bpb.Wallet:
    return await bpb_grpc.BillingServiceStub(channel).GetBalance(
        bpb.GetBalanceRequest(wallet_id=wallet), metadata=md)


def request(model: str, wallet: str, key: str, **kw) -> pb.GenerateRequest:
    return pb.GenerateRequest(model=model, messages=[pb.Message(role="user", content="Hello")],
                              billing=pb.BillingOptions(wallet_id=wallet, idempotency_key=key),
                              **kw)


async def test_generate_charges_exactly_the_reported_usage(channel_to, md, pg_url):
    wallet = await wallet_with(channel_to, md, 1_000_000)
    reply = await pb_grpc.GenerationServiceStub(channel_to).Generate(
        request("bill-ok", wallet, "g1", end_user_id="alice"), metadata=md)
    assert reply.usage.output_tokens > 0
    assert reply.charge.amount_micros == cost(reply.usage) > 0
    assert reply.charge.currency_code == "USD" and not reply.charge.replayed
    after = await balance_of(channel_to, md, wallet)
    assert (after.balance_micros, after.held_micros) == (1_000_000 - cost(reply.usage), 0)
    assert reply.charge.balance_after_micros == after.balance_micros

    conn = await asyncpg.connect(asyncpg_url(pg_url))
    try:
        for _ in range(50):  # usage records are written in the background
            row = await conn.fetchrow("SELECT * FROM usage_records WHERE wallet_id = $1", wallet)
            if row:
                break
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    assert row is not None
    assert (row["trace_id"], row["cost_micros"], row["transaction_id"], row["end_user_id"]) == \
        (reply.trace_id, reply.charge.amount_micros, int(reply.charge.transaction_id), "alice")
    assert (row["provider"], row["model"], row["status"]) == ("simulator", "bill-ok", "OK")
    assert row["output_tokens"] == reply.usage.output_tokens


async def test_a_retry_with_the_same_key_is_charged_once(channel_to, md):
    wallet = await wallet_with(channel_to, md, 1_000_000)
    stub = pb_grpc.GenerationServiceStub(channel_to)
    first = await stub.Generate(request("bill-ok", wallet, "same"), metadata=md)
    again = await stub.Generate(request("bill-ok", wallet, "same"), metadata=md)
    assert again.charge.replayed
    assert again.charge.transaction_id == first.charge.transaction_id
    after = await balance_of(channel_to, md, wallet)
    assert (after.balance_micros, after.held_micros) == (1_000_000 - first.charge.amount_micros, 0)


async def test_no_funds_fails_before_any_vendor_call(channel_to, md, simulator):
    wallet = await wallet_with(channel_to, md, 10)
    before = simulator.stats()["requests_by_model"].get("bill-ok", 0)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await pb_grpc.GenerationServiceStub(channel_to).Generate(
            request("bill-ok", wallet, "poor"), metadata=md)
    assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "INSUFFICIENT_FUNDS" in str(err.value.trailing_metadata())
    assert simulator.stats()["requests_by_model"].get("bill-ok", 0) == before


async def test_a_failed_call_releases_its_hold(channel_to, md):
    wallet = await wallet_with(channel_to, md, 1_000_000)
    with pytest.raises(grpc.aio.AioRpcError):
        await pb_grpc.GenerationServiceStub(channel_to).Generate(
            request("bill-fail", wallet, "fails"), metadata=md)
    after = await balance_of(channel_to, md, wallet)
    assert (after.balance_micros, after.held_micros) == (1_000_000, 0)


async def test_billing_needs_an_idempotency_key(channel_to, md):
    wallet = await wallet_with(channel_to, md, 1_000)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await pb_grpc.GenerationServiceStub(channel_to).Generate(
            request("bill-ok", wallet, ""), metadata=md)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "billing.idempotency_key" in err.value.details()


def stream_request(model: str, wallet: str, key: str) -> pb.StreamGenerateRequest:
    return pb.StreamGenerateRequest(
        model=model, messages=[pb.Message(role="user", content="Hello")],
        billing=pb.BillingOptions(wallet_id=wallet, idempotency_key=key))


async def test_stream_charges_its_usage_in_the_end_event(channel_to, md):
    wallet = await wallet_with(channel_to, md, 1_000_000)
    events = [e async for e in pb_grpc.GenerationServiceStub(channel_to).StreamGenerate(
        stream_request("bill-stream", wallet, "s1"), metadata=md)]
    end = events[-1].end
    assert end.usage.output_tokens > 0
    assert end.charge.amount_micros == cost(end.usage)
    after = await balance_of(channel_to, md, wallet)
    assert (after.balance_micros, after.held_micros) == (1_000_000 - cost(end.usage), 0)


async def test_a_stream_cut_by_the_vendor_settles_what_was_used(channel_to, md):
    wallet = await wallet_with(channel_to, md, 1_000_000)
    events = []
    with pytest.raises(grpc.aio.AioRpcError):
        async for event in pb_grpc.GenerationServiceStub(channel_to).StreamGenerate(
                stream_request("bill-drop", wallet, "cut"), metadata=md):
            events.append(event)
    end = next(e.end for e in events if e.HasField("end"))
    assert end.finish_reason == pb.FINISH_REASON_ERROR
    charged = end.charge.amount_micros
    assert charged == cost(end.usage)
    after = await balance_of(channel_to, md, wallet)
    assert (after.balance_micros, after.held_micros) == (1_000_000 - charged, 0)


async def test_a_caller_who_cancels_pays_for_the_text_sent_and_no_more(channel_to, md):
    wallet = await wallet_with(channel_to, md, 1_000_000)
    call = pb_grpc.GenerationServiceStub(channel_to).StreamGenerate(
        stream_request("bill-slow", wallet, "gone"), metadata=md)
    deltas = 0
    async for event in call:
        deltas += event.HasField("delta")
        if deltas == 5:
            break
    call.cancel()
    for _ in range(100):
        after = await balance_of(channel_to, md, wallet)
        if after.held_micros == 0:
            break
        await asyncio.sleep(0.05)
    assert after.held_micros == 0
    spent = 1_000_000 - after.balance_micros
    full_reply = cost(pb.Usage(input_tokens=1, output_tokens=400))
    assert 0 < spent < full_reply / 2  # the sent text, not the whole reply, not nothing


def budget_stub(channel) -> bpb_grpc.BillingServiceStub:
    return bpb_grpc.BillingServiceStub(channel)


async def test_a_used_up_token_budget_stops_calls_until_the_period_resets(channel_to, md, pg_url):
    wallet = await wallet_with(channel_to, md, 1_000_000)
    set_ = await budget_stub(channel_to).SetBudget(bpb.SetBudgetRequest(
        wallet_id=wallet, period=bpb.BUDGET_PERIOD_DAY, metric=bpb.BUDGET_METRIC_TOKENS,
        limit=10), metadata=md)
    assert (set_.limit, set_.used) == (10, 0)
    assert set_.reset_time.ToSeconds() - set_.period_start_time.ToSeconds() == 86_400
    stub = pb_grpc.GenerationServiceStub(channel_to)
    first = await stub.Generate(request("bill-ok", wallet, "b1"), metadata=md)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Generate(request("bill-ok", wallet, "b2"), metadata=md)
    assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "BUDGET_EXCEEDED" in str(err.value.trailing_metadata())
    listed = await budget_stub(channel_to).ListBudgets(bpb.ListBudgetsRequest(wallet_id=wallet),
                                                       metadata=md)
    used = first.usage.input_tokens + first.usage.output_tokens
    assert [(b.metric, b.limit, b.used) for b in listed.budgets] == \
        [(bpb.BUDGET_METRIC_TOKENS, 10, used)]

    # A new period starts from zero: move this period's use back to yesterday.
    conn = await asyncpg.connect(asyncpg_url(pg_url))
    try:
        await conn.execute("UPDATE billing_budget_usage SET period_start = period_start "
                           "- interval '1 day' WHERE wallet_id = $1", wallet)
    finally:
        await conn.close()
    again = await stub.Generate(request("bill-ok", wallet, "b3"), metadata=md)
    assert again.charge.amount_micros > 0


async def test_an_end_user_budget_only_stops_that_user(channel_to, md):
    wallet = await wallet_with(channel_to, md, 1_000_000)
    await budget_stub(channel_to).SetBudget(bpb.SetBudgetRequest(
        wallet_id=wallet, end_user_id="bob", period=bpb.BUDGET_PERIOD_MONTH,
        metric=bpb.BUDGET_METRIC_SPEND_MICROS, limit=1), metadata=md)
    stub = pb_grpc.GenerationServiceStub(channel_to)
    await stub.Generate(request("bill-ok", wallet, "u1", end_user_id="bob"), metadata=md)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Generate(request("bill-ok", wallet, "u2", end_user_id="bob"), metadata=md)
    assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    ok = await stub.Generate(request("bill-ok", wallet, "u3", end_user_id="carol"), metadata=md)
    assert ok.charge.amount_micros > 0


async def test_budget_input_is_checked(channel_to, md):
    wallet = await wallet_with(channel_to, md, 0)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await budget_stub(channel_to).SetBudget(bpb.SetBudgetRequest(
            wallet_id=wallet, metric=bpb.BUDGET_METRIC_TOKENS, limit=5), metadata=md)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "period" in err.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await budget_stub(channel_to).SetBudget(bpb.SetBudgetRequest(
            wallet_id=unique("none"), period=bpb.BUDGET_PERIOD_DAY,
            metric=bpb.BUDGET_METRIC_TOKENS, limit=5), metadata=md)
    assert err.value.code() is grpc.StatusCode.NOT_FOUND
