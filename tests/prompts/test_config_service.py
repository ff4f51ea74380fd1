"""ConfigService through the real server and Postgres: prompt versions, activation,
rendering, bots with exactly one active configuration."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.protobuf import struct_pb2
from llmgateway.v1 import config_pb2 as pb
from llmgateway.v1 import config_pb2_grpc as pb_grpc

from tests.support.gateway import bearer

ADMIN = bearer("admin")
READ = bearer("generate")


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> pb_grpc.ConfigServiceStub:
    return pb_grpc.ConfigServiceStub(channel)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_versions_are_numbered_and_one_is_active(stub):
    key = unique("greet")
    v1 = await stub.CreatePromptVersion(pb.CreatePromptVersionRequest(
        template=pb.PromptTemplate(key=key, system="Hello {{name}}"), activate=True),
        metadata=ADMIN)
    v2 = await stub.CreatePromptVersion(pb.CreatePromptVersionRequest(
        template=pb.PromptTemplate(key=key, system="Hi {{name}}!", temperature=0.3)),
        metadata=ADMIN)
    assert (v1.version, v1.active, v2.version, v2.active) == (1, True, 2, False)
    assert (await stub.GetPrompt(pb.GetPromptRequest(key=key), metadata=READ)).version == 1
    pinned = await stub.RenderPrompt(pb.RenderPromptRequest(key=key, version=2,
                                                            variables={"name": "Ada"}),
                                     metadata=READ)
    assert (pinned.system, pinned.version) == ("Hi Ada!", 2)
    await stub.ActivatePrompt(pb.ActivatePromptRequest(key=key, version=2), metadata=ADMIN)
    listed = await stub.ListPrompts(pb.ListPromptsRequest(key=key), metadata=READ)
    assert [(t.version, t.active) for t in listed.templates] == [(1, False), (2, True)]
    active = await stub.RenderPrompt(pb.RenderPromptRequest(key=key, variables={"name": "Bo"}),
                                     metadata=READ)
    assert (active.system, active.version) == ("Hi Bo!", 2)


async def test_canonical_defaults_are_loaded_at_start_up(stub):
    astro = await stub.GetPrompt(pb.GetPromptRequest(key="astrologer"), metadata=READ)
    assert astro.version >= 1 and astro.active and astro.model == "sim-chat"
    rendered = await stub.RenderPrompt(pb.RenderPromptRequest(
        key="astrologer", variables={"user_name": "Ada", "sign": "Leo"}), metadata=READ)
    assert "Stella" in rendered.system and "memories" not in rendered.system


async def test_missing_variable_and_unknown_prompt_are_precise(stub):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RenderPrompt(pb.RenderPromptRequest(key="support",
                                                       variables={"product": "X"}),
                                metadata=READ)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "variables[question]" in caught.value.details()
    lenient = await stub.RenderPrompt(pb.RenderPromptRequest(
        key="support", variables={"product": "X"}, lenient=True), metadata=READ)
    assert lenient.user == "Customer question: "
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetPrompt(pb.GetPromptRequest(key="no-such-prompt"), metadata=READ)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_changes_need_the_admin_scope(stub):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateBot(pb.CreateBotRequest(bot=pb.Bot(slug=unique("b"), name="B")),
                             metadata=READ)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_bot_has_exactly_one_active_config(stub):
    slug = unique("astro")
    await stub.CreateBot(pb.CreateBotRequest(bot=pb.Bot(slug=slug, name="Astro")),
                         metadata=ADMIN)
    meta = struct_pb2.Struct()
    meta.update({"region_name": "ap-south-1", "tools": ["horoscope"]})
    a = await stub.CreateBotConfig(pb.CreateBotConfigRequest(
        config=pb.BotConfig(bot=slug, provider="simulator", model="sim-chat", temperature=0.5,
                            prompt_key="astrologer", metadata=meta), activate=True),
        metadata=ADMIN)
    b = await stub.CreateBotConfig(pb.CreateBotConfigRequest(
        config=pb.BotConfig(bot=slug, provider="simulator", model="sim-fast")), metadata=ADMIN)
    assert a.active and not b.active and a.metadata["region_name"] == "ap-south-1"
    await stub.ActivateBotConfig(pb.ActivateBotConfigRequest(bot=slug, config_id=b.config_id),
                                 metadata=ADMIN)
    configs = (await stub.ListBotConfigs(pb.ListBotConfigsRequest(bot=slug),
                                         metadata=READ)).configs
    assert [(c.config_id, c.active) for c in configs] == [(b.config_id, True),
                                                          (a.config_id, False)]
    bots = {bot.slug: bot for bot in (await stub.ListBots(pb.ListBotsRequest(),
                                                          metadata=READ)).bots}
    assert bots[slug].active_config_id == b.config_id


async def test_bad_bot_config_names_fields(stub):
    slug = unique("bad")
    await stub.CreateBot(pb.CreateBotRequest(bot=pb.Bot(slug=slug, name="Bad")), metadata=ADMIN)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateBotConfig(pb.CreateBotConfigRequest(
            config=pb.BotConfig(bot=slug, provider="", model="m", top_p=1.5)), metadata=ADMIN)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "config.provider" in caught.value.details() and "config.top_p" in caught.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ActivateBotConfig(pb.ActivateBotConfigRequest(bot=slug, config_id="999999"),
                                     metadata=ADMIN)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
