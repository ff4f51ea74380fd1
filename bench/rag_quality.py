"""Retrieval quality: recall@5, recall@10 and MRR for vector, keyword and hybrid search.

Corpus: ~600 standard-library docstrings (bench/rag_corpus.py); queries: ~200 written by
hand (bench/data/rag/queries.txt) in three kinds — paraphrases, exact identifiers, and
picks between two similar documents. Runs the real ingestion (chunking, the local
embedder, pgvector) and the real Retriever, against the embedded Postgres (or
DATABASE_URL) in a throwaway namespace.

    python bench/rag_quality.py [--data-dir .data/bench] [--keep]

Metrics are per query over *documents* (a document's best chunk stands for it):
recall@k = share of the relevant documents in the top k, MRR = 1 / rank of the first
relevant document (0 beyond rank 10).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rag_corpus import build_corpus, load_queries

from server.kernel.config import RagConfig
from server.kernel.db.embedded import start_embedded
from server.kernel.db.engine import create_engine
from server.kernel.db.migrate import upgrade
from server.rag.chunking import ChunkingParams
from server.rag.ingest import DocumentInput
from server.rag.retrieve import Mode, SearchRequest
from server.rag.runtime import RagRuntime


def ranked_documents(chunk_docs: list[str]) -> list[str]:
    seen: list[str] = []
    for doc in chunk_docs:
        if doc not in seen:
            seen.append(doc)
    return seen


def score(ranking: list[str], relevant: frozenset[str]) -> tuple[float, float, float]:
    r5 = len(relevant & set(ranking[:5])) / len(relevant)
    r10 = len(relevant & set(ranking[:10])) / len(relevant)
    mrr = next((1.0 / (i + 1) for i, d in enumerate(ranking[:10]) if d in relevant), 0.0)
    return r5, r10, mrr


async def run(database_url: str, keep: bool) -> None:
    engine = create_engine(database_url, 4)
    rag = RagRuntime.from_config(RagConfig(), engine)
    namespace = f"bench-quality-{uuid.uuid4().hex[:8]}"
    corpus = build_corpus()
    queries, dropped = load_queries({d.id for d in corpus})
    started = time.perf_counter()
    params = ChunkingParams(1000, 150)
    chunks = 0
    for i in range(0, len(corpus), 64):
        batch = [DocumentInput(id=d.id, title=d.id, source=f"pydoc:{d.id}", text=d.text)
                 for d in corpus[i:i + 64]]
        outcomes, _ = await rag.ingestor.ingest(namespace, batch, params)
        chunks += sum(o.chunk_count for o in outcomes)
        print(f"\r  ingested {min(i + 64, len(corpus))}/{len(corpus)} documents", end="",
              file=sys.stderr, flush=True)
    ingest_s = time.perf_counter() - started
    print(file=sys.stderr)
    print(f"corpus: {len(corpus)} documents, {chunks} chunks (chunk 1000/150), ingested in "
          f"{ingest_s:.0f} s with the local embedder; {len(queries)} queries "
          f"({dropped} dropped: relevant docs absent in this Python)")
    kinds = sorted({q.kind for q in queries})
    results: dict[tuple[Mode, str], list[tuple[float, float, float]]] = defaultdict(list)
    for mode in (Mode.VECTOR, Mode.KEYWORD, Mode.HYBRID):
        for q in queries:
            result = await rag.retriever.search(SearchRequest(
                namespace=namespace, query=q.text, top_k=30, ef_search=100, mode=mode))
            ranking = ranked_documents([h.document_id for h in result.hits])
            s = score(ranking, q.relevant)
            results[(mode, q.kind)].append(s)
            results[(mode, "all")].append(s)
    print()
    print("| mode    | queries      | recall@5 | recall@10 | MRR   |")
    print("|---------|--------------|----------|-----------|-------|")
    for mode in (Mode.VECTOR, Mode.KEYWORD, Mode.HYBRID):
        for kind in (*kinds, "all"):
            rows = results[(mode, kind)]
            n = len(rows)
            r5 = sum(r[0] for r in rows) / n
            r10 = sum(r[1] for r in rows) / n
            mrr = sum(r[2] for r in rows) / n
            print(f"| {mode.value:<7} | {kind:<5} ({n:>3})  | {r5:8.3f} | {r10:9.3f} | {mrr:.3f} |")
    if not keep:
        await rag.store.delete_documents(namespace, [d.id for d in corpus])
    await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(".data/bench"))
    parser.add_argument("--keep", action="store_true", help="keep the namespace's documents")
    ns = parser.parse_args()
    url = os.environ.get("DATABASE_URL") or start_embedded(ns.data_dir)
    upgrade(url)
    asyncio.run(run(url, ns.keep))


if __name__ == "__main__":
    main()
