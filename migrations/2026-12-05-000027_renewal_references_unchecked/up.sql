-- Seven of the foreign keys a renewal checked, row by row, on the path every
-- renewal takes (issue 15, part 4; bench/README "Renewals without their foreign-key
-- checks"): the payment's subscription and customer, the attempt's payment and
-- saved card, the subscription's renewal payment, the ledger transaction's and the
-- receipt's payment (the history row's key to its subscription is kept). Each check ran a query through SPI and took `FOR KEY SHARE` on the row
-- it named (writing that lock into the row): about 7 % of the machine's CPU in a
-- fiscal renewal run. Every id these columns get comes from a row read or created
-- in the same transaction, and no decision relied on the checks' implicit locks
-- (bench/README lists each write site).
-- What the keys guarded is kept otherwise, as migration 000021 did for tenants
-- and the catalog: customers, subscriptions, payments and saved cards are never
-- deleted, truncated or renumbered (the triggers below refuse it), and the audit
-- (`billing-api audit`, invariant `references_exist`) finds rows naming none.
--
-- Dropping a key takes both its tables' exclusive lock until this migration
-- commits: give up after 3 s behind a long transaction rather than stall every
-- query on the tables already locked (the pod restarts and migrates again).
SET LOCAL lock_timeout = '3s';
ALTER TABLE subscriptions DROP CONSTRAINT subscriptions_renewal_payment_id_fkey;
ALTER TABLE payments DROP CONSTRAINT payments_subscription_id_fkey;
ALTER TABLE payments DROP CONSTRAINT payments_customer_id_fkey;
ALTER TABLE payment_attempts DROP CONSTRAINT payment_attempts_payment_id_fkey;
ALTER TABLE payment_attempts DROP CONSTRAINT payment_attempts_payment_method_id_fkey;
ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_payment_id_fkey;
ALTER TABLE receipts DROP CONSTRAINT receipts_payment_id_fkey;
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['customers', 'subscriptions', 'payments', 'payment_methods'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE DELETE ON %I FOR EACH ROW EXECUTE FUNCTION never_deleted()',
                       t || '_never_deleted', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OF id ON %I FOR EACH ROW '
                       'WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION never_deleted()',
                       t || '_never_renumbered', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION never_deleted()',
                       t || '_never_truncated', t);
    END LOOP;
END $$;
