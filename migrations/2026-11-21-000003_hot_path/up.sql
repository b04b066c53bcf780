-- The balance check runs at COMMIT for every inserted entry. Two costs fixed here:
-- * plpgsql caches a generic plan; chosen while the table was small, it was a
--   sequential scan that grew with the ledger. force_custom_plan plans each check
--   with the actual transaction id, so it probes the index.
-- * every entry of a transaction triggered the same check: the last transaction
--   checked is remembered for the rest of the database transaction (all deferred
--   checks run after every row is in, so once per ledger transaction suffices).
CREATE OR REPLACE FUNCTION ledger_assert_balanced(txn uuid) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    n integer;
    unbalanced text;
BEGIN
    IF current_setting('billing.ledger_checked', true) = txn::text THEN
        RETURN;
    END IF;
    SELECT coalesce(sum(c), 0), string_agg(CASE WHEN total <> 0 THEN currency || ' ' || total::text END, ', ')
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
    PERFORM set_config('billing.ledger_checked', txn::text, true);
END $$;
ALTER FUNCTION ledger_assert_balanced(uuid) SET plan_cache_mode = force_custom_plan;
-- The lookup is by one transaction id: it must probe the index whatever the
-- statistics say (a freshly analyzed empty ledger made the planner scan it all).
ALTER FUNCTION ledger_assert_balanced(uuid) SET enable_seqscan = off;

-- Which period's notices went out, on the subscription itself, so the scheduler
-- decides without a lookup (subscription_notices stays the exactly-once guard).
ALTER TABLE subscriptions
    ADD COLUMN renewal_notice_for timestamptz,
    ADD COLUMN expiry_notice_for timestamptz;
UPDATE subscriptions s SET renewal_notice_for = n.period_end FROM subscription_notices n
 WHERE n.subscription_id = s.id AND n.kind = 'subscription.renewal_upcoming' AND n.period_end = s.current_period_end;
UPDATE subscriptions s SET expiry_notice_for = n.period_end FROM subscription_notices n
 WHERE n.subscription_id = s.id AND n.kind = 'subscription.expiring_soon' AND n.period_end = s.current_period_end;
