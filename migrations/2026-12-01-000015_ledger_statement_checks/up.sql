-- The ledger's balance check ran per row: a deferred constraint trigger on every
-- entry and on every transaction (five trigger calls for a four-entry posting,
-- plus one foreign-key lookup per entry). Postings are written by one statement
-- (transactions and their entries together, `db::ledger::post_many`), so the same
-- guarantees are checked once per statement, set-based, over its transition tables:
-- * every transaction an inserted entry belongs to exists, has at least two
--   entries, and sums to zero in each currency;
-- * every inserted transaction has at least two entries (so none is left empty).
-- Entries added later to an old transaction are checked the same way. Updates and
-- deletes stay forbidden (`ledger_immutable`).
DROP TRIGGER ledger_entries_balanced ON ledger_entries;
DROP TRIGGER ledger_transactions_balanced ON ledger_transactions;
DROP FUNCTION ledger_entries_balanced();
DROP FUNCTION ledger_transactions_balanced();
DROP FUNCTION ledger_assert_balanced(uuid);
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_transaction_id_fkey;

CREATE FUNCTION ledger_assert_balanced(txns uuid[]) RETURNS void LANGUAGE plpgsql AS $$
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
-- Each lookup is by transaction id: never a sequential scan of the ledger.
ALTER FUNCTION ledger_assert_balanced(uuid[]) SET enable_seqscan = off;

CREATE FUNCTION ledger_entries_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ledger_assert_balanced(ARRAY(SELECT DISTINCT transaction_id FROM new_entries));
    RETURN NULL;
END $$;
-- A posting's entries fire the check above, which covers its transaction: this one
-- only catches a transaction inserted without entries (one index probe each).
CREATE FUNCTION ledger_transactions_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
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
ALTER FUNCTION ledger_transactions_balanced() SET enable_seqscan = off;
CREATE TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries
    REFERENCING NEW TABLE AS new_entries FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_balanced();
CREATE TRIGGER ledger_transactions_balanced AFTER INSERT ON ledger_transactions
    REFERENCING NEW TABLE AS new_transactions FOR EACH STATEMENT EXECUTE FUNCTION ledger_transactions_balanced();
