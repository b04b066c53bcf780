-- Two after-triggers on the capture and renewal paths, set-based (bench/README,
-- "Two triggers set-based").
--
-- 1. The ledger's entry check (migrations 000015 and 000023) read every inserted
--    transaction's entries back from `ledger_entries` through its index: a probe
--    and a heap fetch per entry, for entries the statement had just written. The
--    statement's own entries are in its transition table. Checking them there is
--    as strong: if every statement adds entries that sum to zero in each currency
--    for each of their transactions, every transaction sums to zero; and since no
--    entry is zero (`ledger_entries_amount_check`), a currency's entries that sum
--    to zero are at least two. Every transaction named must still exist (one
--    index probe each). When one fails, `ledger_assert_balanced` (000023) reads
--    that transaction whole and raises its error, with the messages and codes as
--    before; a transaction it finds balanced although its new entries are not
--    (one written with the checks off) is refused all the same.
SET LOCAL lock_timeout = '3s';
CREATE OR REPLACE FUNCTION ledger_entries_balanced() RETURNS trigger LANGUAGE plpgsql
SET enable_seqscan = off AS $$
DECLARE
    bad uuid;
BEGIN
    SELECT g.transaction_id INTO bad
      FROM (SELECT transaction_id, currency, sum(amount) AS total
              FROM new_entries GROUP BY transaction_id, currency) g
      LEFT JOIN ledger_transactions lt ON lt.id = g.transaction_id
     WHERE g.total <> 0 OR lt.id IS NULL
     LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    PERFORM ledger_assert_balanced(ARRAY[bad]);
    RAISE EXCEPTION 'ledger transaction %: the entries of this statement do not balance', bad
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
CREATE FUNCTION due_subscriptions_follow_moves() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- The moves first, by a hash join of the two transition tables: written as a
    -- DELETE ... USING both, the planner joined them by a nested loop that rescanned
    -- the whole new rows for each old one (an update of 128 subscriptions took 14 ms
    -- with it, 5.0 with the row trigger, 4.3 this way).
    WITH moved AS MATERIALIZED (
        SELECT o.id, o.due_at AS was, n.due_at AS due FROM old_rows o JOIN new_rows n ON n.id = o.id
         WHERE o.due_at IS DISTINCT FROM n.due_at),
    gone AS (DELETE FROM due_subscriptions d USING moved m WHERE d.due_at = m.was AND d.subscription_id = m.id)
    INSERT INTO due_subscriptions (due_at, subscription_id)
    SELECT due, id FROM moved WHERE due IS NOT NULL
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER subscriptions_due_moved AFTER UPDATE ON subscriptions
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION due_subscriptions_follow_moves();
