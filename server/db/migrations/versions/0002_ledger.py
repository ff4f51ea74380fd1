"""Wallet ledger: accounts, append-only double-entry transactions, holds, sessions, budgets.

Revision ID: 0002_ledger
Revises: 0001
Create Date: 2026-11-22

Why a stored function (``ledger_apply``): every money movement must check the balance and
write its entries while the wallet row is locked. Doing that from Python costs several
round trips with the lock held, so a hot wallet (and the shared revenue account) serialise
on network latency. ``ledger_apply`` applies a whole *batch* of operations in one
statement: it takes every lock it needs up front in one global order (idempotency keys,
then accounts by id; so batches never deadlock), then applies the operations in order,
each one succeeding or failing on its own, and commits once. One round trip and one WAL
flush are shared by the whole batch (group commit), which is what makes a hot wallet fast.
"""

import re

from alembic import op

revision = "0002_ledger"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = """
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

-- Append-only: no statement may change or remove money history.
CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger history is append-only (% on %)', TG_OP, TG_TABLE_NAME;
END $$;

CREATE TRIGGER ledger_transactions_append_only BEFORE UPDATE OR DELETE OR TRUNCATE
    ON ledger_transactions FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();

CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE OR TRUNCATE
    ON ledger_entries FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();
"""

APPLY = r"""
CREATE FUNCTION ledger_apply(
    p_kind text[], p_scope text[], p_key text[], p_hash text[], p_wallet text[],
    p_amount bigint[], p_ref bigint[], p_currency text[], p_description text[],
    p_ttl_ms bigint[])
RETURNS TABLE (idx int, status text, transaction_id bigint, amount bigint,
               balance_after bigint, held bigint, replayed boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    n       int := coalesce(array_length(p_kind, 1), 0);
    i       int;
    w       text[] := p_wallet;
    lock_id bigint;
    prior   record;
    acct    record;
    hold    record;
    charge  record;
    rev     text;
    v_id    bigint;
    v_bal   bigint;
    v_amt   bigint;
    v_held  bigint;
BEGIN
    -- Operations that name a transaction (settle, void, expire, refund) act on its wallet.
    FOR i IN 1..n LOOP
        IF p_ref[i] IS NOT NULL THEN
            SELECT t.wallet_id INTO rev FROM ledger_transactions t WHERE t.id = p_ref[i];
            w[i] := rev;
        END IF;
    END LOOP;

    -- Every lock, in one global order: idempotency keys, then accounts by id.
    FOR lock_id IN
        SELECT DISTINCT hashtextextended(s || chr(31) || k, 7)
        FROM unnest(p_scope, p_key) AS u(s, k) WHERE k IS NOT NULL ORDER BY 1
    LOOP
        PERFORM pg_advisory_xact_lock(lock_id);
    END LOOP;
    PERFORM 1 FROM ledger_accounts a
    WHERE a.id = ANY (w)
       OR (a.kind = 'system' AND a.currency_code IN
            (SELECT b.currency_code FROM ledger_accounts b WHERE b.id = ANY (w)))
    ORDER BY a.id FOR UPDATE;

    FOR i IN 1..n LOOP
        idx := i; status := 'ok'; transaction_id := NULL; amount := NULL;
        balance_after := NULL; held := NULL; replayed := false;
        IF p_amount[i] IS NULL OR p_amount[i] < 0 THEN  -- direction comes from the kind
            RAISE EXCEPTION 'ledger_apply: operation % has a negative amount', i;
        END IF;

        IF p_key[i] IS NOT NULL THEN
            SELECT t.id, t.request_hash, t.amount, t.balance_after, t.held INTO prior
            FROM ledger_transactions t
            WHERE t.scope = p_scope[i] AND t.idempotency_key = p_key[i];
            IF FOUND THEN
                transaction_id := prior.id;
                IF prior.request_hash IS DISTINCT FROM p_hash[i] THEN
                    status := 'key_reused';
                ELSE
                    replayed := true; amount := prior.amount;
                    balance_after := prior.balance_after; held := prior.held;
                END IF;
                RETURN NEXT; CONTINUE;
            END IF;
        END IF;

        SELECT * INTO acct FROM ledger_accounts a WHERE a.id = w[i] AND a.kind = 'wallet';
        IF NOT FOUND THEN
            status := CASE WHEN p_ref[i] IS NOT NULL THEN 'transaction_not_found'
                           ELSE 'wallet_not_found' END;
            RETURN NEXT; CONTINUE;
        END IF;
        IF coalesce(p_currency[i], '') <> '' AND p_currency[i] <> acct.currency_code THEN
            status := 'currency_mismatch'; RETURN NEXT; CONTINUE;
        END IF;
        rev := 'system:revenue:' || acct.currency_code;
        v_amt := p_amount[i]; v_held := 0; v_id := NULL;

        IF p_kind[i] = 'credit' THEN
            UPDATE ledger_accounts a SET balance = a.balance + v_amt WHERE a.id = w[i]
                RETURNING a.balance INTO v_bal;
            UPDATE ledger_accounts a SET balance = a.balance - v_amt
                WHERE a.id = 'system:topup:' || acct.currency_code;
            INSERT INTO ledger_transactions (kind, wallet_id, amount, held, balance_after, scope,
                                             idempotency_key, request_hash, description)
            VALUES ('credit', w[i], v_amt, 0, v_bal, p_scope[i], p_key[i], p_hash[i],
                    p_description[i]) RETURNING id INTO v_id;
            INSERT INTO ledger_entries VALUES (v_id, w[i], v_amt, false),
                (v_id, 'system:topup:' || acct.currency_code, -v_amt, false);

        ELSIF p_kind[i] = 'charge' THEN
            UPDATE ledger_accounts a SET balance = a.balance - v_amt
            WHERE a.id = w[i] AND a.status = 'active'
              AND a.balance + a.pending + a.overdraft_limit >= v_amt
            RETURNING a.balance INTO v_bal;
            IF NOT FOUND THEN status := 'insufficient_funds'; RETURN NEXT; CONTINUE; END IF;
            UPDATE ledger_accounts a SET balance = a.balance + v_amt WHERE a.id = rev;
            INSERT INTO ledger_transactions (kind, wallet_id, amount, held, balance_after, scope,
                                             idempotency_key, request_hash, description)
            VALUES ('charge', w[i], -v_amt, 0, v_bal, p_scope[i], p_key[i], p_hash[i],
                    p_description[i]) RETURNING id INTO v_id;
            IF v_amt <> 0 THEN
                INSERT INTO ledger_entries VALUES (v_id, w[i], -v_amt, false),
                                                  (v_id, rev, v_amt, false);
            END IF;
            v_amt := -v_amt;

        ELSIF p_kind[i] = 'hold' THEN
            UPDATE ledger_accounts a SET pending = a.pending - v_amt
            WHERE a.id = w[i] AND a.status = 'active'
              AND a.balance + a.pending + a.overdraft_limit >= v_amt
            RETURNING a.balance INTO v_bal;
            IF NOT FOUND THEN status := 'insufficient_funds'; RETURN NEXT; CONTINUE; END IF;
            UPDATE ledger_accounts a SET pending = a.pending + v_amt WHERE a.id = rev;
            INSERT INTO ledger_transactions (kind, wallet_id, amount, held, balance_after, scope,
                                             idempotency_key, request_hash, description,
                                             expires_at)
            VALUES ('hold', w[i], 0, -v_amt, v_bal, p_scope[i], p_key[i], p_hash[i],
                    p_description[i], clock_timestamp() + p_ttl_ms[i] * interval '1 millisecond')
            RETURNING id INTO v_id;
            INSERT INTO ledger_open_holds VALUES
                (v_id, w[i], v_amt, clock_timestamp() + p_ttl_ms[i] * interval '1 millisecond');
            IF v_amt <> 0 THEN
                INSERT INTO ledger_entries VALUES (v_id, w[i], -v_amt, true),
                                                  (v_id, rev, v_amt, true);
            END IF;
            v_held := -v_amt; v_amt := 0;

        ELSIF p_kind[i] IN ('settle', 'void', 'expire') THEN
            SELECT * INTO hold FROM ledger_open_holds h WHERE h.hold_id = p_ref[i];
            IF NOT FOUND THEN
                status := CASE WHEN EXISTS (SELECT 1 FROM ledger_transactions t
                                            WHERE t.id = p_ref[i] AND t.kind = 'hold')
                               THEN 'hold_closed' ELSE 'transaction_not_found' END;
                RETURN NEXT; CONTINUE;
            END IF;
            IF p_kind[i] <> 'settle' THEN v_amt := 0; END IF;
            IF v_amt > hold.amount THEN status := 'exceeds_hold'; RETURN NEXT; CONTINUE; END IF;
            DELETE FROM ledger_open_holds h WHERE h.hold_id = p_ref[i];
            UPDATE ledger_accounts a
                SET pending = a.pending + hold.amount, balance = a.balance - v_amt
                WHERE a.id = w[i] RETURNING a.balance INTO v_bal;
            UPDATE ledger_accounts a
                SET pending = a.pending - hold.amount, balance = a.balance + v_amt
                WHERE a.id = rev;
            INSERT INTO ledger_transactions (kind, wallet_id, amount, held, balance_after, scope,
                                             idempotency_key, request_hash, description,
                                             pending_id)
            VALUES (p_kind[i], w[i], -v_amt, hold.amount, v_bal, p_scope[i], p_key[i],
                    p_hash[i], p_description[i], p_ref[i]) RETURNING id INTO v_id;
            IF hold.amount <> 0 THEN
                INSERT INTO ledger_entries VALUES (v_id, w[i], hold.amount, true),
                                                  (v_id, rev, -hold.amount, true);
            END IF;
            IF v_amt <> 0 THEN
                INSERT INTO ledger_entries VALUES (v_id, w[i], -v_amt, false),
                                                  (v_id, rev, v_amt, false);
            END IF;
            v_held := hold.amount; v_amt := -v_amt;

        ELSIF p_kind[i] = 'refund' THEN
            SELECT t.id, t.amount INTO charge FROM ledger_transactions t
            WHERE t.id = p_ref[i] AND t.kind IN ('charge', 'settle');
            IF NOT FOUND THEN status := 'transaction_not_found'; RETURN NEXT; CONTINUE; END IF;
            IF EXISTS (SELECT 1 FROM ledger_transactions t WHERE t.refund_of = p_ref[i]) THEN
                status := 'already_refunded'; RETURN NEXT; CONTINUE;
            END IF;
            v_amt := -charge.amount;
            UPDATE ledger_accounts a SET balance = a.balance + v_amt WHERE a.id = w[i]
                RETURNING a.balance INTO v_bal;
            UPDATE ledger_accounts a SET balance = a.balance - v_amt WHERE a.id = rev;
            INSERT INTO ledger_transactions (kind, wallet_id, amount, held, balance_after, scope,
                                             idempotency_key, request_hash, description,
                                             refund_of)
            VALUES ('refund', w[i], v_amt, 0, v_bal, p_scope[i], p_key[i], p_hash[i],
                    p_description[i], p_ref[i]) RETURNING id INTO v_id;
            IF v_amt <> 0 THEN
                INSERT INTO ledger_entries VALUES (v_id, w[i], v_amt, false),
                                                  (v_id, rev, -v_amt, false);
            END IF;
        ELSE
            RAISE EXCEPTION 'ledger_apply: unknown operation kind %', p_kind[i];
        END IF;

        transaction_id := v_id; amount := v_amt; balance_after := v_bal; held := v_held;
        RETURN NEXT;
    END LOOP;
END $$;
"""


def _statements(script: str) -> list[str]:
    """One statement at a time (asyncpg prepares each): split at a ``;`` that ends a line
    followed by the next CREATE or comment (function bodies have other semicolons)."""
    return [s.strip() for s in re.split(r";\s*\n(?=CREATE|--)", script) if s.strip()]


def upgrade() -> None:
    for statement in _statements(SCHEMA):
        op.execute(statement)
    op.execute(APPLY)


def downgrade() -> None:
    op.execute("DROP FUNCTION ledger_apply")
    op.execute("DROP TABLE billing_sessions, ledger_open_holds, ledger_entries, "
               "ledger_transactions, ledger_accounts")
    op.execute("DROP FUNCTION ledger_append_only")
