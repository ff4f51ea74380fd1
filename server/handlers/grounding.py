"""Grounded Generate: retrieve for the last user message, put the labelled context in
the system instruction, and produce the ``Citation`` messages for the response.

Kept out of ``generation.py`` so that handler only calls ``Grounder.ground`` and copies
the citations; the context rules themselves are in ``server/rag/grounding.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from llmgateway.v1 import generation_pb2 as pb

from server.config import RagConfig
from server.errors import FieldViolation, invalid_argument
from server.handlers.generation_requests import GenerationRequest, ParsedRequest
from server.handlers.retrieval import parse_search
from server.rag.grounding import build_context
from server.rag.retrieve import Retriever


@dataclass(frozen=True)
class Grounded:
    parsed: ParsedRequest
    citations: list[pb.Citation]

    @property
    def chunk_ids(self) -> list[str]:
        """For the usage record: which chunks grounded the answer (auditable later)."""
        return [c.chunk_id for c in self.citations]


class Grounder:
    def __init__(self, config: RagConfig, retriever: Retriever) -> None:
        self._config = config
        self._retriever = retriever

    def _query(self, parsed: ParsedRequest) -> str:
        for message in reversed(parsed.provider_request.messages):
            if message.role == "user":
                return message.content
        raise invalid_argument([FieldViolation(
            "messages", "a grounded request needs a user message to search for")])

    async def ground(self, request: GenerationRequest, parsed: ParsedRequest) -> Grounded:
        """``parsed`` unchanged when the request has no ``retrieval`` section."""
        if not request.HasField("retrieval"):
            return Grounded(parsed, [])
        options = request.retrieval
        budget = options.max_context_tokens or self._config.context_token_budget
        if not 0 <= options.max_context_tokens <= self._config.max_context_tokens:
            raise invalid_argument([FieldViolation(
                "retrieval.max_context_tokens",
                f"must be between 1 and {self._config.max_context_tokens} (0 uses the default)")])
        search = parse_search(namespace=options.namespace, query=self._query(parsed), vector=(),
                              top_k=options.top_k, min_score=options.min_score,
                              filters=options.filters, document_ids=options.document_ids,
                              mode=options.mode, ef_search=0, config=self._config,
                              prefix="retrieval.")
        result = await self._retriever.search(search)
        context = build_context(result.hits, budget)
        system = "\n\n".join(part for part in (parsed.provider_request.system,
                                               context.system_text) if part)
        grounded = replace(parsed, provider_request=replace(parsed.provider_request,
                                                            system=system))
        citations = [pb.Citation(chunk_id=u.hit.chunk_id, document_id=u.hit.document_id,
                                 title=u.hit.title, label=u.label, score=u.hit.score)
                     for u in context.used]
        return Grounded(grounded, citations)
