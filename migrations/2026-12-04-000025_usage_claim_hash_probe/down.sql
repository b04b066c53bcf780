-- Run with the workers of this release stopped: one of them could be building a hash
-- index concurrently, which the DROP INDEX below would wait for.
DROP FUNCTION usage_claim_keys(integer, boolean, uuid[]);
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT c.oid::regclass AS rel FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
              WHERE i.indrelid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'usage_event_keys'::regclass)
                AND c.relname ~ '^usage_event_keys_[0-9]+_key_hash$'
    LOOP
        EXECUTE format('DROP INDEX %s', r.rel);
    END LOOP;
END $$;
