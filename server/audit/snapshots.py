"""An object's state just before a change: the ``before`` of an audit event.

One small read per audited change, against the tables the change is about, taken before
the change runs. Only changes that replace something have a ``before`` worth keeping:
which prompt version or bot config was active, what the budget was, the wallet's balance
before money moved, the stored route. Names are stored names (a tenant's objects carry
its prefix, see server/kernel/tenancy.py); rows come back as JSON objects.

Not locked: a concurrent change landing between this read and the audited one can make
``before`` describe an older state. Audited changes are rare administrative calls, and
the events are ordered, so the history still reads correctly; exactness would need the
read inside each store's transaction.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

Snapshot = dict[str, Any] | None


class Snapshots:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def active_prompt(self, key: str) -> Snapshot:
        """The key's active template version."""
        return await self._one(
            "SELECT to_jsonb(t) FROM prompt_templates t WHERE t.key = :key AND t.active",
            key=key)

    async def active_bot_config(self, bot: str) -> Snapshot:
        """The bot's active configuration."""
        return await self._one(
            "SELECT to_jsonb(c) FROM bot_configs c WHERE c.bot = :bot AND c.active", bot=bot)

    async def budget(self, wallet_id: str, end_user_id: str, period: str,
                     metric: str) -> Snapshot:
        """The budget row a SetBudget replaces or removes."""
        return await self._one(
            "SELECT to_jsonb(b) FROM billing_budgets b WHERE b.wallet_id = :wallet "
            "AND b.end_user_id = :user AND b.period = :period AND b.metric = :metric",
            wallet=wallet_id, user=end_user_id, period=period, metric=metric)

    async def wallet(self, wallet_id: str) -> Snapshot:
        """A wallet's account: balance, pending holds, overdraft limit, status."""
        return await self._one(
            "SELECT to_jsonb(a) FROM ledger_accounts a WHERE a.id = :id AND a.kind = 'wallet'",
            id=wallet_id)

    async def wallet_of_transaction(self, transaction_id: int) -> Snapshot:
        """The account of the wallet a transaction (a charge to refund) was posted to."""
        return await self._one(
            "SELECT to_jsonb(a) FROM ledger_transactions t JOIN ledger_accounts a "
            "ON a.id = t.wallet_id AND a.kind = 'wallet' WHERE t.id = :id", id=transaction_id)

    async def route(self, name: str) -> Snapshot:
        """A stored route's spec (None: the route is the config's, or there is none)."""
        return await self._one("SELECT spec FROM routes WHERE name = :name", name=name)

    async def _one(self, sql: str, **params: Any) -> Snapshot:
        async with self._engine.connect() as conn:
            value = (await conn.execute(text(sql), params)).scalar_one_or_none()
        if value is None:
            return None
        return json.loads(value) if isinstance(value, str) else dict(value)
