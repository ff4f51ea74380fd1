"""RetrievalService: Retrieve, IngestDocuments, DeleteDocuments.

Thin: translate protobuf to ``server.rag`` values, validate them (every bad field named,
all at once; the search rules are the domain's, ``server/rag/search_options.py``, shared
with grounded Generate), call the domain, translate back.
"""

from __future__ import annotations

from dataclasses import replace

import grpc
from google.protobuf import json_format
from llmgateway.v1 import retrieval_pb2 as pb
from llmgateway.v1 import retrieval_pb2_grpc as pb_grpc

from server import wire
from server.kernel.config import RagConfig
from server.kernel.errors import FieldViolation, invalid_argument
from server.kernel.tenancy import TenantClaims
from server.rag.chunking import ChunkingParams
from server.rag.ingest import DocumentInput, Ingestor, Outcome
from server.rag.namespaces import namespace_problem
from server.rag.retrieve import Retriever
from server.rag.store import Hit

MAX_ID = 256

_OUTCOMES = {Outcome.CREATED: pb.INGEST_OUTCOME_CREATED, Outcome.UPDATED: pb.INGEST_OUTCOME_UPDATED,
             Outcome.UNCHANGED: pb.INGEST_OUTCOME_UNCHANGED}


def _check_namespace(namespace: str, path: str, bad: list[FieldViolation]) -> None:
    if (problem := namespace_problem(namespace)) is not None:
        bad.append(FieldViolation(path, problem))


def chunk_message(hit: Hit) -> pb.RetrievedChunk:
    return pb.RetrievedChunk(chunk_id=hit.chunk_id, document_id=hit.document_id,
                             title=hit.title, source=hit.source, content=hit.content,
                             score=hit.score, metadata=wire.struct(hit.metadata),
                             position=hit.position)


class RetrievalService(pb_grpc.RetrievalServiceServicer):
    def __init__(self, config: RagConfig, retriever: Retriever, ingestor: Ingestor,
                 tenants: TenantClaims = TenantClaims()) -> None:
        self._config = config
        self._retriever = retriever
        self._ingestor = ingestor
        self._tenants = tenants

    def _own(self, namespace: str) -> str:
        """The caller's tenant's namespace: another tenant's is never found."""
        return wire.current_tenant(self._tenants).own(namespace, "namespace")

    async def Retrieve(self, request: pb.RetrieveRequest,
                       context: grpc.aio.ServicerContext) -> pb.RetrieveResponse:
        options = wire.search_options(
            namespace=request.namespace, query=request.query, vector=request.vector,
            top_k=request.top_k, min_score=request.min_score, filters=request.filters,
            document_ids=request.document_ids, mode=request.mode, ef_search=request.ef_search)
        if bad := options.violations(self._config):
            raise invalid_argument(bad)
        options = replace(options, namespace=self._own(options.namespace))
        result = await self._retriever.search(options.to_request(self._config))
        return pb.RetrieveResponse(chunks=[chunk_message(h) for h in result.hits],
                                   embedding_model=result.embedding_model,
                                   embedding_time=wire.duration(result.embedding_s),
                                   search_time=wire.duration(result.search_s))

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
                                      metadata=wire.plain(json_format.MessageToDict(d.metadata))))
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
        outcomes, model = await self._ingestor.ingest(self._own(request.namespace), docs, params,
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
        docs, chunks = await self._ingestor.delete(self._own(request.namespace),
                                                   request.document_ids)
        return pb.DeleteDocumentsResponse(deleted_documents=docs, deleted_chunks=chunks)
