"""A billed call is priced by the target that served it, held for the worst case of its
whole chain, and never leaves the caller paying for an answer it did not get.

One real `llmgw serve` process, the real simulator and the real Postgres: bot-driven
streams charge the served target's price; a fallback from a cheap target to an expensive
one charges the expensive one; an unpriced target and a time-priced model with an empty
wallet fail before any vendor call; an overrun beyond the hold is settled in one ledger
operation and the answer still delivered; a replay reports exactly the first charge; a key
taken by another wallet is refused before the vendor is called.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from llmgateway.v1 import billing_pb2 as bpb
from llmgateway.v1 import billing_pb2_grpc as bpb_grpc
from llmgateway.v1 import config_pb2 as cpb
from llmgateway.v1 import config_pb2_grpc as cpb_grpc
from llmgateway.v1 import generation_pb2 as pb
from llmgateway.v1 import generation_pb2_grpc as pb_grpc

from server.billing.runtime import asyncpg_url
from server.kernel.tokens import upper_bound_tokens
from tests.billing.test_generate_billing import balance_of, wallet_with
from tests.billing.test_multiprocess import ledger_check
from tests.fallback.test_router_scenarios import error_info
from tests.support.gateway import GatewayProcess, bearer, raw_test_config
from tests.support.usage import usage_record

CHEAP = {"input_per_million_micros": 1_000_000, "output_per_million_micros": 1_000_000}
PRICEY = {"input_per_million_micros": 50_000_000, "output_per_million_micros": 100_000_000}
BOT = {"input_per_million_micros": 7_000_000, "output_per_million_micros": 21_000_000}
PER_MINUTE = {"per_minute_micros": 600_000}
SHORT = {"input_per_million_micros": 1_000_000, "output_per_million_micros": 1_000_000,
         "max_output_tokens": 10}  # claims a 10-token limit; the vendor writes far more
PRICES = {"simulator": {"pt-cheap-fail": CHEAP, "pt-pricey": PRICEY, "pt-bot": BOT,
                        "pt-minute": PER_MINUTE, "pt-short": SHORT}}
MODELS = {
    "pt-cheap-first": {"targets": [{"provider": "simulator", "model": "pt-cheap-fail"},
                                   {"provider": "simulator", "model": "pt-pricey"}]},
    "pt-minute": {"targets": [{"provider": "simulator", "model": "pt-minute"}]},
    "pt-short": {"targets": [{"provider": "simulator", "model": "pt-short"}]},
    "pt-unpriced-tail": {"targets": [{"provider": "simulator", "model": "pt-pricey"},
                                     {"provider": "simulator", "model": "pt-nowhere"}]},
}
SCOPES = ("generate", "admin", "billing:admin", "billing:read")


def cost(price: dict[str, int], usage: pb.Usage) -> int:
    return -(-(usage.input_tokens * price.get("input_per_million_micros", 0)
               + usage.output_tokens * price.get("output_per_million_micros", 0))
             // 1_000_000)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def gateway(simulator, pg_url: str, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[GatewayProcess]:
    simulator.set_scenario("pt-cheap-fail", always_status=503)
    simulator.set_scenario("pt-pricey", reply_tokens=12)
    simulator.set_scenario("pt-bot", reply_tokens=15)
    simulator.set_scenario("pt-short", reply_tokens=400)
    workdir = tmp_path_factory.mktemp("priced")
    raw = raw_test_config(simulator.base_url, workdir, database={"url": pg_url},
                          prices=PRICES, models=MODELS)
    process = GatewayProcess(raw, workdir).start(timeout_s=90)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def md() -> tuple[tuple[str, str]]:
    return bearer(*SCOPES, subject=unique("svc"))


@pytest.fixture
async def channel(gateway: GatewayProcess) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(gateway.target) as ch:
        yield ch


def ask(wallet: str, key: str, **kw) -> pb.GenerateRequest:
    return pb.GenerateRequest(messages=[pb.Message(role="user", content="Hello there")],
                              billing=pb.BillingOptions(wallet_id=wallet, idempotency_key=key),
                              **kw)


def vendor_calls(simulator, model: str) -> int:
    return simulator.stats()["requests_by_model"].get(model, 0)


async def test_bot_driven_stream_charges_the_served_targets_price(channel, md, pg_url):
    conf = cpb_grpc.ConfigServiceStub(channel)
    slug = unique("bot")
    await conf.CreateBot(cpb.CreateBotRequest(bot=cpb.Bot(slug=slug, name="Priced bot")),
                         metadata=md)
    await conf.CreateBotConfig(cpb.CreateBotConfigRequest(config=cpb.BotConfig(
        bot=slug, provider="simulator", model="pt-bot"), activate=True), metadata=md)
    wallet = await wallet_with(channel, md, 1_000_000)
    events = [e async for e in pb_grpc.GenerationServiceStub(channel).StreamGenerate(
        ask(wallet, unique("k"), bot=slug), metadata=md, timeout=10)]
    end = events[-1].end
    assert end.served_by.model == "pt-bot" and end.usage.output_tokens == 15
    assert end.charge.amount_micros == cost(BOT, end.usage) > 0
    after = await balance_of(channel, md, wallet)
    assert (after.balance_micros, after.held_micros) == (1_000_000 - cost(BOT, end.usage), 0)
    record = await usage_record(asyncpg_url(pg_url), end.trace_id)
    assert (record["provider"], record["model"], record["cost_micros"]) == \
        ("simulator", "pt-bot", end.charge.amount_micros)


async def test_fallback_from_cheap_to_expensive_charges_the_expensive_one(channel, md):
    wallet = await wallet_with(channel, md, 10_000_000)
    reply = await pb_grpc.GenerationServiceStub(channel).Generate(
        ask(wallet, unique("k"), model="pt-cheap-first"), metadata=md, timeout=10)
    assert reply.served_by.model == "pt-pricey"
    assert [a.outcome for a in reply.attempts][-1] == pb.ATTEMPT_OUTCOME_SUCCESS
    assert reply.charge.amount_micros == cost(PRICEY, reply.usage)
    assert reply.charge.amount_micros > cost(CHEAP, reply.usage)


async def test_an_unpriced_target_fails_closed_before_any_vendor_call(channel, md, simulator):
    wallet = await wallet_with(channel, md, 10_000_000)
    gen = pb_grpc.GenerationServiceStub(channel)
    before = (vendor_calls(simulator, "pt-nowhere"), vendor_calls(simulator, "pt-pricey"))
    for request in (ask(wallet, unique("k"), targets=[pb.Target(provider="simulator",
                                                               model="pt-nowhere")]),
                    ask(wallet, unique("k"), model="pt-unpriced-tail")):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await gen.Generate(request, metadata=md, timeout=10)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        info = error_info(caught.value)
        assert info.reason == "PRICE_UNKNOWN"
        assert info.metadata["target"] == "simulator/pt-nowhere"
    # Not even the priced head of the chain was called, and nothing was held.
    assert (vendor_calls(simulator, "pt-nowhere"), vendor_calls(simulator, "pt-pricey")) == before
    page = await bpb_grpc.BillingServiceStub(channel).ListTransactions(
        bpb.ListTransactionsRequest(wallet_id=wallet), metadata=md)
    assert [t.kind for t in page.transactions] == [bpb.TRANSACTION_KIND_CREDIT]
    # Unbilled, the same target serves (pricing gates money, not traffic).
    reply = await gen.Generate(pb.GenerateRequest(
        messages=[pb.Message(role="user", content="hi")],
        targets=[pb.Target(provider="simulator", model="pt-nowhere")]), metadata=md, timeout=10)
    assert reply.text


async def test_a_time_priced_model_with_an_empty_wallet_never_reaches_the_vendor(
        channel, md, simulator):
    gen = pb_grpc.GenerationServiceStub(channel)
    empty = await wallet_with(channel, md, 0)
    before = vendor_calls(simulator, "pt-minute")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gen.Generate(ask(empty, unique("k"), model="pt-minute"), metadata=md, timeout=10)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(caught.value).reason == "INSUFFICIENT_FUNDS"
    assert vendor_calls(simulator, "pt-minute") == before
    # Funded for the whole deadline (10 s at 0.6/min = 100,000 µ), it is served and charged
    # for the time it took, far less than held.
    funded = await wallet_with(channel, md, 200_000)
    reply = await gen.Generate(ask(funded, unique("k"), model="pt-minute"), metadata=md,
                               timeout=10)
    assert 0 < reply.charge.amount_micros < 100_000
    assert (await balance_of(channel, md, funded)).held_micros == 0


async def test_an_overrun_is_charged_in_one_operation_and_the_answer_delivered(
        channel, md, pg_url):
    gen = pb_grpc.GenerationServiceStub(channel)
    # Held for 10 output tokens (the configured limit); the vendor writes 400.
    rich = await wallet_with(channel, md, 1_000_000)
    reply = await gen.Generate(ask(rich, unique("k"), model="pt-short"), metadata=md, timeout=10)
    assert reply.usage.output_tokens == 400 and reply.text
    assert reply.charge.amount_micros == cost(SHORT, reply.usage)
    assert (await balance_of(channel, md, rich)).balance_micros == \
        1_000_000 - reply.charge.amount_micros

    # A wallet that covers the hold but not the cost pays all it has, and gets the answer.
    hold = -(-(upper_bound_tokens(len("Hello there")) + 10) * 1_000_000 // 1_000_000)
    poor = await wallet_with(channel, md, hold + 5)
    key = unique("k")
    reply = await gen.Generate(ask(poor, key, model="pt-short"), metadata=md, timeout=10)
    assert reply.text and reply.usage.output_tokens == 400
    assert reply.charge.amount_micros == hold + 5 < cost(SHORT, reply.usage)
    after = await balance_of(channel, md, poor)
    assert (after.balance_micros, after.held_micros) == (0, 0)
    record = await usage_record(asyncpg_url(pg_url), reply.trace_id)
    assert record["uncollected_micros"] == cost(SHORT, reply.usage) - (hold + 5)

    # The replay reports exactly the first charge, and charges nothing more.
    again = await gen.Generate(ask(poor, key, model="pt-short"), metadata=md, timeout=10)
    assert again.charge.replayed
    assert (again.charge.transaction_id, again.charge.amount_micros) == \
        (reply.charge.transaction_id, reply.charge.amount_micros)
    assert (await balance_of(channel, md, poor)).balance_micros == 0


async def test_replays_report_the_first_amount_for_streams_too(channel, md):
    gen = pb_grpc.GenerationServiceStub(channel)
    wallet = await wallet_with(channel, md, 1_000_000)
    key = unique("k")
    first = [e async for e in gen.StreamGenerate(ask(wallet, key, model="pt-cheap-first"),
                                                 metadata=md, timeout=10)][-1].end
    again = [e async for e in gen.StreamGenerate(ask(wallet, key, model="pt-cheap-first"),
                                                 metadata=md, timeout=10)][-1].end
    assert again.charge.replayed and not first.charge.replayed
    assert (again.charge.transaction_id, again.charge.amount_micros) == \
        (first.charge.transaction_id, first.charge.amount_micros)
    after = await balance_of(channel, md, wallet)
    assert (after.balance_micros, after.held_micros) == \
        (1_000_000 - first.charge.amount_micros, 0)


async def test_a_key_used_for_another_wallet_is_refused_before_the_vendor(
        channel, md, simulator):
    gen = pb_grpc.GenerationServiceStub(channel)
    first, second = await wallet_with(channel, md, 1_000_000), await wallet_with(channel, md,
                                                                               1_000_000)
    key = unique("k")
    await gen.Generate(ask(first, key, model="pt-cheap-first"), metadata=md, timeout=10)
    before = vendor_calls(simulator, "pt-pricey")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gen.Generate(ask(second, key, model="pt-cheap-first"), metadata=md, timeout=10)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "billing.idempotency_key" in caught.value.details()
    assert vendor_calls(simulator, "pt-pricey") == before
    after = await balance_of(channel, md, second)
    assert (after.balance_micros, after.held_micros) == (1_000_000, 0)


def test_the_books_balance_after_these_calls(gateway, pg_url):
    check = ledger_check(pg_url)
    assert check.returncode == 0, check.stdout
