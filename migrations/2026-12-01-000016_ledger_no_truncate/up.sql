-- Nothing removes ledger rows: `ledger_immutable` refuses UPDATE and DELETE of
-- entries and transactions per row, but row triggers do not fire on TRUNCATE, and
-- no foreign key ties entries to their transaction (dropped in 000015) or to their
-- account (dropped in 000003). `TRUNCATE ledger_transactions` would leave every
-- entry an orphan, `TRUNCATE ledger_entries` every transaction empty and every
-- balance without its entries, `TRUNCATE ledger_accounts` every entry without its
-- account. TRUNCATE of any of them is refused, once per statement (with CASCADE
-- too: the trigger of each table it would empty fires).
CREATE FUNCTION ledger_no_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is never truncated (% on %)', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_no_truncate();
CREATE TRIGGER ledger_transactions_no_truncate BEFORE TRUNCATE ON ledger_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_no_truncate();
CREATE TRIGGER ledger_accounts_no_truncate BEFORE TRUNCATE ON ledger_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_no_truncate();
