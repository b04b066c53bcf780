-- Migration 000026's claim again.
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
DROP FUNCTION usage_claim_keys(integer, boolean, uuid[], uuid[]);
DROP TABLE usage_key_filters;
