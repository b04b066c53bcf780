-- Two after-triggers on the capture and renewal paths, set-based (bench/README,
-- "Two triggers set-based").
--
-- 1. The ledger's entry check (migrations 000015 and 000023) read every inserted
--    transaction's entries back from `ledger_entries` through its index: a probe
--    and a heap fetch per entry, for entries the statement had just written. The
--    statement's own entries are in its transition table. Checking them there is
--    as strong for a ledger every earlier insert went through the checks for: if
--    every statement adds entries that sum to zero in each currency for each of
--    their transactions, every transaction sums to zero; and since no entry is zero
--    (`ledger_entries_amount_check`), a currency's entries that sum to zero are at
--    least two. (A transaction left unbalanced by a restore or by triggers turned
--    off is no longer refused further balanced entries: the audit's
--    `ledger_balanced` lists it.) Every transaction named must still exist (one
--    index probe each), reported as before. An unbalanced one is read whole by
--    `ledger_assert_balanced` (000023), which raises its error with the messages
--    and codes as before; one it finds balanced although the statement's entries
--    are not (earlier entries written with the checks off) is refused all the
--    same. The plan is kept per connection from the first call's row counts, so
--    the transactions are reached only by index probes whatever those were.
SET LOCAL lock_timeout = '3s';
CREATE OR REPLACE FUNCTION ledger_entries_balanced() RETURNS trigger LANGUAGE plpgsql
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
    bad record;
BEGIN
    SELECT g.transaction_id AS id, lt.id IS NULL AS missing INTO bad
      FROM (SELECT transaction_id, currency, sum(amount) AS total
              FROM new_entries GROUP BY transaction_id, currency) g
      LEFT JOIN ledger_transactions lt ON lt.id = g.transaction_id
     WHERE g.total <> 0 OR lt.id IS NULL
     LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF bad.missing THEN
        RAISE EXCEPTION 'ledger entries reference transaction %, which does not exist', bad.id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    PERFORM ledger_assert_balanced(ARRAY[bad.id]);
    RAISE EXCEPTION 'ledger transaction %: the entries of this statement do not balance', bad.id
        USING ERRCODE = 'integrity_constraint_violation';
END $$;

-- 2. The scheduler's list `due_subscriptions` (migration 000029) followed a moved
--    due instant by a row trigger: a PL/pgSQL call and two statements for each
--    subscription an update moved (a renewal wave's 128 claimed, then 128 moved;
--    a capture batch's activations). One call per statement now, over the
--    statement's old and new rows. A trigger with transition tables cannot name
--    columns (`UPDATE OF due_at`), so it runs after every update of subscriptions
--    and compares the instants itself. Each list row is keyed by its own
--    subscription, which the updating statement has locked: deletes and inserts in
--    any order reach the state the row trigger left.
DROP TRIGGER subscriptions_due_moved ON subscriptions;
CREATE FUNCTION due_subscriptions_follow_moves() RETURNS trigger LANGUAGE plpgsql
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
BEGIN
    -- PL/pgSQL plans this once per connection, with the row counts of the first
    -- statement that fires it, and keeps the plan. So no plan here may depend on
    -- them: the moves are found by grouping both tables' rows by subscription (no
    -- join of the two: written as `old_rows JOIN new_rows`, a nested loop chosen for
    -- a small first call rescans the new rows for each old one, 14 ms for 128 rows
    -- against 5.0 with the row trigger), and the list rows are reached only by
    -- index probes, never by a scan of the whole list (the settings above).
    WITH moved AS MATERIALIZED (
        SELECT id, min(due_at) FILTER (WHERE side = 0) AS was, min(due_at) FILTER (WHERE side = 1) AS due
          FROM (SELECT id, due_at, 0 AS side FROM old_rows UNION ALL SELECT id, due_at, 1 FROM new_rows) r
         GROUP BY id
        HAVING min(due_at) FILTER (WHERE side = 0) IS DISTINCT FROM min(due_at) FILTER (WHERE side = 1)),
    gone AS (DELETE FROM due_subscriptions d USING moved m WHERE d.due_at = m.was AND d.subscription_id = m.id)
    INSERT INTO due_subscriptions (due_at, subscription_id)
    SELECT due, id FROM moved WHERE due IS NOT NULL
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER subscriptions_due_moved AFTER UPDATE ON subscriptions
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION due_subscriptions_follow_moves();
