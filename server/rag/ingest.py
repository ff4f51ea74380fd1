"""Ingestion: chunk, embed, store; unchanged documents are skipped by checksum.

Each chunk is embedded and indexed with its context (document title and section
heading, server/rag/lexical.py) while its stored content, the citable text, stays as
written. Embedding happens before the write transaction (it is the slow part), so the transaction
that swaps a document's chunks stays short; readers see either version whole.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from server.kernel.tenancy import local_name
from server.kernel.errors import Fault, FieldViolation, GatewayError, bad_field, invalid_argument
from server.rag.chunking import ChunkingParams, split_text
from server.rag.embedders import EmbedderSet, UnknownEmbedder
from server.rag.lexical import chunk_contexts, embedding_input, lexical_text
from server.rag.store import ChunkRecord, DocumentRecord, Namespace, RagStore


class Outcome(Enum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class DocumentInput:
    id: str
    text: str
    title: str = ""
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DocumentOutcome:
    document_id: str
    outcome: Outcome
    chunk_count: int


# Bumped when the way chunks are embedded or indexed changes, so re-ingesting an
# unchanged document rebuilds it. 2: chunks embedded and indexed with their context.
CHUNK_FORMAT = 2


def document_checksum(doc: DocumentInput, params: ChunkingParams, model: str) -> str:
    """SHA-256 of everything that shapes the stored chunks: same checksum → no work."""
    canonical = json.dumps([doc.title, doc.source, doc.text, doc.metadata, params.size,
                            params.overlap, model, CHUNK_FORMAT],
                           sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def chunk_id(namespace: str, document_id: str, checksum: str, position: int) -> str:
    """Stable while the document is unchanged; a new version gets new ids (auditable)."""
    key = f"{namespace}\x00{document_id}\x00{checksum}\x00{position}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class Ingestor:
    def __init__(self, store: RagStore, embedders: EmbedderSet) -> None:
        self._store = store
        self._embedders = embedders

    async def namespace_for_write(self, namespace: str, model: str | None) -> Namespace:
        """The namespace, created with ``model`` (or the default) on first use; a
        different model than the namespace's is refused (a namespace never mixes)."""
        existing = await self._store.get_namespace(namespace)
        if existing is not None:
            if model and model != existing.embedding_model:
                raise self._model_mismatch(namespace, existing.embedding_model, model)
            return existing
        name = model or self._embedders.default
        try:
            embedder = self._embedders.get(name)
        except UnknownEmbedder:
            raise bad_field("embedding_model", f"unknown embedding model {name!r}; known: "
                            f"{', '.join(self._embedders.names)}") from None
        created = await self._store.create_namespace(namespace, embedder.name, embedder.dimension)
        if created.embedding_model != embedder.name:  # lost a creation race
            raise self._model_mismatch(namespace, created.embedding_model, embedder.name)
        return created

    @staticmethod
    def _model_mismatch(namespace: str, stored: str, asked: str) -> GatewayError:
        return invalid_argument([FieldViolation(
            "embedding_model", f"namespace {namespace!r} uses {stored!r}; it cannot mix in "
            f"{asked!r} (use another namespace)")])

    async def ingest(self, namespace: str, documents: Sequence[DocumentInput],
                     params: ChunkingParams, model: str | None = None
                     ) -> tuple[list[DocumentOutcome], str]:
        ns = await self.namespace_for_write(namespace, model)
        embedder = self._embedders.get(ns.embedding_model)
        checksums = {d.id: document_checksum(d, params, ns.embedding_model) for d in documents}
        stored = await self._store.document_checksums(namespace, [d.id for d in documents])
        outcomes: dict[str, DocumentOutcome] = {}
        pending: list[tuple[DocumentInput, list[str], list[str]]] = []
        for doc in documents:
            if doc.id in stored and stored[doc.id][0] == checksums[doc.id]:
                outcomes[doc.id] = DocumentOutcome(doc.id, Outcome.UNCHANGED, stored[doc.id][1])
            else:
                chunks = split_text(doc.text, params)
                pending.append((doc, chunks, chunk_contexts(doc.title, doc.text, chunks)))
        texts = [embedding_input(context, text) for _, chunks, contexts in pending
                 for text, context in zip(chunks, contexts)]
        vectors = await embedder.embed(texts) if texts else []
        records: list[DocumentRecord] = []
        offset = 0
        for doc, chunks, contexts in pending:
            checksum = checksums[doc.id]
            records.append(DocumentRecord(
                id=doc.id, title=doc.title, source=doc.source, metadata=doc.metadata,
                checksum=checksum,
                chunks=[ChunkRecord(id=chunk_id(namespace, doc.id, checksum, i), position=i,
                                    content=text,
                                    checksum=hashlib.sha256(text.encode()).hexdigest(),
                                    embedding=vectors[offset + i],
                                    lexical=lexical_text(text, contexts[i]))
                        for i, text in enumerate(chunks)]))
            offset += len(chunks)
            outcomes[doc.id] = DocumentOutcome(
                doc.id, Outcome.UPDATED if doc.id in stored else Outcome.CREATED, len(chunks))
        if records:
            await self._store.replace_documents(namespace, ns.embedding_model, records)
        return [outcomes[d.id] for d in documents], ns.embedding_model

    async def delete(self, namespace: str, document_ids: Sequence[str]) -> tuple[int, int]:
        if await self._store.get_namespace(namespace) is None:
            raise namespace_not_found(namespace)
        return await self._store.delete_documents(namespace, document_ids)


def namespace_not_found(namespace: str, field_path: str = "namespace") -> GatewayError:
    namespace = local_name(namespace)  # the caller's name, never the stored (tenant) form
    return GatewayError(Fault.NOT_FOUND, "NAMESPACE_NOT_FOUND",
                        f"{field_path}: namespace {namespace!r} does not exist (ingest into it first)",
                        metadata={"namespace": namespace, "field": field_path})
