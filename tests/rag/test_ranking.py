"""Ranking: labelled lexical text, BM25, hybrid blending and the query-embedding cache,
against real Postgres + pgvector and the real local embedder."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from llmgateway.v1 import generation_pb2 as gen_pb
from llmgateway.v1 import retrieval_pb2 as pb
from llmgateway.v1 import retrieval_pb2_grpc

from server.kernel.lru import LruCache
from server.rag.lexical import (chunk_contexts, embedding_input, identifier_parts,
                                split_references)
from server.rag.retrieve import HybridWeights, blend
from server.rag.store import Hit
from tests.rag.conftest import RAG_AUTH

Stub = retrieval_pb2_grpc.RetrievalServiceStub

def page(title: str, *sections: tuple[str, str]) -> str:
    return f"# {title}\n\n" + "\n\n".join(f"## {h}\n\n{body}" for h, body in sections)


# Two near-identical pages in small chunks (chunk_size 150). Germany's "Returning" chunk
# is the longer one, so without its context ("Parental leave policy: Germany › Returning
# to work") France's would win a question naming Germany.
PAGES = {
    "leave-de": ("Parental leave policy: Germany", page(
        "Parental leave policy: Germany",
        ("Entitlement", "The primary caregiver receives 14 weeks of leave at full pay."),
        ("Returning to work", "Returning parents may work 60 percent of their contracted "
                              "hours for the first 8 weeks. Book a conversation with your "
                              "manager two weeks before the return date."))),
    "leave-fr": ("Parental leave policy: France", page(
        "Parental leave policy: France",
        ("Entitlement", "The primary caregiver receives 16 weeks of leave at full pay."),
        ("Returning to work", "Returning parents may work 80 percent of hours for 4 weeks."))),
    # The page about a form, and a much shorter page that only points at it: BM25's length
    # normalisation alone would rank the pointer first.
    "form-de": ("Parental leave forms: Germany",
                "Submit form HR-221b in the HR portal at least 49 days before the planned "
                "start date, with the expected due date or the placement letter attached."),
    "forms-index": ("Forms index", "Related form: HR-221b."),
}


def docs() -> list[pb.Document]:
    return [pb.Document(id=i, title=t, text=text) for i, (t, text) in PAGES.items()]


async def search(stub: Stub, namespace: str, query: str, mode: int, top_k: int = 5
                 ) -> list[pb.RetrievedChunk]:
    reply = await stub.Retrieve(pb.RetrieveRequest(namespace=namespace, query=query,
                                                   top_k=top_k, mode=mode), metadata=RAG_AUTH)
    return list(reply.chunks)


@pytest.fixture
async def leave_kb(retrieval: Stub, new_namespace: Callable[[], str]) -> str:
    namespace = new_namespace()
    await retrieval.IngestDocuments(pb.IngestDocumentsRequest(
        namespace=namespace, documents=docs(),
        chunking=pb.ChunkingOptions(chunk_size=150, chunk_overlap=0)),
        metadata=RAG_AUTH)
    return namespace


# --- the parts of a chunk ------------------------------------------------------------


def test_cross_reference_sentences_are_set_apart_from_the_body() -> None:
    body, refs = split_references("Submit form HR-221b now. See also ALERT-5428.\n"
                                  "Related form: HR-138a (another entity).\nClose it.")
    assert "HR-221b" in body and "Close it." in body
    assert "ALERT-5428" not in body and "HR-138a" not in body
    assert refs == "See also ALERT-5428. Related form: HR-138a (another entity)."


def test_identifier_parts_split_dotted_and_underscored_names() -> None:
    assert identifier_parts("set `pg.failover.fence_timeout_s` or E-4471") == \
        "pg failover fence timeout s E 4471"


def test_each_chunk_gets_its_title_and_the_heading_it_sits_under() -> None:
    text = "# Title\n\nIntro.\n\n## Entitlement\n\nFourteen weeks.\n\n## Apply\n\nForm."
    chunks = ["# Title\n\nIntro.", "Fourteen weeks.", "## Apply\n\nForm."]
    assert chunk_contexts("Title", text, chunks) == ["Title", "Title › Entitlement",
                                                     "Title › Apply"]
    assert embedding_input("Title › Apply", "Form.") == "Title › Apply\n\nForm."
    assert embedding_input("", "Form.") == "Form."


# --- blending ------------------------------------------------------------------------


def hit(cid: str, score: float) -> Hit:
    return Hit(chunk_id=cid, document_id=cid, title="", source="", content="", score=score)


def test_the_vector_weight_falls_as_the_lexical_side_grows_confident() -> None:
    w = HybridWeights()
    assert w.vector_weight(0.0) == w.vector_weight(0.3) == pytest.approx(0.5)
    assert w.vector_weight(0.45) == pytest.approx(0.25)
    # A confident lexical side decides alone: the embedding cannot tell near-identical
    # pages apart, and its noise used to reorder what the exact words had settled.
    assert w.vector_weight(0.6) == w.vector_weight(1.0) == pytest.approx(0.0)


def test_blend_scores_every_candidate_on_both_sides() -> None:
    # "b" is only in the keyword list; its cosine comes from the filled-in scores. Were it
    # counted as 0 on the vector side, "a" (vector only) would win.
    by_vector = [hit("a", 0.70)]
    by_keyword = [hit("b", 0.65)]
    fused = blend(by_vector, by_keyword, cosine={"b": 0.60}, lexical={"a": 0.10},
                  weights=HybridWeights(), top_k=2)
    a = HybridWeights().vector_weight(0.65)
    assert [h.chunk_id for h in fused] == ["b", "a"]
    assert fused[0].score == pytest.approx(a * 0.60 + (1 - a) * 0.65)
    assert fused[1].score == pytest.approx(a * 0.70 + (1 - a) * 0.10)
    # min_score stays a bound on cosine similarity.
    assert [h.chunk_id for h in blend(by_vector, by_keyword, {"b": 0.60}, {"a": 0.1},
                                      HybridWeights(), 2, min_cosine=0.65)] == ["a"]


def test_lru_cache_is_bounded_and_keeps_the_recently_used() -> None:
    cache: LruCache[str, int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c"), len(cache)) == (1, None, 3, 2)
    off: LruCache[str, int] = LruCache(0)
    off.put("a", 1)
    assert off.get("a") is None


# --- through the service -------------------------------------------------------------


@pytest.mark.parametrize("mode", [gen_pb.SEARCH_MODE_KEYWORD, gen_pb.SEARCH_MODE_HYBRID])
async def test_the_page_that_uses_an_identifier_outranks_the_page_that_points_at_it(
        retrieval: Stub, leave_kb: str, mode: int) -> None:
    chunks = await search(retrieval, leave_kb, "HR-221b", mode)
    assert [c.document_id for c in chunks][:2] == ["form-de", "forms-index"]


async def test_keyword_scores_are_normalised_and_favour_rare_terms(
        retrieval: Stub, leave_kb: str) -> None:
    # "weeks" is in four chunks, HR-221b in two; no chunk has both. With inverse document
    # frequency the chunk holding the rarer term comes first (ts_rank had none).
    chunks = await search(retrieval, leave_kb, "weeks HR-221b", gen_pb.SEARCH_MODE_KEYWORD,
                          top_k=10)
    assert all(0.0 < c.score <= 1.0 for c in chunks)
    assert chunks[0].document_id == "form-de"
    assert {c.document_id for c in chunks[2:]} == {"leave-de", "leave-fr"}


async def test_query_words_side_by_side_outrank_the_same_words_scattered(
        retrieval: Stub, new_namespace: Callable[[], str]) -> None:
    # Both pages hold every query word once; "bursts-5" is longer, so bag-of-words BM25
    # (length normalisation) would put "scattered" first. Only "bursts-5" says it.
    namespace = new_namespace()
    await retrieval.IngestDocuments(pb.IngestDocumentsRequest(namespace=namespace, documents=[
        pb.Document(id="bursts-5", title="API plan A", text=(
            "The rate limit of this plan admits bursts of 5 requests. Quotas are counted per "
            "API key and per region, and the dashboard shows the current usage by hour.")),
        pb.Document(id="scattered", title="API plan B", text=(
            "Requests above the rate limit are rejected; bursts are refused for 5 minutes.")),
    ]), metadata=RAG_AUTH)
    for mode in (gen_pb.SEARCH_MODE_KEYWORD, gen_pb.SEARCH_MODE_HYBRID):
        chunks = await search(retrieval, namespace, "rate limit with bursts of 5 requests",
                              mode)
        assert [c.document_id for c in chunks] == ["bursts-5", "scattered"], mode
        assert all(0.0 < c.score <= 1.0 for c in chunks), mode


async def test_a_later_section_is_found_by_its_page_title(retrieval: Stub, leave_kb: str
                                                          ) -> None:
    # The "Returning to work" chunk does not contain "Germany"; its context does.
    query = "Germany: how many hours can returning parents work"
    for mode in (gen_pb.SEARCH_MODE_KEYWORD, gen_pb.SEARCH_MODE_HYBRID):
        top = (await search(retrieval, leave_kb, query, mode))[0]
        assert top.document_id == "leave-de", mode
        assert "60 percent" in top.content and "Germany" not in top.content, mode


async def test_a_repeated_query_reuses_its_embedding(retrieval: Stub, leave_kb: str) -> None:
    async def embedding_seconds() -> float:
        reply = await retrieval.Retrieve(pb.RetrieveRequest(
            namespace=leave_kb, query="a question nobody asked before 7f3a", top_k=1),
            metadata=RAG_AUTH)
        return reply.embedding_time.ToTimedelta().total_seconds()

    first = await embedding_seconds()
    second = await embedding_seconds()
    assert first > 0
    assert second < first / 10  # a dictionary lookup, not a forward pass (~10 ms)

