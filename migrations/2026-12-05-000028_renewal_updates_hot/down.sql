SET LOCAL lock_timeout = '3s';
ALTER TABLE receipts RESET (fillfactor);
ALTER TABLE payment_attempts RESET (fillfactor);
CREATE UNIQUE INDEX receipts_provider_uuid ON receipts (tenant_id, provider_uuid) WHERE provider_uuid IS NOT NULL;
CREATE INDEX payment_attempts_open ON payment_attempts (payment_id) WHERE status IN ('pending', 'sent', 'unknown', 'refused');
