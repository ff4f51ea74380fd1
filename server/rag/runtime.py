"""Build the retrieval parts of one gateway process from its ``rag`` configuration."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from server.kernel.config import RagConfig
from server.rag.embedders import EmbedderSet, local_embedders
from server.rag.ingest import Ingestor
from server.rag.retrieve import HybridWeights, Retriever
from server.rag.store import HnswSettings, RagStore


@dataclass(frozen=True)
class RagRuntime:
    embedders: EmbedderSet
    store: RagStore
    retriever: Retriever
    ingestor: Ingestor

    @classmethod
    def from_config(cls, config: RagConfig, engine: AsyncEngine,
                    embedders: EmbedderSet | None = None) -> RagRuntime:
        """``embedders``: every embedder the process may use (the app builds the set with
        its vendor embedders, see ``server.providers.registry.build_embedders``); only the
        local model when none is given."""
        embedders = embedders or local_embedders(config.embed_batch_size, config.embedder_threads)
        if config.embedder not in embedders.names:
            raise ValueError(f"rag.embedder: unknown embedder {config.embedder!r}; "
                             f"known: {', '.join(embedders.names)}")
        embedders.default = config.embedder
        store = RagStore(engine, HnswSettings(config.hnsw_m, config.hnsw_ef_construction,
                                              config.filter_overfetch))
        hybrid = HybridWeights(**config.hybrid.model_dump())
        retriever = Retriever(store, embedders, hybrid, config.query_cache_size)
        return cls(embedders, store, retriever, Ingestor(store, embedders))
