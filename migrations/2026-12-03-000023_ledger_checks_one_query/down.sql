-- Back to the per-transaction loops of migration 000015.
CREATE OR REPLACE FUNCTION ledger_assert_balanced(txns uuid[]) RETURNS void LANGUAGE plpgsql
SET enable_seqscan = off AS $$
DECLARE
    txn uuid;
    n integer;
    unbalanced text;
BEGIN
    FOREACH txn IN ARRAY txns LOOP
        PERFORM 1 FROM ledger_transactions WHERE id = txn;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'ledger entries reference transaction %, which does not exist', txn
                USING ERRCODE = 'foreign_key_violation';
        END IF;
        SELECT coalesce(sum(c), 0),
               string_agg(CASE WHEN total <> 0 THEN currency || ' ' || total::text END, ', ' ORDER BY currency)
          INTO n, unbalanced
          FROM (SELECT currency, sum(amount) AS total, count(*) AS c
                  FROM ledger_entries WHERE transaction_id = txn GROUP BY currency) s;
        IF n < 2 THEN
            RAISE EXCEPTION 'ledger transaction % has % entries; at least two are required', txn, n
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        IF unbalanced IS NOT NULL THEN
            RAISE EXCEPTION 'ledger transaction % does not balance: %', txn, unbalanced
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
    END LOOP;
END $$;
CREATE OR REPLACE FUNCTION ledger_transactions_balanced() RETURNS trigger LANGUAGE plpgsql
SET enable_seqscan = off AS $$
DECLARE
    txn uuid;
BEGIN
    FOR txn IN SELECT id FROM new_transactions LOOP
        PERFORM 1 FROM ledger_entries WHERE transaction_id = txn LIMIT 1;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'ledger transaction % has 0 entries; at least two are required', txn
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
    END LOOP;
    RETURN NULL;
END $$;
