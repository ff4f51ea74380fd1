"""Retrieval speed: HNSW build, Retrieve RPC latency/throughput and recall vs exact search.

Two layouts of 100,000 chunks of dimension 384 (default: --chunks 100000):
  A. one namespace holding every chunk;
  B. the chunks spread over 10 namespaces; queries target one namespace and add a
     metadata filter (category = one of 10 values, ~10% of the namespace).
The vectors are synthetic but shaped like sentence embeddings: 1,000 unit-length topic
centres plus Gaussian noise (same-topic cosine ~0.5, cross-topic ~0), queries drawn the
same way. They are bulk-loaded with COPY (embedding 100k real texts would take hours on
this CPU), then the per-namespace HNSW index is built (timed). Queries go through a real
`llmgw serve` process over gRPC with `vector` set, so latency excludes query embedding;
the local embedder's query time is measured separately. A last row sends text queries
whose embeddings the gateway has already cached (each asked once before): the end-to-end
latency of a repeated question. Recall@10 is against exact (numpy brute-force) cosine
search over the same rows and filter.

    python bench/rag_speed.py [--chunks 100000] [--queries 300] [--data-dir .data/bench] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grpc
import yaml
from llmgateway.v1 import generation_pb2 as gen_pb
from llmgateway.v1 import retrieval_pb2 as pb
from llmgateway.v1 import retrieval_pb2_grpc

from server.kernel.config import DEFAULT_CONFIG, RagConfig
from server.kernel.db.embedded import start_embedded
from server.kernel.db.engine import create_engine
from server.kernel.db.migrate import upgrade
from server.rag.embedders import LOCAL_MINILM, LocalMiniLMEmbedder
from server.rag.store import RagStore, vector_literal

DIM = 384
TOPICS = 1000
NOISE = 1.0
CATEGORIES = 10


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def synthetic(rng: np.random.Generator, centres: np.ndarray, n: int) -> np.ndarray:
    topic = rng.integers(0, len(centres), n)
    noise = rng.standard_normal((n, DIM)).astype(np.float32) * (NOISE / np.sqrt(DIM))
    return unit(centres[topic] + noise)


async def bulk_load(store: RagStore, engine, namespace: str, vectors: np.ndarray,
                    offset: int) -> float:
    """COPY the chunks in without an index, then build the namespace's HNSW index; returns
    the build time."""
    ns = await store.create_namespace(namespace, LOCAL_MINILM, DIM)
    async with engine.connect() as conn:
        pg = (await conn.get_raw_connection()).driver_connection
        await pg.execute(f"DROP INDEX IF EXISTS {ns.index_name}")
        docs = max(1, len(vectors) // 100)
        await pg.executemany(
            "INSERT INTO rag_documents (namespace, id, title, checksum, chunk_count) "
            "VALUES ($1, $2, $2, 'bench', 100) ON CONFLICT DO NOTHING",
            [(namespace, f"doc-{d}") for d in range(docs)])
        buf = io.StringIO()
        for i, v in enumerate(vectors):
            meta = json.dumps({"category": f"c{(offset + i) % CATEGORIES}"})
            buf.write(f"{namespace}-{i}\t{namespace}\tdoc-{i % docs}\t{i // docs}\t"
                      f"synthetic chunk {i}\t{meta}\tbench\t{LOCAL_MINILM}\t"
                      f"{vector_literal(v)}\n")
        await pg.copy_to_table("rag_chunks", source=io.BytesIO(buf.getvalue().encode()),
                               columns=["id", "namespace", "document_id", "position", "content",
                                        "metadata", "checksum", "embedding_model", "embedding"],
                               format="text")
        await pg.execute("SET maintenance_work_mem = '1GB'")
        await pg.execute("SET max_parallel_maintenance_workers = 1")
        started = time.perf_counter()
        await pg.execute(store.index_ddl(namespace, DIM, ns.index_name))
        build_s = time.perf_counter() - started
        await pg.execute("ANALYZE rag_chunks")
    return build_s


async def drop_bench_namespaces(database_url: str) -> int:
    """Remove every namespace an earlier run of this script left (they are 100k-row,
    index-carrying leftovers: each one slows the next run's planning and caching)."""
    import asyncpg

    pg = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        rows = await pg.fetch("SELECT name, index_name FROM rag_namespaces"
                              " WHERE name LIKE 'bench-speed-%'")
        for row in rows:
            await pg.execute(f"DROP INDEX IF EXISTS {row['index_name']}")
            await pg.execute("DELETE FROM rag_chunks WHERE namespace = $1", row["name"])
            await pg.execute("DELETE FROM rag_documents WHERE namespace = $1", row["name"])
            await pg.execute("DELETE FROM rag_namespaces WHERE name = $1", row["name"])
        if rows:
            await pg.execute("VACUUM ANALYZE rag_chunks")
        return len(rows)
    finally:
        await pg.close()


def exact_top(vectors: np.ndarray, query: np.ndarray, mask: np.ndarray | None, k: int) -> set[int]:
    sims = vectors @ query
    if mask is not None:
        sims = np.where(mask, sims, -np.inf)
    top = np.argpartition(-sims, k)[:k]
    return {int(i) for i in top if np.isfinite(sims[i])}


async def measure(stub, requests: list[pb.RetrieveRequest], concurrency: int
                  ) -> tuple[tuple[list[float], list[float]], float, list[list[str]]]:
    """((RPC latencies, server-side search + embedding times), QPS, chunk ids)."""
    latencies: list[float] = [0.0] * len(requests)
    server: list[float] = [0.0] * len(requests)
    results: list[list[str]] = [[] for _ in requests]
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < len(requests):
            i = next_index
            next_index += 1
            started = time.perf_counter()
            reply = await stub.Retrieve(requests[i])
            latencies[i] = time.perf_counter() - started
            server[i] = (reply.search_time.ToTimedelta().total_seconds()
                         + reply.embedding_time.ToTimedelta().total_seconds())
            results[i] = [c.chunk_id for c in reply.chunks]

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (latencies, server), len(requests) / (time.perf_counter() - started), results


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 1 else values[0]


async def run(args: argparse.Namespace, database_url: str) -> None:
    from tests.support.gateway import GatewayProcess

    rng = np.random.default_rng(7)
    centres = unit(rng.standard_normal((TOPICS, DIM)).astype(np.float32))
    data = synthetic(rng, centres, args.chunks)
    queries = synthetic(rng, centres, args.queries)
    dropped = await drop_bench_namespaces(database_url)
    if dropped:
        print(f"dropped {dropped} namespaces left by earlier runs", file=sys.stderr)
    engine = create_engine(database_url, 2)
    store = RagStore(engine)
    tag = f"{int(time.time())}"
    ns_a = f"bench-speed-a-{tag}"
    per = args.chunks // 10
    ns_b = [f"bench-speed-b{j}-{tag}" for j in range(10)]
    print(f"loading {args.chunks} chunks (layout A) and {args.chunks} more (layout B) …",
          file=sys.stderr)
    build_a = await bulk_load(store, engine, ns_a, data, 0)
    build_b = [await bulk_load(store, engine, ns_b[j], data[j * per:(j + 1) * per], j * per)
               for j in range(10)]
    await engine.dispose()
    print(f"HNSW build (m=16, ef_construction=64): layout A {build_a:.1f} s for "
          f"{args.chunks} vectors; layout B {sum(build_b):.1f} s for 10 x {per} "
          f"(pgvector 0.6.2, maintenance_work_mem 1GB, 1 parallel worker)")

    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["auth"]["enabled"] = False
    raw["rate_limits"]["enabled"] = False
    raw["database"] = {"url": database_url, "migrate_on_start": False}
    raw["logging"] = {"level": "WARNING", "json_format": True}
    ef = RagConfig().ef_search_default
    rows = []
    with tempfile.TemporaryDirectory() as tmp, GatewayProcess(raw, Path(tmp)) as gw:
        async with grpc.aio.insecure_channel(gw.target) as channel:
            stub = retrieval_pb2_grpc.RetrievalServiceStub(channel)
            category = np.array([f"c{i % CATEGORIES}" for i in range(args.chunks)])
            layouts = []
            reqs_a = [pb.RetrieveRequest(namespace=ns_a, vector=q.tolist(), top_k=10)
                      for q in queries]
            truth_a = [exact_top(data, q, None, 10) for q in queries]
            layouts.append(("A: 1 namespace, no filter", reqs_a, truth_a))
            reqs_b, truth_b = [], []
            for i, q in enumerate(queries):
                j, cat = i % 10, f"c{(i // 10) % CATEGORIES}"
                reqs_b.append(pb.RetrieveRequest(
                    namespace=ns_b[j], vector=q.tolist(), top_k=10,
                    filters=[gen_pb.MetadataFilter(key="category", values=[cat])]))
                mask = np.zeros(args.chunks, dtype=bool)
                mask[j * per:(j + 1) * per] = True
                mask &= category == cat
                truth_b.append(exact_top(data, q, mask, 10))
            reqs_b0, truth_b0 = [], []
            for i, q in enumerate(queries):
                j = i % 10
                reqs_b0.append(pb.RetrieveRequest(namespace=ns_b[j], vector=q.tolist(), top_k=10))
                mask = np.zeros(args.chunks, dtype=bool)
                mask[j * per:(j + 1) * per] = True
                truth_b0.append(exact_top(data, q, mask, 10))
            layouts.append(("B: 10 namespaces, no metadata filter", reqs_b0, truth_b0))
            layouts.append(("B: 10 namespaces + metadata filter", reqs_b, truth_b))
            # Text queries whose embeddings the gateway has cached (a warm-up pass asks each
            # once): the end-to-end path of a repeated question. No recall: the synthetic
            # vectors have no texts.
            reqs_t = [pb.RetrieveRequest(namespace=ns_a, top_k=10,
                                         query=f"how do I configure option {i} of the upload "
                                         "service?") for i in range(len(queries))]
            layouts.append(("A: query text, embedding cached", reqs_t, None))
            for name, reqs, truth in layouts:
                await measure(stub, reqs[:20] if truth else reqs, 4)  # warm-up
                for concurrency in (1, 8):
                    (lat, srv), qps, results = await measure(stub, reqs, concurrency)
                    if truth is None:
                        rows.append((name, concurrency, pct(lat, 50), pct(lat, 99),
                                     pct(srv, 50), qps, None,
                                     sum(len(ids) == 10 for ids in results), len(results)))
                        continue
                    recalls, full = [], 0
                    for i, ids in enumerate(results):
                        full += len(ids) == 10
                        if name.startswith("A"):
                            got = {int(c.rsplit("-", 1)[1]) for c in ids}
                        else:
                            j = i % 10
                            got = {j * per + int(c.rsplit("-", 1)[1]) for c in ids}
                        recalls.append(len(got & truth[i]) / 10)
                    rows.append((name, concurrency, pct(lat, 50), pct(lat, 99), pct(srv, 50),
                                 qps, sum(recalls) / len(recalls), full, len(results)))
    embedder = LocalMiniLMEmbedder()
    embedder.encode_sync(["warm up"])
    texts = [f"how do I configure option number {i} for the upload service?" for i in range(50)]
    times = []
    for t in texts:
        started = time.perf_counter()
        embedder.encode_sync([t])
        times.append(time.perf_counter() - started)
    print()
    print(f"Retrieve RPC (vector given, top_k=10, default ef_search={ef}); {args.queries} queries")
    print("RPC = client-observed Retrieve latency; server = search (+ query embedding) time "
          "the gateway reports in the response")
    print("| layout                                | conc | RPC p50 ms | RPC p99 ms | server p50 ms |  QPS  | recall@10 | top_k rows |")
    print("|---------------------------------------|------|------------|------------|---------------|-------|-----------|------------|")
    for name, c, p50, p99, srv50, qps, recall, full, n in rows:
        shown = "—" if recall is None else f"{recall:.3f}"
        print(f"| {name:<37} | {c:>4} | {p50:10.2f} | {p99:10.2f} | {srv50:13.2f} | {qps:5.0f} |"
              f" {shown:>9} | {full:>4}/{n:<5} |")
    print(f"\nquery embedding (local all-MiniLM-L6-v2, 1 BLAS thread, ~15 words): "
          f"p50 {statistics.median(times) * 1000:.1f} ms, p99 {pct(times, 99):.1f} ms")
    if not args.keep:
        await drop_bench_namespaces(database_url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--keep", action="store_true",
                        help="keep the loaded namespaces (the next run drops them anyway)")
    parser.add_argument("--data-dir", type=Path, default=Path(".data/bench"))
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL") or start_embedded(args.data_dir)
    upgrade(url)
    asyncio.run(run(args, url))


if __name__ == "__main__":
    main()
