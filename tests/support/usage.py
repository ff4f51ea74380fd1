"""Read a call's usage record from the real database (written in the background)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg


async def usage_record(pg_url: str, trace_id: str) -> dict[str, Any]:
    """The call's usage record; polls briefly because records are written in batches."""
    conn = await asyncpg.connect(pg_url)
    try:
        for _ in range(100):
            row = await conn.fetchrow("SELECT * FROM usage_records WHERE trace_id = $1",
                                      trace_id)
            if row is not None:
                return dict(row)
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    raise AssertionError(f"no usage record for trace {trace_id}")
