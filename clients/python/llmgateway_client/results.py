"""Turn protobuf responses into the typed results of `types.py`.

Shared by the async and the sync client. Enums become lower-case names without their
prefix ("FINISH_REASON_STOP" -> "stop"), durations become float seconds, timestamps
become aware UTC datetimes and Structs become dicts.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from google.protobuf import duration_pb2, json_format, struct_pb2, timestamp_pb2
from google.protobuf.descriptor import EnumDescriptor
from llmgateway.v1 import billing_pb2, generation_pb2, retrieval_pb2

from .metadata import TRACE_ID_KEY, MetadataPairs, first_text
from .types import (
    Attempt,
    ChargeResult,
    ChargeSummary,
    Citation,
    CreditResult,
    DeleteResult,
    DocumentResult,
    EmbedResult,
    GenerateResult,
    IngestResult,
    ModelInfo,
    ModelList,
    PromptRef,
    RefundResult,
    RetrievedChunk,
    RetrieveResult,
    StreamFinished,
    StreamStarted,
    Target,
    TextChunk,
    ToolCall,
    ToolCallChunk,
    Transaction,
    TransactionList,
    Usage,
    Wallet,
)

__all__ = [
    "StreamAssembler",
    "parse_charge_response",
    "parse_credit_wallet_response",
    "parse_delete_documents_response",
    "parse_embed_response",
    "parse_generate_response",
    "parse_ingest_documents_response",
    "parse_list_models_response",
    "parse_list_transactions_response",
    "parse_refund_response",
    "parse_retrieve_response",
    "parse_wallet",
]


# --- small conversions ------------------------------------------------------------------


def enum_label(enum: EnumDescriptor, value: int, prefix: str) -> str:
    """FINISH_REASON_STOP -> "stop"; a value newer than this client -> "unknown"."""
    known = enum.values_by_number.get(value)
    if known is None:
        return "unknown"
    return known.name.removeprefix(prefix).lower()


def seconds(duration: duration_pb2.Duration) -> float:
    return duration.seconds + duration.nanos / 1e9


def _datetime(message: Any, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    stamp: timestamp_pb2.Timestamp = getattr(message, field)
    return stamp.ToDatetime(tzinfo=UTC)


def _struct_dict(message: Any, field: str) -> dict[str, Any]:
    if not message.HasField(field):
        return {}
    struct: struct_pb2.Struct = getattr(message, field)
    return json_format.MessageToDict(struct)


def _target(message: Any, field: str) -> Target | None:
    if not message.HasField(field):
        return None
    return target_from_proto(getattr(message, field))


def target_from_proto(target: generation_pb2.Target) -> Target:
    return Target(provider=target.provider, model=target.model, region=target.region)


def _usage(usage: generation_pb2.Usage) -> Usage:
    return Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_input_tokens=usage.cached_input_tokens,
        cache_write_tokens=usage.cache_write_tokens,
    )


def _attempts(attempts: Iterable[generation_pb2.Attempt]) -> tuple[Attempt, ...]:
    return tuple(
        Attempt(
            target=_target(attempt, "target"),
            outcome=enum_label(
                generation_pb2.AttemptOutcome.DESCRIPTOR, attempt.outcome, "ATTEMPT_OUTCOME_"
            ),
            error_reason=attempt.error_reason,
            error_message=attempt.error_message,
            latency_s=seconds(attempt.latency),
            retry=attempt.retry,
        )
        for attempt in attempts
    )


def _citations(citations: Iterable[generation_pb2.Citation]) -> tuple[Citation, ...]:
    return tuple(
        Citation(
            chunk_id=citation.chunk_id,
            document_id=citation.document_id,
            title=citation.title,
            label=citation.label,
            score=citation.score,
        )
        for citation in citations
    )


def _charge(message: Any) -> ChargeSummary | None:
    if not message.HasField("charge"):
        return None
    charge: generation_pb2.ChargeSummary = message.charge
    return ChargeSummary(
        transaction_id=charge.transaction_id,
        amount_micros=charge.amount_micros,
        currency_code=charge.currency_code,
        balance_after_micros=charge.balance_after_micros,
        replayed=charge.replayed,
    )


def _prompt(message: Any) -> PromptRef | None:
    if not message.HasField("prompt"):
        return None
    return PromptRef(key=message.prompt.key, version=message.prompt.version)


def _finish_reason(value: int) -> str:
    return enum_label(generation_pb2.FinishReason.DESCRIPTOR, value, "FINISH_REASON_")


def _tool_calls(calls: Iterable[generation_pb2.ToolCall]) -> tuple[ToolCall, ...]:
    return tuple(ToolCall(id=call.id, name=call.name, arguments=call.arguments) for call in calls)


# --- generation -------------------------------------------------------------------------


def parse_generate_response(
    response: generation_pb2.GenerateResponse, trailers: MetadataPairs | None = None
) -> GenerateResult:
    """The trace id comes from the response, else from the `x-trace-id` trailer."""
    return GenerateResult(
        text=response.text,
        finish_reason=_finish_reason(response.finish_reason),
        usage=_usage(response.usage),
        served_by=_target(response, "served_by"),
        attempts=_attempts(response.attempts),
        citations=_citations(response.citations),
        charge=_charge(response),
        trace_id=response.trace_id or first_text(trailers, TRACE_ID_KEY),
        prompt=_prompt(response),
        latency_s=seconds(response.latency),
        raw=response,
        tool_calls=_tool_calls(response.tool_calls),
    )


class _PendingCall:
    """A tool call being streamed: its id and name, and the argument pieces so far."""

    def __init__(self, call_id: str, name: str) -> None:
        self.id, self.name = call_id, name
        self.arguments: list[str] = []


class StreamAssembler:
    """Turns the events of one StreamGenerate call into typed events.

    `start`, `delta` and `tool_call` events are translated as they arrive. The `end`
    event is held back until the call has closed, because only then are the trailers
    (the trace id fallback) known; `finish()` builds the final `StreamFinished` with the
    whole text and the tool calls.
    """

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._calls: dict[int, _PendingCall] = {}
        self._started: StreamStarted | None = None
        self._end: generation_pb2.StreamEnd | None = None
        self.received_any = False

    @property
    def has_end(self) -> bool:
        return self._end is not None

    def feed(
        self, response: generation_pb2.StreamGenerateResponse
    ) -> StreamStarted | TextChunk | ToolCallChunk | None:
        """The typed event to hand to the caller now, or None (the held `end`)."""
        self.received_any = True
        kind = response.WhichOneof("event")
        if kind == "start":
            start = response.start
            self._started = StreamStarted(
                served_by=_target(start, "served_by"),
                trace_id=start.trace_id,
                attempts=_attempts(start.attempts),
                raw=start,
            )
            return self._started
        if kind == "delta":
            self._parts.append(response.delta.text)
            return TextChunk(text=response.delta.text)
        if kind == "tool_call":
            piece = response.tool_call
            pending = self._calls.setdefault(piece.index, _PendingCall(piece.id, piece.name))
            pending.arguments.append(piece.arguments_delta)
            return ToolCallChunk(
                index=piece.index,
                id=piece.id,
                name=piece.name,
                arguments_delta=piece.arguments_delta,
            )
        if kind == "end":
            self._end = response.end
        return None  # `end`, or an event type newer than this client

    def finish(self, trailers: MetadataPairs | None = None) -> StreamFinished:
        """The last event; without an `end` event the fields say only what is known."""
        end = self._end if self._end is not None else generation_pb2.StreamEnd()
        started = self._started
        served_by = _target(end, "served_by") or (started.served_by if started else None)
        trace_id = (
            end.trace_id
            or (started.trace_id if started else "")
            or first_text(trailers, TRACE_ID_KEY)
        )
        return StreamFinished(
            text="".join(self._parts),
            finish_reason=_finish_reason(end.finish_reason),
            usage=_usage(end.usage),
            served_by=served_by,
            attempts=_attempts(end.attempts) or (started.attempts if started else ()),
            citations=_citations(end.citations),
            charge=_charge(end),
            trace_id=trace_id,
            prompt=_prompt(end),
            time_to_first_token_s=seconds(end.time_to_first_token),
            latency_s=seconds(end.latency),
            raw=end,
            tool_calls=_tool_calls(end.tool_calls) or self._assembled_calls(),
        )

    def _assembled_calls(self) -> tuple[ToolCall, ...]:
        """The calls put together from their pieces, for when the `end` event does not
        list them (a stream cut short): what the caller saw, in index order."""
        return tuple(
            ToolCall(id=call.id, name=call.name, arguments="".join(call.arguments))
            for _, call in sorted(self._calls.items())
        )


def parse_list_models_response(response: generation_pb2.ListModelsResponse) -> ModelList:
    return ModelList(
        models=tuple(
            ModelInfo(
                name=model.name,
                description=model.description,
                targets=tuple(target_from_proto(target) for target in model.targets),
                attributes=_struct_dict(model, "attributes"),
                capabilities=tuple(model.capabilities),
            )
            for model in response.models
        ),
        next_page_token=response.next_page_token,
        raw=response,
    )


def parse_embed_response(
    response: generation_pb2.EmbedResponse, trailers: MetadataPairs | None = None
) -> EmbedResult:
    """Vectors in input order (by `index`, whatever order they arrived in)."""
    ordered = sorted(response.embeddings, key=lambda embedding: embedding.index)
    vectors = tuple(tuple(embedding.values) for embedding in ordered)
    return EmbedResult(
        vectors=vectors,
        dimensions=response.dimensions or (len(vectors[0]) if vectors else 0),
        usage=_usage(response.usage),
        served_by=_target(response, "served_by"),
        attempts=_attempts(response.attempts),
        charge=_charge(response),
        trace_id=response.trace_id or first_text(trailers, TRACE_ID_KEY),
        raw=response,
    )


# --- retrieval --------------------------------------------------------------------------


def parse_retrieve_response(response: retrieval_pb2.RetrieveResponse) -> RetrieveResult:
    return RetrieveResult(
        chunks=tuple(
            RetrievedChunk(
                chunk_id=chunk.chunk_id,
                document_id=chunk.document_id,
                title=chunk.title,
                source=chunk.source,
                content=chunk.content,
                score=chunk.score,
                metadata=_struct_dict(chunk, "metadata"),
                position=chunk.position,
            )
            for chunk in response.chunks
        ),
        embedding_model=response.embedding_model,
        embedding_time_s=seconds(response.embedding_time),
        search_time_s=seconds(response.search_time),
        raw=response,
    )


def parse_ingest_documents_response(
    response: retrieval_pb2.IngestDocumentsResponse,
) -> IngestResult:
    return IngestResult(
        results=tuple(
            DocumentResult(
                document_id=result.document_id,
                outcome=enum_label(
                    retrieval_pb2.IngestOutcome.DESCRIPTOR, result.outcome, "INGEST_OUTCOME_"
                ),
                chunk_count=result.chunk_count,
            )
            for result in response.results
        ),
        embedding_model=response.embedding_model,
        raw=response,
    )


def parse_delete_documents_response(
    response: retrieval_pb2.DeleteDocumentsResponse,
) -> DeleteResult:
    return DeleteResult(
        deleted_documents=response.deleted_documents,
        deleted_chunks=response.deleted_chunks,
        raw=response,
    )


# --- billing ----------------------------------------------------------------------------


def parse_wallet(response: billing_pb2.Wallet) -> Wallet:
    return Wallet(
        wallet_id=response.wallet_id,
        currency_code=response.currency_code,
        balance_micros=response.balance_micros,
        held_micros=response.held_micros,
        available_micros=response.available_micros,
        overdraft_limit_micros=response.overdraft_limit_micros,
        create_time=_datetime(response, "create_time"),
        raw=response,
    )


def parse_charge_response(response: billing_pb2.ChargeResponse) -> ChargeResult:
    return ChargeResult(
        transaction_id=response.transaction_id,
        amount_micros=response.amount_micros,
        balance_after_micros=response.balance_after_micros,
        replayed=response.replayed,
        raw=response,
    )


def parse_credit_wallet_response(response: billing_pb2.CreditWalletResponse) -> CreditResult:
    return CreditResult(
        transaction_id=response.transaction_id,
        balance_after_micros=response.balance_after_micros,
        replayed=response.replayed,
        raw=response,
    )


def parse_refund_response(response: billing_pb2.RefundResponse) -> RefundResult:
    return RefundResult(
        transaction_id=response.transaction_id,
        amount_micros=response.amount_micros,
        balance_after_micros=response.balance_after_micros,
        replayed=response.replayed,
        raw=response,
    )


def parse_list_transactions_response(
    response: billing_pb2.ListTransactionsResponse,
) -> TransactionList:
    return TransactionList(
        transactions=tuple(
            Transaction(
                transaction_id=transaction.transaction_id,
                kind=enum_label(
                    billing_pb2.TransactionKind.DESCRIPTOR, transaction.kind, "TRANSACTION_KIND_"
                ),
                amount_micros=transaction.amount_micros,
                description=transaction.description,
                create_time=_datetime(transaction, "create_time"),
            )
            for transaction in response.transactions
        ),
        next_page_token=response.next_page_token,
        raw=response,
    )
