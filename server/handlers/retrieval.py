"""RetrievalService: Retrieve, IngestDocuments, DeleteDocuments.

Thin: validate and translate protobuf to ``server.rag`` values (every bad field named,
all at once), call the domain, translate back. ``parse_search`` is shared with grounded
Generate, whose fields live under ``retrieval.``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import grpc
from google.protobuf import duration_pb2, json_format, struct_pb2
from llmgateway.v1 import generation_pb2 as gen_pb
from llmgateway.v1 import retrieval_pb2 as pb
from llmgateway.v1 import retrieval_pb2_grpc as pb_grpc

from server.config import RagConfig
from server.errors import FieldViolation, invalid_argument
from server.rag.chunking import ChunkingParams
from server.rag.ingest import DocumentInput, Ingestor, Outcome
from server.rag.retrieve import Mode, Retriever, SearchRequest
from server.rag.store import Filters, Hit

NAMESPACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,127}$")
MAX_ID = 256
MAX_QUERY_CHARS = 8000
MAX_FILTERS = 16
MAX_FILTER_VALUES = 100

_MODES = {gen_pb.SEARCH_MODE_UNSPECIFIED: Mode.VECTOR, gen_pb.SEARCH_MODE_VECTOR: Mode.VECTOR,
          gen_pb.SEARCH_MODE_KEYWORD: Mode.KEYWORD, gen_pb.SEARCH_MODE_HYBRID: Mode.HYBRID}
_OUTCOMES = {Outcome.CREATED: pb.INGEST_OUTCOME_CREATED, Outcome.UPDATED: pb.INGEST_OUTCOME_UPDATED,
             Outcome.UNCHANGED: pb.INGEST_OUTCOME_UNCHANGED}


def _check_namespace(namespace: str, path: str, bad: list[FieldViolation]) -> None:
    if not namespace:
        bad.append(FieldViolation(path, "is required"))
    elif not NAMESPACE_RE.match(namespace):
        bad.append(FieldViolation(path, "1-128 characters: letters, digits and _ . : @ / - "
                                  "(starting with a letter or digit)"))


def _plain(value: Any) -> Any:
    """Struct numbers are doubles; store 3 as 3 (not 3.0) so filters on "3" match."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def parse_search(*, namespace: str, query: str, vector: Sequence[float], top_k: int,
                 min_score: float, filters: Iterable[gen_pb.MetadataFilter],
                 document_ids: Sequence[str], mode: int, ef_search: int, config: RagConfig,
                 prefix: str = "") -> SearchRequest:
    """Validate the search fields (as RetrieveRequest or RetrievalOptions spell them)."""
    bad: list[FieldViolation] = []
    _check_namespace(namespace, prefix + "namespace", bad)
    if mode not in _MODES:
        bad.append(FieldViolation(prefix + "mode", f"unknown search mode {mode}"))
    search_mode = _MODES.get(mode, Mode.VECTOR)
    if vector and query:
        bad.append(FieldViolation(prefix + "vector", "give either query or vector, not both"))
    if not vector and not query.strip():
        bad.append(FieldViolation(prefix + "query", "must not be empty (or give vector)"))
    if vector and search_mode is not Mode.VECTOR:
        bad.append(FieldViolation(prefix + "vector", "only vector mode searches by vector"))
    if len(query) > MAX_QUERY_CHARS:
        bad.append(FieldViolation(prefix + "query", f"at most {MAX_QUERY_CHARS} characters"))
    if top_k < 0 or top_k > config.max_top_k:
        bad.append(FieldViolation(prefix + "top_k", f"must be between 1 and {config.max_top_k}"
                                  " (0 uses the default)"))
    if not -1.0 <= min_score <= 1.0:
        bad.append(FieldViolation(prefix + "min_score", "must be in [-1, 1]"))
    if ef_search and not config.ef_search_min <= ef_search <= config.ef_search_max:
        bad.append(FieldViolation(prefix + "ef_search", f"must be between {config.ef_search_min}"
                                  f" and {config.ef_search_max} (0 uses the default)"))
    metadata: list[tuple[str, tuple[str, ...]]] = []
    filters = list(filters)
    if len(filters) > MAX_FILTERS:
        bad.append(FieldViolation(prefix + "filters", f"at most {MAX_FILTERS} filters"))
    for i, f in enumerate(filters):
        if not f.key:
            bad.append(FieldViolation(f"{prefix}filters[{i}].key", "must not be empty"))
        if not f.values or len(f.values) > MAX_FILTER_VALUES:
            bad.append(FieldViolation(f"{prefix}filters[{i}].values",
                                      f"give 1 to {MAX_FILTER_VALUES} values"))
        metadata.append((f.key, tuple(f.values)))
    if any(not d for d in document_ids):
        bad.append(FieldViolation(prefix + "document_ids", "ids must not be empty"))
    if bad:
        raise invalid_argument(bad)
    return SearchRequest(
        namespace=namespace, query=query, vector=tuple(vector),
        top_k=top_k or config.default_top_k, ef_search=ef_search or config.ef_search_default,
        min_score=min_score or None,
        filters=Filters(tuple(metadata), tuple(document_ids)), mode=search_mode,
        field_prefix=prefix)


def _duration(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromNanoseconds(int(seconds * 1e9))
    return value


def _struct(data: dict[str, Any]) -> struct_pb2.Struct:
    value = struct_pb2.Struct()
    value.update(data)
    return value


def chunk_message(hit: Hit) -> pb.RetrievedChunk:
    return pb.RetrievedChunk(chunk_id=hit.chunk_id, document_id=hit.document_id,
                             title=hit.title, source=hit.source, content=hit.content,
                             score=hit.score, metadata=_struct(hit.metadata),
                             position=hit.position)


class RetrievalService(pb_grpc.RetrievalServiceServicer):
    def __init__(self, config: RagConfig, retriever: Retriever, ingestor: Ingestor) -> None:
        self._config = config
        self._retriever = retriever
        self._ingestor = ingestor

    async def Retrieve(self, request: pb.RetrieveRequest,
                       context: grpc.aio.ServicerContext) -> pb.RetrieveResponse:
        search = parse_search(namespace=request.namespace, query=request.query,
                              vector=request.vector, top_k=request.top_k,
                              min_score=request.min_score, filters=request.filters,
                              document_ids=request.document_ids, mode=request.mode,
                              ef_search=request.ef_search, config=self._config)
        result = await self._retriever.search(search)
        return pb.RetrieveResponse(chunks=[chunk_message(h) for h in result.hits],
                                   embedding_model=result.embedding_model,
                                   embedding_time=_duration(result.embedding_s),
                                   search_time=_duration(result.search_s))

    def _parse_ingest(self, request: pb.IngestDocumentsRequest
                      ) -> tuple[list[DocumentInput], ChunkingParams]:
        cfg = self._config
        bad: list[FieldViolation] = []
        _check_namespace(request.namespace, "namespace", bad)
        if not request.documents or len(request.documents) > cfg.max_documents_per_call:
            bad.append(FieldViolation("documents", f"give 1 to {cfg.max_documents_per_call} "
                                      "documents per call"))
        seen: set[str] = set()
        docs = []
        for i, d in enumerate(request.documents):
            if not d.id or len(d.id) > MAX_ID:
                bad.append(FieldViolation(f"documents[{i}].id", f"1 to {MAX_ID} characters"))
            elif d.id in seen:
                bad.append(FieldViolation(f"documents[{i}].id", f"duplicate id {d.id[:40]!r}"))
            seen.add(d.id)
            if not d.text.strip():
                bad.append(FieldViolation(f"documents[{i}].text", "must not be empty"))
            elif len(d.text.encode()) > cfg.max_document_bytes:
                bad.append(FieldViolation(f"documents[{i}].text",
                                          f"at most {cfg.max_document_bytes} bytes"))
            docs.append(DocumentInput(id=d.id, text=d.text, title=d.title, source=d.source,
                                      metadata=_plain(json_format.MessageToDict(d.metadata))))
        size = request.chunking.chunk_size or cfg.chunk_size
        overlap = request.chunking.chunk_overlap if request.HasField("chunking") \
            else cfg.chunk_overlap
        if request.chunking.chunk_size and not 100 <= size <= 8000:
            bad.append(FieldViolation("chunking.chunk_size", "must be between 100 and 8000"))
        elif not 0 <= overlap < size:
            bad.append(FieldViolation("chunking.chunk_overlap",
                                      f"must be at least 0 and smaller than chunk_size ({size})"))
        if bad:
            raise invalid_argument(bad)
        return docs, ChunkingParams(size, overlap)

    async def IngestDocuments(self, request: pb.IngestDocumentsRequest,
                              context: grpc.aio.ServicerContext) -> pb.IngestDocumentsResponse:
        docs, params = self._parse_ingest(request)
        outcomes, model = await self._ingestor.ingest(request.namespace, docs, params,
                                                      request.embedding_model or None)
        return pb.IngestDocumentsResponse(
            results=[pb.DocumentResult(document_id=o.document_id, outcome=_OUTCOMES[o.outcome],
                                       chunk_count=o.chunk_count) for o in outcomes],
            embedding_model=model)

    async def DeleteDocuments(self, request: pb.DeleteDocumentsRequest,
                              context: grpc.aio.ServicerContext) -> pb.DeleteDocumentsResponse:
        bad: list[FieldViolation] = []
        _check_namespace(request.namespace, "namespace", bad)
        if not request.document_ids:
            bad.append(FieldViolation("document_ids", "at least one document id"))
        if any(not d for d in request.document_ids):
            bad.append(FieldViolation("document_ids", "ids must not be empty"))
        if bad:
            raise invalid_argument(bad)
        docs, chunks = await self._ingestor.delete(request.namespace, request.document_ids)
        return pb.DeleteDocumentsResponse(deleted_documents=docs, deleted_chunks=chunks)
