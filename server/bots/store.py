"""Bots and bot LLM configurations in Postgres.

A configuration row is never edited, only added and (de)activated, so the id in a usage
record always names the exact settings that produced an output. Activation deactivates
the old row and activates the new one in one transaction, under a row lock on the bot:
concurrent requests (on any process) read either the old or the new active row, never
neither, and the partial unique index makes two active rows impossible.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from server.kernel.tenancy import local_name
from server.kernel.errors import Fault, FieldViolation, GatewayError, invalid_argument


@dataclass(frozen=True)
class Bot:
    slug: str
    name: str
    status: str = "active"
    metadata: dict[str, Any] = field(default_factory=dict)
    active_config_id: str = ""


@dataclass(frozen=True)
class BotConfig:
    config_id: str
    bot: str
    provider: str
    model: str
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_output_tokens: int | None = None
    prompt_key: str = ""
    prompt_version: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    active: bool = False
    created_at: datetime | None = None


_CONFIG_COLUMNS = ("id, bot, provider, model, temperature, top_p, top_k, max_output_tokens, "
                   "prompt_key, prompt_version, metadata, active, created_at")


def _json(value: Any) -> dict[str, Any]:
    return json.loads(value) if isinstance(value, str) else dict(value or {})


def _config(row: Any) -> BotConfig:
    return BotConfig(str(row.id), row.bot, row.provider, row.model, row.temperature, row.top_p,
                     row.top_k, row.max_output_tokens, row.prompt_key, row.prompt_version,
                     _json(row.metadata), row.active, row.created_at)


MAX_CONFIG_ID = 2**63 - 1  # bigserial


def is_config_id(value: str) -> bool:
    """A config id as stored: ASCII digits of a positive bigint (``"²"`` is a digit to
    ``str.isdigit`` but not to ``int``; 20 digits overflow Postgres' bigint)."""
    return (0 < len(value) <= 19 and value.isascii() and value.isdigit()
            and 0 < int(value) <= MAX_CONFIG_ID)


def _bot_not_found(slug: str) -> GatewayError:
    slug = local_name(slug)  # the caller's name, never the stored (tenant) form
    return GatewayError(Fault.NOT_FOUND, "NOT_FOUND", f"there is no bot {slug!r}",
                        metadata={"bot": slug})


def validate_config(config: BotConfig) -> None:
    bad = []
    for name in ("bot", "provider", "model"):
        if not getattr(config, name):
            bad.append(FieldViolation(f"config.{name}", "required"))
    if config.temperature is not None and not 0 <= config.temperature <= 2:
        bad.append(FieldViolation("config.temperature", "must be between 0 and 2"))
    if config.top_p is not None and not 0 < config.top_p <= 1:
        bad.append(FieldViolation("config.top_p", "must be in (0, 1]"))
    if config.top_k is not None and config.top_k <= 0:
        bad.append(FieldViolation("config.top_k", "must be positive"))
    if config.max_output_tokens is not None and config.max_output_tokens <= 0:
        bad.append(FieldViolation("config.max_output_tokens", "must be positive"))
    fallbacks = config.metadata.get("fallbacks", [])
    if not isinstance(fallbacks, list) or not all(
            isinstance(f, dict) and f.get("provider") and f.get("model") for f in fallbacks):
        bad.append(FieldViolation("config.metadata.fallbacks",
                                  "a list of {provider, model, region?}"))
    if bad:
        raise invalid_argument(bad)


class BotStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create_bot(self, bot: Bot) -> Bot:
        bad = []
        slug = local_name(bot.slug)  # the rule is on the tenant's own name
        if not slug or len(slug) > 64 or not slug.replace("-", "").isalnum():
            bad.append(FieldViolation("bot.slug", "1..64 characters of letters, digits and '-'"))
        if not bot.name:
            bad.append(FieldViolation("bot.name", "required"))
        if bot.status not in ("active", "disabled"):
            bad.append(FieldViolation("bot.status", "'active' or 'disabled'"))
        if bad:
            raise invalid_argument(bad)
        try:
            async with self._engine.begin() as conn:
                await conn.execute(text(
                    "INSERT INTO bots (slug, name, status, metadata) VALUES "
                    "(:slug, :name, :status, CAST(:metadata AS jsonb))"),
                    {"slug": bot.slug, "name": bot.name, "status": bot.status,
                     "metadata": json.dumps(bot.metadata)})
        except IntegrityError:
            raise GatewayError(Fault.CONFLICT, "ALREADY_EXISTS",
                               f"bot {bot.slug!r} exists", metadata={"bot": bot.slug}) from None
        return bot

    async def list_bots(self) -> list[Bot]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT b.slug, b.name, b.status, b.metadata, c.id AS config_id FROM bots b "
                "LEFT JOIN bot_configs c ON c.bot = b.slug AND c.active ORDER BY b.slug"))).all()
        return [Bot(r.slug, r.name, r.status, _json(r.metadata),
                    str(r.config_id) if r.config_id else "") for r in rows]

    async def create_config(self, config: BotConfig, *, activate: bool) -> BotConfig:
        validate_config(config)
        async with self._engine.begin() as conn:
            if (await conn.execute(text("SELECT 1 FROM bots WHERE slug = :slug FOR UPDATE"),
                                   {"slug": config.bot})).first() is None:
                raise _bot_not_found(config.bot)
            config_id = (await conn.execute(text(
                "INSERT INTO bot_configs (bot, provider, model, temperature, top_p, top_k, "
                "max_output_tokens, prompt_key, prompt_version, metadata) VALUES (:bot, "
                ":provider, :model, :temperature, :top_p, :top_k, :max_output_tokens, "
                ":prompt_key, :prompt_version, CAST(:metadata AS jsonb)) RETURNING id"),
                {"bot": config.bot, "provider": config.provider, "model": config.model,
                 "temperature": config.temperature, "top_p": config.top_p, "top_k": config.top_k,
                 "max_output_tokens": config.max_output_tokens, "prompt_key": config.prompt_key,
                 "prompt_version": config.prompt_version,
                 "metadata": json.dumps(config.metadata)})).scalar_one()
            if activate:
                await self._switch(conn, config.bot, config_id)
        return await self.get_config(str(config_id))

    async def get_config(self, config_id: str) -> BotConfig:
        async with self._engine.connect() as conn:
            row = (await conn.execute(text(f"SELECT {_CONFIG_COLUMNS} FROM bot_configs "
                                           "WHERE id = :id"), {"id": int(config_id)})).first()
        if row is None:
            raise GatewayError(Fault.NOT_FOUND, "NOT_FOUND", f"there is no bot config {config_id}")
        return _config(row)

    async def list_configs(self, bot: str) -> list[BotConfig]:
        """The bot's configurations, newest first (NOT_FOUND for an unknown bot, not an
        empty list: the same answer whether it never existed or is another tenant's)."""
        async with self._engine.connect() as conn:
            if (await conn.execute(text("SELECT 1 FROM bots WHERE slug = :slug"),
                                   {"slug": bot})).first() is None:
                raise _bot_not_found(bot)
            rows = (await conn.execute(text(f"SELECT {_CONFIG_COLUMNS} FROM bot_configs "
                                            "WHERE bot = :bot ORDER BY id DESC"),
                                       {"bot": bot})).all()
        return [_config(r) for r in rows]

    async def activate(self, bot: str, config_id: str) -> BotConfig:
        if not is_config_id(config_id):
            raise invalid_argument([FieldViolation("config_id", "must be a config id")])
        async with self._engine.begin() as conn:
            if (await conn.execute(text("SELECT 1 FROM bots WHERE slug = :slug FOR UPDATE"),
                                   {"slug": bot})).first() is None:
                raise _bot_not_found(bot)
            owner = (await conn.execute(text("SELECT bot FROM bot_configs WHERE id = :id"),
                                        {"id": int(config_id)})).scalar_one_or_none()
            if owner != bot:
                raise GatewayError(Fault.NOT_FOUND, "NOT_FOUND",
                                   f"bot {bot!r} has no config {config_id}")
            await self._switch(conn, bot, int(config_id))
        return await self.get_config(config_id)

    @staticmethod
    async def _switch(conn: Any, bot: str, config_id: int) -> None:
        await conn.execute(text("UPDATE bot_configs SET active = false "
                                "WHERE bot = :bot AND active AND id <> :id"),
                           {"bot": bot, "id": config_id})
        await conn.execute(text("UPDATE bot_configs SET active = true WHERE id = :id"),
                           {"id": config_id})

    async def active_config(self, slug: str) -> BotConfig:
        """The bot's active configuration (one indexed read, no cache to go stale)."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(text(
                f"SELECT b.status, {', '.join('c.' + c for c in _CONFIG_COLUMNS.split(', '))} "
                "FROM bots b LEFT JOIN bot_configs c ON c.bot = b.slug AND c.active "
                "WHERE b.slug = :slug"), {"slug": slug})).first()
        if row is None:
            raise _bot_not_found(slug)
        if row.status != "active":
            raise GatewayError(Fault.REFUSED, "BOT_DISABLED",
                               f"bot {slug!r} is disabled", metadata={"bot": slug})
        if row.id is None:
            raise GatewayError(Fault.REFUSED, "NO_ACTIVE_CONFIG",
                               f"bot {slug!r} has no active configuration",
                               metadata={"bot": slug})
        return _config(row)
