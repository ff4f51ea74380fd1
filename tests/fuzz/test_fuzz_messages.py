"""Hypothesis-generated requests for every RPC of our four services, from their
descriptors, against a real gateway (Postgres, simulator): whatever the fields hold, the
answer is a deliberate status — never INTERNAL or UNKNOWN, never an exception's name.

Generation is seeded (``derandomize``) and bounded; the requests are then sent with 32 in
flight and short deadlines, so the whole file takes well under a minute.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from llmgateway.v1 import billing_pb2, billing_pb2_grpc, config_pb2, config_pb2_grpc

from tests.fuzz.conftest import RUN
from tests.fuzz.harness import METADATA, Outcome, Rpc, our_rpcs, send_all, verdict
from tests.fuzz.strategies import messages

EXAMPLES_PER_RPC = 300


def generate(rpc: Rpc, count: int) -> list[bytes]:
    """``count`` seeded requests for ``rpc`` (an RPC whose request has few possible values
    repeats them: the point is then concurrency, not variety)."""
    found: list[Any] = []

    @settings(max_examples=count, derandomize=True, database=None, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(messages(rpc.request))
    def collect(message: Any) -> None:
        found.append(message.SerializeToString())

    collect()
    return [found[i % len(found)] for i in range(count)]


@pytest.fixture(scope="module")
async def fuzz_state(fuzz_channel) -> None:
    """Rows the plausible values point at, so some requests get past NOT_FOUND."""
    billing = billing_pb2_grpc.BillingServiceStub(fuzz_channel)
    config = config_pb2_grpc.ConfigServiceStub(fuzz_channel)
    for wallet in (f"{RUN}-a", f"{RUN}-b"):
        await billing.CreateWallet(billing_pb2.CreateWalletRequest(
            wallet_id=wallet, currency_code="USD"), metadata=METADATA, timeout=10)
        await billing.CreditWallet(billing_pb2.CreditWalletRequest(
            wallet_id=wallet, idempotency_key=f"{wallet}-credit", amount_micros=10**9,
            currency_code="USD"), metadata=METADATA, timeout=10)
    await config.CreatePromptVersion(config_pb2.CreatePromptVersionRequest(
        template=config_pb2.PromptTemplate(key=f"{RUN}-a", system="Be brief.",
                                           user="{{question}}"), activate=True),
        metadata=METADATA, timeout=10)
    await config.CreateBot(config_pb2.CreateBotRequest(bot=config_pb2.Bot(
        slug=f"{RUN}-a", name="fuzz")), metadata=METADATA, timeout=10)


async def test_generated_requests_never_fail_internally(fuzz_channel, fuzz_gateway, fuzz_state):
    outcome = Outcome()
    for rpc in our_rpcs():  # one RPC's batch at a time: bounded memory
        await send_all(fuzz_channel, [(rpc, payload) for payload in
                                      generate(rpc, EXAMPLES_PER_RPC)], outcome)
    verdict(outcome, "descriptor-driven fuzz")
    assert sum(outcome.codes.values()) >= 7_000  # + the raw-bytes fuzz: > 20,000 in all
    assert fuzz_gateway.metric("llmgw_internal_errors_total") == 0
