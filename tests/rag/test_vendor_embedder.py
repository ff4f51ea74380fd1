"""A vendor embedder configured in ``rag.embedders`` serves retrieval end to end: the
gateway (real Postgres + pgvector) embeds through the OpenAI adapter's client, against the
simulator's OpenAI ``/v1/embeddings``, stores the vendor's model name and dimension with
the chunks, and finds the right document again."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from llmgateway.v1 import retrieval_pb2 as pb
from llmgateway.v1 import retrieval_pb2_grpc
from sqlalchemy import text

from server.kernel.db.engine import create_engine
from server.rag.lexical import embedding_input
from server.rag.store import index_name_for
from simulator.testing import SimulatorProcess
from tests.rag.conftest import RAG_AUTH
from tests.rag.corpus import DOCS, documents
from tests.support.gateway import RunningGateway, raw_test_config, running_gateway

OPENAI_EMBEDDER = "openai/text-embedding-3-small"
MODEL = "text-embedding-3-small"
DIMENSION = 256  # not the local model's 384: the namespace's index is built for 256


@pytest.fixture(scope="module")
async def vendor_gateway(simulator: SimulatorProcess, pg_url: str,
                         data_dir: Path) -> AsyncIterator[RunningGateway]:
    """A gateway whose default embedder for new namespaces is OpenAI's, through the
    packaged ``simulator`` provider (kind openai, pointed at the test simulator)."""
    raw = raw_test_config(simulator.base_url, data_dir, rag={
        "embedder": OPENAI_EMBEDDER,
        "embedders": {OPENAI_EMBEDDER: {"provider": "simulator", "model": MODEL,
                                        "dimension": DIMENSION}}})
    async with running_gateway(raw, pg_url) as gateway:
        yield gateway


@pytest.fixture(scope="module")
async def stub(vendor_gateway: RunningGateway
               ) -> AsyncIterator[retrieval_pb2_grpc.RetrievalServiceStub]:
    async with grpc.aio.insecure_channel(vendor_gateway.target) as channel:
        yield retrieval_pb2_grpc.RetrievalServiceStub(channel)


async def stored_chunks(pg_url: str, namespace: str) -> list[tuple[str, int]]:
    """(embedding model, vector dimension) of every stored chunk of ``namespace``."""
    engine = create_engine(pg_url, 1)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text(
                "SELECT embedding_model, vector_dims(embedding) FROM rag_chunks "
                "WHERE namespace = :ns"), {"ns": namespace})
            return [(model, dims) for model, dims in rows]
    finally:
        await engine.dispose()


async def index_definition(pg_url: str, namespace: str) -> str:
    engine = create_engine(pg_url, 1)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname = "
                                            ":name"), {"name": index_name_for(namespace)})
                    ).scalar_one()
    finally:
        await engine.dispose()


async def test_a_namespace_embedded_by_openai_ingests_and_retrieves(
        stub: retrieval_pb2_grpc.RetrievalServiceStub, simulator: SimulatorProcess,
        pg_url: str, new_namespace: Callable[[], str]) -> None:
    namespace = new_namespace()
    before = simulator.stats()["requests_by_model"].get(MODEL, 0)

    ingested = await stub.IngestDocuments(pb.IngestDocumentsRequest(
        namespace=namespace, documents=documents()), metadata=RAG_AUTH)

    assert ingested.embedding_model == OPENAI_EMBEDDER  # the configured default
    assert [r.outcome for r in ingested.results] == [pb.INGEST_OUTCOME_CREATED] * len(DOCS)
    chunks = await stored_chunks(pg_url, namespace)
    assert len(chunks) == len(DOCS) and set(chunks) == {(OPENAI_EMBEDDER, DIMENSION)}
    assert f"vector({DIMENSION})" in await index_definition(pg_url, namespace)

    # The simulator's vectors are seeded by the text: the text a chunk was embedded as
    # (its title as context, then its content) finds it.
    kitten_title, kitten_text, _ = DOCS["kitten"]
    query = embedding_input(kitten_title, kitten_text)
    reply = await stub.Retrieve(pb.RetrieveRequest(namespace=namespace, query=query,
                                                   top_k=3), metadata=RAG_AUTH)
    assert reply.embedding_model == OPENAI_EMBEDDER
    assert [c.document_id for c in reply.chunks][:1] == ["kitten"]
    assert reply.chunks[0].score == pytest.approx(1.0, abs=1e-4)
    assert reply.chunks[0].score > reply.chunks[1].score

    # Ingest embedded every document in one batched call; the query was one more call.
    assert simulator.stats()["requests_by_model"].get(MODEL, 0) - before == 2


async def test_the_local_model_stays_available_next_to_the_vendor_default(
        stub: retrieval_pb2_grpc.RetrievalServiceStub, pg_url: str,
        new_namespace: Callable[[], str]) -> None:
    namespace = new_namespace()
    ingested = await stub.IngestDocuments(pb.IngestDocumentsRequest(
        namespace=namespace, documents=documents(["kitten", "invoice"]),
        embedding_model="local/all-MiniLM-L6-v2"), metadata=RAG_AUTH)
    assert ingested.embedding_model == "local/all-MiniLM-L6-v2"
    assert set(await stored_chunks(pg_url, namespace)) == {("local/all-MiniLM-L6-v2", 384)}


async def test_a_namespace_never_mixes_the_vendor_model_with_another(
        stub: retrieval_pb2_grpc.RetrievalServiceStub,
        new_namespace: Callable[[], str]) -> None:
    namespace = new_namespace()
    await stub.IngestDocuments(pb.IngestDocumentsRequest(
        namespace=namespace, documents=documents(["kitten"])), metadata=RAG_AUTH)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.IngestDocuments(pb.IngestDocumentsRequest(
            namespace=namespace, documents=documents(["invoice"]),
            embedding_model="local/all-MiniLM-L6-v2"), metadata=RAG_AUTH)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert OPENAI_EMBEDDER in (caught.value.details() or "")
