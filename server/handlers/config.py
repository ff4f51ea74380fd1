"""ConfigService: prompt template versions and bot configurations.

Template keys and bot slugs are the caller's tenant's (server/kernel/tenancy.py): stored
qualified, shown as the caller named them; listings show only the caller's tenant.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2, timestamp_pb2
from llmgateway.v1 import config_pb2 as pb
from llmgateway.v1 import config_pb2_grpc as pb_grpc

from server.bots.store import Bot, BotConfig, BotStore
from server.kernel.errors import bad_field
from server.kernel.tenancy import Tenant, TenantClaims
from server.prompts.render import Renderer
from server.prompts.store import PromptStore
from server.prompts.templates import PromptTemplate, render
from server.wire import current_tenant


def _struct(value: dict[str, Any] | None) -> struct_pb2.Struct | None:
    if value is None:
        return None
    out = struct_pb2.Struct()
    out.update(value)
    return out


def _dict(message: struct_pb2.Struct) -> dict[str, Any]:
    return json_format.MessageToDict(message)


def _time(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def template_pb(t: PromptTemplate, tenant: Tenant) -> pb.PromptTemplate:
    out = pb.PromptTemplate(key=tenant.shown(t.key), version=t.version, system=t.system, user=t.user,
                            model=t.model, description=t.description, active=t.active,
                            structured=_struct(t.structured), create_time=_time(t.created_at))
    if t.temperature is not None:
        out.temperature = round(t.temperature, 4)
    if t.max_output_tokens is not None:
        out.max_output_tokens = t.max_output_tokens
    return out


def config_pb(c: BotConfig, tenant: Tenant) -> pb.BotConfig:
    out = pb.BotConfig(config_id=c.config_id, bot=tenant.shown(c.bot), provider=c.provider, model=c.model,
                       prompt_key=c.prompt_key, prompt_version=c.prompt_version,
                       metadata=_struct(c.metadata), active=c.active,
                       create_time=_time(c.created_at))
    for name in ("temperature", "top_p"):
        if getattr(c, name) is not None:
            setattr(out, name, round(getattr(c, name), 4))
    for name in ("top_k", "max_output_tokens"):
        if getattr(c, name) is not None:
            setattr(out, name, getattr(c, name))
    return out


def _optional(message: Any, name: str) -> Any:
    return getattr(message, name) if message.HasField(name) else None


class ConfigService(pb_grpc.ConfigServiceServicer):
    def __init__(self, prompts: PromptStore, bots: BotStore, renderer: Renderer,
                 tenants: TenantClaims = TenantClaims()) -> None:
        self._prompts = prompts
        self._bots = bots
        self._renderer = renderer
        self._tenants = tenants

    def _tenant(self) -> Tenant:
        return current_tenant(self._tenants)

    async def CreatePromptVersion(self, request: pb.CreatePromptVersionRequest,
                                  context: grpc.aio.ServicerContext) -> pb.PromptTemplate:
        t = request.template
        tenant = self._tenant()
        structured = _dict(t.structured) if t.HasField("structured") else None
        template = PromptTemplate(
            key=tenant.own(t.key, "template.key"), version=0, system=t.system, structured=structured, user=t.user,
            temperature=_optional(t, "temperature"),
            max_output_tokens=_optional(t, "max_output_tokens"), model=t.model,
            description=t.description)
        return template_pb(await self._prompts.create_version(template,
                                                               activate=request.activate),
                           tenant)

    async def GetPrompt(self, request: pb.GetPromptRequest,
                        context: grpc.aio.ServicerContext) -> pb.PromptTemplate:
        if not request.key:
            raise bad_field("key", "required")
        tenant = self._tenant()
        return template_pb(await self._prompts.get(tenant.own(request.key, "key"),
                                                   request.version), tenant)

    async def ListPrompts(self, request: pb.ListPromptsRequest,
                          context: grpc.aio.ServicerContext) -> pb.ListPromptsResponse:
        tenant = self._tenant()
        key = tenant.own(request.key, "key")
        return pb.ListPromptsResponse(
            templates=[template_pb(t, tenant) for t in await self._prompts.list(key)
                       if tenant.owns(t.key)])

    async def ActivatePrompt(self, request: pb.ActivatePromptRequest,
                             context: grpc.aio.ServicerContext) -> pb.PromptTemplate:
        if not request.key:
            raise bad_field("key", "required")
        if request.version <= 0:
            raise bad_field("version", "must be positive")
        tenant = self._tenant()
        return template_pb(await self._prompts.activate(tenant.own(request.key, "key"),
                                                        request.version), tenant)

    async def RenderPrompt(self, request: pb.RenderPromptRequest,
                           context: grpc.aio.ServicerContext) -> pb.RenderPromptResponse:
        if not request.key:
            raise bad_field("key", "required")
        template = await self._prompts.get(self._tenant().own(request.key, "key"),
                                           request.version)
        rendered = render(template, self._renderer, dict(request.variables),
                          strict=not request.lenient, field_prefix="variables")
        return pb.RenderPromptResponse(system=rendered.system, user=rendered.user,
                                       version=rendered.version)

    async def CreateBot(self, request: pb.CreateBotRequest,
                        context: grpc.aio.ServicerContext) -> pb.Bot:
        b = request.bot
        tenant = self._tenant()
        bot = await self._bots.create_bot(Bot(tenant.own(b.slug, "bot.slug"), b.name,
                                              b.status or "active", _dict(b.metadata)))
        return pb.Bot(slug=tenant.shown(bot.slug), name=bot.name, status=bot.status,
                      metadata=_struct(bot.metadata))

    async def ListBots(self, request: pb.ListBotsRequest,
                       context: grpc.aio.ServicerContext) -> pb.ListBotsResponse:
        tenant = self._tenant()
        return pb.ListBotsResponse(bots=[
            pb.Bot(slug=tenant.shown(b.slug), name=b.name, status=b.status,
                   metadata=_struct(b.metadata), active_config_id=b.active_config_id)
            for b in await self._bots.list_bots() if tenant.owns(b.slug)])

    async def CreateBotConfig(self, request: pb.CreateBotConfigRequest,
                              context: grpc.aio.ServicerContext) -> pb.BotConfig:
        c = request.config
        tenant = self._tenant()
        config = BotConfig(
            config_id="", bot=tenant.own(c.bot, "config.bot"), provider=c.provider, model=c.model,
            temperature=_optional(c, "temperature"), top_p=_optional(c, "top_p"),
            top_k=_optional(c, "top_k"), max_output_tokens=_optional(c, "max_output_tokens"),
            prompt_key=c.prompt_key, prompt_version=c.prompt_version, metadata=_dict(c.metadata))
        return config_pb(await self._bots.create_config(config, activate=request.activate),
                         tenant)

    async def ListBotConfigs(self, request: pb.ListBotConfigsRequest,
                             context: grpc.aio.ServicerContext) -> pb.ListBotConfigsResponse:
        if not request.bot:
            raise bad_field("bot", "required")
        tenant = self._tenant()
        return pb.ListBotConfigsResponse(
            configs=[config_pb(c, tenant) for c in
                     await self._bots.list_configs(tenant.own(request.bot, "bot"))])

    async def ActivateBotConfig(self, request: pb.ActivateBotConfigRequest,
                                context: grpc.aio.ServicerContext) -> pb.BotConfig:
        if not request.bot:
            raise bad_field("bot", "required")
        if not request.config_id:
            raise bad_field("config_id", "required")
        tenant = self._tenant()
        return config_pb(await self._bots.activate(tenant.own(request.bot, "bot"),
                                                   request.config_id), tenant)
