"""The blocking client: `Gateway` (alias `SyncGatewayClient`).

The same methods, arguments and results as the async `GatewayClient`, over a sync gRPC
channel, for scripts and thread-based services. Requests, results, errors and the retry
decision are the shared modules; only the waiting differs.

    with Gateway("127.0.0.1:50051", token_source=minter) as gateway:
        print(gateway.generate("sim-chat", "Say hello").text)
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self, Unpack

import grpc
from google.protobuf.message import Message as ProtoMessage
from llmgateway.v1 import generation_pb2

from . import requests, results
from .auth import TokenSource
from .channels import ChannelConfig, ChannelOption, Stubs, TlsOptions, tls_from
from .errors import error_from_rpc_error
from .metadata import MetadataPairs, call_metadata
from .requests import GenerateOptions
from .retry import Backoff, RetryPlan
from .types import (
    Billing,
    ChargeResult,
    CreditResult,
    DeleteResult,
    DocumentLike,
    EmbedResult,
    GenerateResult,
    IngestResult,
    MessagesLike,
    ModelList,
    RefundResult,
    RetrieveResult,
    SearchMode,
    StreamEvent,
    TransactionList,
    UsageAmount,
    Wallet,
)

__all__ = ["Gateway", "SyncGatewayClient"]


class Gateway:
    """Blocking client; see `GatewayClient` for the semantics of every argument."""

    def __init__(
        self,
        target: str = "127.0.0.1:50051",
        *,
        token_source: TokenSource | None = None,
        timeout_s: float = 30.0,
        max_retries: int = 3,
        secure: bool = False,
        root_certificates: bytes | None = None,
        tls: TlsOptions | None = None,
        channel_options: Sequence[ChannelOption] | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive: every call carries a deadline")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self._channel_config = ChannelConfig(
            target=target,
            tls=tls_from(tls, secure, root_certificates),
            options=tuple(channel_options or ()),
        )
        self._token_source = token_source
        self._timeout_s = timeout_s
        self._max_retries = max_retries
        self._backoff = backoff or Backoff()
        self._channel = self._channel_config.open_sync()
        self._rpc = Stubs.over(self._channel)

    @property
    def target(self) -> str:
        return self._channel_config.target

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _plan(self, timeout_s: float | None) -> RetryPlan:
        return RetryPlan(
            timeout_s=timeout_s if timeout_s is not None else self._timeout_s,
            max_retries=self._max_retries,
            backoff=self._backoff,
        )

    def _unary(
        self,
        method: grpc.UnaryUnaryMultiCallable,
        request: ProtoMessage,
        timeout_s: float | None,
        traceparent: str | None,
    ) -> tuple[Any, MetadataPairs]:
        """Run a unary RPC with deadline and retries; return the response and its trailers."""
        plan = self._plan(timeout_s)
        while True:
            try:
                response, call = method.with_call(
                    request,
                    timeout=plan.attempt_timeout_s(),
                    metadata=call_metadata(self._token_source, traceparent),
                )
                return response, call.trailing_metadata()
            except grpc.RpcError as exc:
                error = error_from_rpc_error(exc)
                delay = plan.next_delay_s(error)
                if delay is None:
                    raise error from exc
            time.sleep(delay)

    # --- GenerationService ---------------------------------------------------------------

    def generate(
        self,
        model: str,
        messages: MessagesLike,
        *,
        timeout_s: float | None = None,
        traceparent: str | None = None,
        **options: Unpack[GenerateOptions],
    ) -> GenerateResult:
        request = requests.build_generate_request(model, messages, **options)
        response, trailers = self._unary(
            self._rpc.generation.Generate, request, timeout_s, traceparent
        )
        return results.parse_generate_response(response, trailers)

    def stream_generate(
        self,
        model: str,
        messages: MessagesLike,
        *,
        timeout_s: float | None = None,
        traceparent: str | None = None,
        **options: Unpack[GenerateOptions],
    ) -> Iterator[StreamEvent]:
        """Iterate `StreamStarted`, `TextChunk`s / `ToolCallChunk`s and one `StreamFinished`
        (see the async client)."""
        request = requests.build_stream_generate_request(model, messages, **options)
        return self._stream(request, timeout_s, traceparent)

    def _stream(
        self, request: ProtoMessage, timeout_s: float | None, traceparent: str | None
    ) -> Iterator[StreamEvent]:
        plan = self._plan(timeout_s)  # the deadline runs from the first iteration
        while True:
            assembler = results.StreamAssembler()
            call = self._rpc.generation.StreamGenerate(
                request,
                timeout=plan.attempt_timeout_s(),
                metadata=call_metadata(self._token_source, traceparent),
            )
            try:
                for response in call:
                    event = assembler.feed(response)
                    if event is not None:
                        yield event
                yield assembler.finish(call.trailing_metadata())
                return
            except grpc.RpcError as exc:
                error = error_from_rpc_error(exc)
                if assembler.received_any:
                    if assembler.has_end:
                        yield assembler.finish(call.trailing_metadata())
                    raise error from exc
                delay = plan.next_delay_s(error)
                if delay is None:
                    raise error from exc
            finally:
                call.cancel()  # a no-op once the call is done; stops it if the caller left
            time.sleep(delay)

    def embed(
        self,
        model: str,
        inputs: str | Sequence[str],
        *,
        dimensions: int | None = None,
        billing: Billing | Mapping[str, str] | generation_pb2.BillingOptions | None = None,
        end_user_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        traceparent: str | None = None,
    ) -> EmbedResult:
        """Embed texts with an embedding route (capability "embeddings", e.g. "sim-embed"):
        one vector per input, in input order. Retried on UNAVAILABLE like every unary call;
        with `billing` the idempotency key keeps a retry from being charged twice.
        """
        request = requests.build_embed_request(
            model,
            inputs,
            dimensions=dimensions,
            billing=billing,
            end_user_id=end_user_id,
            metadata=metadata,
        )
        response, trailers = self._unary(
            self._rpc.generation.Embed, request, timeout_s, traceparent
        )
        return results.parse_embed_response(response, trailers)

    def list_models(
        self,
        *,
        page_size: int | None = None,
        page_token: str | None = None,
        timeout_s: float | None = None,
        traceparent: str | None = None,
    ) -> ModelList:
        request = requests.build_list_models_request(page_size, page_token)
        response, _ = self._unary(self._rpc.generation.ListModels, request, timeout_s, traceparent)
        return results.parse_list_models_response(response)

    # --- RetrievalService ----------------------------------------------------------------

    def retrieve(
        self,
        namespace: str,
        query: str | None = None,
        vector: Sequence[float] | None = None,
        top_k: int = 5,
        *,
        min_score: float | None = None,
        filters: Mapping[str, str | Sequence[str]] | None = None,
        document_ids: Sequence[str] | None = None,
        mode: SearchMode | None = None,
        ef_search: int | None = None,
        timeout_s: float | None = None,
        traceparent: str | None = None,
    ) -> RetrieveResult:
        request = requests.build_retrieve_request(
            namespace,
            query,
            vector,
            top_k,
            min_score=min_score,
            filters=filters,
            document_ids=document_ids,
            mode=mode,
            ef_search=ef_search,
        )
        response, _ = self._unary(self._rpc.retrieval.Retrieve, request, timeout_s, traceparent)
        return results.parse_retrieve_response(response)

    def ingest_documents(
        self,
        namespace: str,
        documents: Sequence[DocumentLike],
        *,
        chunk_size: int | None = None,
        chunk_overlap: int | None = None,
        embedding_model: str | None = None,
        timeout_s: float | None = None,
        traceparent: str | None = None,
    ) -> IngestResult:
        request = requests.build_ingest_documents_request(
            namespace,
            documents,
            chunk_size=chunk_size,
            chunk_overlap=chunk_overlap,
            embedding_model=embedding_model,
        )
        response, _ = self._unary(
            self._rpc.retrieval.IngestDocuments, request, timeout_s, traceparent
        )
        return results.parse_ingest_documents_response(response)

    def delete_documents(
        self,
        namespace: str,
        document_ids: str | Sequence[str],
        *,
        timeout_s: float | None = None,
        traceparent: str | None = None,
    ) -> DeleteResult:
        request = requests.build_delete_documents_request(namespace, document_ids)
        response, _ = self._unary(
            self._rpc.retrieval.DeleteDocuments, request, timeout_s, traceparent
        )
        return results.parse_delete_documents_response(response)

    # --- BillingService ------------------------------------------------------------------

    def charge(
        self,
        wallet_id: str,
        idempotency_key: str,
        amount_micros: int | None = None,
        usage: UsageAmount | Mapping[str, Any] | None = None,
        *,
        currency_code: str | None = None,
        session_id: str | None = None,
        description: str | None = None,
        timeout_s: float | None = None,
        traceparent: str | None = None,
    ) -> ChargeResult:
        request = requests.build_charge_request(
            wallet_id,
            idempotency_key,
            amount_micros,
            usage,
            currency_code=currency_code,
            session_id=session_id,
            description=description,
        )
        response, _ = self._unary(self._rpc.billing.Charge, request, timeout_s, traceparent)
        return results.parse_charge_response(response)

    def create_wallet(
        self,
        wallet_id: str,
        currency_code: str,
        *,
        overdraft_limit_micros: int = 0,
        timeout_s: float | None = None,
        traceparent: str | None = None,
    ) -> Wallet:
        request = requests.build_create_wallet_request(
            wallet_id, currency_code, overdraft_limit_micros=overdraft_limit_micros
        )
        response, _ = self._unary(self._rpc.billing.CreateWallet, request, timeout_s, traceparent)
        return results.parse_wallet(response)

    def credit_wallet(
        self,
        wallet_id: str,
        idempotency_key: str,
        amount_micros: int,
        *,
        currency_code: str | None = None,
        description: str | None = None,
        timeout_s: float | None = None,
        traceparent: str | None = None,
    ) -> CreditResult:
        request = requests.build_credit_wallet_request(
            wallet_id,
            idempotency_key,
            amount_micros,
            currency_code=currency_code,
            description=description,
        )
        response, _ = self._unary(self._rpc.billing.CreditWallet, request, timeout_s, traceparent)
        return results.parse_credit_wallet_response(response)

    def get_balance(
        self, wallet_id: str, *, timeout_s: float | None = None, traceparent: str | None = None
    ) -> Wallet:
        request = requests.build_get_balance_request(wallet_id)
        response, _ = self._unary(self._rpc.billing.GetBalance, request, timeout_s, traceparent)
        return results.parse_wallet(response)

    def list_transactions(
        self,
        wallet_id: str,
        *,
        page_size: int | None = None,
        page_token: str | None = None,
        kind: str | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        timeout_s: float | None = None,
        traceparent: str | None = None,
    ) -> TransactionList:
        request = requests.build_list_transactions_request(
            wallet_id,
            page_size=page_size,
            page_token=page_token,
            kind=kind,
            start_time=start_time,
            end_time=end_time,
        )
        response, _ = self._unary(
            self._rpc.billing.ListTransactions, request, timeout_s, traceparent
        )
        return results.parse_list_transactions_response(response)

    def refund(
        self,
        transaction_id: str,
        idempotency_key: str,
        *,
        reason: str | None = None,
        timeout_s: float | None = None,
        traceparent: str | None = None,
    ) -> RefundResult:
        request = requests.build_refund_request(transaction_id, idempotency_key, reason=reason)
        response, _ = self._unary(self._rpc.billing.Refund, request, timeout_s, traceparent)
        return results.parse_refund_response(response)


SyncGatewayClient = Gateway
