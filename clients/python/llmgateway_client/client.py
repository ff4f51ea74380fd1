"""The asyncio client: `GatewayClient`.

Each method builds its request with `requests.py`, runs it with a deadline, a fresh
bearer token and UNAVAILABLE retries (`retry.py`), and parses the answer with
`results.py`. Failures raise the `GatewayError` subclasses of `errors.py`.

    async with GatewayClient("127.0.0.1:50051", token_source=minter) as client:
        result = await client.generate("sim-chat", "Say hello")
        async for event in client.stream_generate("sim-chat", "Tell me a story"):
            ...
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
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

__all__ = ["GatewayClient"]


class GatewayClient:
    """Async client for the gateway's three services over one channel.

    `timeout_s` is the default deadline of every call (a call's own `timeout_s` overrides
    it); UNAVAILABLE is retried up to `max_retries` times after the first attempt, with
    jittered exponential `backoff`, never past the deadline. The channel opens on first
    use, inside the running event loop; close it with `close()` or `async with`.

    The channel is plaintext unless `tls` is given (`TlsOptions`: the CA to trust or the
    system roots, a client certificate for mutual TLS, the name the server's certificate
    carries); `secure=True` and `root_certificates=` are shorthands for the first.
    """

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
        self._channel: grpc.aio.Channel | None = None
        self._stubs: Stubs | None = None

    @property
    def target(self) -> str:
        return self._channel_config.target

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel; in-flight calls are cancelled."""
        if self._channel is not None:
            channel, self._channel, self._stubs = self._channel, None, None
            await channel.close()

    @property
    def _rpc(self) -> Stubs:
        if self._stubs is None:
            self._channel = self._channel_config.open_aio()
            self._stubs = Stubs.over(self._channel)
        return self._stubs

    def _plan(self, timeout_s: float | None) -> RetryPlan:
        return RetryPlan(
            timeout_s=timeout_s if timeout_s is not None else self._timeout_s,
            max_retries=self._max_retries,
            backoff=self._backoff,
        )

    async def _unary(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable,
        request: ProtoMessage,
        timeout_s: float | None,
        traceparent: str | None,
    ) -> tuple[Any, MetadataPairs]:
        """Run a unary RPC with deadline and retries; return the response and its trailers."""
        plan = self._plan(timeout_s)
        while True:
            try:
                call = method(
                    request,
                    timeout=plan.attempt_timeout_s(),
                    metadata=call_metadata(self._token_source, traceparent),
                )
                response = await call
                return response, await call.trailing_metadata()
            except grpc.aio.AioRpcError as exc:
                error = error_from_rpc_error(exc)
                delay = plan.next_delay_s(error)
                if delay is None:
                    raise error from exc
            await asyncio.sleep(delay)

    # --- GenerationService ---------------------------------------------------------------

    async def generate(
        self,
        model: str,
        messages: MessagesLike,
        *,
        timeout_s: float | None = None,
        traceparent: str | None = None,
        **options: Unpack[GenerateOptions],
    ) -> GenerateResult:
        """Generate a whole answer. Options: system, max_output_tokens, temperature, top_p,
        top_k, stop, targets, end_user_id, billing, retrieval, prompt, metadata, bot, region,
        tools, tool_choice, parallel_tool_calls, response_format (see `GenerateOptions`).

        With tools the answer may be tool calls instead of text (finish reason
        "tool_calls"): run them, then continue the conversation with
        `result.as_message()` and a `tool_result(call.id, output)` per call.
        """
        request = requests.build_generate_request(model, messages, **options)
        response, trailers = await self._unary(
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
    ) -> AsyncIterator[StreamEvent]:
        """Stream an answer: `StreamStarted`, `TextChunk`s (and `ToolCallChunk`s when the
        model calls tools), then one `StreamFinished` with the text and tool calls assembled.

        Takes the same options as `generate` (bad arguments raise here, at the call; the
        RPC starts with the iteration). The call is retried on UNAVAILABLE only while
        nothing has been received. If the upstream fails after the stream started, the
        `StreamFinished` carrying the usage so far is yielded and then the error is
        raised. Leaving the loop early cancels the call (wrap it in
        `contextlib.aclosing` to make that immediate rather than at garbage collection).
        """
        request = requests.build_stream_generate_request(model, messages, **options)
        return self._stream(request, timeout_s, traceparent)

    async def _stream(
        self, request: ProtoMessage, timeout_s: float | None, traceparent: str | None
    ) -> AsyncIterator[StreamEvent]:
        plan = self._plan(timeout_s)  # the deadline runs from the first iteration
        while True:
            assembler = results.StreamAssembler()
            call = self._rpc.generation.StreamGenerate(
                request,
                timeout=plan.attempt_timeout_s(),
                metadata=call_metadata(self._token_source, traceparent),
            )
            try:
                async for response in call:
                    event = assembler.feed(response)
                    if event is not None:
                        yield event
                yield assembler.finish(await call.trailing_metadata())
                return
            except grpc.aio.AioRpcError as exc:
                error = error_from_rpc_error(exc)
                if assembler.received_any:
                    if assembler.has_end:
                        yield assembler.finish(exc.trailing_metadata())
                    raise error from exc
                delay = plan.next_delay_s(error)
                if delay is None:
                    raise error from exc
            finally:
                call.cancel()  # a no-op once the call is done; stops it if the caller left
            await asyncio.sleep(delay)

    async def embed(
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
        response, trailers = await self._unary(
            self._rpc.generation.Embed, request, timeout_s, traceparent
        )
        return results.parse_embed_response(response, trailers)

    async def list_models(
        self,
        *,
        page_size: int | None = None,
        page_token: str | None = None,
        timeout_s: float | None = None,
        traceparent: str | None = None,
    ) -> ModelList:
        request = requests.build_list_models_request(page_size, page_token)
        response, _ = await self._unary(
            self._rpc.generation.ListModels, request, timeout_s, traceparent
        )
        return results.parse_list_models_response(response)

    # --- RetrievalService ----------------------------------------------------------------

    async def retrieve(
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
        response, _ = await self._unary(
            self._rpc.retrieval.Retrieve, request, timeout_s, traceparent
        )
        return results.parse_retrieve_response(response)

    async def ingest_documents(
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
        response, _ = await self._unary(
            self._rpc.retrieval.IngestDocuments, request, timeout_s, traceparent
        )
        return results.parse_ingest_documents_response(response)

    async def delete_documents(
        self,
        namespace: str,
        document_ids: str | Sequence[str],
        *,
        timeout_s: float | None = None,
        traceparent: str | None = None,
    ) -> DeleteResult:
        request = requests.build_delete_documents_request(namespace, document_ids)
        response, _ = await self._unary(
            self._rpc.retrieval.DeleteDocuments, request, timeout_s, traceparent
        )
        return results.parse_delete_documents_response(response)

    # --- BillingService ------------------------------------------------------------------

    async def charge(
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
        response, _ = await self._unary(self._rpc.billing.Charge, request, timeout_s, traceparent)
        return results.parse_charge_response(response)

    async def create_wallet(
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
        response, _ = await self._unary(
            self._rpc.billing.CreateWallet, request, timeout_s, traceparent
        )
        return results.parse_wallet(response)

    async def credit_wallet(
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
        response, _ = await self._unary(
            self._rpc.billing.CreditWallet, request, timeout_s, traceparent
        )
        return results.parse_credit_wallet_response(response)

    async def get_balance(
        self, wallet_id: str, *, timeout_s: float | None = None, traceparent: str | None = None
    ) -> Wallet:
        request = requests.build_get_balance_request(wallet_id)
        response, _ = await self._unary(
            self._rpc.billing.GetBalance, request, timeout_s, traceparent
        )
        return results.parse_wallet(response)

    async def list_transactions(
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
        response, _ = await self._unary(
            self._rpc.billing.ListTransactions, request, timeout_s, traceparent
        )
        return results.parse_list_transactions_response(response)

    async def refund(
        self,
        transaction_id: str,
        idempotency_key: str,
        *,
        reason: str | None = None,
        timeout_s: float | None = None,
        traceparent: str | None = None,
    ) -> RefundResult:
        request = requests.build_refund_request(transaction_id, idempotency_key, reason=reason)
        response, _ = await self._unary(self._rpc.billing.Refund, request, timeout_s, traceparent)
        return results.parse_refund_response(response)
