-- Each key generation's partition of usage_event_keys keeps its keys unique through
-- a hash index (an exclusion constraint, `key WITH =`) instead of the B-tree primary
-- key `(generation, key)`. A claim then inserts a key into a hash bucket page instead
-- of descending a B-tree of up to a whole window's keys, and the previous
-- generation's probe reads the same hash index, so the worker no longer builds one
-- (migration 000025's `_key_hash` indexes are dropped). In SQL, 10 000 new random
-- keys into a generation already holding 20 000 000: 220-290 ms through the B-tree,
-- 140 ms through the hash index; into a fresh one, 56 against 45-52 ms
-- (bench/README, "Usage keys unique through a hash index").
--
-- `INSERT … ON CONFLICT DO NOTHING` without a conflict target honours exclusion
-- constraints as it does unique indexes (a concurrent claim of the same key waits for
-- the first one's transaction, then skips or inserts). The default partition may hold
-- several generations, so it keeps a B-tree primary key on `(generation, key)` (a hash
-- index covers one column). PostgreSQL 15 has no exclusion constraint on a
-- partitioned table, so the parent has none and each generation's partition gets its
-- own when the upkeep creates it (usage_partition_attach, before its rows move in).
--
-- The ACCESS EXCLUSIVE lock holds ingestion while the existing generations' hash
-- indexes are built (about 30 s for 20 000 000 keys here); the window is never
-- without its uniqueness, since all of it is one transaction. Run it with the workers
-- of the earlier release stopped: their upkeep would build a `_key_hash` index again,
-- which nothing reads now (deploy/k8s/README.md).
LOCK TABLE usage_event_keys IN ACCESS EXCLUSIVE MODE;

CREATE FUNCTION usage_keys_unique(partition text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I EXCLUDE USING hash (key WITH =)', partition, partition || '_key');
END $$;

DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'usage_event_keys'::regclass AND c.relname ~ '^usage_event_keys_[0-9]+$'
    LOOP
        EXECUTE format('DROP INDEX IF EXISTS %I', r.relname || '_key_hash');
    END LOOP;
END $$;
ALTER TABLE usage_event_keys DROP CONSTRAINT usage_event_keys_pkey;
ALTER TABLE usage_event_keys_default ADD PRIMARY KEY (generation, key);
SELECT usage_keys_unique(c.relname::text) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = 'usage_event_keys'::regclass AND c.relname ~ '^usage_event_keys_[0-9]+$';

-- As in migration 000020, and a key generation's partition gets its constraint before
-- its rows move in from the default partition.
CREATE OR REPLACE FUNCTION usage_partition_attach(parent regclass, name text, bounds text, rows_filter text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TABLE %I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', name, parent);
    IF parent = 'usage_event_keys'::regclass THEN
        PERFORM usage_keys_unique(name);
    END IF;
    EXECUTE format('WITH moved AS (DELETE FROM %s_default WHERE %s RETURNING *) INSERT INTO %I SELECT * FROM moved',
                   parent, rows_filter, name);
    EXECUTE format('ALTER TABLE %s ATTACH PARTITION %I %s', parent, name, bounds);
END $$;

-- The claim of migration 000025 with one probe path: the previous generation's
-- partition (pruned at execution) answers through its hash index whatever the batch's
-- size. `keys` sorted; returns the keys claimed now. Within `overlap` (a generation's
-- first day) a key is claimed in both generations and new only when both inserts went
-- through; otherwise it is inserted in `current_generation` and looked up in the one
-- before.
CREATE OR REPLACE FUNCTION usage_claim_keys(current_generation integer, overlap boolean, keys uuid[])
RETURNS SETOF uuid LANGUAGE plpgsql AS $$
BEGIN
    IF overlap THEN
        RETURN QUERY
        WITH claimed AS (INSERT INTO usage_event_keys AS t (generation, key)
                         SELECT g, k FROM unnest(keys) AS v(k), (VALUES (current_generation - 1), (current_generation)) AS gs(g)
                          ORDER BY k, g
                         ON CONFLICT DO NOTHING RETURNING t.key)
        SELECT c.key FROM claimed c GROUP BY c.key HAVING count(*) = 2;
    ELSE
        RETURN QUERY
        WITH claimed AS (INSERT INTO usage_event_keys AS t (generation, key)
                         SELECT current_generation, k FROM unnest(keys) AS v(k)
                          WHERE NOT EXISTS (SELECT 1 FROM usage_event_keys o
                                             WHERE o.generation = current_generation - 1 AND o.key = v.k)
                          ORDER BY k
                         ON CONFLICT DO NOTHING RETURNING t.key)
        SELECT c.key FROM claimed c;
    END IF;
END $$;
