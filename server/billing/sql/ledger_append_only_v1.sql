-- ledger_append_only, version 1 (installed by migration 0002_ledger).
--
-- Append-only: no statement may change or remove money history. The triggers that call
-- it on ledger_transactions and ledger_entries are created by the migration.
CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger history is append-only (% on %)', TG_OP, TG_TABLE_NAME;
END $$;
