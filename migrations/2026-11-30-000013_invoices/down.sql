ALTER TABLE payment_attempts DROP CONSTRAINT payment_attempts_channel_check;
ALTER TABLE payment_attempts ADD CONSTRAINT payment_attempts_channel_check
    CHECK (channel IN ('widget', 'token', 'token_manual', 'balance'));
DROP TABLE acts, invoice_payments, invoices, invoice_counters;
ALTER TABLE subscriptions DROP COLUMN pending_until;
ALTER TABLE tenants DROP COLUMN requisites;
