-- Back to migration 000025's shape: the B-tree primary key on every partition, the
-- claim that probes a `_key_hash` index once the worker of that release builds it.
LOCK TABLE usage_event_keys IN ACCESS EXCLUSIVE MODE;
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'usage_event_keys'::regclass AND c.relname ~ '^usage_event_keys_[0-9]+$'
    LOOP
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT IF EXISTS %I', r.relname, r.relname || '_key');
    END LOOP;
END $$;
ALTER TABLE usage_event_keys_default DROP CONSTRAINT usage_event_keys_default_pkey;
ALTER TABLE usage_event_keys ADD PRIMARY KEY (generation, key);

CREATE OR REPLACE FUNCTION usage_partition_attach(parent regclass, name text, bounds text, rows_filter text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TABLE %I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', name, parent);
    EXECUTE format('WITH moved AS (DELETE FROM %s_default WHERE %s RETURNING *) INSERT INTO %I SELECT * FROM moved',
                   parent, rows_filter, name);
    EXECUTE format('ALTER TABLE %s ATTACH PARTITION %I %s', parent, name, bounds);
END $$;
DROP FUNCTION usage_keys_unique(text);

CREATE OR REPLACE FUNCTION usage_claim_keys(current_generation integer, overlap boolean, keys uuid[])
RETURNS SETOF uuid LANGUAGE plpgsql AS $$
DECLARE
    previous constant text := 'usage_event_keys_' || (current_generation - 1);
BEGIN
    IF overlap THEN
        RETURN QUERY
        WITH claimed AS (INSERT INTO usage_event_keys AS t (generation, key)
                         SELECT g, k FROM unnest(keys) AS v(k), (VALUES (current_generation - 1), (current_generation)) AS gs(g)
                          ORDER BY k, g
                         ON CONFLICT DO NOTHING RETURNING t.key)
        SELECT c.key FROM claimed c GROUP BY c.key HAVING count(*) = 2;
    ELSIF cardinality(keys) >= 32
          AND EXISTS (SELECT 1 FROM pg_index i WHERE i.indexrelid = to_regclass(previous || '_key_hash') AND i.indisvalid) THEN
        RETURN QUERY EXECUTE format(
            'WITH claimed AS (INSERT INTO usage_event_keys AS t (generation, key) '
            '  SELECT $1, k FROM unnest($2) AS v(k) '
            '   WHERE NOT EXISTS (SELECT 1 FROM %I o WHERE o.key = v.k) ORDER BY k '
            '  ON CONFLICT DO NOTHING RETURNING t.key) '
            'SELECT key FROM claimed', previous)
            USING current_generation, keys;
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
