"""pgvector storage: namespaces, documents, chunks; vector and full-text search.

Filtered vector search on HNSW is the delicate part. An HNSW scan yields about
``ef_search`` candidates and Postgres filters them afterwards, so a filter that keeps one
row in ten returns far fewer than ``top_k`` rows. What we do:

* Namespace: every namespace has its own *partial* HNSW index (``WHERE namespace = …``),
  so a namespace query walks a graph holding only that namespace's chunks: no
  post-filtering at all, full recall. The namespace is written into the query as a
  literal so the planner matches the partial index (and can cache the plan).
* Metadata / document filters inside a namespace: on pgvector >= 0.8 we turn on
  ``hnsw.iterative_scan`` (the index keeps scanning until enough rows pass). On older
  versions (pgserver bundles 0.6.2) we *over-fetch and refine*: ef_search is raised to
  ``top_k * overfetch`` (at most 1000), so a filter passing one row in ``overfetch``
  still fills ``top_k``; if fewer than ``top_k`` rows pass we finish with an exact scan
  of the filtered rows (ordering by the uncast column, which no index matches), so
  ``top_k`` rows are returned whenever they exist. Filters on document ids go straight
  to that exact scan (an index finds those documents' chunks).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from server.kernel.lru import LruCache
from server.rag.lexical import Bm25Params, LexicalText, lexical_text

# numpy (~11 MB resident with its BLAS) is imported by the calls that use it, not at
# start-up: a gateway that serves no embedding or retrieval never loads it.
if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Namespace:
    name: str
    embedding_model: str
    dimension: int
    index_name: str


@dataclass(frozen=True)
class ChunkRecord:
    id: str
    position: int
    content: str
    checksum: str
    embedding: np.ndarray
    lexical: LexicalText | None = None  # None: the content alone, as body text


@dataclass(frozen=True)
class DocumentRecord:
    id: str
    title: str
    source: str
    metadata: dict[str, Any]
    checksum: str
    chunks: list[ChunkRecord]


@dataclass(frozen=True)
class Filters:
    """All must match: metadata[key] in values (as text), and document id in the list."""

    metadata: tuple[tuple[str, tuple[str, ...]], ...] = ()
    document_ids: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.metadata or self.document_ids)


@dataclass(frozen=True)
class Hit:
    chunk_id: str
    document_id: str
    title: str
    source: str
    content: str
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)
    position: int = 0


@dataclass(frozen=True)
class HnswSettings:
    m: int = 16
    ef_construction: int = 64
    overfetch: int = 40  # ef_search = top_k * overfetch for filtered queries (pgvector < 0.8)


STATS_TTL_S = 30.0
STATS_CACHE_SIZE = 1024
LEXICAL_CANDIDATES = 1000  # lexical matches scored by BM25 per query (see keyword_search)


def vector_param(vector: np.ndarray | Sequence[float]) -> list[float]:
    """A query vector as a ``real[]`` parameter (cast to ``vector`` in SQL): asyncpg sends
    it in binary, exact for float32, where the text form cost ~0.4 ms per query to format
    here and more to parse in Postgres."""
    import numpy as np

    return np.asarray(vector, dtype=np.float32).tolist()


def vector_literal(vector: np.ndarray | Sequence[float]) -> str:
    """pgvector's text form; float32 round-trips exactly with repr-style formatting."""
    import numpy as np

    return "[" + ",".join(repr(float(x)) for x in np.asarray(vector, dtype=np.float32)) + "]"


def index_name_for(namespace: str) -> str:
    return "rag_hnsw_" + hashlib.sha256(namespace.encode()).hexdigest()[:24]


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# The labelled tsvector of a chunk (server/rag/lexical.py says what each label holds).
_WEIGHTED_TSV = ("setweight(to_tsvector('english', u.context), 'A')"
                 " || setweight(to_tsvector('english', u.parts), 'B')"
                 " || setweight(to_tsvector('english', u.refs), 'C')"
                 " || to_tsvector('english', u.body)")

_HIT_COLUMNS = ("c.id, c.document_id, d.title, d.source, c.content, c.metadata, c.position")


def _hit(row: asyncpg.Record, score: float) -> Hit:
    return Hit(chunk_id=row["id"], document_id=row["document_id"], title=row["title"],
               source=row["source"], content=row["content"], score=float(score),
               metadata=_json(row["metadata"]), position=row["position"])


def _json(value: Any) -> dict[str, Any]:
    """jsonb arrives decoded on the engine's connections (SQLAlchemy registers a codec)
    and as text on a bare asyncpg connection."""
    return value if isinstance(value, dict) else json.loads(value)


def _json_forms(value: str) -> list[Any]:
    """The JSON values a filter string stands for: "3" matches 3 and "3", "true" true."""
    forms: list[Any] = [value]
    if value in ("true", "false"):
        forms.append(value == "true")
    else:
        try:
            number = float(value)
        except ValueError:
            return forms
        if math.isfinite(number):
            forms.append(int(number) if number.is_integer() else number)
    return forms


def _filter_sql(filters: Filters, args: list[Any]) -> str:
    """SQL conditions for ``filters``; appends their parameters to ``args``.

    Metadata filters are jsonb containment (``@>``) so the GIN index on metadata can
    find the matching rows; several values of one key are OR-ed.
    """
    parts = []
    for key, values in filters.metadata:
        alternatives = []
        for value in values:
            for form in _json_forms(value):
                args.append(json.dumps({key: form}))
                alternatives.append(f"c.metadata @> ${len(args)}::jsonb")
        parts.append("(" + " OR ".join(alternatives) + ")")
    if filters.document_ids:
        args.append(list(filters.document_ids))
        parts.append(f"c.document_id = ANY(${len(args)}::text[])")
    return "".join(" AND " + p for p in parts)


class RagStore:
    """All SQL of retrieval. Uses the gateway's engine pool (asyncpg underneath)."""

    def __init__(self, engine: AsyncEngine, hnsw: HnswSettings = HnswSettings()) -> None:
        self._engine = engine
        self._hnsw = hnsw
        self._namespaces: dict[str, Namespace] = {}  # immutable once created: safe to cache
        self._pgvector_version: tuple[int, ...] | None = None
        self._lexical_stats: LruCache[str, tuple[float, int, float]] = LruCache(
            STATS_CACHE_SIZE)  # see lexical_stats

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._engine.connect() as conn:
            raw = await conn.get_raw_connection()
            yield raw.driver_connection  # type: ignore[misc]

    async def pgvector_version(self) -> tuple[int, ...]:
        if self._pgvector_version is None:
            async with self._conn() as pg:
                text = await pg.fetchval(
                    "SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            self._pgvector_version = tuple(int(p) for p in (text or "0").split(".")[:3])
        return self._pgvector_version

    async def iterative_scan(self) -> bool:
        """pgvector 0.8 added ``hnsw.iterative_scan``."""
        return await self.pgvector_version() >= (0, 8)

    # --- namespaces -------------------------------------------------------------------

    async def get_namespace(self, name: str) -> Namespace | None:
        if name in self._namespaces:
            return self._namespaces[name]
        async with self._conn() as pg:
            row = await pg.fetchrow("SELECT name, embedding_model, dimension, index_name "
                                    "FROM rag_namespaces WHERE name = $1", name)
        if row is None:
            return None
        ns = Namespace(row["name"], row["embedding_model"], row["dimension"], row["index_name"])
        self._namespaces[name] = ns
        return ns

    async def create_namespace(self, name: str, embedding_model: str, dimension: int) -> Namespace:
        """Create the namespace and its partial HNSW index; returns what is stored (which
        may be another caller's earlier creation, possibly with another model)."""
        index = index_name_for(name)
        async with self._conn() as pg, pg.transaction():
            await pg.execute(
                "INSERT INTO rag_namespaces (name, embedding_model, dimension, index_name) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
                name, embedding_model, dimension, index)
            row = await pg.fetchrow("SELECT embedding_model, dimension, index_name "
                                    "FROM rag_namespaces WHERE name = $1", name)
            await pg.execute(self.index_ddl(name, row["dimension"], row["index_name"]))
        self._namespaces.pop(name, None)
        ns = await self.get_namespace(name)
        assert ns is not None
        return ns

    def index_ddl(self, namespace: str, dimension: int, index_name: str) -> str:
        return (f"CREATE INDEX IF NOT EXISTS {index_name} ON rag_chunks USING hnsw "
                f"((embedding::vector({dimension})) vector_cosine_ops) "
                f"WITH (m = {self._hnsw.m}, ef_construction = {self._hnsw.ef_construction}) "
                f"WHERE namespace = {_quote_literal(namespace)}")

    # --- documents --------------------------------------------------------------------

    async def document_checksums(self, namespace: str,
                                 ids: Sequence[str]) -> dict[str, tuple[str, int]]:
        """Stored documents among ``ids``: id → (checksum, chunk count)."""
        async with self._conn() as pg:
            rows = await pg.fetch("SELECT id, checksum, chunk_count FROM rag_documents "
                                  "WHERE namespace = $1 AND id = ANY($2::text[])",
                                  namespace, list(ids))
        return {r["id"]: (r["checksum"], r["chunk_count"]) for r in rows}

    async def replace_documents(self, namespace: str, model: str,
                                documents: Sequence[DocumentRecord]) -> None:
        """Store ``documents`` and their chunks, replacing any previous version.

        One transaction: readers see every document either entirely old or entirely new.
        """
        self._lexical_stats.pop(namespace)
        async with self._conn() as pg, pg.transaction():
            for doc in documents:
                await pg.execute(
                    "INSERT INTO rag_documents AS d (namespace, id, title, source, metadata,"
                    " checksum, chunk_count) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7) "
                    "ON CONFLICT (namespace, id) DO UPDATE SET title = EXCLUDED.title,"
                    " source = EXCLUDED.source, metadata = EXCLUDED.metadata,"
                    " checksum = EXCLUDED.checksum, chunk_count = EXCLUDED.chunk_count,"
                    " updated_at = now()",
                    namespace, doc.id, doc.title, doc.source, json.dumps(doc.metadata),
                    doc.checksum, len(doc.chunks))
                await pg.execute("DELETE FROM rag_chunks WHERE namespace = $1 "
                                 "AND document_id = $2", namespace, doc.id)
                if not doc.chunks:
                    continue
                lexical = [c.lexical or lexical_text(c.content, "") for c in doc.chunks]
                await pg.execute(
                    "INSERT INTO rag_chunks (id, namespace, document_id, position, content,"
                    " metadata, checksum, embedding_model, embedding, tsv) "
                    "SELECT u.id, $1, $2, u.position, u.content, $3::jsonb, u.checksum, $4,"
                    f" u.embedding::vector, {_WEIGHTED_TSV} "
                    "FROM unnest($5::text[], $6::int[], $7::text[], $8::text[], $9::text[],"
                    " $10::text[], $11::text[], $12::text[], $13::text[])"
                    " AS u(id, position, content, checksum, embedding, context, body,"
                    " refs, parts)",
                    namespace, doc.id, json.dumps(doc.metadata), model,
                    [c.id for c in doc.chunks], [c.position for c in doc.chunks],
                    [c.content for c in doc.chunks], [c.checksum for c in doc.chunks],
                    [vector_literal(c.embedding) for c in doc.chunks],
                    [t.context for t in lexical], [t.body for t in lexical],
                    [t.references for t in lexical], [t.identifier_parts for t in lexical])

    async def delete_documents(self, namespace: str, ids: Sequence[str]) -> tuple[int, int]:
        """(documents, chunks) deleted."""
        self._lexical_stats.pop(namespace)
        async with self._conn() as pg, pg.transaction():
            chunks = await pg.fetchval(
                "WITH gone AS (DELETE FROM rag_chunks WHERE namespace = $1 AND "
                "document_id = ANY($2::text[]) RETURNING 1) SELECT count(*) FROM gone",
                namespace, list(ids))
            docs = await pg.fetchval(
                "WITH gone AS (DELETE FROM rag_documents WHERE namespace = $1 AND "
                "id = ANY($2::text[]) RETURNING 1) SELECT count(*) FROM gone",
                namespace, list(ids))
        return int(docs), int(chunks)

    # --- search -----------------------------------------------------------------------

    async def vector_search(self, ns: Namespace, vector: np.ndarray, top_k: int,
                            filters: Filters, ef_search: int,
                            min_score: float | None) -> list[Hit]:
        """Chunks of ``ns`` by cosine similarity, best first (see the module docstring).

        With filters on pgvector < 0.8: HNSW with ef_search raised to ``top_k *
        overfetch``, finished by an exact scan of the filtered rows if the candidates
        still run out before ``top_k`` rows pass. A ``document_ids`` filter goes straight
        to exact search: the (namespace, document_id) index finds those few chunks.
        """
        # The namespace is a literal, not a parameter: the planner then matches its partial
        # index while planning, and the plan can be cached per namespace (with a parameter
        # every execution needed a custom plan, whose cost grows with the number of
        # namespaces' indexes).
        args: list[Any] = [vector_param(vector), top_k]
        where = f"c.namespace = {_quote_literal(ns.name)}" + _filter_sql(filters, args)
        dim = ns.dimension
        iterative_scans = await self.iterative_scan()
        iterative = bool(filters) and iterative_scans
        if filters and not iterative:
            ef_search = min(1000, max(ef_search, top_k * self._hnsw.overfetch))
        query = f"$1::real[]::vector({dim})"
        select = (f"SELECT {_HIT_COLUMNS}, {{order}} <=> {query} AS distance"
                  f" FROM rag_chunks c JOIN rag_documents d ON d.namespace = c.namespace"
                  f" AND d.id = c.document_id WHERE {where}"
                  f" ORDER BY {{order}} <=> {query} LIMIT $2")
        indexed = select.format(order=f"(c.embedding::vector({dim}))")
        exact = select.format(order="c.embedding")  # no index orders the uncast column
        async with self._conn() as pg:
            # Session-level settings, one round trip and no transaction: every search sets
            # them before it scans, and nothing else on these connections reads them.
            if iterative_scans:
                await pg.execute("SELECT set_config('hnsw.ef_search', $1, false),"
                                 " set_config('hnsw.iterative_scan', $2, false)",
                                 str(ef_search), "strict_order" if iterative else "off")
            else:
                await pg.execute("SELECT set_config('hnsw.ef_search', $1, false)",
                                 str(ef_search))
            if filters.document_ids:
                # A few documents' chunks, found by index: exact is cheap and exact.
                rows = await pg.fetch(exact, *args)
            else:
                rows = await pg.fetch(indexed, *args)
                if len(rows) < top_k and filters and not iterative:
                    rows = await pg.fetch(exact, *args)
        hits = [_hit(r, 1.0 - r["distance"]) for r in rows]
        if min_score is not None:
            hits = [h for h in hits if h.score >= min_score]
        return hits

    async def lexical_stats(self, namespace: str) -> tuple[int, float]:
        """(chunks, mean distinct lexemes per chunk) of a namespace, for BM25.

        Cached for ``STATS_TTL_S`` (and dropped when this process writes the namespace):
        counting 100k rows per query would cost more than the search, and BM25 barely
        moves when a few documents change. Bounded: the oldest entry goes first.
        """
        now = time.monotonic()
        cached = self._lexical_stats.get(namespace)
        if cached is not None and now - cached[0] < STATS_TTL_S:
            return cached[1], cached[2]
        async with self._conn() as pg:
            row = await pg.fetchrow("SELECT count(*) AS n, coalesce(avg(length(tsv)), 0) AS avgdl"
                                    " FROM rag_chunks WHERE namespace = $1", namespace)
        self._lexical_stats.put(namespace, (now, int(row["n"]), float(row["avgdl"])))
        return int(row["n"]), float(row["avgdl"])

    async def cosine_scores(self, ns: Namespace, vector: np.ndarray,
                            chunk_ids: Sequence[str]) -> dict[str, float]:
        """Cosine similarity of ``vector`` to each of ``chunk_ids`` (exact, by primary key):
        hybrid search fills in the vector score of chunks only the lexical side found."""
        if not chunk_ids:
            return {}
        async with self._conn() as pg:
            rows = await pg.fetch(
                "SELECT id, 1 - (embedding <=> $2::real[]::vector) AS score FROM rag_chunks"
                " WHERE namespace = $1 AND id = ANY($3::text[])",
                ns.name, vector_param(vector), list(chunk_ids))
        return {r["id"]: float(r["score"]) for r in rows}

    async def keyword_search(self, ns: Namespace, query: str, top_k: int,
                             filters: Filters, bm25: Bm25Params = Bm25Params(),
                             within: Sequence[str] = ()) -> list[Hit]:
        """Full-text search ranked by BM25 (English stemming); any query term may match.

        OR semantics because a question rarely has all its words in the answer; terms
        are taken both whole and split at ``. _ : / -``. Postgres' ``ts_rank`` has no
        inverse document frequency, so a common word counted as much as an error code;
        BM25 weighs each term by how rare it is in the namespace (document frequency by
        the GIN index, one count per query term), saturates repeated terms (k1) and
        normalises by chunk length (b, distinct lexemes as the length); each pair of
        neighbouring query words found at the same distance in the chunk adds
        ``proximity_weight`` times the pair's mean IDF (``Bm25Params``). A term's
        occurrences count by their label (server/rag/lexical.py): the chunk's title and
        heading more, cross-references less. The ``LEXICAL_CANDIDATES`` best matches by
        ``ts_rank`` are scored, which bounds the work for queries of common words.

        Scores are divided by the most a chunk could score for this query (every term,
        saturated, every pair adjacent: Σ idf·(k1+1) + w·Σ pair idf), so they fall in
        [0, 1] and mean the same from query to
        query: near 1 when the rare terms of the query are there, low when only its
        common words are. Hybrid fusion relies on that to trust the lexical side only when
        it found something specific. ``within`` limits the search to those chunks (hybrid
        search scores the vector side's chunks this way).
        """
        chunks, avgdl = await self.lexical_stats(ns.name)
        args: list[Any] = [ns.name, query, top_k, chunks, max(avgdl, 1.0), bm25.k1, bm25.b,
                           bm25.context_weight, bm25.identifier_weight, bm25.reference_weight,
                           LEXICAL_CANDIDATES, bm25.proximity_weight]
        where = "c.namespace = $1" + _filter_sql(filters, args)
        if within:
            args.append(list(within))
            where += f" AND c.id = ANY(${len(args)}::text[])"
        sql = f"""
            WITH terms AS (SELECT DISTINCT lexeme FROM unnest(tsvector_to_array(
                     to_tsvector('english', $2) || to_tsvector('english',
                         regexp_replace($2, '[._:/-]+', ' ', 'g')))) AS lexeme),
                 q AS (SELECT nullif(string_agg(quote_literal(lexeme), ' | '), '')::tsquery
                           AS query FROM terms),
                 df AS (SELECT t.lexeme, ln(1 + ($4 - n.df + 0.5) / (n.df + 0.5)) AS idf
                        FROM terms t, LATERAL (SELECT count(*) AS df FROM rag_chunks c2
                            WHERE c2.namespace = $1
                              AND c2.tsv @@ quote_literal(t.lexeme)::tsquery) n),
                 cand AS (SELECT c.id, c.tsv FROM q, rag_chunks c
                          WHERE {where} AND c.tsv @@ q.query
                          ORDER BY ts_rank(c.tsv, q.query) DESC, c.id LIMIT $11),
                 scored AS (
                     SELECT cand.id, sum(df.idf * tf.f * ($6 + 1)
                                / (tf.f + $6 * (1 - $7 + $7 * length(cand.tsv) / $5))) AS score
                     FROM cand, LATERAL (
                         SELECT u.lexeme, (SELECT sum(CASE w WHEN 'A' THEN $8 WHEN 'B' THEN $9
                                                   WHEN 'C' THEN $10 ELSE 1.0 END)
                                           FROM unnest(u.weights) AS w) AS f
                         FROM unnest(cand.tsv) AS u
                         WHERE u.lexeme IN (SELECT lexeme FROM terms)) tf
                     JOIN df ON df.lexeme = tf.lexeme
                     GROUP BY cand.id),
                 qpos AS (SELECT u.lexeme, p FROM unnest(to_tsvector('english', $2)) AS u,
                              unnest(u.positions) AS p),
                 pairs AS (SELECT (quote_literal(a) || ' <' || gap || '> ' || quote_literal(b)
                                   )::tsquery AS phrase, (da.idf + db.idf) / 2 AS idf
                           FROM (SELECT lexeme AS a, lead(lexeme) OVER w AS b,
                                        lead(p) OVER w - p AS gap
                                 FROM qpos WINDOW w AS (ORDER BY p)) x
                           JOIN df da ON da.lexeme = x.a JOIN df db ON db.lexeme = x.b
                           WHERE x.b IS NOT NULL AND x.a <> x.b),
                 near AS (SELECT s.id, s.score + $12 * coalesce(
                              (SELECT sum(pairs.idf) FROM pairs
                               WHERE cand.tsv @@ pairs.phrase), 0) AS score
                          FROM scored s JOIN cand ON cand.id = s.id),
                 best AS (SELECT * FROM near ORDER BY score DESC, id LIMIT $3)
            SELECT {_HIT_COLUMNS},
                   s.score / ((SELECT sum(idf) * ($6 + 1) FROM df)
                              + $12 * (SELECT coalesce(sum(idf), 0) FROM pairs)) AS score
            FROM best s
            JOIN rag_chunks c ON c.id = s.id
            JOIN rag_documents d ON d.namespace = c.namespace AND d.id = c.document_id
            ORDER BY s.score DESC, c.id"""
        async with self._conn() as pg:
            rows = await pg.fetch(sql, *args)
        return [_hit(r, r["score"]) for r in rows]
