"""Embed through the real gateway, the router and the simulator's three embedding
protocols (OpenAI, Gemini, Bedrock Titan) and the local model: vectors in input order,
fallback when an embedding vendor fails, billing per input token (replays return the
first charge), usage records, bad input naming the field."""

from __future__ import annotations

import math
import uuid

import grpc
import pytest
from llmgateway.v1 import generation_pb2 as pb
from llmgateway.v1 import generation_pb2_grpc as pb_grpc

from server.kernel.tokens import estimate_tokens
from tests.billing.test_generate_billing import balance_of, wallet_with
from tests.e2e.test_bad_input import details
from tests.support.gateway import bearer
from tests.support.usage import usage_record

MD = bearer("generate", "billing:admin", "billing:read")
TEXTS = ["The refund policy allows returns within 30 days.",
         "Error E-4012 means the card was declined.",
         "Form W-9 is needed for contractors."]
SIM_EMBED_INPUT_PRICE = 20_000  # simulator/text-embedding-3-small, micros per million tokens


def norm(values) -> float:
    return math.sqrt(sum(v * v for v in values))


async def test_embed_returns_one_vector_per_input_in_order(channel):
    stub = pb_grpc.GenerationServiceStub(channel)
    reply = await stub.Embed(pb.EmbedRequest(model="sim-embed", inputs=TEXTS), metadata=MD,
                             timeout=10)
    assert [e.index for e in reply.embeddings] == [0, 1, 2]
    assert reply.dimensions == 256 and all(len(e.values) == 256 for e in reply.embeddings)
    assert reply.served_by.provider == "simulator"
    assert reply.served_by.model == "text-embedding-3-small"
    assert reply.usage.input_tokens == sum(estimate_tokens(t) for t in TEXTS)
    assert reply.usage.output_tokens == 0
    # distinct texts, distinct vectors; the same text twice, the same vector
    again = await stub.Embed(pb.EmbedRequest(model="sim-embed", inputs=[TEXTS[1]]),
                             metadata=MD, timeout=10)
    assert list(again.embeddings[0].values) == pytest.approx(list(reply.embeddings[1].values))
    assert list(reply.embeddings[0].values) != list(reply.embeddings[1].values)


async def test_embed_fails_over_to_the_next_embedding_vendor(channel, simulator):
    simulator.set_scenario("text-embedding-3-small", always_status=503)
    try:
        reply = await pb_grpc.GenerationServiceStub(channel).Embed(
            pb.EmbedRequest(model="sim-embed", inputs=TEXTS[:2]), metadata=MD, timeout=10)
    finally:
        simulator.remove_scenario("text-embedding-3-small")
    assert reply.served_by.provider == "sim-gemini"
    outcomes = [(a.target.provider, a.outcome) for a in reply.attempts]
    assert outcomes[0] == ("simulator", pb.ATTEMPT_OUTCOME_FAILED)
    assert outcomes[-1] == ("sim-gemini", pb.ATTEMPT_OUTCOME_SUCCESS)
    assert reply.attempts[0].error_reason == "unavailable"
    assert len(reply.embeddings) == 2 and reply.dimensions == 256


async def test_embed_reaches_bedrock_titan_when_both_others_fail(channel, simulator):
    simulator.set_scenario("text-embedding-3-small", always_status=503)
    simulator.set_scenario("gemini-embedding-001", always_status=429)
    try:
        reply = await pb_grpc.GenerationServiceStub(channel).Embed(
            pb.EmbedRequest(model="sim-embed", inputs=TEXTS), metadata=MD, timeout=15)
    finally:
        simulator.remove_scenario("text-embedding-3-small")
        simulator.remove_scenario("gemini-embedding-001")
    assert (reply.served_by.provider, reply.served_by.model) == \
        ("sim-bedrock", "amazon.titan-embed-text-v2:0")
    assert {a.error_reason for a in reply.attempts
            if a.outcome == pb.ATTEMPT_OUTCOME_FAILED} == {"unavailable", "rate_limited"}
    assert len(reply.embeddings) == 3 and reply.dimensions == 256


async def test_local_model_is_a_route_of_its_own(channel):
    reply = await pb_grpc.GenerationServiceStub(channel).Embed(
        pb.EmbedRequest(model="local/all-MiniLM-L6-v2", inputs=TEXTS[:1], dimensions=384),
        metadata=MD, timeout=60)
    assert reply.dimensions == 384 and reply.served_by.provider == "local"
    assert norm(reply.embeddings[0].values) == pytest.approx(1.0, abs=1e-3)


async def test_billed_embed_charges_input_tokens_once(channel, pg_url):
    wallet = await wallet_with(channel, MD, 1_000_000)
    stub = pb_grpc.GenerationServiceStub(channel)
    key = f"emb-{uuid.uuid4().hex[:8]}"
    request = pb.EmbedRequest(model="sim-embed", inputs=TEXTS,
                              billing=pb.BillingOptions(wallet_id=wallet, idempotency_key=key),
                              end_user_id="alice", metadata={"job": "index"})
    first = await stub.Embed(request, metadata=MD, timeout=10)
    tokens = first.usage.input_tokens
    expected = -(-tokens * SIM_EMBED_INPUT_PRICE // 1_000_000)
    assert first.charge.amount_micros == expected > 0
    assert not first.charge.replayed
    replay = await stub.Embed(request, metadata=MD, timeout=10)
    assert replay.charge.replayed
    assert replay.charge.amount_micros == first.charge.amount_micros
    assert replay.charge.transaction_id == first.charge.transaction_id
    assert (await balance_of(channel, MD, wallet)).balance_micros == 1_000_000 - expected
    record = await usage_record(pg_url, first.trace_id)
    assert record["method"] == "Embed" and record["input_tokens"] == tokens
    assert record["output_tokens"] == 0 and record["cost_micros"] == expected
    assert record["model"] == "text-embedding-3-small"


async def test_embed_without_funds_is_refused_before_the_vendor(channel):
    wallet = await wallet_with(channel, MD, 0)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await pb_grpc.GenerationServiceStub(channel).Embed(pb.EmbedRequest(
            model="sim-embed", inputs=TEXTS,
            billing=pb.BillingOptions(wallet_id=wallet, idempotency_key="k-empty")),
            metadata=MD, timeout=10)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (await balance_of(channel, MD, wallet)).balance_micros == 0


BAD = [
    ("no inputs", pb.EmbedRequest(model="sim-embed"), "inputs", grpc.StatusCode.INVALID_ARGUMENT),
    ("empty input", pb.EmbedRequest(model="sim-embed", inputs=["ok", "  "]), "inputs[1]",
     grpc.StatusCode.INVALID_ARGUMENT),
    ("too many inputs", pb.EmbedRequest(model="sim-embed", inputs=["x"] * 257), "inputs",
     grpc.StatusCode.INVALID_ARGUMENT),
    ("oversized input", pb.EmbedRequest(model="sim-embed", inputs=["x" * 40_000]),
     "inputs[0]", grpc.StatusCode.INVALID_ARGUMENT),
    ("no model", pb.EmbedRequest(inputs=["x"]), "model", grpc.StatusCode.INVALID_ARGUMENT),
    ("unknown model", pb.EmbedRequest(model="sim-chat", inputs=["x"]), "model",
     grpc.StatusCode.INVALID_ARGUMENT),
    ("wrong dimensions", pb.EmbedRequest(model="sim-embed", inputs=["x"], dimensions=1536),
     "dimensions", grpc.StatusCode.INVALID_ARGUMENT),
    ("billing without key", pb.EmbedRequest(model="sim-embed", inputs=["x"],
                                            billing=pb.BillingOptions(wallet_id="w")),
     "billing.idempotency_key", grpc.StatusCode.INVALID_ARGUMENT),
]


@pytest.mark.parametrize("name,request_,field,code", BAD, ids=[b[0] for b in BAD])
async def test_bad_embed_input_names_the_field(channel, name, request_, field, code):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await pb_grpc.GenerationServiceStub(channel).Embed(request_, metadata=MD, timeout=10)
    assert caught.value.code() == code, caught.value.details()
    assert field in [f for f, _ in details(caught.value)[1]]
    assert "Traceback" not in caught.value.details()
