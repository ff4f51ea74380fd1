"""What a search asks for, checked before any I/O: the domain side of Retrieve and of a
grounded Generate's ``retrieval`` section.

Transport code turns its message into ``SearchOptions`` (plain values) and calls
``violations`` — which reports every bad field at once, named as the caller spelt it
(``prefix`` is ``"retrieval."`` inside a Generate request) — then ``to_request``. Keeping
the rules here means a grounded Generate and a Retrieve can never disagree about them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from server.kernel.config import RagConfig
from server.kernel.errors import FieldViolation
from server.rag.namespaces import namespace_problem
from server.rag.retrieve import Mode, SearchRequest
from server.rag.store import Filters

MAX_QUERY_CHARS = 8000
MAX_FILTERS = 16
MAX_FILTER_VALUES = 100
MAX_DOCUMENT_IDS = 1000


@dataclass(frozen=True)
class SearchOptions:
    """A search as the caller gave it. ``mode`` is None when the caller named a mode this
    gateway does not know (reported, not silently replaced)."""

    namespace: str
    top_k: int = 0
    min_score: float = 0.0
    filters: tuple[tuple[str, tuple[str, ...]], ...] = ()
    document_ids: tuple[str, ...] = ()
    mode: Mode | None = Mode.VECTOR
    ef_search: int = 0
    query: str = ""
    vector: tuple[float, ...] = ()

    def violations(self, config: RagConfig, prefix: str = "", *,
                   query_known: bool = True) -> list[FieldViolation]:
        """Every bad field. ``query_known=False`` when the query text is decided later
        (a grounded Generate searches for its last user message, which a template may add)."""
        bad: list[FieldViolation] = []
        if (problem := namespace_problem(self.namespace)) is not None:
            bad.append(FieldViolation(prefix + "namespace", problem))
        if self.mode is None:
            bad.append(FieldViolation(prefix + "mode", "unknown search mode"))
        if query_known:
            bad.extend(self._query_violations(prefix))
        if not 0 <= self.top_k <= config.max_top_k:
            bad.append(FieldViolation(prefix + "top_k", f"must be between 1 and "
                                      f"{config.max_top_k} (0 uses the default)"))
        if not -1.0 <= self.min_score <= 1.0:  # also refuses NaN
            bad.append(FieldViolation(prefix + "min_score", "must be in [-1, 1]"))
        if self.ef_search and not config.ef_search_min <= self.ef_search <= config.ef_search_max:
            bad.append(FieldViolation(prefix + "ef_search", f"must be between "
                                      f"{config.ef_search_min} and {config.ef_search_max} "
                                      "(0 uses the default)"))
        if len(self.filters) > MAX_FILTERS:
            bad.append(FieldViolation(prefix + "filters", f"at most {MAX_FILTERS} filters"))
        for i, (key, values) in enumerate(self.filters[:MAX_FILTERS]):
            if not key:
                bad.append(FieldViolation(f"{prefix}filters[{i}].key", "must not be empty"))
            if not values or len(values) > MAX_FILTER_VALUES:
                bad.append(FieldViolation(f"{prefix}filters[{i}].values",
                                          f"give 1 to {MAX_FILTER_VALUES} values"))
        if len(self.document_ids) > MAX_DOCUMENT_IDS:
            bad.append(FieldViolation(prefix + "document_ids",
                                      f"at most {MAX_DOCUMENT_IDS} ids"))
        elif any(not d for d in self.document_ids):
            bad.append(FieldViolation(prefix + "document_ids", "ids must not be empty"))
        return bad

    def _query_violations(self, prefix: str) -> list[FieldViolation]:
        bad: list[FieldViolation] = []
        if self.vector and self.query:
            bad.append(FieldViolation(prefix + "vector", "give either query or vector, not both"))
        if not self.vector and not self.query.strip():
            bad.append(FieldViolation(prefix + "query", "must not be empty (or give vector)"))
        if self.vector and self.mode not in (Mode.VECTOR, None):
            bad.append(FieldViolation(prefix + "vector", "only vector mode searches by vector"))
        if len(self.query) > MAX_QUERY_CHARS:
            bad.append(FieldViolation(prefix + "query", f"at most {MAX_QUERY_CHARS} characters"))
        return bad

    def to_request(self, config: RagConfig, prefix: str = "",
                   query: str | None = None) -> SearchRequest:
        """The store's request, with the configured defaults filled in (call after
        ``violations`` found nothing). ``query`` replaces the query decided later."""
        return SearchRequest(
            namespace=self.namespace, query=self.query if query is None else query,
            vector=self.vector, top_k=self.top_k or config.default_top_k,
            ef_search=self.ef_search or config.ef_search_default,
            min_score=self.min_score or None,
            filters=Filters(self.filters, self.document_ids), mode=self.mode or Mode.VECTOR,
            field_prefix=prefix)

    def query_violations(self, query: str, prefix: str = "") -> list[FieldViolation]:
        """The query checks alone, for a query decided after parsing."""
        return replace(self, query=query)._query_violations(prefix)

