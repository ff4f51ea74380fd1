"""RetrievalService over gRPC against real Postgres + pgvector and the real local embedder."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from llmgateway.v1 import generation_pb2 as gen_pb
from llmgateway.v1 import retrieval_pb2 as pb
from llmgateway.v1 import retrieval_pb2_grpc

from tests.rag.conftest import RAG_AUTH
from tests.rag.corpus import DOCS, documents

Stub = retrieval_pb2_grpc.RetrievalServiceStub


async def ingest(stub: Stub, namespace: str, docs: list[pb.Document], **kw: object
                 ) -> pb.IngestDocumentsResponse:
    return await stub.IngestDocuments(pb.IngestDocumentsRequest(
        namespace=namespace, documents=docs, **kw), metadata=RAG_AUTH)


async def retrieve(stub: Stub, namespace: str, query: str = "", **kw: object) -> list[pb.RetrievedChunk]:
    response = await stub.Retrieve(pb.RetrieveRequest(namespace=namespace, query=query, **kw),
                                   metadata=RAG_AUTH)
    return list(response.chunks)


def bad_fields(error: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(error)
    assert status is not None
    fields = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations]
    return fields


@pytest.fixture
async def kb(retrieval: Stub, new_namespace: Callable[[], str]) -> str:
    namespace = new_namespace()
    await ingest(retrieval, namespace, documents())
    return namespace


async def test_ingest_then_retrieve_round_trip(retrieval: Stub, new_namespace: Callable[[], str]) -> None:
    namespace = new_namespace()
    response = await ingest(retrieval, namespace, documents())
    assert [r.document_id for r in response.results] == list(DOCS)
    assert all(r.outcome == pb.INGEST_OUTCOME_CREATED and r.chunk_count == 1
               for r in response.results)
    assert response.embedding_model == "local/all-MiniLM-L6-v2"
    reply = await retrieval.Retrieve(pb.RetrieveRequest(
        namespace=namespace, query="my kitten needs a place to sleep", top_k=3), metadata=RAG_AUTH)
    top = reply.chunks[0]
    assert top.document_id == "kitten" and top.title == "Pets" and top.source == "kb://kitten"
    assert "young cat" in top.content and top.metadata["team"] == "pets"
    assert 0.3 < top.score <= 1.0 and len(reply.chunks) == 3
    assert reply.chunks[0].score >= reply.chunks[1].score >= reply.chunks[2].score
    assert reply.embedding_model == "local/all-MiniLM-L6-v2"
    assert reply.embedding_time.ToNanoseconds() > 0


async def test_reingesting_unchanged_documents_is_a_no_op(retrieval: Stub, kb: str) -> None:
    before = {c.document_id: c.chunk_id for c in await retrieve(retrieval, kb, "error", top_k=99)}
    again = await ingest(retrieval, kb, documents())
    assert {r.outcome for r in again.results} == {pb.INGEST_OUTCOME_UNCHANGED}
    assert all(r.chunk_count == 1 for r in again.results)
    after = {c.document_id: c.chunk_id for c in await retrieve(retrieval, kb, "error", top_k=99)}
    assert after == before  # same chunk ids: nothing was rewritten


async def test_changed_document_replaces_its_chunks(retrieval: Stub, kb: str) -> None:
    old = [c for c in await retrieve(retrieval, kb, "invoices", top_k=7, document_ids=["invoice"])]
    long_text = " ".join(f"Invoice rule {i}: every invoice line number {i} shows its own tax "
                         "amount and currency." for i in range(30))
    doc = pb.Document(id="invoice", title="Invoices v2", text=long_text)
    result = (await ingest(retrieval, kb, [doc], chunking=pb.ChunkingOptions(
        chunk_size=300, chunk_overlap=50))).results[0]
    assert result.outcome == pb.INGEST_OUTCOME_UPDATED and result.chunk_count > 3
    new = await retrieve(retrieval, kb, "invoice tax", top_k=100, document_ids=["invoice"])
    assert len(new) == result.chunk_count
    assert {c.title for c in new} == {"Invoices v2"}
    assert not {c.chunk_id for c in old} & {c.chunk_id for c in new}
    assert sorted(c.position for c in new) == list(range(result.chunk_count))


async def test_readers_never_see_half_a_replaced_document(retrieval: Stub, kb: str) -> None:
    """While a document flips between two versions, every read sees one version whole."""
    import asyncio

    versions = [" ".join(f"Version {v} paragraph {i} about shipping rules." for i in range(40))
                for v in ("A", "B")]

    async def writer() -> None:
        for n in range(6):
            doc = pb.Document(id="flip", title=f"v{n % 2}", text=versions[n % 2])
            await ingest(retrieval, kb, [doc], chunking=pb.ChunkingOptions(
                chunk_size=200 + 20 * (n % 2), chunk_overlap=0))

    seen: list[set[str]] = []

    async def reader() -> None:
        while not done.is_set():
            chunks = await retrieve(retrieval, kb, "shipping rules", top_k=100,
                                    document_ids=["flip"], mode=gen_pb.SEARCH_MODE_KEYWORD)
            if chunks:
                seen.append({c.title for c in chunks})
                positions = sorted(c.position for c in chunks)
                assert positions == list(range(len(positions))), "a partial document was visible"

    done = asyncio.Event()
    read = asyncio.create_task(reader())
    await writer()
    done.set()
    await read
    assert seen and all(len(titles) == 1 for titles in seen)


async def test_delete_removes_documents_and_chunks(retrieval: Stub, kb: str) -> None:
    reply = await retrieval.DeleteDocuments(pb.DeleteDocumentsRequest(
        namespace=kb, document_ids=["kitten", "password", "no-such-doc"]), metadata=RAG_AUTH)
    assert (reply.deleted_documents, reply.deleted_chunks) == (2, 2)
    left = await retrieve(retrieval, kb, "kitten nap", top_k=100)
    assert {c.document_id for c in left} == set(DOCS) - {"kitten", "password"}


async def test_metadata_and_document_filters(retrieval: Stub, kb: str) -> None:
    errors = await retrieve(retrieval, kb, "what went wrong", top_k=10,
                            filters=[gen_pb.MetadataFilter(key="kind", values=["error"])])
    assert {c.document_id for c in errors} == {f"err-e402{i}" for i in range(1, 6)}
    storage_or_pets = await retrieve(retrieval, kb, "anything", top_k=10, filters=[
        gen_pb.MetadataFilter(key="team", values=["storage", "pets"])])
    assert {c.document_id for c in storage_or_pets} == {"err-e4021", "err-e4022", "err-e4024",
                                                        "kitten"}
    both = await retrieve(retrieval, kb, "anything", top_k=10, filters=[
        gen_pb.MetadataFilter(key="kind", values=["error"]),
        gen_pb.MetadataFilter(key="team", values=["network"])])
    assert {c.document_id for c in both} == {"err-e4023", "err-e4025"}
    by_id = await retrieve(retrieval, kb, "anything", top_k=10,
                           document_ids=["gather", "invoice"])
    assert {c.document_id for c in by_id} == {"gather", "invoice"}


async def test_min_score_drops_weak_matches(retrieval: Stub, kb: str) -> None:
    everything = await retrieve(retrieval, kb, "kittens need warm quiet places", top_k=9)
    strong = await retrieve(retrieval, kb, "kittens need warm quiet places", top_k=9,
                            min_score=0.5)
    assert 1 <= len(strong) < len(everything)
    assert all(c.score >= 0.5 for c in strong)


async def test_namespaces_are_isolated(retrieval: Stub, new_namespace: Callable[[], str]) -> None:
    ours, theirs = new_namespace(), new_namespace()
    await ingest(retrieval, ours, documents(["kitten", "invoice"], prefix="ours "))
    await ingest(retrieval, theirs, documents(list(DOCS), prefix="theirs "))
    for mode in (gen_pb.SEARCH_MODE_VECTOR, gen_pb.SEARCH_MODE_KEYWORD, gen_pb.SEARCH_MODE_HYBRID):
        for kw in ({}, {"filters": [gen_pb.MetadataFilter(key="kind", values=["guide", "error"])]},
                   {"document_ids": list(DOCS)}):
            chunks = await retrieve(retrieval, ours, "kitten invoice error upload", top_k=100,
                                    mode=mode, **kw)
            assert chunks, (mode, kw)
            assert all(c.title.startswith("ours ") for c in chunks), (mode, kw)
            assert {c.document_id for c in chunks} <= {"kitten", "invoice"}


async def test_hybrid_finds_an_exact_error_code_that_vector_search_misranks(
        retrieval: Stub, kb: str) -> None:
    def rank(chunks: list[pb.RetrievedChunk]) -> int:
        return [c.document_id for c in chunks].index("err-e4025") + 1

    query = "E4025"  # the model's vector for a bare code sits closest to another code
    vector = await retrieve(retrieval, kb, query, top_k=7, mode=gen_pb.SEARCH_MODE_VECTOR)
    hybrid = await retrieve(retrieval, kb, query, top_k=7, mode=gen_pb.SEARCH_MODE_HYBRID)
    keyword = await retrieve(retrieval, kb, query, top_k=7, mode=gen_pb.SEARCH_MODE_KEYWORD)
    assert [c.document_id for c in keyword] == ["err-e4025"]
    assert rank(hybrid) == 1
    assert rank(vector) > 1


async def test_vector_search_finds_a_paraphrase_that_keyword_search_misses(
        retrieval: Stub, kb: str) -> None:
    query = "How can my program wait until a bunch of background jobs have all completed?"
    vector = await retrieve(retrieval, kb, query, top_k=3, mode=gen_pb.SEARCH_MODE_VECTOR)
    keyword = await retrieve(retrieval, kb, query, top_k=3, mode=gen_pb.SEARCH_MODE_KEYWORD)
    assert vector[0].document_id == "gather"
    assert "gather" not in [c.document_id for c in keyword]


async def test_retrieve_by_vector(retrieval: Stub, kb: str) -> None:
    from server.rag.embedders import LocalMiniLMEmbedder

    by_text = await retrieve(retrieval, kb, "forgot my password", top_k=1)

    vector = (await LocalMiniLMEmbedder().embed(["forgot my password"]))[0]
    by_vector = await retrieve(retrieval, kb, vector=[float(x) for x in vector], top_k=1)
    assert by_vector[0].chunk_id == by_text[0].chunk_id
    assert by_vector[0].score == pytest.approx(by_text[0].score, abs=1e-4)


@pytest.mark.parametrize("request_kw, field", [
    ({"query": ""}, "query"),
    ({"query": "   "}, "query"),
    ({"query": "x", "top_k": 101}, "top_k"),
    ({"query": "x", "top_k": -1}, "top_k"),
    ({"query": "x", "ef_search": 5}, "ef_search"),
    ({"query": "x", "min_score": 1.5}, "min_score"),
    ({"vector": [0.1] * 10}, "vector"),
    ({"query": "x", "filters": [gen_pb.MetadataFilter(key="", values=["a"])]}, "filters[0].key"),
    ({"query": "x", "filters": [gen_pb.MetadataFilter(key="k")]}, "filters[0].values"),
])
async def test_bad_retrieve_input_names_the_field(retrieval: Stub, kb: str,
                                                  request_kw: dict, field: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await retrieval.Retrieve(pb.RetrieveRequest(namespace=kb, **request_kw), metadata=RAG_AUTH)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in bad_fields(caught.value)
    assert field in caught.value.details()


async def test_missing_or_unknown_namespace(retrieval: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await retrieval.Retrieve(pb.RetrieveRequest(query="x"), metadata=RAG_AUTH)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_fields(caught.value) == ["namespace"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await retrieval.Retrieve(pb.RetrieveRequest(namespace="never-created", query="x"),
                                 metadata=RAG_AUTH)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "never-created" in caught.value.details()


async def test_bad_ingest_input_names_every_field(retrieval: Stub, new_namespace: Callable[[], str]) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ingest(retrieval, new_namespace(), [
            pb.Document(id="", text="a"), pb.Document(id="d", text=" "),
            pb.Document(id="d", text="b")], chunking=pb.ChunkingOptions(chunk_size=50))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad_fields(caught.value)) == {"documents[0].id", "documents[1].text",
                                             "documents[2].id", "chunking.chunk_size"}


async def test_a_namespace_cannot_mix_embedding_models(retrieval: Stub, kb: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ingest(retrieval, kb, documents(["kitten"]), embedding_model="openai/other-model")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_fields(caught.value) == ["embedding_model"]
    assert "local/all-MiniLM-L6-v2" in caught.value.details()


async def test_retrieval_needs_its_scopes(retrieval: Stub, kb: str) -> None:
    from tests.support.gateway import bearer

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await retrieval.Retrieve(pb.RetrieveRequest(namespace=kb, query="x"),
                                 metadata=bearer("generate"))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
