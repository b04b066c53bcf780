ALTER TABLE subscriptions DROP COLUMN renewal_notice_for, DROP COLUMN expiry_notice_for;
ALTER FUNCTION ledger_assert_balanced(uuid) RESET enable_seqscan;
ALTER FUNCTION ledger_assert_balanced(uuid) RESET plan_cache_mode;
CREATE OR REPLACE FUNCTION ledger_assert_balanced(txn uuid) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    n integer;
    unbalanced text;
BEGIN
    SELECT count(*) INTO n FROM ledger_entries WHERE transaction_id = txn;
    IF n < 2 THEN
        RAISE EXCEPTION 'ledger transaction % has % entries; at least two are required', txn, n
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    SELECT string_agg(currency || ' ' || total::text, ', ') INTO unbalanced
      FROM (SELECT currency, sum(amount) AS total FROM ledger_entries
             WHERE transaction_id = txn GROUP BY currency HAVING sum(amount) <> 0) s;
    IF unbalanced IS NOT NULL THEN
        RAISE EXCEPTION 'ledger transaction % does not balance: %', txn, unbalanced
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
END $$;
