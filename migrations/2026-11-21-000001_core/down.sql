DROP TABLE test_clock, outbox_events, gateway_events, idempotency_keys, ledger_entries,
    ledger_transactions, ledger_accounts, payment_attempts, payments, subscription_transitions,
    subscriptions, payment_methods, customers, price_notices, plan_prices, plans, api_keys, tenants;
DROP FUNCTION ledger_immutable(), ledger_transactions_balanced(), ledger_entries_balanced(),
    ledger_assert_balanced(uuid);
