"""The async SQLAlchemy engine and the database health probe."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from server.kernel.db.embedded import async_url


def create_engine(url: str, pool_size: int) -> AsyncEngine:
    return create_async_engine(async_url(url), pool_size=pool_size, max_overflow=pool_size,
                               pool_pre_ping=True, pool_recycle=1800)


async def database_is_up(engine: AsyncEngine, timeout_s: float = 2.0) -> bool:
    """True when ``SELECT 1`` answers within ``timeout_s``."""
    try:
        async with asyncio.timeout(timeout_s):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - any failure means "not up"; the reason is logged by the caller
        return False
