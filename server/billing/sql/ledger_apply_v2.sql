-- ledger_apply, version 2 (installed by migration 0008_settle_overrun; v1 by 0002_ledger).
--
-- Changed from v1: a settle may post more than its hold. The excess is taken from what
-- the wallet can still pay (its available balance plus overdraft allowance) in the same
-- operation; what even that cannot cover is not posted (the returned amount says what
-- was). A generation call settles its actual cost once the vendor has answered, so the
-- caller is never left having paid the hold for an answer it does not get.
--
-- Why a stored function: every money movement must check the balance and write its
-- entries while the wallet row is locked. Doing that from Python costs several round
-- trips with the lock held, so a hot wallet (and the shared revenue account) serialise on
-- network latency. ledger_apply applies a whole *batch* of operations in one statement.
-- It takes every lock it needs up front in one global order (idempotency keys, then
-- accounts by id, so batches never deadlock), then applies the operations in order, each
-- one succeeding or failing on its own, and commits once. One round trip and one WAL
-- flush are shared by the whole batch (group commit), which is what makes a hot wallet
-- fast. Called by server/billing/writer.py.
CREATE OR REPLACE FUNCTION ledger_apply(
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
            IF v_amt > hold.amount THEN  -- an overrun: as much as the wallet can pay
                v_amt := least(v_amt, hold.amount
                               + greatest(acct.balance + acct.pending + acct.overdraft_limit, 0));
            END IF;
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
