"""Bad input gets INVALID_ARGUMENT naming the field, with google.rpc details; never
INTERNAL, never a stack trace."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from llmgateway.v1 import generation_pb2 as pb
from llmgateway.v1 import generation_pb2_grpc as pb_grpc

from tests.support.gateway import bearer


def details(error: grpc.aio.AioRpcError) -> tuple[error_details_pb2.ErrorInfo,
                                                 list[tuple[str, str]]]:
    """ErrorInfo and BadRequest field violations from the status details trailer."""
    raw = dict(error.trailing_metadata())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(raw)
    info, violations = error_details_pb2.ErrorInfo(), []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations = [(v.field, v.description) for v in bad.field_violations]
    return info, violations


def user(text: str = "Hi") -> pb.Message:
    return pb.Message(role="user", content=text)


CASES = [
    ("no messages", pb.GenerateRequest(model="sim-chat"), "messages"),
    ("unknown model", pb.GenerateRequest(model="no-such-model", messages=[user()]), "model"),
    ("no model", pb.GenerateRequest(messages=[user()]), "model"),
    ("bad role", pb.GenerateRequest(model="sim-chat", messages=[pb.Message(role="robot",
                                                                           content="x")]),
     "messages[0].role"),
    ("empty content", pb.GenerateRequest(model="sim-chat", messages=[user(""), ]),
     "messages[0].content"),
    ("negative max tokens", pb.GenerateRequest(model="sim-chat", messages=[user()],
                                               config=pb.GenerationConfig(max_output_tokens=-5)),
     "config.max_output_tokens"),
    ("temperature", pb.GenerateRequest(model="sim-chat", messages=[user()],
                                       config=pb.GenerationConfig(temperature=3.5)),
     "config.temperature"),
    ("top_p", pb.GenerateRequest(model="sim-chat", messages=[user()],
                                 config=pb.GenerationConfig(top_p=0)), "config.top_p"),
    ("empty stop", pb.GenerateRequest(model="sim-chat", messages=[user()],
                                      config=pb.GenerationConfig(stop_sequences=["ok", ""])),
     "config.stop_sequences[1]"),
    ("unknown target provider", pb.GenerateRequest(
        messages=[user()], targets=[pb.Target(provider="nope", model="m")]),
     "targets[0].provider"),
    ("oversized prompt", pb.GenerateRequest(model="sim-chat", messages=[user("x" * 1_200_000)]),
     "messages"),
]


@pytest.mark.parametrize("name,req,field", CASES, ids=[c[0] for c in CASES])
async def test_invalid_request_names_the_field(channel, name, req, field):
    stub = pb_grpc.GenerationServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Generate(req, metadata=bearer("generate"), timeout=10)
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    info, violations = details(error)
    assert info.domain == "llmgateway.v1"
    assert info.reason in ("INVALID_ARGUMENT", "UNKNOWN_MODEL")
    assert field in [f for f, _ in violations], violations
    assert "Traceback" not in error.details() and field in error.details()


async def test_stream_validates_before_streaming(channel):
    stub = pb_grpc.GenerationServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in stub.StreamGenerate(pb.StreamGenerateRequest(model="sim-chat"),
                                           metadata=bearer("generate"), timeout=10):
            pass
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ("messages", "at least one message is required") in details(caught.value)[1]


async def test_every_problem_is_reported_at_once(channel):
    stub = pb_grpc.GenerationServiceStub(channel)
    req = pb.GenerateRequest(model="sim-chat", messages=[pb.Message(role="x", content="")],
                             config=pb.GenerationConfig(top_k=-1))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Generate(req, metadata=bearer("generate"), timeout=10)
    fields = {f for f, _ in details(caught.value)[1]}
    assert fields == {"messages[0].role", "messages[0].content", "config.top_k"}


async def test_message_over_the_transport_limit_is_refused_cleanly(channel):
    stub = pb_grpc.GenerationServiceStub(channel)
    req = pb.GenerateRequest(model="sim-chat", messages=[user("y" * (5 * 1024 * 1024))])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Generate(req, metadata=bearer("generate"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "Traceback" not in (caught.value.details() or "")


# -- generic request checks (server/request_checks.py): every RPC, before its handler ----

def _unique(prefix: str) -> str:
    import uuid

    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _violations(call) -> list[tuple[str, str]]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert "Error" not in error.details() and "Traceback" not in error.details()
    return details(error)[1]


async def test_nul_characters_never_reach_the_database(channel):
    from llmgateway.v1 import config_pb2, config_pb2_grpc, retrieval_pb2, retrieval_pb2_grpc

    generation = pb_grpc.GenerationServiceStub(channel)
    config = config_pb2_grpc.ConfigServiceStub(channel)
    retrieval = retrieval_pb2_grpc.RetrievalServiceStub(channel)
    admin = bearer("admin")
    fields = [f for f, _ in await _violations(generation.Generate(
        pb.GenerateRequest(model="sim-chat", messages=[user("a\x00b")], metadata={"k": "\x00"}),
        metadata=admin, timeout=10))]
    assert fields == ["messages[0].content", "metadata[k]"]
    assert ("bot.name", "must not contain NUL characters") in await _violations(
        config.CreateBot(config_pb2.CreateBotRequest(bot=config_pb2.Bot(
            slug=_unique("nul"), name="x\x00")), metadata=admin, timeout=10))
    assert "template.system" in [f for f, _ in await _violations(config.CreatePromptVersion(
        config_pb2.CreatePromptVersionRequest(template=config_pb2.PromptTemplate(
            key=_unique("nul"), system="\x00")), metadata=admin, timeout=10))]
    assert "documents[0].text" in [f for f, _ in await _violations(retrieval.IngestDocuments(
        retrieval_pb2.IngestDocumentsRequest(namespace=_unique("nul"), documents=[
            retrieval_pb2.Document(id="d", text="a\x00")]), metadata=admin, timeout=10))]


async def test_struct_numbers_must_be_finite(channel):
    from llmgateway.v1 import config_pb2, config_pb2_grpc

    config = config_pb2_grpc.ConfigServiceStub(channel)
    bot = config_pb2.Bot(slug=_unique("nan"), name="n")
    bot.metadata.update({"weight": float("nan"), "nested": {"list": [1, float("inf")]}})
    fields = {f for f, _ in await _violations(config.CreateBot(
        config_pb2.CreateBotRequest(bot=bot), metadata=bearer("admin"), timeout=10))}
    assert fields == {"bot.metadata[weight]", "bot.metadata[nested][list][1]"}


async def test_timestamps_out_of_range_are_refused(channel):
    from llmgateway.v1 import billing_pb2, billing_pb2_grpc

    billing = billing_pb2_grpc.BillingServiceStub(channel)
    request = billing_pb2.ListTransactionsRequest(wallet_id="w")
    request.start_time.seconds = -(2**62)
    request.end_time.nanos = 1_000_000_000
    fields = {f for f, _ in await _violations(billing.ListTransactions(
        request, metadata=bearer("admin"), timeout=10))}
    assert fields == {"start_time", "end_time"}


@pytest.mark.parametrize("config_id", ["99999999999999999999999", "²", "0"])
async def test_config_ids_are_parsed_safely(channel, config_id):
    from llmgateway.v1 import config_pb2, config_pb2_grpc

    config = config_pb2_grpc.ConfigServiceStub(channel)
    assert ("config_id", "must be a config id") in await _violations(config.ActivateBotConfig(
        config_pb2.ActivateBotConfigRequest(bot="b", config_id=config_id),
        metadata=bearer("admin"), timeout=10))


async def test_errors_do_not_echo_unbounded_input(channel):
    stub = pb_grpc.GenerationServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Generate(pb.GenerateRequest(model="m" * 3000, messages=[user()]),
                            metadata=bearer("generate"), timeout=10)
    message = caught.value.details()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "m" * 65 not in message and len(message) <= 1100, message
    raw = dict(caught.value.trailing_metadata())["grpc-status-details-bin"]
    assert "m" * 200 not in raw.decode("utf-8", "replace")


async def test_concurrent_prompt_activations_all_succeed(channel):
    import asyncio

    from llmgateway.v1 import config_pb2, config_pb2_grpc

    config = config_pb2_grpc.ConfigServiceStub(channel)
    admin, key = bearer("admin"), _unique("race")
    for n in range(3):
        await config.CreatePromptVersion(config_pb2.CreatePromptVersionRequest(
            template=config_pb2.PromptTemplate(key=key, system=f"v{n}")), metadata=admin,
            timeout=10)
    results = await asyncio.gather(*(config.ActivatePrompt(config_pb2.ActivatePromptRequest(
        key=key, version=1 + i % 3), metadata=admin, timeout=20) for i in range(30)))
    assert [r.version for r in results] == [1 + i % 3 for i in range(30)]
    listed = await config.ListPrompts(config_pb2.ListPromptsRequest(key=key), metadata=admin)
    assert sum(t.active for t in listed.templates) == 1


async def test_concurrent_budget_changes_all_succeed(channel):
    import asyncio

    from llmgateway.v1 import billing_pb2, billing_pb2_grpc

    billing = billing_pb2_grpc.BillingServiceStub(channel)
    admin, wallet = bearer("admin"), _unique("race")
    await billing.CreateWallet(billing_pb2.CreateWalletRequest(wallet_id=wallet,
                                                               currency_code="USD"),
                               metadata=admin, timeout=10)
    results = await asyncio.gather(*(billing.SetBudget(billing_pb2.SetBudgetRequest(
        wallet_id=wallet, period=billing_pb2.BUDGET_PERIOD_DAY,
        metric=billing_pb2.BUDGET_METRIC_TOKENS, limit=i % 4 * 100), metadata=admin,
        timeout=20) for i in range(30)), return_exceptions=True)
    assert [r for r in results if isinstance(r, Exception)] == []
