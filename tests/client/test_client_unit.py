"""The Python client, specified without the gateway server.

What needs no server is tested directly (token minting, request building, result
parsing). What needs a wire is tested against a real `grpc.aio` server started here on a
free port, serving `llmgateway.v1.GenerationService` from a small scripted handler: it
fails with rich `google.rpc.Status` details exactly the way the gateway does, or answers.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from google.protobuf import duration_pb2
from google.protobuf.message import Message as ProtoMessage
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from llmgateway.v1 import billing_pb2, generation_pb2
from llmgateway_client import (
    Backoff,
    Billing,
    ChatMessage,
    DeadlineExceeded,
    Document,
    FailedPrecondition,
    Gateway,
    GatewayClient,
    GatewayError,
    InsufficientFunds,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PromptTemplate,
    RateLimited,
    RetrievalConfig,
    StaticToken,
    StreamFinished,
    StreamStarted,
    Target,
    TextChunk,
    TokenMinter,
    Unauthenticated,
    Unavailable,
    UsageAmount,
    results,
)
from llmgateway_client import requests as build
from llmgateway_client.demo import DemoSetupError, demo_token_source
from llmgateway_client.errors import error_from_status
from llmgateway_client.retry import RetryPlan

SECRET = "unit-test-secret-that-is-long-enough-for-hs256"
ISSUER = "llm-gateway-dev"
AUDIENCE = "llm-gateway"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


# --- token source ---------------------------------------------------------------------


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def decode(token: str, **options: Any) -> dict[str, Any]:
    return jwt.decode(
        token,
        SECRET,
        algorithms=["HS256"],
        audience=AUDIENCE,
        issuer=ISSUER,
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False, **options},
    )


def test_minted_token_carries_the_claims_the_gateway_checks() -> None:
    clock = FakeClock(1_700_000_000.4)
    minter = TokenMinter(
        SECRET, subject="svc-a", scopes=["generate", "retrieve"], ttl_s=600, clock=clock
    )

    claims = decode(minter.token())

    assert claims["iss"] == ISSUER
    assert claims["aud"] == AUDIENCE
    assert claims["sub"] == "svc-a"
    assert claims["scope"] == "generate retrieve"
    assert claims["iat"] == claims["nbf"] == 1_700_000_000
    assert claims["exp"] == 1_700_000_600
    assert len(claims["jti"]) >= 16


def test_a_fresh_token_is_accepted_by_pyjwt_with_exp_checks_on() -> None:
    minter = TokenMinter(SECRET, subject="svc-a", scopes="generate")
    claims = jwt.decode(
        minter.token(), SECRET, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER
    )
    assert claims["scope"] == "generate"


def test_kid_goes_in_the_header() -> None:
    minter = TokenMinter(SECRET, subject="svc-a", scopes=["generate"], kid="2025-01")
    assert jwt.get_unverified_header(minter.token())["kid"] == "2025-01"


def test_the_token_is_cached_until_the_refresh_margin_then_reminted() -> None:
    clock = FakeClock(1_000_000.0)
    minter = TokenMinter(
        SECRET, subject="svc", scopes=["generate"], ttl_s=300, refresh_margin_s=60, clock=clock
    )

    first = minter.token()
    clock.now += 239  # exp - 61 s: still outside the margin
    assert minter.token() == first

    clock.now += 1  # exactly exp - 60 s: inside the margin
    second = minter.token()
    assert second != first
    assert decode(second)["exp"] == 1_000_000 + 240 + 300
    assert decode(second)["jti"] != decode(first)["jti"]


def test_a_token_is_never_returned_expired_whatever_the_clock_does() -> None:
    clock = FakeClock(2_000_000.0)
    minter = TokenMinter(
        SECRET, subject="svc", scopes=["generate"], ttl_s=120, refresh_margin_s=30, clock=clock
    )
    for step in [0.0, 1.5, 50.0, 38.9, 0.1, 1000.0, 89.99, 0.02, 5000.0, 119.0, 0.5]:
        clock.now += step
        claims = decode(minter.token())
        assert (
            claims["exp"] > clock.now + 30 - 1
        )  # at least the margin left (minus NumericDate truncation)
        assert claims["nbf"] <= clock.now


def test_minter_rejects_settings_that_would_hand_out_stale_tokens() -> None:
    with pytest.raises(ValueError):
        TokenMinter(SECRET, subject="svc", scopes=[], ttl_s=60, refresh_margin_s=60)
    with pytest.raises(ValueError):
        TokenMinter(SECRET, subject="", scopes=["generate"])


def test_static_token_returns_its_value_and_hides_it_in_repr() -> None:
    source = StaticToken("abc.def.ghi")
    assert source.token() == "abc.def.ghi"
    assert "abc" not in repr(source)


# --- request building -------------------------------------------------------------------


def test_generate_request_maps_every_argument_to_its_field() -> None:
    request = build.build_generate_request(
        "sim-chat",
        [{"role": "user", "content": "hi"}, ("assistant", "hello"), ChatMessage("user", "more")],
        system="be brief",
        max_output_tokens=128,
        temperature=0.0,
        top_p=0.9,
        top_k=40,
        stop=["\n\n", "END"],
        targets=[
            Target("openai", "gpt-4o-mini"),
            ("bedrock", "claude", "ap-south-1"),
            {"provider": "simulator", "model": "sim"},
        ],
        end_user_id="user-7",
        billing=Billing(wallet_id="w1", idempotency_key="k1", session_id="s1"),
        retrieval=RetrievalConfig(
            namespace="docs",
            top_k=3,
            min_score=0.25,
            filters={"lang": "en", "tier": ["a", "b"]},
            document_ids=["d1"],
            mode="hybrid",
            max_context_tokens=500,
        ),
        prompt=PromptTemplate(key="support", version=2, variables={"name": "Ada"}),
        metadata={"team": "search"},
        bot="helper",
        region="eu-west-1",
    )

    assert request.model == "sim-chat"
    assert [(m.role, m.content) for m in request.messages] == [
        ("user", "hi"),
        ("assistant", "hello"),
        ("user", "more"),
    ]
    assert request.system_instruction == "be brief"
    assert request.config.max_output_tokens == 128
    assert request.config.HasField("temperature") and request.config.temperature == 0.0
    assert request.config.top_p == pytest.approx(0.9)
    assert request.config.top_k == 40
    assert list(request.config.stop_sequences) == ["\n\n", "END"]
    assert [(t.provider, t.model, t.region) for t in request.targets] == [
        ("openai", "gpt-4o-mini", ""),
        ("bedrock", "claude", "ap-south-1"),
        ("simulator", "sim", ""),
    ]
    assert request.end_user_id == "user-7"
    assert (
        request.billing.wallet_id,
        request.billing.idempotency_key,
        request.billing.session_id,
    ) == ("w1", "k1", "s1")
    retrieval = request.retrieval
    assert (retrieval.namespace, retrieval.top_k, retrieval.max_context_tokens) == ("docs", 3, 500)
    assert retrieval.min_score == pytest.approx(0.25)
    assert [(f.key, list(f.values)) for f in retrieval.filters] == [
        ("lang", ["en"]),
        ("tier", ["a", "b"]),
    ]
    assert list(retrieval.document_ids) == ["d1"]
    assert retrieval.mode == generation_pb2.SEARCH_MODE_HYBRID
    assert (request.prompt.key, request.prompt.version, dict(request.prompt.variables)) == (
        "support",
        2,
        {"name": "Ada"},
    )
    assert dict(request.metadata) == {"team": "search"}
    assert request.bot == "helper"
    assert request.region == "eu-west-1"


def test_a_string_is_one_user_message_and_unset_options_stay_unset() -> None:
    request = build.build_generate_request("sim-chat", "hello")

    assert [(m.role, m.content) for m in request.messages] == [("user", "hello")]
    for name in ("config", "billing", "retrieval", "prompt"):
        assert not request.HasField(name)
    assert request.system_instruction == request.bot == request.region == ""


def test_a_single_stop_string_is_one_stop_sequence() -> None:
    request = build.build_generate_request("m", "x", stop="END")
    assert list(request.config.stop_sequences) == ["END"]
    assert not request.config.HasField("temperature")


def test_dict_forms_of_billing_retrieval_and_prompt_are_accepted() -> None:
    request = build.build_generate_request(
        "m",
        "x",
        billing={"wallet_id": "w", "idempotency_key": "k"},
        retrieval={"namespace": "n", "mode": "keyword"},
        prompt={"key": "p"},
    )
    assert request.billing.wallet_id == "w"
    assert request.retrieval.mode == generation_pb2.SEARCH_MODE_KEYWORD
    assert request.prompt.key == "p" and request.prompt.version == 0


def test_the_stream_request_carries_the_same_fields_as_the_unary_one() -> None:
    options: dict[str, Any] = {
        "system": "s",
        "temperature": 0.5,
        "targets": [("openai", "gpt")],
        "billing": Billing("w", "k"),
        "metadata": {"a": "b"},
        "region": "us-east-1",
    }
    unary = build.build_generate_request("m", "hi", **options)
    stream = build.build_stream_generate_request("m", "hi", **options)
    assert isinstance(stream, generation_pb2.StreamGenerateRequest)
    assert stream.SerializeToString(deterministic=True) == unary.SerializeToString(
        deterministic=True
    )


def test_the_typed_generate_options_name_exactly_the_builder_arguments() -> None:
    parameters = inspect.signature(build._fill_generate_fields).parameters
    keyword_only = {name for name, p in parameters.items() if p.kind is p.KEYWORD_ONLY}
    assert keyword_only == set(build.GenerateOptions.__annotations__)


def test_unknown_options_and_bad_messages_are_rejected() -> None:
    with pytest.raises(TypeError):
        build.build_generate_request("m", "x", temprature=0.2)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        build.build_generate_request("m", {"role": "user", "content": "x"})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        build.build_generate_request("m", [{"content": "no role"}])


def test_retrieve_request_maps_every_argument() -> None:
    request = build.build_retrieve_request(
        "docs",
        query="refund policy",
        top_k=7,
        min_score=0.1,
        filters={"lang": ["en", "de"]},
        document_ids=["a", "b"],
        mode="vector",
        ef_search=200,
    )
    assert (request.namespace, request.query, request.top_k, request.ef_search) == (
        "docs",
        "refund policy",
        7,
        200,
    )
    assert request.min_score == pytest.approx(0.1)
    assert [(f.key, list(f.values)) for f in request.filters] == [("lang", ["en", "de"])]
    assert list(request.document_ids) == ["a", "b"]
    assert request.mode == generation_pb2.SEARCH_MODE_VECTOR

    by_vector = build.build_retrieve_request("docs", vector=[0.5, -0.25])
    assert list(by_vector.vector) == [0.5, -0.25] and by_vector.query == "" and by_vector.top_k == 5


def test_ingest_and_delete_requests() -> None:
    request = build.build_ingest_documents_request(
        "docs",
        [
            Document(
                id="d1", text="body", title="T", source="s3://x", metadata={"lang": "en", "n": 2}
            ),
            {"id": "d2", "text": "b2"},
        ],
        chunk_size=800,
        chunk_overlap=100,
        embedding_model="local-mini",
    )
    first, second = request.documents
    assert (first.id, first.text, first.title, first.source) == ("d1", "body", "T", "s3://x")
    assert dict(first.metadata) == {"lang": "en", "n": 2.0}
    assert (second.id, second.text) == ("d2", "b2") and not second.HasField("metadata")
    assert (request.chunking.chunk_size, request.chunking.chunk_overlap) == (800, 100)
    assert request.embedding_model == "local-mini"
    assert not build.build_ingest_documents_request("docs", []).HasField("chunking")

    delete = build.build_delete_documents_request("docs", "d1")
    assert list(delete.document_ids) == ["d1"]  # one id, not its characters


def test_charge_request_sets_exactly_one_side_of_the_amount_oneof() -> None:
    by_amount = build.build_charge_request(
        "w", "k", 1_500, currency_code="USD", session_id="s", description="d"
    )
    assert by_amount.WhichOneof("amount") == "amount_micros" and by_amount.amount_micros == 1_500
    assert (by_amount.currency_code, by_amount.session_id, by_amount.description) == (
        "USD",
        "s",
        "d",
    )

    by_usage = build.build_charge_request("w", "k", usage=UsageAmount("gpt-4o-mini", 100, 20, 10))
    assert by_usage.WhichOneof("amount") == "usage"
    assert (
        by_usage.usage.model,
        by_usage.usage.input_tokens,
        by_usage.usage.output_tokens,
        by_usage.usage.cached_input_tokens,
    ) == (
        "gpt-4o-mini",
        100,
        20,
        10,
    )
    with pytest.raises(ValueError):
        build.build_charge_request("w", "k", 5, usage={"model": "m"})


def test_wallet_request_builders() -> None:
    assert build.build_create_wallet_request(
        "w", "USD", overdraft_limit_micros=10
    ) == billing_pb2.CreateWalletRequest(
        wallet_id="w", currency_code="USD", overdraft_limit_micros=10
    )
    assert build.build_credit_wallet_request(
        "w", "k", 99, description="top-up"
    ) == billing_pb2.CreditWalletRequest(
        wallet_id="w", idempotency_key="k", amount_micros=99, description="top-up"
    )
    assert build.build_refund_request("t", "k", reason="dup") == billing_pb2.RefundRequest(
        transaction_id="t", idempotency_key="k", reason="dup"
    )
    listing = build.build_list_transactions_request(
        "w",
        page_size=10,
        page_token="p",
        kind="refund",
        start_time=datetime(2025, 1, 1),
        end_time=datetime(2025, 2, 1, tzinfo=UTC),
    )
    assert (listing.page_size, listing.page_token, listing.kind) == (
        10,
        "p",
        billing_pb2.TRANSACTION_KIND_REFUND,
    )
    assert listing.start_time.ToDatetime(tzinfo=UTC) == datetime(2025, 1, 1, tzinfo=UTC)
    assert listing.end_time.seconds == int(datetime(2025, 2, 1, tzinfo=UTC).timestamp())
    with pytest.raises(ValueError):
        build.build_list_transactions_request("w", kind="gift")


# --- result parsing ---------------------------------------------------------------------


def full_response(
    trace_id: str = TRACE_ID, text: str = "Hello!"
) -> generation_pb2.GenerateResponse:
    return generation_pb2.GenerateResponse(
        text=text,
        finish_reason=generation_pb2.FINISH_REASON_STOP,
        usage=generation_pb2.Usage(input_tokens=12, output_tokens=3),
        served_by=generation_pb2.Target(provider="bedrock", model="claude", region="us-east-1"),
        attempts=[
            generation_pb2.Attempt(
                target=generation_pb2.Target(
                    provider="bedrock", model="claude", region="ap-south-1"
                ),
                outcome=generation_pb2.ATTEMPT_OUTCOME_FAILED,
                error_reason="overloaded",
                latency=duration_pb2.Duration(nanos=250_000_000),
            ),
            generation_pb2.Attempt(
                target=generation_pb2.Target(
                    provider="bedrock", model="claude", region="us-east-1"
                ),
                outcome=generation_pb2.ATTEMPT_OUTCOME_SUCCESS,
                latency=duration_pb2.Duration(seconds=1, nanos=500_000_000),
            ),
        ],
        citations=[
            generation_pb2.Citation(
                chunk_id="c1", document_id="d1", title="T", label="[1]", score=0.5
            )
        ],
        charge=generation_pb2.ChargeSummary(
            transaction_id="tx", amount_micros=420, currency_code="USD"
        ),
        trace_id=trace_id,
    )


def test_generate_response_becomes_a_typed_result() -> None:
    result = results.parse_generate_response(full_response())

    assert result.text == "Hello!"
    assert result.finish_reason == "stop"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (12, 3)
    assert result.served_by == Target("bedrock", "claude", "us-east-1")
    failed, succeeded = result.attempts
    assert (failed.target, failed.outcome, failed.error_reason, failed.latency_s) == (
        Target("bedrock", "claude", "ap-south-1"),
        "failed",
        "overloaded",
        0.25,
    )
    assert (succeeded.outcome, succeeded.latency_s) == ("success", 1.5)
    assert result.citations[0].label == "[1]"
    assert result.charge is not None and result.charge.amount_micros == 420
    assert result.trace_id == TRACE_ID
    assert result.prompt is None
    assert result.raw.text == "Hello!"


def test_trace_id_falls_back_to_the_trailer() -> None:
    result = results.parse_generate_response(
        full_response(trace_id=""), (("x-trace-id", "abc123"),)
    )
    assert result.trace_id == "abc123"


# --- errors from status details (no wire) -----------------------------------------------


def rich_status(code: grpc.StatusCode, message: str, *details: ProtoMessage) -> status_pb2.Status:
    status = status_pb2.Status(code=code.value[0], message=message)
    for detail in details:
        status.details.add().Pack(detail)
    return status


def error_info(reason: str, **metadata: str) -> error_details_pb2.ErrorInfo:
    return error_details_pb2.ErrorInfo(reason=reason, domain="llmgateway.v1", metadata=metadata)


def test_a_garbled_details_trailer_still_gives_the_typed_error() -> None:
    error = error_from_status(
        grpc.StatusCode.NOT_FOUND,
        "no such wallet",
        (("grpc-status-details-bin", b"\xff\x00garbage"),),
    )
    assert isinstance(error, NotFound) and error.reason == "" and error.message == "no such wallet"


def test_retry_after_trailer_is_used_when_there_is_no_retry_info() -> None:
    status = rpc_status.to_status(
        rich_status(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down", error_info("RATE_LIMITED"))
    )
    error = error_from_status(
        status.code, status.details, (*status.trailing_metadata, ("retry-after", "3"))
    )
    assert isinstance(error, RateLimited) and error.retry_after_s == 3.0


# --- a real grpc.aio server -------------------------------------------------------------

UnaryBehaviour = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
StreamBehaviour = Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]


@dataclass
class ReceivedCall:
    method: str
    request: ProtoMessage
    metadata: dict[str, str]
    deadline_s: float | None


@dataclass
class ScriptedGeneration:
    """GenerationService whose answers are scripted per test; the last entry repeats."""

    generate_script: list[UnaryBehaviour] = field(default_factory=list)
    stream_script: list[StreamBehaviour] = field(default_factory=list)
    calls: list[ReceivedCall] = field(default_factory=list)

    def reset(self) -> None:
        self.generate_script.clear()
        self.stream_script.clear()
        self.calls.clear()

    def _record(
        self, method: str, request: ProtoMessage, context: grpc.aio.ServicerContext
    ) -> None:
        metadata = {item.key: item.value for item in context.invocation_metadata() or ()}
        self.calls.append(ReceivedCall(method, request, metadata, context.time_remaining()))

    @staticmethod
    def _next(script: list[Any]) -> Any:
        return script.pop(0) if len(script) > 1 else script[0]

    async def generate(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._record("Generate", request, context)
        return await self._next(self.generate_script)(request, context)

    async def stream_generate(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        self._record("StreamGenerate", request, context)
        async for event in self._next(self.stream_script)(request, context):
            yield event

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            "llmgateway.v1.GenerationService",
            {
                "Generate": grpc.unary_unary_rpc_method_handler(
                    self.generate,
                    request_deserializer=generation_pb2.GenerateRequest.FromString,
                    response_serializer=generation_pb2.GenerateResponse.SerializeToString,
                ),
                "StreamGenerate": grpc.unary_stream_rpc_method_handler(
                    self.stream_generate,
                    request_deserializer=generation_pb2.StreamGenerateRequest.FromString,
                    response_serializer=generation_pb2.StreamGenerateResponse.SerializeToString,
                ),
            },
        )


async def abort_with(
    context: grpc.aio.ServicerContext, status: status_pb2.Status, trace_id: str = TRACE_ID
) -> None:
    grpc_status = rpc_status.to_status(status)
    await context.abort(
        grpc_status.code,
        grpc_status.details,
        (*grpc_status.trailing_metadata, ("x-trace-id", trace_id)),
    )


def fails(code: grpc.StatusCode, message: str, *details: ProtoMessage) -> UnaryBehaviour:
    async def behaviour(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await abort_with(context, rich_status(code, message, *details))

    return behaviour


def answers(response: generation_pb2.GenerateResponse, trace_trailer: str = "") -> UnaryBehaviour:
    async def behaviour(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if trace_trailer:
            context.set_trailing_metadata((("x-trace-id", trace_trailer),))
        return response

    return behaviour


def hangs(seconds: float) -> UnaryBehaviour:
    async def behaviour(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await asyncio.sleep(seconds)
        return full_response()

    return behaviour


UNAVAILABLE = fails(
    grpc.StatusCode.UNAVAILABLE, "all targets failed", error_info("ALL_TARGETS_FAILED")
)


def stream_events(*texts: str, fail_after: bool = False) -> StreamBehaviour:
    async def behaviour(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        served_by = generation_pb2.Target(provider="simulator", model="sim-chat")
        yield generation_pb2.StreamGenerateResponse(
            start=generation_pb2.StreamStart(served_by=served_by, trace_id=TRACE_ID)
        )
        for text in texts:
            yield generation_pb2.StreamGenerateResponse(delta=generation_pb2.TextDelta(text=text))
        reason = (
            generation_pb2.FINISH_REASON_ERROR if fail_after else generation_pb2.FINISH_REASON_STOP
        )
        yield generation_pb2.StreamGenerateResponse(
            end=generation_pb2.StreamEnd(
                finish_reason=reason,
                usage=generation_pb2.Usage(input_tokens=5, output_tokens=len(texts)),
                served_by=served_by,
                trace_id=TRACE_ID,
            )
        )
        if fail_after:
            await abort_with(
                context,
                rich_status(
                    grpc.StatusCode.UNAVAILABLE,
                    "upstream dropped",
                    error_info("UPSTREAM_STREAM_FAILED"),
                ),
            )

    return behaviour


def stream_fails_first(code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> StreamBehaviour:
    async def behaviour(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        await abort_with(context, rich_status(code, "no target", error_info("ALL_TARGETS_FAILED")))
        yield  # pragma: no cover - makes this an async generator

    return behaviour


@pytest.fixture(scope="module")
async def scripted_server() -> AsyncIterator[tuple[ScriptedGeneration, str]]:
    service = ScriptedGeneration()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((service.handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield service, f"127.0.0.1:{port}"
    await server.stop(grace=None)


@pytest.fixture
def gateway(scripted_server: tuple[ScriptedGeneration, str]) -> ScriptedGeneration:
    service, _ = scripted_server
    service.reset()
    return service


FAST_BACKOFF = Backoff(initial_s=0.01, max_s=0.05)


@pytest.fixture
async def client(scripted_server: tuple[ScriptedGeneration, str]) -> AsyncIterator[GatewayClient]:
    _, address = scripted_server
    async with GatewayClient(
        address, token_source=StaticToken("test-token"), timeout_s=5, backoff=FAST_BACKOFF
    ) as c:
        yield c


ERROR_CASES = [
    pytest.param(
        grpc.StatusCode.INVALID_ARGUMENT,
        (
            error_info("INVALID_ARGUMENT"),
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field="messages", description="at least one message"
                    ),
                    error_details_pb2.BadRequest.FieldViolation(
                        field="config.top_p", description="must be in (0, 1]"
                    ),
                ]
            ),
        ),
        InvalidArgument,
        "INVALID_ARGUMENT",
        [("messages", "at least one message"), ("config.top_p", "must be in (0, 1]")],
        None,
        id="invalid-argument-names-fields",
    ),
    pytest.param(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        (
            error_info("RATE_LIMITED"),
            error_details_pb2.RetryInfo(
                retry_delay=duration_pb2.Duration(seconds=2, nanos=500_000_000)
            ),
        ),
        RateLimited,
        "RATE_LIMITED",
        [],
        2.5,
        id="rate-limited-says-when",
    ),
    pytest.param(
        grpc.StatusCode.FAILED_PRECONDITION,
        (error_info("INSUFFICIENT_FUNDS", wallet_id="w1"),),
        InsufficientFunds,
        "INSUFFICIENT_FUNDS",
        [],
        None,
        id="insufficient-funds",
    ),
    pytest.param(
        grpc.StatusCode.UNAUTHENTICATED,
        (error_info("TOKEN_EXPIRED"),),
        Unauthenticated,
        "TOKEN_EXPIRED",
        [],
        None,
        id="unauthenticated",
    ),
    pytest.param(
        grpc.StatusCode.PERMISSION_DENIED,
        (error_info("MISSING_SCOPE", scope="generate"),),
        PermissionDenied,
        "MISSING_SCOPE",
        [],
        None,
        id="permission-denied",
    ),
    pytest.param(
        grpc.StatusCode.NOT_FOUND,
        (error_info("UNKNOWN_MODEL"),),
        NotFound,
        "UNKNOWN_MODEL",
        [],
        None,
        id="not-found",
    ),
]


@pytest.mark.parametrize("code, details, error_type, reason, violations, retry_after", ERROR_CASES)
async def test_a_rich_status_becomes_a_typed_error_and_is_not_retried(
    gateway: ScriptedGeneration,
    client: GatewayClient,
    code: grpc.StatusCode,
    details: tuple[ProtoMessage, ...],
    error_type: type[GatewayError],
    reason: str,
    violations: list[tuple[str, str]],
    retry_after: float | None,
) -> None:
    gateway.generate_script.append(fails(code, "the gateway says no", *details))

    with pytest.raises(error_type) as caught:
        await client.generate("sim-chat", "hi")

    error = caught.value
    assert error.code == code
    assert error.message == "the gateway says no"
    assert error.reason == reason
    assert error.domain == "llmgateway.v1"
    assert error.field_violations == violations
    assert error.retry_after_s == retry_after
    assert error.trace_id == TRACE_ID
    assert isinstance(error.__cause__, grpc.aio.AioRpcError)
    assert len(gateway.calls) == 1


async def test_insufficient_funds_is_a_failed_precondition_carrying_error_info_metadata(
    gateway: ScriptedGeneration, client: GatewayClient
) -> None:
    info = error_info("INSUFFICIENT_FUNDS", wallet_id="w1", available_micros="120")
    gateway.generate_script.append(fails(grpc.StatusCode.FAILED_PRECONDITION, "broke", info))

    with pytest.raises(FailedPrecondition) as caught:  # callers may catch the broader class
        await client.generate("sim-chat", "hi")

    assert isinstance(caught.value, InsufficientFunds)
    assert caught.value.error_metadata == {"wallet_id": "w1", "available_micros": "120"}


async def test_unavailable_twice_then_success_is_retried_with_a_bearer_token_on_every_attempt(
    gateway: ScriptedGeneration, scripted_server: tuple[ScriptedGeneration, str]
) -> None:
    gateway.generate_script.extend(
        [
            UNAVAILABLE,
            UNAVAILABLE,
            answers(full_response(trace_id=""), trace_trailer="from-trailer"),
        ]
    )
    _, address = scripted_server
    minter = TokenMinter(SECRET, subject="svc", scopes=["generate"])

    async with GatewayClient(
        address, token_source=minter, backoff=FAST_BACKOFF, max_retries=3
    ) as client:
        result = await client.generate(
            "sim-chat", "hi", traceparent=f"00-{TRACE_ID}-00f067aa0ba902b7-01"
        )

    assert result.text == "Hello!"
    assert result.served_by == Target("bedrock", "claude", "us-east-1")
    assert result.trace_id == "from-trailer"
    assert [call.method for call in gateway.calls] == ["Generate"] * 3
    for call in gateway.calls:
        scheme, token = call.metadata["authorization"].split(" ", 1)
        assert scheme == "Bearer" and decode(token)["sub"] == "svc"
        assert call.metadata["traceparent"].startswith(f"00-{TRACE_ID}")
        assert (
            call.deadline_s is not None and 0 < call.deadline_s <= 31
        )  # grpc rounds the wire timeout up a little


async def test_retries_stop_after_max_retries(
    gateway: ScriptedGeneration, scripted_server: tuple[ScriptedGeneration, str]
) -> None:
    gateway.generate_script.append(UNAVAILABLE)
    _, address = scripted_server

    async with GatewayClient(address, backoff=FAST_BACKOFF, max_retries=2) as client:
        with pytest.raises(Unavailable) as caught:
            await client.generate("sim-chat", "hi")

    assert caught.value.reason == "ALL_TARGETS_FAILED"
    assert len(gateway.calls) == 3  # the first attempt and two retries


async def test_no_retry_starts_when_its_backoff_would_end_past_the_deadline(
    gateway: ScriptedGeneration, scripted_server: tuple[ScriptedGeneration, str]
) -> None:
    gateway.generate_script.append(UNAVAILABLE)
    _, address = scripted_server
    slow_backoff = Backoff(initial_s=2.0, max_s=2.0, jitter=lambda cap: cap)

    async with GatewayClient(address, timeout_s=0.5, backoff=slow_backoff, max_retries=5) as client:
        started = time.monotonic()
        with pytest.raises(Unavailable):
            await client.generate("sim-chat", "hi")
        elapsed = time.monotonic() - started

    assert len(gateway.calls) == 1
    assert elapsed < 1.5  # gave up at once instead of sleeping 2 s into (or past) the deadline


async def test_every_call_carries_a_deadline_and_a_slow_answer_exceeds_it(
    gateway: ScriptedGeneration, client: GatewayClient
) -> None:
    gateway.generate_script.append(hangs(5))

    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        await client.generate("sim-chat", "hi", timeout_s=0.3)

    assert time.monotonic() - started < 1.5
    assert len(gateway.calls) == 1
    assert gateway.calls[0].deadline_s is not None and gateway.calls[0].deadline_s <= 0.35


async def test_stream_yields_typed_events_and_a_final_summary(
    gateway: ScriptedGeneration, client: GatewayClient
) -> None:
    gateway.stream_script.append(stream_events("Hel", "lo", "!"))

    events = [
        event async for event in client.stream_generate("sim-chat", "hi", max_output_tokens=10)
    ]

    started, *chunks, finished = events
    assert isinstance(started, StreamStarted) and started.served_by == Target(
        "simulator", "sim-chat"
    )
    assert chunks == [TextChunk("Hel"), TextChunk("lo"), TextChunk("!")]
    assert isinstance(finished, StreamFinished)
    assert (finished.text, finished.finish_reason, finished.usage.output_tokens) == (
        "Hello!",
        "stop",
        3,
    )
    assert finished.trace_id == TRACE_ID
    assert gateway.calls[0].request.config.max_output_tokens == 10
    assert gateway.calls[0].metadata["authorization"] == "Bearer test-token"


async def test_a_stream_is_retried_while_nothing_has_been_received(
    gateway: ScriptedGeneration, client: GatewayClient
) -> None:
    gateway.stream_script.extend([stream_fails_first(), stream_events("ok")])

    events = [event async for event in client.stream_generate("sim-chat", "hi")]

    assert [type(event) for event in events] == [StreamStarted, TextChunk, StreamFinished]
    assert len(gateway.calls) == 2


async def test_a_stream_that_fails_after_its_first_event_is_not_retried(
    gateway: ScriptedGeneration, client: GatewayClient
) -> None:
    gateway.stream_script.append(stream_events("partial", fail_after=True))
    received: list[Any] = []

    with pytest.raises(Unavailable) as caught:
        async for event in client.stream_generate("sim-chat", "hi"):
            received.append(event)

    assert caught.value.reason == "UPSTREAM_STREAM_FAILED"
    assert [type(event) for event in received] == [StreamStarted, TextChunk, StreamFinished]
    assert (
        received[-1].finish_reason == "error" and received[-1].usage.output_tokens == 1
    )  # usage so far
    assert len(gateway.calls) == 1


async def test_a_stream_is_not_retried_on_other_codes(
    gateway: ScriptedGeneration, client: GatewayClient
) -> None:
    gateway.stream_script.append(stream_fails_first(grpc.StatusCode.PERMISSION_DENIED))
    with pytest.raises(PermissionDenied):
        async for _ in client.stream_generate("sim-chat", "hi"):
            pass
    assert len(gateway.calls) == 1


async def test_the_sync_client_shares_the_semantics(
    gateway: ScriptedGeneration, scripted_server: tuple[ScriptedGeneration, str]
) -> None:
    gateway.generate_script.extend(
        [
            UNAVAILABLE,
            answers(full_response()),
            fails(grpc.StatusCode.INVALID_ARGUMENT, "bad", error_info("INVALID_ARGUMENT")),
        ]
    )
    gateway.stream_script.extend([stream_fails_first(), stream_events("a", "b")])
    _, address = scripted_server

    def use_sync_client() -> tuple[Any, list[Any], GatewayError]:
        with Gateway(
            address, token_source=StaticToken("sync-token"), backoff=FAST_BACKOFF, timeout_s=5
        ) as sync_client:
            result = sync_client.generate("sim-chat", "hi", temperature=0.2)
            events = list(sync_client.stream_generate("sim-chat", "hi"))
            try:
                sync_client.generate("sim-chat", "hi")
            except GatewayError as error:
                return result, events, error
        raise AssertionError("the third call should have failed")

    # The sync client blocks its thread, so it runs off the loop that serves it.
    result, events, error = await asyncio.to_thread(use_sync_client)

    assert result.text == "Hello!" and result.trace_id == TRACE_ID
    assert [type(event) for event in events] == [
        StreamStarted,
        TextChunk,
        TextChunk,
        StreamFinished,
    ]
    assert events[-1].text == "ab"
    assert isinstance(error, InvalidArgument) and error.trace_id == TRACE_ID
    assert [call.method for call in gateway.calls] == [
        "Generate",
        "Generate",
        "StreamGenerate",
        "StreamGenerate",
        "Generate",
    ]
    assert gateway.calls[1].metadata["authorization"] == "Bearer sync-token"
    assert gateway.calls[1].request.config.temperature == pytest.approx(0.2)


# --- retry decisions --------------------------------------------------------------------


def test_only_unavailable_is_retried_and_retry_info_is_a_minimum_wait() -> None:
    plan = RetryPlan(
        timeout_s=10, max_retries=3, backoff=Backoff(initial_s=0.1, jitter=lambda cap: cap)
    )
    assert plan.next_delay_s(InvalidArgument("x")) is None
    assert plan.next_delay_s(DeadlineExceeded("x")) is None
    assert plan.next_delay_s(Unavailable("x")) == pytest.approx(0.1)
    assert plan.next_delay_s(Unavailable("x")) == pytest.approx(0.2)
    assert plan.next_delay_s(Unavailable("x", retry_after_s=1.0)) == pytest.approx(1.0)
    assert plan.next_delay_s(Unavailable("x")) is None  # three retries spent


def test_full_jitter_stays_within_the_exponential_cap() -> None:
    backoff = Backoff(initial_s=0.5, max_s=2.0)
    for retry in range(6):
        cap = min(2.0, 0.5 * 2**retry)
        assert all(0 <= backoff.delay_s(retry) <= cap for _ in range(50))


# --- the demo's token -------------------------------------------------------------------


def test_demo_prefers_llmgw_token_then_the_secret_then_the_dev_key_file(tmp_path: Path) -> None:
    assert demo_token_source({"LLMGW_TOKEN": "given"}, tmp_path).token() == "given"

    from_env = demo_token_source({"LLMGW_JWT_SECRET": SECRET}, tmp_path).token()
    assert decode(from_env)["sub"] == "demo" and decode(from_env)["scope"] == "generate retrieve"

    with pytest.raises(DemoSetupError, match="make run"):
        demo_token_source({}, tmp_path)

    (tmp_path / ".data").mkdir()
    (tmp_path / ".data" / "dev-jwt-secret").write_text(SECRET + "\n")
    assert decode(demo_token_source({}, tmp_path).token())["sub"] == "demo"
