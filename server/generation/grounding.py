"""Grounded Generate: retrieve for the last user message and put the labelled context in
the system instruction; the chunks used come back as domain ``Citation`` values.

The context rules (labels, token limit) are in ``server/rag/grounding.py``; this module
only decides what to search for and where the context goes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from server.kernel.config import RagConfig
from server.kernel.errors import FieldViolation, invalid_argument
from server.generation.call import RetrievalRequest
from server.generation.presets import Prepared
from server.rag.grounding import build_context
from server.rag.retrieve import Retriever

PREFIX = "retrieval."


@dataclass(frozen=True)
class Citation:
    """One chunk the answer was grounded in, with the label the model cites it by."""

    chunk_id: str
    document_id: str
    title: str
    label: str
    score: float


@dataclass(frozen=True)
class Grounding:
    prepared: Prepared
    citations: tuple[Citation, ...] = ()

    @property
    def chunk_ids(self) -> tuple[str, ...]:
        """For the usage record: which chunks grounded the answer (auditable later)."""
        return tuple(c.chunk_id for c in self.citations)


class Grounder:
    def __init__(self, config: RagConfig, retriever: Retriever) -> None:
        self._config = config
        self._retriever = retriever

    async def ground(self, retrieval: RetrievalRequest, prepared: Prepared) -> Grounding:
        query = prepared.last_user_message()
        if query is None:
            raise invalid_argument([FieldViolation(
                "messages", "a grounded request needs a user message to search for")])
        if bad := retrieval.search.query_violations(query, PREFIX):
            raise invalid_argument(bad)
        result = await self._retriever.search(
            retrieval.search.to_request(self._config, PREFIX, query=query))
        max_tokens = retrieval.max_context_tokens or self._config.default_context_tokens
        context = build_context(result.hits, max_tokens)
        system = "\n\n".join(part for part in (prepared.request.system, context.system_text)
                             if part)
        grounded = replace(prepared, request=replace(prepared.request, system=system))
        return Grounding(grounded, tuple(
            Citation(u.hit.chunk_id, u.hit.document_id, u.hit.title, u.label, u.hit.score)
            for u in context.used))
