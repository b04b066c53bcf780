DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['customers', 'subscriptions', 'payments', 'payment_methods'] LOOP
        EXECUTE format('DROP TRIGGER %I ON %I', t || '_never_deleted', t);
        EXECUTE format('DROP TRIGGER %I ON %I', t || '_never_renumbered', t);
        EXECUTE format('DROP TRIGGER %I ON %I', t || '_never_truncated', t);
    END LOOP;
END $$;
ALTER TABLE subscriptions ADD CONSTRAINT subscriptions_renewal_payment_id_fkey
    FOREIGN KEY (renewal_payment_id) REFERENCES payments (id);
ALTER TABLE payments ADD CONSTRAINT payments_subscription_id_fkey FOREIGN KEY (subscription_id) REFERENCES subscriptions (id);
ALTER TABLE payments ADD CONSTRAINT payments_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES customers (id);
ALTER TABLE payment_attempts ADD CONSTRAINT payment_attempts_payment_id_fkey FOREIGN KEY (payment_id) REFERENCES payments (id);
ALTER TABLE payment_attempts ADD CONSTRAINT payment_attempts_payment_method_id_fkey
    FOREIGN KEY (payment_method_id) REFERENCES payment_methods (id);
ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_payment_id_fkey
    FOREIGN KEY (payment_id) REFERENCES payments (id);
ALTER TABLE receipts ADD CONSTRAINT receipts_payment_id_fkey FOREIGN KEY (payment_id) REFERENCES payments (id);
