"""The ledger invariant checker (``llmgw ledger check``): verify the whole ledger.

Runs in one REPEATABLE READ snapshot so a ledger under load is checked as of one instant.
Each check is a query returning the offending rows (at most a few per check), so a
violation report says exactly where the books do not balance.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

CHECKS: dict[str, str] = {
    "transaction entries sum to zero (posted and pending separately)": """
        SELECT transaction_id::text AS subject, pending::text || ' sum ' || sum(amount) AS detail
        FROM ledger_entries GROUP BY transaction_id, pending HAVING sum(amount) <> 0""",
    "account balance equals the sum of its posted entries": """
        SELECT a.id AS subject, a.balance || ' <> ' || coalesce(e.s, 0) AS detail
        FROM ledger_accounts a LEFT JOIN (SELECT account_id, sum(amount) AS s FROM ledger_entries
                                          WHERE NOT pending GROUP BY account_id) e
          ON e.account_id = a.id
        WHERE a.balance <> coalesce(e.s, 0)""",
    "account pending equals the sum of its pending entries": """
        SELECT a.id AS subject, a.pending || ' <> ' || coalesce(e.s, 0) AS detail
        FROM ledger_accounts a LEFT JOIN (SELECT account_id, sum(amount) AS s FROM ledger_entries
                                          WHERE pending GROUP BY account_id) e
          ON e.account_id = a.id
        WHERE a.pending <> coalesce(e.s, 0)""",
    "no wallet below its floor (balance - held + overdraft >= 0)": """
        SELECT id AS subject, (balance + pending + overdraft_limit)::text AS detail
        FROM ledger_accounts WHERE kind = 'wallet' AND balance + pending + overdraft_limit < 0""",
    "money is conserved per currency (all accounts sum to zero)": """
        SELECT currency_code AS subject, sum(balance) || ' / ' || sum(pending) AS detail
        FROM ledger_accounts GROUP BY currency_code
        HAVING sum(balance) <> 0 OR sum(pending) <> 0""",
    "every entry names an existing account and transaction": """
        SELECT e.transaction_id::text AS subject, e.account_id AS detail FROM ledger_entries e
        LEFT JOIN ledger_accounts a ON a.id = e.account_id
        LEFT JOIN ledger_transactions t ON t.id = e.transaction_id
        WHERE a.id IS NULL OR t.id IS NULL""",
    "transaction amounts match the wallet's entries": """
        SELECT t.id::text AS subject, t.amount || '/' || t.held AS detail
        FROM ledger_transactions t LEFT JOIN (
            SELECT transaction_id, account_id,
                   sum(amount) FILTER (WHERE NOT pending) AS posted,
                   sum(amount) FILTER (WHERE pending) AS pend
            FROM ledger_entries GROUP BY transaction_id, account_id) e
          ON e.transaction_id = t.id AND e.account_id = t.wallet_id
        WHERE coalesce(e.posted, 0) <> t.amount OR coalesce(e.pend, 0) <> t.held""",
    "wallet pending equals its open holds": """
        SELECT a.id AS subject, a.pending || ' <> -' || coalesce(h.s, 0) AS detail
        FROM ledger_accounts a LEFT JOIN (SELECT wallet_id, sum(amount) AS s
                                          FROM ledger_open_holds GROUP BY wallet_id) h
          ON h.wallet_id = a.id
        WHERE a.kind = 'wallet' AND a.pending <> -coalesce(h.s, 0)""",
    "every hold is open or finished exactly once": """
        SELECT t.id::text AS subject,
               (o.hold_id IS NOT NULL)::text || ' open, ' || count(f.id) || ' finishes' AS detail
        FROM ledger_transactions t
        LEFT JOIN ledger_open_holds o ON o.hold_id = t.id
        LEFT JOIN ledger_transactions f ON f.pending_id = t.id
        WHERE t.kind = 'hold'
        GROUP BY t.id, o.hold_id
        HAVING (o.hold_id IS NOT NULL)::int + count(f.id) <> 1""",
    "a finished hold releases exactly what it held": """
        SELECT f.id::text AS subject, f.held || ' vs ' || (-h.held) AS detail
        FROM ledger_transactions f JOIN ledger_transactions h ON h.id = f.pending_id
        WHERE f.held <> -h.held""",
    "only settles post, and never a credit": """
        SELECT f.id::text AS subject, f.kind || ' ' || f.amount AS detail
        FROM ledger_transactions f WHERE f.pending_id IS NOT NULL
        AND (f.amount > 0 OR (f.kind <> 'settle' AND f.amount <> 0))""",
    "a refund returns exactly its charge": """
        SELECT r.id::text AS subject, r.amount || ' vs ' || c.amount AS detail
        FROM ledger_transactions r JOIN ledger_transactions c ON c.id = r.refund_of
        WHERE r.amount <> -c.amount OR c.kind NOT IN ('charge', 'settle')""",
}


@dataclass(frozen=True)
class Violation:
    check: str
    subject: str
    detail: str


async def check_ledger(conn: asyncpg.Connection, sample: int = 5) -> list[Violation]:
    """Every invariant violation found (empty when the books balance)."""
    violations: list[Violation] = []
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        for name, query in CHECKS.items():
            rows = await conn.fetch(f"{query} LIMIT {int(sample)}")
            violations.extend(Violation(name, r["subject"], r["detail"]) for r in rows)
    return violations


async def ledger_totals(conn: asyncpg.Connection) -> dict[str, int]:
    """Counts for the checker's report."""
    row = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM ledger_accounts WHERE kind = 'wallet') AS wallets, "
        "(SELECT count(*) FROM ledger_transactions) AS transactions, "
        "(SELECT count(*) FROM ledger_entries) AS entries, "
        "(SELECT count(*) FROM ledger_open_holds) AS open_holds")
    return dict(row)
