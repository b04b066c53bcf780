-- Money beyond the card (issue 12, part 1): a customer's prepaid money and
-- cashback, spent on payments.
--
-- A spendable account's balance is kept beside its entries: every posting that
-- touches one updates it in the same transaction (db::ledger::post_many), and the
-- database refuses to let it go below zero. Two concurrent spends of one balance
-- queue on the account row; the second sees what the first left and fails rather
-- than overdraw. Existing accounts of those kinds start from their entries' sum.
ALTER TABLE ledger_accounts ADD COLUMN balance numeric(14, 2) NOT NULL DEFAULT 0;
UPDATE ledger_accounts a
SET balance = s.total
FROM (SELECT account_id, sum(amount) AS total FROM ledger_entries GROUP BY account_id) s
WHERE s.account_id = a.id AND a.code IN ('customer_prepaid', 'customer_cashback');
ALTER TABLE ledger_accounts ADD CONSTRAINT ledger_accounts_no_overdraft
    CHECK (code NOT IN ('customer_prepaid', 'customer_cashback') OR balance >= 0);

-- What paid for a payment: from_prepaid and from_cashback came from the balance,
-- the rest through the gateway. cashback_earned is what its capture credited.
ALTER TABLE payments
    ADD COLUMN from_prepaid    numeric(14, 2) NOT NULL DEFAULT 0 CHECK (from_prepaid >= 0),
    ADD COLUMN from_cashback   numeric(14, 2) NOT NULL DEFAULT 0 CHECK (from_cashback >= 0),
    ADD COLUMN cashback_earned numeric(14, 2) NOT NULL DEFAULT 0 CHECK (cashback_earned >= 0),
    ADD CONSTRAINT payments_funding_within_amount CHECK (from_prepaid + from_cashback <= amount);

-- A payment taken from the balance is collected by a 'balance' attempt.
ALTER TABLE payment_attempts DROP CONSTRAINT payment_attempts_channel_check;
ALTER TABLE payment_attempts ADD CONSTRAINT payment_attempts_channel_check
    CHECK (channel IN ('widget', 'token', 'token_manual', 'balance'));

-- Where a refund's money goes back to (a balance-paid payment returns to the
-- balance: to_prepaid + to_cashback = amount), and what it did to the cashback
-- the payment earned: reversed from the cashback balance, or deducted from the
-- refund because it was already spent.
ALTER TABLE refunds
    ADD COLUMN to_prepaid        numeric(14, 2) NOT NULL DEFAULT 0 CHECK (to_prepaid >= 0),
    ADD COLUMN to_cashback       numeric(14, 2) NOT NULL DEFAULT 0 CHECK (to_cashback >= 0),
    ADD COLUMN cashback_reversed numeric(14, 2) NOT NULL DEFAULT 0 CHECK (cashback_reversed >= 0),
    ADD COLUMN cashback_deducted numeric(14, 2) NOT NULL DEFAULT 0 CHECK (cashback_deducted >= 0);
