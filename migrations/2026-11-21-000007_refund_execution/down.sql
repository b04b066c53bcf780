DROP INDEX refunds_in_flight;
DROP INDEX refunds_gateway_tx;
DELETE FROM refunds WHERE reason = 'dashboard';
ALTER TABLE refunds
    DROP CONSTRAINT refunds_reason_check,
    ADD CONSTRAINT refunds_reason_check
        CHECK (reason IN ('unused', 'outage', 'double_charge', 'provider_termination', 'goodwill')),
    DROP COLUMN attempt,
    DROP COLUMN gateway_transaction_id,
    DROP COLUMN failure_reason,
    DROP COLUMN sent_at,
    DROP COLUMN succeeded_at;
