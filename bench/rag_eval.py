"""Retrieval evaluation on our own set: R@1, R@5, MRR@10, nDCG@10 per query kind and mode.

The set (bench/data/rag_eval/, built by bench/rag_eval_data.py) mirrors a company
knowledge base of confusable pages: 122 policy pages, runbooks, postmortems and product
pages in near-identical families, and 974 queries of four kinds (paraphrase, identifier,
disambiguation, section) with graded judgments: the first phrasing of each is split ~50/50
into dev and heldout (244 heldout), every second phrasing is dev (730 dev). Tune on dev;
report heldout.

The corpus goes through the real ingestion (chunking 1000/150, the local embedder,
pgvector) into a throwaway namespace; vector, keyword and hybrid run through the real
Retriever. Two baselines run in this script over the same stored chunks, so they see
exactly what the Retriever sees:

- ``bm25``: Okapi BM25 (k1 1.2, b 0.75) over chunk texts; the tokenizer keeps
  identifiers such as ``E-4471``, ``HR-212b`` or ``payments.eu.retry_budget_ms`` whole
  (and adds their parts), unlike Postgres full-text search;
- ``exact``: brute-force cosine over the stored embeddings, the ground truth that HNSW
  approximates: vector < exact means the index lost something.

    python bench/rag_eval.py [--split dev|heldout|all] [--modes vector,keyword,hybrid,bm25,exact]
                             [--examples 3] [--data-dir .data/bench] [--eval-data DIR]
                             [--namespace bench-eval] [--keep]
                             [--chunk-size 1000 --chunk-overlap 150]

Metrics are per query over documents (a document's best chunk stands for it), then
averaged: R@k = share of the grade-2 documents in the top k; MRR@10 = 1 / rank of the
first grade-2 document (0 beyond 10); nDCG@10 with gain 2^grade - 1, so a sibling page
(grade 1) ranked first earns partial credit there and none in R@1 or MRR. Section
queries are also scored at chunk level (the chunk holding the answer paragraph must be
ranked, not just its page): that is where a chunk that does not carry its page's title
shows.

Ties: identifiers appear in their page and in one "see also" page, so lexical scores often
tie between the two; keyword search breaks ties by chunk id and BM25 by storage order.
The default namespace is fixed so that chunk ids, and with them tie order, repeat from
run to run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import text as sql_text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import table
from rag_eval_data import Document, Query

from server.kernel.config import RagConfig
from server.kernel.db.embedded import start_embedded
from server.kernel.db.engine import create_engine
from server.kernel.db.migrate import upgrade
from server.rag.chunking import ChunkingParams
from server.rag.ingest import DocumentInput
from server.rag.retrieve import Mode, SearchRequest
from server.rag.runtime import RagRuntime

DATA = Path(__file__).parent / "data" / "rag_eval"
KINDS = ("paraphrase", "identifier", "disambiguation", "section")
RETRIEVER_MODES = {"vector": Mode.VECTOR, "keyword": Mode.KEYWORD, "hybrid": Mode.HYBRID}
BASELINES = ("bm25", "exact")
METRICS = ("R@1", "R@5", "MRR@10", "nDCG@10")
CHUNKING = ChunkingParams(1000, 150)
TOP_K = 30  # chunks asked for; several chunks of one document collapse into one rank
TOKEN_RE = re.compile(r"\w+(?:[-./]\w+)*")


# The set's records, as the generator writes them (one definition for both scripts).
EvalDocument = Document
EvalQuery = Query


ChunkRanking = list[tuple[str, str]]  # (document id, chunk text), best first


@dataclass(frozen=True)
class StoredChunks:
    """The namespace's chunks as stored: what both baselines search."""

    document_ids: list[str]
    positions: list[int]
    texts: list[str]
    embeddings: np.ndarray  # (chunks, dim), L2-normalised rows


# --- data ---------------------------------------------------------------------------


def load_documents(data_dir: Path) -> list[EvalDocument]:
    with (data_dir / "documents.jsonl").open(encoding="utf-8") as f:
        return [EvalDocument(**json.loads(line)) for line in f if line.strip()]


def load_queries(data_dir: Path) -> list[EvalQuery]:
    with (data_dir / "queries.jsonl").open(encoding="utf-8") as f:
        return [EvalQuery(**json.loads(line)) for line in f if line.strip()]


# --- metrics ------------------------------------------------------------------------


def documents_in_order(chunk_documents: Sequence[str]) -> list[str]:
    """Chunk ranking → document ranking: a document ranks where its best chunk does."""
    return list(dict.fromkeys(chunk_documents))


def answer_chunk_rank(ranking: ChunkRanking, query: EvalQuery) -> float:
    """1-based rank of the first chunk of the answering document that holds the answer
    paragraph (inf when not in the top 10): did the passage surface, not just the page?"""
    answer = next(d for d, g in query.judgments.items() if g == 2)
    probe = query.answer_text[:80]
    return next((i + 1.0 for i, (doc, text) in enumerate(ranking[:10])
                 if doc == answer and probe in text), math.inf)


def dcg(gains: Sequence[float]) -> float:
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains))


def score(ranking: Sequence[str], judgments: dict[str, int]) -> dict[str, float]:
    """R@1, R@5, MRR@10 (grade 2 counts as relevant) and graded nDCG@10 of one query."""
    answers = {d for d, g in judgments.items() if g >= 2}
    first = next((i + 1 for i, d in enumerate(ranking[:10]) if d in answers), None)
    ideal = dcg(sorted((2.0 ** g - 1 for g in judgments.values()), reverse=True)[:10])
    return {
        "R@1": len(answers & set(ranking[:1])) / len(answers),
        "R@5": len(answers & set(ranking[:5])) / len(answers),
        "MRR@10": 1.0 / first if first else 0.0,
        "nDCG@10": dcg([2.0 ** judgments.get(d, 0) - 1 for d in ranking[:10]]) / ideal,
        "rank": float(first or math.inf),
    }


# --- baselines ----------------------------------------------------------------------


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens; ``E-4471`` and ``a.b_c`` stay whole and also yield their
    parts, so an identifier matches exactly while its pieces still match prose."""
    tokens: list[str] = []
    for match in TOKEN_RE.finditer(text.lower()):
        token = match.group()
        tokens.append(token)
        parts = re.split(r"[-./_]", token)
        if len(parts) > 1:
            tokens.extend(p for p in parts if p)
    return tokens


def bm25_ranker(texts: Sequence[str], k1: float = 1.2, b: float = 0.75
                ) -> Callable[[str], list[int]]:
    """Okapi BM25 over ``texts``; returns a function query → chunk indexes, best first
    (only chunks sharing a term with the query)."""
    docs = [Counter(tokenize(t)) for t in texts]
    lengths = np.array([sum(d.values()) for d in docs], dtype=np.float64)
    avg = float(lengths.mean())
    df: Counter[str] = Counter(term for d in docs for term in d)
    n = len(docs)
    postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for i, d in enumerate(docs):
        for term, tf in d.items():
            postings[term].append((i, tf))

    def rank(query: str) -> list[int]:
        scores = np.zeros(n)
        for term in set(tokenize(query)):
            if term not in postings:
                continue
            idf = math.log((n - df[term] + 0.5) / (df[term] + 0.5) + 1.0)
            for i, tf in postings[term]:
                scores[i] += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * lengths[i] / avg))
        hits = np.flatnonzero(scores)
        return [int(i) for i in hits[np.argsort(-scores[hits], kind="stable")]]

    return rank


def exact_ranking(embeddings: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    """The ``k`` chunks nearest to ``query`` by cosine, computed over every chunk."""
    sims = embeddings @ (query / np.linalg.norm(query))
    top = np.argpartition(-sims, min(k, len(sims) - 1))[:k]
    return [int(i) for i in top[np.argsort(-sims[top], kind="stable")]]


# --- the run ------------------------------------------------------------------------


async def ingest(rag: RagRuntime, namespace: str, documents: list[EvalDocument],
                 chunking: ChunkingParams) -> int:
    """Ingest through the real path (chunk, embed, store); returns the chunk count."""
    chunks = 0
    for i in range(0, len(documents), 32):
        batch = [DocumentInput(id=d.id, text=d.text, title=d.title, source=f"rag_eval:{d.id}",
                               metadata=d.metadata) for d in documents[i:i + 32]]
        outcomes, _ = await rag.ingestor.ingest(namespace, batch, chunking)
        chunks += sum(o.chunk_count for o in outcomes)
        print(f"\r  ingested {min(i + 32, len(documents))}/{len(documents)} documents", end="",
              file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return chunks


async def drop_strays(rag: RagRuntime, engine, namespace: str,  # type: ignore[no-untyped-def]
                      documents: list[EvalDocument]) -> int:
    """Delete documents a previous run left in ``namespace`` that the set no longer has
    (a kept or interrupted run); unchanged documents stay and are skipped by checksum."""
    async with engine.connect() as conn:
        rows = (await conn.execute(sql_text(
            "SELECT id FROM rag_documents WHERE namespace = :ns"), {"ns": namespace})).all()
    strays = sorted({r.id for r in rows} - {d.id for d in documents})
    if strays:
        await rag.store.delete_documents(namespace, strays)
    return len(strays)


async def stored_chunks(engine, namespace: str) -> StoredChunks:  # type: ignore[no-untyped-def]
    """Read back the chunks and embeddings exactly as stored (pgvector text form)."""
    async with engine.connect() as conn:
        rows = (await conn.execute(sql_text(
            "SELECT document_id, position, content, embedding::text AS e FROM rag_chunks "
            "WHERE namespace = :ns ORDER BY document_id, position"), {"ns": namespace})).all()
    vectors = np.array([json.loads(r.e) for r in rows], dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return StoredChunks([r.document_id for r in rows], [r.position for r in rows],
                        [r.content for r in rows], vectors)


async def rank_with_retriever(rag: RagRuntime, namespace: str, mode: Mode,
                              queries: Sequence[EvalQuery]) -> dict[str, ChunkRanking]:
    out: dict[str, ChunkRanking] = {}
    for q in queries:
        result = await rag.retriever.search(SearchRequest(
            namespace=namespace, query=q.text, top_k=TOP_K, ef_search=100, mode=mode))
        out[q.id] = [(h.document_id, h.content) for h in result.hits]
    return out


async def rank_with_baselines(rag: RagRuntime, namespace: str, chunks: StoredChunks,
                              queries: Sequence[EvalQuery], systems: Sequence[str]
                              ) -> dict[str, dict[str, ChunkRanking]]:
    out: dict[str, dict[str, ChunkRanking]] = {}

    def pairs(indexes: Sequence[int]) -> ChunkRanking:
        return [(chunks.document_ids[i], chunks.texts[i]) for i in indexes[:TOP_K]]

    if "bm25" in systems:
        bm25 = bm25_ranker(chunks.texts)
        out["bm25"] = {q.id: pairs(bm25(q.text)) for q in queries}
    if "exact" in systems:
        ns = await rag.store.get_namespace(namespace)
        assert ns is not None
        vectors = await rag.embedders.get(ns.embedding_model).embed([q.text for q in queries])
        out["exact"] = {q.id: pairs(exact_ranking(chunks.embeddings, v, TOP_K))
                        for q, v in zip(queries, vectors)}
    return out


def doc_ranking(rankings: dict[str, dict[str, ChunkRanking]], system: str,
                query: EvalQuery) -> list[str]:
    return documents_in_order([doc for doc, _ in rankings[system][query.id]])


def report(title: str, systems: Sequence[str], queries: Sequence[EvalQuery],
           rankings: dict[str, dict[str, ChunkRanking]]) -> str:
    """One table: a block of rows per metric, a row per system, a column per kind."""
    kinds = [k for k in KINDS if any(q.kind == k for q in queries)]
    counts = Counter(q.kind for q in queries)
    headers = ["metric", "system", *(f"{k} ({counts[k]})" for k in kinds),
               f"all ({len(queries)})"]
    rows: list[list[object]] = []
    for metric in METRICS:
        for system in systems:
            cells: list[object] = [metric, system]
            for group in (*kinds, None):
                members = [q for q in queries if group is None or q.kind == group]
                values = [score(doc_ranking(rankings, system, q), q.judgments)[metric]
                          for q in members]
                cells.append(f"{sum(values) / len(values):.3f}")
            rows.append(cells)
    return table(headers, rows, title=title, align_left=2)


def passage_report(systems: Sequence[str], queries: Sequence[EvalQuery],
                   rankings: dict[str, dict[str, ChunkRanking]], late: set[str]) -> str:
    """Section queries at chunk level: is the answering chunk itself in the top k? A page
    found through its first chunk (the one with the title) does not count here."""
    section = [q for q in queries if q.answer_text]
    groups = {"all": section, "answer beyond chunk 1": [q for q in section if q.id in late]}
    headers = ["system", *(f"{m} {g} ({len(qs)})" for g, qs in groups.items()
                           for m in ("R@1", "R@5", "MRR@10"))]
    rows: list[list[object]] = []
    for system in systems:
        cells: list[object] = [system]
        for qs in groups.values():
            ranks = [answer_chunk_rank(rankings[system][q.id], q) for q in qs]
            n = max(len(ranks), 1)
            cells += [f"{sum(r <= 1 for r in ranks) / n:.3f}",
                      f"{sum(r <= 5 for r in ranks) / n:.3f}",
                      f"{sum(1 / r for r in ranks) / n:.3f}"]
        rows.append(cells)
    return table(headers, rows, title="section queries, answer chunk (passage level)")


def late_answers(queries: Sequence[EvalQuery], chunks: StoredChunks) -> set[str]:
    """Section queries whose answer paragraph is not in the document's first chunk."""
    out = set()
    for q in queries:
        if not q.answer_text:
            continue
        answer = next(d for d, g in q.judgments.items() if g == 2)
        where = [p for d, p, t in zip(chunks.document_ids, chunks.positions, chunks.texts)
                 if d == answer and q.answer_text[:80] in t]
        if where and min(where) > 0:
            out.add(q.id)
    return out


def hybrid_losses(queries: Sequence[EvalQuery], rankings: dict[str, dict[str, ChunkRanking]],
                  per_kind: int, against: str = "vector") -> str:
    """Queries where hybrid ranks the answer below where ``against`` ranks it: what fusion
    costs, by kind (the first ``per_kind`` of each, by how much rank was lost)."""
    lines = []
    for kind in KINDS:
        losses = []
        for q in (q for q in queries if q.kind == kind):
            v = score(doc_ranking(rankings, against, q), q.judgments)["rank"]
            h = score(doc_ranking(rankings, "hybrid", q), q.judgments)["rank"]
            if h > v:
                losses.append((h - v if h != math.inf else 99.0, q, v, h))
        total = sum(1 for q in queries if q.kind == kind)
        lines.append(f"{kind}: hybrid ranks the answer lower than {against} on {len(losses)} "
                     f"of {total}")
        for _, q, v, h in sorted(losses, key=lambda x: (-x[0], x[1].id))[:per_kind]:
            shown = "beyond 10" if h == math.inf else f"{h:.0f}"
            lines.append(f"  [{q.split}] {q.id}: {q.text!r}  {against} {v:.0f} → hybrid {shown}")
    return "\n".join(lines)


async def run(database_url: str, namespace: str, keep: bool, data_dir: Path,
              splits: Sequence[str], systems: Sequence[str], examples: int,
              chunking: ChunkingParams = CHUNKING) -> None:
    engine = create_engine(database_url, 4)
    rag = RagRuntime.from_config(RagConfig(), engine)
    documents = load_documents(data_dir)
    queries = load_queries(data_dir)
    try:
        await drop_strays(rag, engine, namespace, documents)
        started = time.perf_counter()
        chunk_count = await ingest(rag, namespace, documents, chunking)
        ingest_s = time.perf_counter() - started
        chunks = await stored_chunks(engine, namespace)
        per_doc = Counter(Counter(chunks.document_ids).values())
        print(f"corpus: {len(documents)} documents, {chunk_count} chunks (chunk "
              f"{chunking.size}/{chunking.overlap}; documents by chunk count "
              f"{dict(sorted(per_doc.items()))}), ingested in {ingest_s:.0f} s")
        counts = Counter((q.split, q.kind) for q in queries)
        late = late_answers(queries, chunks)
        print(f"section queries whose answer is not in the first chunk: {len(late)} of "
              f"{sum(1 for q in queries if q.answer_text)}")
        print("queries: " + ", ".join(
            f"{kind} {counts[('dev', kind)]} dev + {counts[('heldout', kind)]} heldout"
            for kind in KINDS))
        started = time.perf_counter()
        rankings: dict[str, dict[str, ChunkRanking]] = {}
        for name in systems:
            if name in RETRIEVER_MODES:
                rankings[name] = await rank_with_retriever(rag, namespace,
                                                           RETRIEVER_MODES[name], queries)
        rankings.update(await rank_with_baselines(rag, namespace, chunks, queries, systems))
        print(f"searched {len(queries)} queries × {len(systems)} systems in "
              f"{time.perf_counter() - started:.0f} s")
        for split in splits:
            members = [q for q in queries if split == "all" or q.split == split]
            print()
            print(report(f"== split: {split} ==", systems, members, rankings))
            print()
            print(passage_report(systems, members, rankings, late))
        members = [q for q in queries if "all" in splits or q.split in splits]
        for against in ("vector", "keyword"):
            if examples and {against, "hybrid"} <= set(systems):
                print()
                print(hybrid_losses(members, rankings, examples, against))
    finally:
        if not keep:
            await rag.store.delete_documents(namespace, [d.id for d in documents])
        await engine.dispose()


def parse_systems(value: str) -> list[str]:
    known = [*RETRIEVER_MODES, *BASELINES]
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {','.join(known)}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(".data/bench"),
                        help="embedded Postgres data directory (unless DATABASE_URL is set)")
    parser.add_argument("--eval-data", type=Path, default=DATA,
                        help="directory with documents.jsonl and queries.jsonl")
    parser.add_argument("--split", choices=("dev", "heldout", "all"),
                        help="one split only (default: dev, then heldout)")
    parser.add_argument("--modes", type=parse_systems,
                        default=[*RETRIEVER_MODES, *BASELINES],
                        help="comma-separated: vector,keyword,hybrid,bm25,exact")
    parser.add_argument("--examples", type=int, default=3,
                        help="per kind, queries where hybrid ranks the answer below vector")
    parser.add_argument("--namespace", default="bench-eval",
                        help="fixed by default: chunk ids derive from it, and keyword search "
                        "breaks score ties by chunk id, so a fixed name makes runs repeatable")
    parser.add_argument("--keep", action="store_true",
                        help="keep the documents (the next run skips unchanged ones)")
    parser.add_argument("--chunk-size", type=int, default=CHUNKING.size)
    parser.add_argument("--chunk-overlap", type=int, default=CHUNKING.overlap)
    ns = parser.parse_args()
    splits = [ns.split] if ns.split else ["dev", "heldout"]
    url = os.environ.get("DATABASE_URL") or start_embedded(ns.data_dir)
    upgrade(url)
    asyncio.run(run(url, ns.namespace, ns.keep, ns.eval_data, splits, ns.modes, ns.examples,
                    ChunkingParams(ns.chunk_size, ns.chunk_overlap)))


if __name__ == "__main__":
    main()
