"""Generate / StreamGenerate with a retrieval section: context in, citations out."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from llmgateway.v1 import generation_pb2 as pb
from llmgateway.v1 import generation_pb2_grpc, retrieval_pb2_grpc
from llmgateway.v1 import retrieval_pb2 as rpb

from tests.rag.conftest import RAG_AUTH
from tests.rag.corpus import documents
from tests.rag.test_retrieval_rpc import bad_fields

QUESTION = "I forgot my password, how do I get back into my account?"


@pytest.fixture
def generation(channel: grpc.aio.Channel) -> generation_pb2_grpc.GenerationServiceStub:
    return generation_pb2_grpc.GenerationServiceStub(channel)


@pytest.fixture
async def kb(retrieval: retrieval_pb2_grpc.RetrievalServiceStub,
             new_namespace: Callable[[], str]) -> str:
    namespace = new_namespace()
    await retrieval.IngestDocuments(rpb.IngestDocumentsRequest(
        namespace=namespace, documents=documents()), metadata=RAG_AUTH)
    return namespace


def request(namespace: str, **options: object) -> pb.GenerateRequest:
    return pb.GenerateRequest(model="sim-chat", messages=[pb.Message(role="user", content=QUESTION)],
                              retrieval=pb.RetrievalOptions(namespace=namespace, **options))


async def test_grounded_generate_returns_citations_that_exist(
        generation: generation_pb2_grpc.GenerationServiceStub,
        retrieval: retrieval_pb2_grpc.RetrievalServiceStub, kb: str) -> None:
    plain = await generation.Generate(pb.GenerateRequest(
        model="sim-chat", messages=[pb.Message(role="user", content=QUESTION)]), metadata=RAG_AUTH)
    grounded = await generation.Generate(request(kb, top_k=3), metadata=RAG_AUTH)
    assert [c.label for c in grounded.citations] == ["[1]", "[2]", "[3]"]
    assert grounded.citations[0].document_id == "password"
    assert grounded.citations[0].title == "Account recovery"
    stored = await retrieval.Retrieve(rpb.RetrieveRequest(namespace=kb, query="x", top_k=100),
                                      metadata=RAG_AUTH)
    assert {c.chunk_id for c in grounded.citations} <= {c.chunk_id for c in stored.chunks}
    # The context reached the model: the prompt grew by the sources and instructions.
    assert grounded.usage.input_tokens > plain.usage.input_tokens + 50
    assert not plain.citations


async def test_context_respects_the_token_budget(
        generation: generation_pb2_grpc.GenerationServiceStub, kb: str) -> None:
    small = await generation.Generate(request(kb, top_k=9, max_context_tokens=100),
                                      metadata=RAG_AUTH)
    large = await generation.Generate(request(kb, top_k=9, max_context_tokens=4000),
                                      metadata=RAG_AUTH)
    assert 1 <= len(small.citations) < len(large.citations) == 9
    assert small.usage.input_tokens < large.usage.input_tokens


async def test_stream_end_carries_the_citations(
        generation: generation_pb2_grpc.GenerationServiceStub, kb: str) -> None:
    grounded = request(kb, top_k=2, mode=pb.SEARCH_MODE_HYBRID)
    stream = generation.StreamGenerate(pb.StreamGenerateRequest(
        model=grounded.model, messages=grounded.messages, retrieval=grounded.retrieval),
        metadata=RAG_AUTH)
    events = [event async for event in stream]
    end = events[-1].end
    assert [c.label for c in end.citations] == ["[1]", "[2]"]
    assert end.citations[0].document_id == "password"


async def test_bad_retrieval_section_names_the_field(
        generation: generation_pb2_grpc.GenerationServiceStub, kb: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await generation.Generate(request(kb, top_k=500), metadata=RAG_AUTH)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_fields(caught.value) == ["retrieval.top_k"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await generation.Generate(request("no-such-namespace"), metadata=RAG_AUTH)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "retrieval.namespace" in caught.value.details()


async def test_usage_record_stores_the_cited_chunk_ids(
        generation: generation_pb2_grpc.GenerationServiceStub, kb: str, pg_url: str) -> None:
    """So an answer can be audited after its documents change."""
    import asyncio

    import asyncpg

    response = await generation.Generate(request(kb, top_k=2), metadata=RAG_AUTH)
    conn = await asyncpg.connect(pg_url)
    try:
        stored = None
        for _ in range(100):  # usage records are written in the background, in batches
            stored = await conn.fetchval("SELECT chunk_ids FROM usage_records WHERE trace_id = $1",
                                         response.trace_id)
            if stored is not None:
                break
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    assert stored == [c.chunk_id for c in response.citations]


# Two near-identical postmortems: each names its own error code, and the US one points at
# the EU one's code in a "Related" line (bench/rag_eval.py has 122 pages like these).
POSTMORTEMS = {
    "pm-checkout-eu": ("Postmortem: EU checkout timeouts",
                       "Incident INC-43967. Checkout calls to the card processor for EU timed "
                       "out, and customers saw error E-6095 on the payment page. Root cause: a "
                       "retry budget of zero after a configuration change. We restored the "
                       "budget and added an alert on payment errors."),
    "pm-checkout-us": ("Postmortem: US checkout timeouts",
                       "Incident INC-39840. Checkout calls to the card processor for US timed "
                       "out, and customers saw error E-4889 on the payment page. Root cause: an "
                       "expired certificate on the processor's side. We added certificate "
                       "expiry monitoring. Related error code: E-6095."),
}


@pytest.mark.parametrize("streamed", [False, True])
async def test_an_error_code_question_cites_the_postmortem_about_that_code_first(
        generation: generation_pb2_grpc.GenerationServiceStub,
        retrieval: retrieval_pb2_grpc.RetrievalServiceStub,
        new_namespace: Callable[[], str], streamed: bool) -> None:
    namespace = new_namespace()
    await retrieval.IngestDocuments(rpb.IngestDocumentsRequest(namespace=namespace, documents=[
        rpb.Document(id=i, title=t, text=text) for i, (t, text) in POSTMORTEMS.items()]),
        metadata=RAG_AUTH)
    question = [pb.Message(role="user", content="What caused error E-6095 at checkout?")]
    options = pb.RetrievalOptions(namespace=namespace, top_k=2, mode=pb.SEARCH_MODE_HYBRID)
    if streamed:
        events = [e async for e in generation.StreamGenerate(pb.StreamGenerateRequest(
            model="sim-chat", messages=question, retrieval=options), metadata=RAG_AUTH)]
        citations = list(events[-1].end.citations)
    else:
        citations = list((await generation.Generate(pb.GenerateRequest(
            model="sim-chat", messages=question, retrieval=options),
            metadata=RAG_AUTH)).citations)
    assert [(c.label, c.document_id) for c in citations] == [
        ("[1]", "pm-checkout-eu"), ("[2]", "pm-checkout-us")]
