DROP TRIGGER ledger_accounts_no_truncate ON ledger_accounts;
DROP TRIGGER ledger_transactions_no_truncate ON ledger_transactions;
DROP TRIGGER ledger_entries_no_truncate ON ledger_entries;
DROP FUNCTION ledger_no_truncate();
