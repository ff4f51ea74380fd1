"""RagStore against real Postgres + pgvector: the index strategy, directly.

Vectors here are random (no embedding needed): what is under test is SQL behaviour —
that a namespace query walks its own partial HNSW index and that a selective filter
still returns top_k rows when they exist.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import numpy as np
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from server.kernel.db.engine import create_engine
from server.rag.store import ChunkRecord, DocumentRecord, Filters, HnswSettings, RagStore

DIM = 384


@pytest.fixture(scope="module")
async def engine(pg_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(pg_url, 2)
    yield engine
    await engine.dispose()


async def filled_namespace(store: RagStore, rows: int, rng: np.random.Generator,
                           rare_every: int) -> tuple[str, np.ndarray]:
    name = f"store-{uuid.uuid4().hex[:10]}"
    await store.create_namespace(name, "local/all-MiniLM-L6-v2", DIM)
    vectors = rng.standard_normal((rows, DIM)).astype(np.float32)
    docs = [DocumentRecord(
        id=f"d{i}", title=f"d{i}", source="", checksum=str(i),
        metadata={"tier": "rare" if i % rare_every == 0 else "common"},
        chunks=[ChunkRecord(id=f"{name}-{i}", position=0, content=f"chunk {i}", checksum="x",
                            embedding=vectors[i])]) for i in range(rows)]
    await store.replace_documents(name, "local/all-MiniLM-L6-v2", docs)
    return name, vectors


async def test_each_namespace_gets_its_own_partial_hnsw_index(engine: AsyncEngine) -> None:
    """Its graph holds only that namespace's chunks: a namespace query needs no
    post-filtering, so it cannot lose rows to other tenants' neighbours."""
    store = RagStore(engine)
    name, _ = await filled_namespace(store, 20, np.random.default_rng(1), 10)
    ns = await store.get_namespace(name)
    assert ns is not None
    async with engine.connect() as conn:
        pg = (await conn.get_raw_connection()).driver_connection
        definition = await pg.fetchval("SELECT indexdef FROM pg_indexes WHERE indexname = $1",
                                       ns.index_name)
    assert "USING hnsw" in definition and "vector_cosine_ops" in definition
    assert f"vector({DIM})" in definition and f"(namespace = '{name}'::text)" in definition


async def test_selective_filter_still_returns_top_k_rows(engine: AsyncEngine) -> None:
    """8 'rare' rows among 400: far fewer than an ef_search=10 scan would surface."""
    store = RagStore(engine, HnswSettings(overfetch=1))
    rng = np.random.default_rng(2)
    name, vectors = await filled_namespace(store, 400, rng, 50)
    ns = await store.get_namespace(name)
    assert ns is not None
    rare = Filters(metadata=(("tier", ("rare",)),))
    query = rng.standard_normal(DIM).astype(np.float32)
    hits = await store.vector_search(ns, query, 8, rare, ef_search=10, min_score=None)
    assert sorted(h.chunk_id for h in hits) == sorted(f"{name}-{i}" for i in range(0, 400, 50))
    # …and in exact similarity order.
    expected = sorted(range(0, 400, 50), key=lambda i: -float(
        vectors[i] @ query / np.linalg.norm(vectors[i]) / np.linalg.norm(query)))
    assert [h.chunk_id for h in hits] == [f"{name}-{i}" for i in expected]


async def test_unfiltered_namespace_search_matches_exact_search(engine: AsyncEngine) -> None:
    store = RagStore(engine)
    rng = np.random.default_rng(3)
    name, vectors = await filled_namespace(store, 300, rng, 10)
    ns = await store.get_namespace(name)
    assert ns is not None
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    found = 0
    for _ in range(5):
        query = rng.standard_normal(DIM).astype(np.float32)
        exact = set(np.argsort(-(unit @ query))[:10])
        hits = await store.vector_search(ns, query, 10, Filters(), ef_search=100, min_score=None)
        assert len(hits) == 10
        found += len(exact & {int(h.chunk_id.rsplit("-", 1)[1]) for h in hits})
    assert found >= 45  # recall@10 >= 0.9 even on random (worst-case) vectors
