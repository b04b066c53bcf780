ALTER TABLE refunds DROP COLUMN to_prepaid, DROP COLUMN to_cashback,
    DROP COLUMN cashback_reversed, DROP COLUMN cashback_deducted;
ALTER TABLE payment_attempts DROP CONSTRAINT payment_attempts_channel_check;
ALTER TABLE payment_attempts ADD CONSTRAINT payment_attempts_channel_check
    CHECK (channel IN ('widget', 'token', 'token_manual'));
ALTER TABLE payments DROP CONSTRAINT payments_funding_within_amount,
    DROP COLUMN from_prepaid, DROP COLUMN from_cashback, DROP COLUMN cashback_earned;
ALTER TABLE ledger_accounts DROP CONSTRAINT ledger_accounts_no_overdraft, DROP COLUMN balance;
