-- The balance check runs at COMMIT for every inserted entry. Two costs fixed here:
-- * plpgsql caches a generic plan; chosen while the table was small (or after an
--   ANALYZE of an empty table) it was a sequential scan that grew with the ledger.
--   The lookup is by one transaction id: the function forbids sequential scans
--   (below), so the cached plan always probes the index.
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

-- Foreign keys to the hottest parent rows take a KEY SHARE lock on the parent for
-- every inserted row: every ledger entry locked the tenant's revenue and clearing
-- accounts, every ledger transaction and outbox message the tenant row. Under
-- concurrent renewals those locks become multixacts and dominated the inserts.
-- The references hold by construction: accounts are written (deterministic ids) in
-- the same statement as their entries, and tenants are never deleted.
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_account_id_fkey;
ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_tenant_id_fkey;
ALTER TABLE outbox_events DROP CONSTRAINT outbox_events_tenant_id_fkey;
