-- A usage batch's id claim (db::usage::claim_keys) as one function, so that outside
-- a generation's first day it can probe the previous generation through a hash index
-- on its partition's key once the worker's upkeep has built one
-- (db::usage_partitions::hash_generation, after that first day, when only a replica
-- whose clock lags by up to a day still writes there; the concurrent build copes).
-- A B-tree probe of a 20 000 000-key generation costs about 6 µs an id even when
-- cached (four levels of random memory), a hash probe about half
-- (bench/README, "The previous generation probed through a hash index"). The
-- planner keeps the primary key's index-only scan when the probe names the parent
-- table, so the function names the partition, in a statement planned at each call
-- (about 0.08 ms): worth it from about 32 ids, so smaller batches keep the B-tree
-- probe of a prepared plan.
--
-- `keys` sorted (concurrent batches lock them in the same order). Returns the keys
-- claimed now; the others are duplicates. Within `overlap` (the generation's first
-- day) a key is claimed in both generations and new only when both inserts went
-- through; otherwise it is inserted in `current_generation` and looked up in the one before.
CREATE FUNCTION usage_claim_keys(current_generation integer, overlap boolean, keys uuid[])
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
