-- Digests cannot be turned back into ids: the keys are rebuilt from the stored
-- events of the last two generations by the database's clock (an id claimed on a
-- generation's first day in the previous one as well is rebuilt in its own
-- generation only), into the default partition (the worker's upkeep moves them).
LOCK TABLE usage_event_keys IN ACCESS EXCLUSIVE MODE;
DROP TABLE usage_event_keys;
CREATE TABLE usage_event_keys (
    generation integer NOT NULL,
    tenant_id  uuid NOT NULL,
    event_id   text COLLATE "C" NOT NULL,
    PRIMARY KEY (generation, tenant_id, event_id)
) PARTITION BY LIST (generation);
CREATE TABLE usage_event_keys_default PARTITION OF usage_event_keys DEFAULT;
INSERT INTO usage_event_keys
SELECT floor(extract(epoch FROM received_at) / 3024000)::integer, tenant_id, event_id FROM usage_events
 WHERE received_at >= to_timestamp((floor(extract(epoch FROM now()) / 3024000) - 1) * 3024000)
ON CONFLICT DO NOTHING;
DROP FUNCTION usage_event_key(uuid, text);
