-- Executing approved refunds through the gateway (SPEC §6). Each execution try
-- has its own idempotency key `<refund id>-<attempt>` (a retry after a failure is a
-- new try); the refund's gateway transaction is what its Refund notification names.
-- Refunds made in the provider's dashboard arrive as notifications and are
-- recorded with reason `dashboard`.
ALTER TABLE refunds
    ADD COLUMN attempt                integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    ADD COLUMN gateway_transaction_id text,
    ADD COLUMN failure_reason         text,
    ADD COLUMN sent_at                timestamptz,
    ADD COLUMN succeeded_at           timestamptz,
    DROP CONSTRAINT refunds_reason_check,
    ADD CONSTRAINT refunds_reason_check
        CHECK (reason IN ('unused', 'outage', 'double_charge', 'provider_termination', 'goodwill', 'dashboard'));
CREATE UNIQUE INDEX refunds_gateway_tx ON refunds (tenant_id, gateway_transaction_id)
    WHERE gateway_transaction_id IS NOT NULL;
-- Refunds on their way through the gateway: the test clock's `settled` waits for them.
CREATE INDEX refunds_in_flight ON refunds (id) WHERE status IN ('approved', 'processing');
