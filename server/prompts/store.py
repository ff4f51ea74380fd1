"""Prompt template versions in Postgres, and loading the canonical YAML defaults.

Versions are immutable, so a fetched version can be cached forever; which version is
*active* is read from the database on each use (one indexed row), so an activation is
seen by the next request on every process with no cache to invalidate.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.prompts.templates import PromptTemplate, not_found, validate_template

log = logging.getLogger(__name__)

DEFAULT_PROMPTS = Path(__file__).resolve().parent.parent / "defaults" / "prompts"
_COLUMNS = ("key, version, system, structured, user_template, temperature, max_output_tokens, "
            "model, description, active, created_at")


def _row(row: Any) -> PromptTemplate:
    structured = row.structured
    if isinstance(structured, str):
        structured = json.loads(structured)
    return PromptTemplate(row.key, row.version, row.system, structured, row.user_template,
                          row.temperature, row.max_output_tokens, row.model, row.description,
                          row.active, row.created_at)


class PromptStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get(self, key: str, version: int = 0) -> PromptTemplate:
        """A version, or the active one when ``version`` is 0; NOT_FOUND otherwise."""
        where = "key = :key AND version = :version" if version else "key = :key AND active"
        async with self._engine.connect() as conn:
            row = (await conn.execute(text(f"SELECT {_COLUMNS} FROM prompt_templates "
                                           f"WHERE {where}"),
                                      {"key": key, "version": version})).first()
        if row is None:
            raise not_found(key, version)
        return _row(row)

    async def list(self, key: str = "") -> list[PromptTemplate]:
        where = "WHERE key = :key" if key else ""
        async with self._engine.connect() as conn:
            rows = (await conn.execute(text(f"SELECT {_COLUMNS} FROM prompt_templates {where} "
                                            "ORDER BY key, version"), {"key": key})).all()
        return [_row(r) for r in rows]

    async def create_version(self, template: PromptTemplate, *, activate: bool) -> PromptTemplate:
        """Store ``template`` as the key's next version."""
        validate_template(template)
        async with self._engine.begin() as conn:
            await _lock_key(conn, template.key)  # serialise version numbering per key
            version = (await conn.execute(text(
                "SELECT coalesce(max(version), 0) + 1 FROM prompt_templates WHERE key = :key"),
                {"key": template.key})).scalar_one()
            await _insert(conn, template, version)
            if activate:
                await _activate(conn, template.key, version)
        return await self.get(template.key, version)

    async def activate(self, key: str, version: int) -> PromptTemplate:
        async with self._engine.begin() as conn:
            # The same per-key lock as version numbering: two activations of one key run
            # one after the other, so the partial unique index never sees two active rows.
            await _lock_key(conn, key)
            exists = (await conn.execute(text(
                "SELECT 1 FROM prompt_templates WHERE key = :key AND version = :version"),
                {"key": key, "version": version})).first()
            if exists is None:
                raise not_found(key, version)
            await _activate(conn, key, version)
        return await self.get(key, version)

    async def load_defaults(self, folder: Path = DEFAULT_PROMPTS) -> int:
        """Insert the repository's canonical versions that the database lacks; activate a
        key's highest version when it has none active. Returns how many were added."""
        added = 0
        for template in read_template_files(sorted(folder.glob("*.yaml"))):
            validate_template(template, prefix=f"{template.key}")
            async with self._engine.begin() as conn:
                await _lock_key(conn, template.key)
                known = (await conn.execute(text(
                    "SELECT 1 FROM prompt_templates WHERE key = :key AND version = :version"),
                    {"key": template.key, "version": template.version})).first()
                if known is None:
                    await _insert(conn, template, template.version)
                    added += 1
                has_active = (await conn.execute(text(
                    "SELECT 1 FROM prompt_templates WHERE key = :key AND active"),
                    {"key": template.key})).first()
                if has_active is None:
                    latest = (await conn.execute(text(
                        "SELECT max(version) FROM prompt_templates WHERE key = :key"),
                        {"key": template.key})).scalar_one()
                    await _activate(conn, template.key, latest)
        return added


async def _lock_key(conn: AsyncConnection, key: str) -> None:
    """Serialise writers of one key's versions, across processes, until commit."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})


async def _insert(conn: AsyncConnection, template: PromptTemplate, version: int) -> None:
    await conn.execute(text(
        "INSERT INTO prompt_templates (key, version, system, structured, user_template, "
        "temperature, max_output_tokens, model, description) VALUES (:key, :version, "
        ":system, CAST(:structured AS jsonb), :user, :temperature, :max_output_tokens, "
        ":model, :description)"),
        {"key": template.key, "version": version, "system": template.system,
         "structured": None if template.structured is None else json.dumps(template.structured),
         "user": template.user, "temperature": template.temperature,
         "max_output_tokens": template.max_output_tokens, "model": template.model,
         "description": template.description})


async def _activate(conn: AsyncConnection, key: str, version: int) -> None:
    """Deactivate then activate in one transaction: readers see the old or the new."""
    await conn.execute(text("UPDATE prompt_templates SET active = false "
                            "WHERE key = :key AND active AND version <> :version"),
                       {"key": key, "version": version})
    await conn.execute(text("UPDATE prompt_templates SET active = true "
                            "WHERE key = :key AND version = :version"),
                       {"key": key, "version": version})


def read_template_files(paths: Iterable[Path]) -> list[PromptTemplate]:
    """Parse canonical template files (one version per file)."""
    templates = []
    for path in paths:
        raw = yaml.safe_load(path.read_text())
        if not isinstance(raw, dict) or "key" not in raw or "version" not in raw:
            raise ValueError(f"{path}: a prompt file needs at least key, version and system")
        templates.append(PromptTemplate(
            key=str(raw["key"]), version=int(raw["version"]), system=raw.get("system", ""),
            structured=raw.get("structured"), user=raw.get("user", ""),
            temperature=raw.get("temperature"), max_output_tokens=raw.get("max_output_tokens"),
            model=raw.get("model", ""), description=raw.get("description", "")))
    return templates


async def load_default_prompts(database_url: str) -> int:
    """``llmgw migrate``: load the canonical templates with their own short-lived engine."""
    from server.kernel.db.engine import create_engine

    engine = create_engine(database_url, pool_size=1)
    try:
        return await PromptStore(engine).load_defaults()
    finally:
        await engine.dispose()
