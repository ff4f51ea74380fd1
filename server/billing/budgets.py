"""Budgets: daily and monthly limits on tokens or spend, per wallet or per end user.

A budget is checked before a generation call (RESOURCE_EXHAUSTED / BUDGET_EXCEEDED once
the period's use has reached the limit) and the call's actual tokens and cost are added
after it settles. Periods are UTC calendar days and months; "reset" is simply a new
period row, so nothing has to run at midnight. Use is counted only for wallets that have
budgets (and from when the budget was set), which keeps unbudgeted calls free of writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from server.billing.validation import Checks
from server.kernel.errors import Fault, FieldViolation, GatewayError, QuotaViolation

PERIODS = ("day", "month")
METRICS = ("tokens", "spend")
# Concurrent writers of one budget row: retried a few times, then ABORTED (never INTERNAL).
_RACES = (asyncpg.UniqueViolationError, asyncpg.SerializationError,
          asyncpg.DeadlockDetectedError)
_RACE_RETRIES = 3

# Current period start and the next one, per period name, computed by Postgres (UTC).
_PERIOD_BOUNDS = """
    date_trunc(b.period, now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS period_start,
    (date_trunc(b.period, now() AT TIME ZONE 'UTC')
        + CASE b.period WHEN 'day' THEN interval '1 day' ELSE interval '1 month' END)
        AT TIME ZONE 'UTC' AS reset_at
"""


@dataclass(frozen=True)
class Budget:
    wallet_id: str
    end_user_id: str
    period: str
    metric: str
    limit: int
    used: int
    period_start: datetime
    reset_at: datetime

    @property
    def exhausted(self) -> bool:
        return self.used >= self.limit

    def describe(self) -> str:
        who = f"end user {self.end_user_id!r} of " if self.end_user_id else ""
        what = "token" if self.metric == "tokens" else "spend"
        return (f"{who}wallet {self.wallet_id!r}: {'daily' if self.period == 'day' else 'monthly'}"
                f" {what} budget of {self.limit} used up ({self.used})")


class Budgets:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def set(self, wallet_id: str, end_user_id: str, period: str, metric: str,
                  limit: int) -> Budget | None:
        """Create or replace a budget; ``limit`` 0 removes it (returns None)."""
        checks = Checks()
        checks.wallet_id(wallet_id)
        if len(end_user_id) > 256:
            checks.fail("end_user_id", "at most 256 characters")
        if period not in PERIODS:
            checks.fail("period", "required: day or month")
        if metric not in METRICS:
            checks.fail("metric", "required: tokens or spend")
        if limit < 0:
            checks.fail("limit", "must not be negative (0 removes the budget)")
        checks.raise_if_any()
        for attempt in range(_RACE_RETRIES):
            try:
                return await self._set(wallet_id, end_user_id, period, metric, limit)
            except _RACES:
                if attempt == _RACE_RETRIES - 1:
                    raise GatewayError(Fault.ABORTED, "ABORTED",
                                       "the budget was changed concurrently; retry") from None
        raise AssertionError("unreachable")

    async def _set(self, wallet_id: str, end_user_id: str, period: str, metric: str,
                   limit: int) -> Budget | None:
        """Upsert and read back in one transaction: the row stays locked until the read,
        so a concurrent removal cannot slip in between (it waits, then applies)."""
        async with self._pool.acquire() as conn, conn.transaction():
            exists = await conn.fetchval(
                "SELECT 1 FROM ledger_accounts WHERE id = $1 AND kind = 'wallet'", wallet_id)
            if not exists:
                raise GatewayError(Fault.NOT_FOUND, "WALLET_NOT_FOUND", "no such wallet",
                                   violations=[FieldViolation("wallet_id", "no such wallet")])
            if limit == 0:
                await conn.execute(
                    "DELETE FROM billing_budgets WHERE wallet_id = $1 AND end_user_id = $2 "
                    "AND period = $3 AND metric = $4", wallet_id, end_user_id, period, metric)
                return None
            await conn.execute(
                "INSERT INTO billing_budgets (wallet_id, end_user_id, period, metric, limit_value)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (wallet_id, end_user_id, period, metric)"
                " DO UPDATE SET limit_value = EXCLUDED.limit_value",
                wallet_id, end_user_id, period, metric, limit)
            budgets = await self._query("b.end_user_id = ANY ($2) AND b.period = $3 "
                                        "AND b.metric = $4", wallet_id, [end_user_id], period,
                                        metric, conn=conn)
        return budgets[0]

    async def applicable(self, wallet_id: str, end_user_id: str = "",
                         exact: bool = False) -> list[Budget]:
        """The budgets that govern a call by ``end_user_id`` on ``wallet_id``: the
        wallet-wide ones and that user's (with ``exact``: only that user's)."""
        users = [end_user_id] if exact else sorted({"", end_user_id})
        return await self._query("b.end_user_id = ANY ($2)", wallet_id, users)

    async def all_for(self, wallet_id: str) -> list[Budget]:
        return await self._query("true", wallet_id)

    async def _query(self, condition: str, *args: object,
                     conn: asyncpg.Connection | None = None) -> list[Budget]:
        rows = await (conn or self._pool).fetch(f"""
            WITH b AS (SELECT b.*, {_PERIOD_BOUNDS} FROM billing_budgets b
                       WHERE b.wallet_id = $1 AND {condition})
            SELECT b.*, coalesce(CASE b.metric WHEN 'tokens' THEN u.tokens ELSE u.spend END, 0)
                   AS used
            FROM b LEFT JOIN billing_budget_usage u
              ON u.wallet_id = b.wallet_id AND u.end_user_id = b.end_user_id
             AND u.period = b.period AND u.period_start = b.period_start
            ORDER BY b.end_user_id, b.period, b.metric""", *args)
        return [Budget(r["wallet_id"], r["end_user_id"], r["period"], r["metric"],
                       r["limit_value"], r["used"], r["period_start"], r["reset_at"])
                for r in rows]

    async def check(self, wallet_id: str, end_user_id: str) -> list[Budget]:
        """Raise BUDGET_EXCEEDED when a governing budget is used up; else return them
        (the caller passes them back to ``add`` after the call)."""
        budgets = await self.applicable(wallet_id, end_user_id)
        spent = [b for b in budgets if b.exhausted]
        if spent:
            first = min(spent, key=lambda b: b.reset_at)
            raise GatewayError(
                Fault.EXHAUSTED, "BUDGET_EXCEEDED", spent[0].describe(),
                quota_violations=[QuotaViolation(
                    f"wallet:{b.wallet_id}" + (f"/end_user:{b.end_user_id}"
                                               if b.end_user_id else ""), b.describe())
                    for b in spent],
                retry_after_s=max(0.0, (first.reset_at - datetime.now(first.reset_at.tzinfo))
                                  .total_seconds()),
                metadata={"wallet_id": wallet_id})
        return budgets

    async def add(self, budgets: list[Budget], tokens: int, spend: int) -> None:
        """Count a finished call against the periods of ``budgets``."""
        keys = sorted({(b.wallet_id, b.end_user_id, b.period, b.period_start) for b in budgets})
        if not keys:
            return
        await self._pool.execute(
            "INSERT INTO billing_budget_usage AS u "
            "(wallet_id, end_user_id, period, period_start, tokens, spend) "
            "SELECT w, e, p, s, $5, $6 FROM unnest($1::text[], $2::text[], $3::text[], "
            "$4::timestamptz[]) AS k(w, e, p, s) "
            "ON CONFLICT (wallet_id, end_user_id, period, period_start) DO UPDATE "
            "SET tokens = u.tokens + EXCLUDED.tokens, spend = u.spend + EXCLUDED.spend",
            [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys],
            [k[3] for k in keys], tokens, spend)
