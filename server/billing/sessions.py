"""Price locking: a billing session (a conversation) keeps the price it started with.

The first charge of a session for a model snapshots that model's current price into
``billing_sessions``; every later charge of the session reads the snapshot, so a price
change only reaches new sessions. Concurrent first charges race on the primary key and
all read the one snapshot that won.
"""

from __future__ import annotations

import json

import asyncpg

from server.billing.pricing import Price
from server.kernel.errors import bad_field


class SessionPrices:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def locked_price(self, session_id: str, wallet_id: str, model: str,
                           current: Price | None, field: str = "usage.model") -> Price:
        """The session's price for ``model``, snapshotting ``current`` on first use."""
        async with self._pool.acquire() as conn:
            if current is not None:
                await conn.execute(
                    "INSERT INTO billing_sessions (session_id, model, wallet_id, price) "
                    "VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT DO NOTHING",
                    session_id, model, wallet_id, json.dumps(current.as_json()))
            row = await conn.fetchrow(
                "SELECT wallet_id, price::text AS price FROM billing_sessions "
                "WHERE session_id = $1 AND model = $2", session_id, model)
        if row is None:
            raise bad_field(field, f"model {model!r} has no price")
        if row["wallet_id"] != wallet_id:
            raise bad_field("session_id", "belongs to another wallet")
        return Price.from_json(json.loads(row["price"]))

    async def locked_prices(self, session_id: str, wallet_id: str,
                            current: dict[str, Price]) -> dict[str, Price]:
        """The session's prices for every target a call may reach, snapshotting the
        current ones on first use: two statements, however long the chain."""
        keys = list(current)
        async with self._pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO billing_sessions (session_id, model, wallet_id, price) "
                "SELECT $1, k, $2, p::jsonb FROM unnest($3::text[], $4::text[]) AS u(k, p) "
                "ON CONFLICT DO NOTHING", session_id, wallet_id, keys,
                [json.dumps(current[k].as_json()) for k in keys])
            rows = await conn.fetch(
                "SELECT model, wallet_id, price::text AS price FROM billing_sessions "
                "WHERE session_id = $1 AND model = ANY ($2::text[])", session_id, keys)
        if any(row["wallet_id"] != wallet_id for row in rows):
            raise bad_field("billing.session_id", "belongs to another wallet")
        return {row["model"]: Price.from_json(json.loads(row["price"])) for row in rows}
