"""Prompt templates and bot configs drive Generate end to end (no code changes)."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import grpc
import pytest
from llmgateway.v1 import config_pb2 as cpb
from llmgateway.v1 import config_pb2_grpc as cpb_grpc
from llmgateway.v1 import generation_pb2 as pb
from llmgateway.v1 import generation_pb2_grpc as pb_grpc

from simulator.replies import count_prompt_tokens
from tests.support.gateway import GatewayProcess, bearer, raw_test_config
from tests.support.usage import usage_record

GEN = bearer("generate")
ADMIN = bearer("admin")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def hello(**kw: object) -> pb.GenerateRequest:
    return pb.GenerateRequest(messages=[pb.Message(role="user", content="Hello there")], **kw)


@pytest.fixture
def gen(channel) -> pb_grpc.GenerationServiceStub:
    return pb_grpc.GenerationServiceStub(channel)


@pytest.fixture
def conf(channel) -> cpb_grpc.ConfigServiceStub:
    return cpb_grpc.ConfigServiceStub(channel)


async def test_prompt_template_is_rendered_and_reported(gen, conf):
    variables = {"product": "Widget", "question": "Why is it blue?"}
    rendered = await conf.RenderPrompt(cpb.RenderPromptRequest(key="support",
                                                               variables=variables),
                                       metadata=GEN)
    response = await gen.Generate(hello(model="sim-chat", prompt=pb.PromptOptions(
        key="support", variables=variables)), metadata=GEN, timeout=10)
    assert (response.prompt.key, response.prompt.version) == ("support", rendered.version)
    # The vendor saw the rendered system part, the conversation and the template's user part.
    assert response.usage.input_tokens == count_prompt_tokens(
        [rendered.system, "Hello there", rendered.user], 3)


async def test_missing_template_variable_is_invalid_argument(gen):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gen.Generate(hello(model="sim-chat", prompt=pb.PromptOptions(
            key="support", variables={"product": "Widget"})), metadata=GEN, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "prompt.variables[question]" in caught.value.details()


async def test_lenient_prompt_leaves_missing_variables_empty(gen):
    response = await gen.Generate(hello(model="sim-chat", prompt=pb.PromptOptions(
        key="support", variables={"product": "Widget"}, lenient=True)), metadata=GEN, timeout=10)
    assert response.prompt.key == "support"


async def test_version_pinning_and_template_model(gen, conf):
    key = unique("pin")
    await conf.CreatePromptVersion(cpb.CreatePromptVersionRequest(
        template=cpb.PromptTemplate(key=key, system="One {{x}}", model="sim-chat"),
        activate=True), metadata=ADMIN)
    await conf.CreatePromptVersion(cpb.CreatePromptVersionRequest(
        template=cpb.PromptTemplate(key=key, system="Two two two {{x}}", model="sim-chat")),
        metadata=ADMIN)
    active = await gen.Generate(hello(prompt=pb.PromptOptions(key=key, variables={"x": "y"})),
                                metadata=GEN, timeout=10)
    pinned = await gen.Generate(hello(prompt=pb.PromptOptions(key=key, version=2,
                                                              variables={"x": "y"})),
                                metadata=GEN, timeout=10)
    assert active.prompt.version == 1 and pinned.prompt.version == 2
    assert active.served_by.model == "sim-chat"  # the template's model route
    assert pinned.usage.input_tokens - active.usage.input_tokens == 2


async def test_bot_active_config_supplies_model_prompt_and_parameters(gen, conf, pg_url):
    slug = unique("bot")
    await conf.CreateBot(cpb.CreateBotRequest(bot=cpb.Bot(slug=slug, name="Support bot")),
                         metadata=ADMIN)
    config = await conf.CreateBotConfig(cpb.CreateBotConfigRequest(config=cpb.BotConfig(
        bot=slug, provider="simulator", model="bot-model-a", prompt_key="support",
        max_output_tokens=5), activate=True), metadata=ADMIN)
    response = await gen.Generate(hello(bot=slug, prompt=pb.PromptOptions(
        variables={"product": "Widget", "question": "How?"})), metadata=GEN, timeout=10)
    assert (response.served_by.provider, response.served_by.model) == ("simulator",
                                                                       "bot-model-a")
    assert response.bot_config_id == config.config_id
    assert response.prompt.key == "support"
    assert response.usage.output_tokens == 5  # the config's max_output_tokens
    record = await usage_record(pg_url, response.trace_id)
    assert (record["prompt_key"], record["prompt_version"], record["bot_config_id"]) == (
        "support", response.prompt.version, config.config_id)
    assert record["model"] == "bot-model-a"


async def test_bot_fallbacks_and_disabled_or_unknown_bots(gen, conf):
    from google.protobuf import struct_pb2

    slug = unique("fb")
    await conf.CreateBot(cpb.CreateBotRequest(bot=cpb.Bot(slug=slug, name="FB")), metadata=ADMIN)
    meta = struct_pb2.Struct()
    meta.update({"fallbacks": [{"provider": "simulator", "model": "fb-backup"}]})
    await conf.CreateBotConfig(cpb.CreateBotConfigRequest(config=cpb.BotConfig(
        bot=slug, provider="dead", model="gone", metadata=meta), activate=True), metadata=ADMIN)
    response = await gen.Generate(hello(bot=slug), metadata=GEN, timeout=10)
    assert [a.target.model for a in response.attempts][-1] == "fb-backup"
    assert response.served_by.model == "fb-backup"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gen.Generate(hello(bot="no-such-bot"), metadata=GEN, timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_switching_the_active_config_under_load_on_two_processes(simulator, pg_url,
                                                                 tmp_path: Path):
    """Every request is served by A or B, none fails, and every request that starts after
    the switch returned is served by B — on both server processes, with no restart."""
    raw = raw_test_config(simulator.base_url, tmp_path, database={"url": pg_url})
    with GatewayProcess(raw, tmp_path) as one, GatewayProcess(raw, tmp_path) as two:
        slug = unique("ab")
        with grpc.insecure_channel(one.target) as admin_channel:
            conf = cpb_grpc.ConfigServiceStub(admin_channel)
            conf.CreateBot(cpb.CreateBotRequest(bot=cpb.Bot(slug=slug, name="AB")),
                           metadata=ADMIN)
            a = conf.CreateBotConfig(cpb.CreateBotConfigRequest(config=cpb.BotConfig(
                bot=slug, provider="simulator", model="ab-model-a"), activate=True),
                metadata=ADMIN)
            b = conf.CreateBotConfig(cpb.CreateBotConfigRequest(config=cpb.BotConfig(
                bot=slug, provider="simulator", model="ab-model-b")), metadata=ADMIN)

            results: list[tuple[float, str, str]] = []  # (start, model or error, config)
            stop = threading.Event()
            lock = threading.Lock()

            def load(target: str) -> None:
                with grpc.insecure_channel(target) as channel:
                    stub = pb_grpc.GenerationServiceStub(channel)
                    while not stop.is_set():
                        started = time.monotonic()
                        try:
                            r = stub.Generate(hello(bot=slug), metadata=GEN, timeout=10)
                            outcome = (started, r.served_by.model, r.bot_config_id)
                        except grpc.RpcError as error:
                            outcome = (started, f"error:{error.code().name}", "")
                        with lock:
                            results.append(outcome)

            workers = [threading.Thread(target=load, args=(t,)) for t in
                       (one.target, two.target, one.target, two.target)]
            for w in workers:
                w.start()
            time.sleep(1.0)
            conf.ActivateBotConfig(cpb.ActivateBotConfigRequest(bot=slug, config_id=b.config_id),
                                   metadata=ADMIN)
            switched = time.monotonic()
            time.sleep(1.0)
            stop.set()
            for w in workers:
                w.join()

    assert results, "the load produced no requests"
    assert all(not model.startswith("error") for _, model, _ in results), results[:5]
    assert {m for _, m, _ in results} == {"ab-model-a", "ab-model-b"}
    after = [(m, c) for started, m, c in results if started > switched]
    assert after and all(m == "ab-model-b" and c == b.config_id for m, c in after)
    before = [c for started, _, c in results if started < switched - 0.2]
    assert before and all(c == a.config_id for c in before)
