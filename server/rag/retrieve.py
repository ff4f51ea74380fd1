"""Retrieval: vector, keyword or hybrid search within one namespace.

Hybrid blends the two scores of every candidate chunk: cosine similarity and BM25
normalised to [0, 1] (``RagStore.keyword_search``). Each side's best ``depth`` chunks are
candidates; a candidate only one side found gets its score from the other side too
(exact cosine by primary key, BM25 within those chunks), so a chunk is never judged on
half its evidence. The blend trusts the side that found something specific:

    score = a · cosine + (1 - a) · bm25,   a from the lexical side's best score s:
    a = 0.5 when s <= 0.3 (no rare query term matched: a paraphrase; the embedding
    weighs as much as the words), falling linearly to 0 at s >= 0.6 (an identifier or the
    page's own words matched: the lexical side decides, because the embedding cannot
    tell near-identical pages apart and any weight on it reorders what the exact words
    settled — at 0.2 that lost "which of two sibling pages" queries to plain keyword)

Flat reciprocal rank fusion, used before, let a noisy keyword first place outweigh the
whole gap between vector ranks 1 and 10 and lost to plain keyword search on identifiers.
The constants (and BM25's proximity weight) were chosen on the dev split of
bench/rag_eval.py (730 queries) together with
bench/rag_quality.py (where the embedding is the stronger side), requiring hybrid to be
at least as good as both sides on every query kind of both (R@1 and MRR on rag_eval, MRR
on rag_quality); the held-out split is for reporting only. ``HybridWeights`` can be changed per deployment (``rag.hybrid``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import TYPE_CHECKING

from server.kernel.errors import bad_field
from server.rag.embedders import EmbedderSet
from server.rag.ingest import namespace_not_found
from server.kernel.lru import LruCache
from server.rag.store import Filters, Hit, Namespace, RagStore

# numpy (~11 MB resident with its BLAS) is imported by the calls that use it, not at
# start-up: a gateway that serves no embedding or retrieval never loads it.
if TYPE_CHECKING:
    import numpy as np

MAX_CACHED_QUERY_CHARS = 1024



@dataclass(frozen=True)
class HybridWeights:
    """The vector side's weight ``a`` as a function of the best lexical score (above)."""

    vector_when_lexical_weak: float = 0.5
    vector_when_lexical_strong: float = 0.0
    lexical_weak: float = 0.3
    lexical_strong: float = 0.6

    def vector_weight(self, best_lexical: float) -> float:
        span = self.lexical_strong - self.lexical_weak
        x = 1.0 if span <= 0 else (best_lexical - self.lexical_weak) / span
        x = min(1.0, max(0.0, x))
        return (self.vector_when_lexical_weak
                + (self.vector_when_lexical_strong - self.vector_when_lexical_weak) * x)


class Mode(Enum):
    VECTOR = "vector"
    KEYWORD = "keyword"
    HYBRID = "hybrid"


@dataclass(frozen=True)
class SearchRequest:
    namespace: str
    top_k: int
    ef_search: int
    query: str = ""
    vector: tuple[float, ...] = ()
    min_score: float | None = None
    filters: Filters = field(default_factory=Filters)
    mode: Mode = Mode.VECTOR
    field_prefix: str = ""  # "retrieval." when the request is part of a Generate call


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    embedding_model: str
    embedding_s: float
    search_s: float


def blend(by_vector: Sequence[Hit], by_keyword: Sequence[Hit], cosine: dict[str, float],
          lexical: dict[str, float], weights: HybridWeights, top_k: int,
          min_cosine: float | None = None) -> list[Hit]:
    """The hybrid ranking (see the module docstring). ``cosine`` / ``lexical`` complete
    the scores of chunks that only the other side returned (missing means 0)."""
    hits: dict[str, Hit] = {h.chunk_id: h for h in by_keyword}
    hits.update((h.chunk_id, h) for h in by_vector)
    cos = {**cosine, **{h.chunk_id: h.score for h in by_vector}}
    lex = {**lexical, **{h.chunk_id: h.score for h in by_keyword}}
    a = weights.vector_weight(max((h.score for h in by_keyword), default=0.0))
    scored = {cid: a * cos.get(cid, 0.0) + (1.0 - a) * lex.get(cid, 0.0) for cid in hits
              if min_cosine is None or cos.get(cid, -1.0) >= min_cosine}
    best = sorted(scored, key=lambda cid: (-scored[cid], cid))[:top_k]
    return [replace(hits[cid], score=scored[cid]) for cid in best]


class Retriever:
    def __init__(self, store: RagStore, embedders: EmbedderSet,
                 hybrid: HybridWeights = HybridWeights(), query_cache_size: int = 0) -> None:
        self._store = store
        self._embedders = embedders
        self._hybrid = hybrid
        # (namespace, query) → embedding. Keyed by namespace, not only by model, so one
        # tenant's latency never reveals what another asked; long queries are not kept.
        self._query_vectors: LruCache[tuple[str, str], np.ndarray] = LruCache(query_cache_size)

    async def _embed_query(self, ns: Namespace, query: str) -> np.ndarray:
        key = (ns.name, query)
        vector = self._query_vectors.get(key)
        if vector is None:
            vector = (await self._embedders.get(ns.embedding_model).embed([query]))[0]
            if len(query) <= MAX_CACHED_QUERY_CHARS:
                self._query_vectors.put(key, vector)
        return vector

    async def search(self, request: SearchRequest) -> SearchResult:
        p = request.field_prefix
        ns = await self._store.get_namespace(request.namespace)
        if ns is None:
            raise namespace_not_found(request.namespace, p + "namespace")
        if request.mode is not Mode.VECTOR and not request.query.strip():
            raise bad_field(p + "query", f"{request.mode.value} search needs query text")
        embedding_s = 0.0
        vector: np.ndarray | None = None
        if request.mode is not Mode.KEYWORD:
            if request.vector:
                if len(request.vector) != ns.dimension:
                    raise bad_field(p + "vector", f"has {len(request.vector)} dimensions; "
                                    f"namespace {ns.name!r} ({ns.embedding_model}) needs "
                                    f"{ns.dimension}")
                import numpy as np

                vector = np.asarray(request.vector, dtype=np.float32)
                if not np.isfinite(vector).all() or not np.any(vector):
                    raise bad_field(p + "vector", "must be finite and not all zero")
            else:
                started = time.perf_counter()
                vector = await self._embed_query(ns, request.query)
                embedding_s = time.perf_counter() - started
        started = time.perf_counter()
        if request.mode is Mode.VECTOR:
            assert vector is not None
            hits = await self._store.vector_search(ns, vector, request.top_k, request.filters,
                                                   request.ef_search, request.min_score)
        elif request.mode is Mode.KEYWORD:
            hits = await self._store.keyword_search(ns, request.query, request.top_k,
                                                    request.filters)
        else:
            assert vector is not None
            depth = max(request.top_k * 4, 40)
            by_vector = await self._store.vector_search(
                ns, vector, depth, request.filters, max(request.ef_search, depth), None)
            by_keyword = await self._store.keyword_search(ns, request.query, depth,
                                                          request.filters)
            vector_ids = {h.chunk_id for h in by_vector}
            keyword_ids = {h.chunk_id for h in by_keyword}
            cosine = await self._store.cosine_scores(
                ns, vector, sorted(keyword_ids - vector_ids))
            only_vector = sorted(vector_ids - keyword_ids)
            lexical = {h.chunk_id: h.score for h in await self._store.keyword_search(
                ns, request.query, len(only_vector), request.filters,
                within=only_vector)} if only_vector else {}
            hits = blend(by_vector, by_keyword, cosine, lexical, self._hybrid,
                         request.top_k, request.min_score)
        return SearchResult(hits, ns.embedding_model, embedding_s, time.perf_counter() - started)
