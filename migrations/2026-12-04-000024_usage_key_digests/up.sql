-- Usage event ids are claimed under a 16-byte key instead of (tenant_id, event_id):
-- the first 16 bytes of SHA-256 over the tenant's id (its 16 bytes) and the event id
-- (UTF-8), as a uuid (`domain::usage::event_key`, which must compute the same). For
-- MD5-hex ids an index entry is half the size of one holding the id's text (50
-- against 96 MB per million), so more of a 35-day window stays in memory and each
-- claim costs less (bench/README, "Usage keys as digests").
--
-- Rolling update: an API of an earlier release still running beside this one cannot
-- claim ids any more (its INSERT names columns that are gone) and answers its usage
-- batches with an error; clients retry them (same ids), and the new release counts
-- each once. Keys claimed before the migration are converted, each generation into
-- a partition of its own (none waits in the default partition for the upkeep to move
-- it under its lock), so the window holds.
CREATE FUNCTION usage_event_key(tenant uuid, event_id text) RETURNS uuid
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$ SELECT encode(substring(sha256(uuid_send(tenant) || convert_to(event_id, 'UTF8')) FROM 1 FOR 16), 'hex')::uuid $$;

LOCK TABLE usage_event_keys IN ACCESS EXCLUSIVE MODE;
-- The text-keyed table, its partitions and their indexes step aside under other names.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT c.oid::regclass AS rel, c.relname FROM pg_class c
              WHERE c.oid = 'usage_event_keys'::regclass
                 OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'usage_event_keys'::regclass)
                 OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'usage_event_keys'::regclass
                               OR indrelid IN (SELECT inhrelid FROM pg_inherits
                                                WHERE inhparent = 'usage_event_keys'::regclass))
    LOOP
        EXECUTE format('ALTER %s %s RENAME TO %I',
                       CASE WHEN r.relname LIKE '%pkey%' THEN 'INDEX' ELSE 'TABLE' END, r.rel, 'by_text_' || r.relname);
    END LOOP;
END $$;
CREATE TABLE usage_event_keys (
    generation integer NOT NULL,
    key        uuid NOT NULL,
    PRIMARY KEY (generation, key)
) PARTITION BY LIST (generation);
CREATE TABLE usage_event_keys_default PARTITION OF usage_event_keys DEFAULT;
DO $$
DECLARE
    g integer;
BEGIN
    FOR g IN SELECT DISTINCT generation FROM by_text_usage_event_keys ORDER BY 1 LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF usage_event_keys FOR VALUES IN (%s)', 'usage_event_keys_' || g, g);
    END LOOP;
END $$;
INSERT INTO usage_event_keys
SELECT generation, usage_event_key(tenant_id, event_id) FROM by_text_usage_event_keys
 ORDER BY 1, 2
ON CONFLICT DO NOTHING;
DROP TABLE by_text_usage_event_keys;
