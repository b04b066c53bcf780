-- Back to the row trigger of migration 000029 and the entry check of 000015 (which
-- calls 000023's `ledger_assert_balanced`).
SET LOCAL lock_timeout = '3s';
DROP TRIGGER subscriptions_due_moved ON subscriptions;
DROP FUNCTION due_subscriptions_follow_moves();
CREATE TRIGGER subscriptions_due_moved AFTER UPDATE OF due_at ON subscriptions
    FOR EACH ROW WHEN (OLD.due_at IS DISTINCT FROM NEW.due_at) EXECUTE FUNCTION due_subscriptions_follow();

CREATE OR REPLACE FUNCTION ledger_entries_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ledger_assert_balanced(ARRAY(SELECT DISTINCT transaction_id FROM new_entries));
    RETURN NULL;
END $$;
