ALTER TABLE usage_counters RESET (fillfactor);
DROP FUNCTION usage_partitions_expire(integer, date);
DROP FUNCTION usage_partitions_prepare(date, integer, date);
DROP FUNCTION usage_partition_attach(regclass, text, text, text);
ALTER TABLE usage_events RENAME TO usage_events_partitioned;
CREATE TABLE usage_events (
    tenant_id       uuid NOT NULL,
    event_id        text NOT NULL,
    customer_id     uuid NOT NULL,
    subscription_id uuid NOT NULL,
    metric          text NOT NULL,
    quantity        bigint NOT NULL CHECK (quantity >= 0),
    occurred_at     timestamptz NOT NULL,
    period_start    timestamptz NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, event_id)
);
INSERT INTO usage_events SELECT * FROM usage_events_partitioned ON CONFLICT DO NOTHING;
DROP TABLE usage_events_partitioned, usage_event_keys, usage_archived;
