ALTER TABLE outbox_events ADD CONSTRAINT outbox_events_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id);
ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id);
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_account_id_fkey FOREIGN KEY (account_id) REFERENCES ledger_accounts (id);
ALTER TABLE subscriptions DROP COLUMN renewal_notice_for, DROP COLUMN expiry_notice_for;
ALTER FUNCTION ledger_assert_balanced(uuid) RESET enable_seqscan;
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
