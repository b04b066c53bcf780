-- Usage event ids are claimed under a 16-byte key instead of (tenant_id, event_id):
-- the first 16 bytes of SHA-256 over the tenant's id (its 16 bytes) and the event id
-- (UTF-8), as a uuid (`domain::usage::event_key`, which must compute the same). An
-- index entry is half the size of one holding the id's text (50 against 96 MB per
-- million MD5-hex ids), so more of a 35-day window stays in memory and each claim
-- costs less (bench/README, "Usage keys as digests").
--
-- Rolling update: an API of an earlier release still running beside this one cannot
-- claim ids any more (its INSERT names columns that are gone) and answers its usage
-- batches with an error; clients retry them (same ids), and the new release counts
-- each once. Keys claimed before the migration are converted, so the window holds.
CREATE FUNCTION usage_event_key(tenant uuid, event_id text) RETURNS uuid
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT encode(substring(sha256(uuid_send(tenant) || convert_to(event_id, 'UTF8')) FROM 1 FOR 16), 'hex')::uuid $$;

LOCK TABLE usage_event_keys IN ACCESS EXCLUSIVE MODE;
ALTER TABLE usage_event_keys RENAME TO usage_event_keys_by_text;
ALTER TABLE usage_event_keys_default RENAME TO usage_event_keys_by_text_default;
ALTER INDEX usage_event_keys_pkey RENAME TO usage_event_keys_by_text_pkey;
CREATE TABLE usage_event_keys (
    generation integer NOT NULL,
    key        uuid NOT NULL,
    PRIMARY KEY (generation, key)
) PARTITION BY LIST (generation);
CREATE TABLE usage_event_keys_default PARTITION OF usage_event_keys DEFAULT;
-- Into the default partition; the worker's upkeep (`usage_partitions_prepare`) moves
-- each generation still kept into a partition of its own.
INSERT INTO usage_event_keys
SELECT generation, usage_event_key(tenant_id, event_id) FROM usage_event_keys_by_text
ON CONFLICT DO NOTHING;
DROP TABLE usage_event_keys_by_text;
