"""Wallet ledger: accounts, append-only double-entry transactions, holds, sessions, budgets.

Revision ID: 0002_ledger
Revises: 0001
Create Date: 2026-11-22

The ledger's PL/pgSQL functions are not spelled out here: they are loaded from their
versioned files in ``server/billing/sql/`` (``ledger_append_only_v1.sql``,
``ledger_apply_v1.sql``; why a stored function is explained there), so the live money
logic reads in one place. Later migrations that change a function load a newer version.
"""

import re

from alembic import op

from server.billing import sql

revision = "0002_ledger"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = """
CREATE TABLE ledger_accounts (
    id              text PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('wallet', 'system')),
    currency_code   text NOT NULL,
    overdraft_limit bigint NOT NULL DEFAULT 0 CHECK (overdraft_limit >= 0),
    balance         bigint NOT NULL DEFAULT 0,   -- sum of the account's posted entries
    pending         bigint NOT NULL DEFAULT 0,   -- sum of its pending (held) entries
    status          text NOT NULL DEFAULT 'active',
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- the balance constraint, enforced by the database as the last line of defence
    CONSTRAINT wallet_floor CHECK (kind <> 'wallet' OR balance + pending + overdraft_limit >= 0)
);

CREATE TABLE ledger_transactions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN
                        ('credit', 'charge', 'hold', 'settle', 'void', 'expire', 'refund')),
    wallet_id       text NOT NULL,
    amount          bigint NOT NULL,             -- signed effect on the wallet's posted balance
    held            bigint NOT NULL DEFAULT 0,   -- signed effect on the wallet's pending sum
    balance_after   bigint NOT NULL,             -- the wallet's posted balance afterwards
    scope           text NOT NULL,               -- who owns the idempotency key
    idempotency_key text,
    request_hash    text,
    pending_id      bigint REFERENCES ledger_transactions (id),  -- the hold settled/voided
    refund_of       bigint REFERENCES ledger_transactions (id),  -- the charge refunded
    expires_at      timestamptz,
    description     text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE UNIQUE INDEX ledger_transactions_idempotency
    ON ledger_transactions (scope, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- a hold is finished (settled, voided or expired) at most once; a charge refunded at most once
CREATE UNIQUE INDEX ledger_transactions_pending_once
    ON ledger_transactions (pending_id) WHERE pending_id IS NOT NULL;

CREATE UNIQUE INDEX ledger_transactions_refund_once
    ON ledger_transactions (refund_of) WHERE refund_of IS NOT NULL;

CREATE INDEX ledger_transactions_wallet ON ledger_transactions (wallet_id, id DESC);

CREATE TABLE ledger_entries (
    transaction_id  bigint NOT NULL,
    account_id      text NOT NULL,
    amount          bigint NOT NULL,
    pending         boolean NOT NULL
);
CREATE INDEX ledger_entries_transaction ON ledger_entries (transaction_id);

CREATE INDEX ledger_entries_account ON ledger_entries (account_id);

CREATE TABLE ledger_open_holds (
    hold_id         bigint PRIMARY KEY,
    wallet_id       text NOT NULL,
    amount          bigint NOT NULL CHECK (amount >= 0),
    expires_at      timestamptz NOT NULL
);
CREATE INDEX ledger_open_holds_expiry ON ledger_open_holds (expires_at);


-- Price locking: the price of a model as it was when the session first used it.
CREATE TABLE billing_sessions (
    session_id      text NOT NULL,
    model           text NOT NULL,
    wallet_id       text NOT NULL,
    price           jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, model)
);
"""

# Created after ledger_append_only (loaded from its SQL file), which they call.
TRIGGERS = """
CREATE TRIGGER ledger_transactions_append_only BEFORE UPDATE OR DELETE OR TRUNCATE
    ON ledger_transactions FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();

CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE OR TRUNCATE
    ON ledger_entries FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();
"""


def _statements(script: str) -> list[str]:
    """One statement at a time (asyncpg prepares each): split at a ``;`` that ends a line
    followed by the next CREATE or comment. (The function files are one statement each.)"""
    return [s.strip() for s in re.split(r";\s*\n(?=CREATE|--)", script) if s.strip()]


def upgrade() -> None:
    for statement in _statements(TABLES):
        op.execute(statement)
    op.execute(sql.load("ledger_append_only_v1.sql"))
    for statement in _statements(TRIGGERS):
        op.execute(statement)
    op.execute(sql.load("ledger_apply_v1.sql"))


def downgrade() -> None:
    op.execute("DROP FUNCTION ledger_apply")
    op.execute("DROP TABLE billing_sessions, ledger_open_holds, ledger_entries, "
               "ledger_transactions, ledger_accounts")
    op.execute("DROP FUNCTION ledger_append_only")
