ALTER TABLE payment_methods DROP CONSTRAINT payment_methods_customer_token_key;
ALTER TABLE payment_methods ADD CONSTRAINT payment_methods_tenant_id_gateway_token_key UNIQUE (tenant_id, gateway, token);
ALTER TABLE payment_attempts DROP CONSTRAINT payment_attempts_channel_check;
ALTER TABLE payment_attempts ADD CONSTRAINT payment_attempts_channel_check CHECK (channel IN ('widget', 'token'));
DROP TABLE dead_letters, webhook_deliveries, subscription_notices;
DROP INDEX outbox_events_pending;
ALTER TABLE outbox_events DROP COLUMN exchange, DROP COLUMN routing_key, DROP COLUMN lane, DROP COLUMN inserted_at;
CREATE INDEX outbox_events_unpublished ON outbox_events (seq) WHERE published_at IS NULL;
DROP INDEX payment_attempts_open;
ALTER TABLE payment_attempts DROP COLUMN payment_method_id, DROP COLUMN sent_at;
DROP INDEX payments_one_renewal_per_period;
DROP INDEX subscriptions_due;
ALTER TABLE subscriptions DROP COLUMN due_at, DROP COLUMN renewal_payment_id, DROP COLUMN next_retry_at,
    DROP COLUMN dunning_ends_at, DROP COLUMN retries_stopped, DROP COLUMN paid_through, DROP COLUMN canceled_at;
