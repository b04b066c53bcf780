-- A Bloom filter of each frozen key generation (issue 15, part 5). Outside a
-- generation's first day every new id used to be looked up in the previous
-- generation's hash index (about 3.5 us per id with 50 000 000 ids there: the gap
-- between a full window and an empty one). Once the previous generation takes no
-- more keys, the worker's upkeep reads its keys once and stores a filter of them
-- here; each API replica loads it and looks up only the ids the filter does not
-- rule out (a filter has no false negatives, so an id it rules out is not there;
-- about 1 % of new ids are false positives and are looked up as before).
-- `bits` is the filter's bit vector, 64-bit words little-endian; `format` names how
-- a key maps to bits: a replica uses only a filter of its own format, and during a
-- rolling update that changes it the two releases' filters stand side by side.
CREATE TABLE usage_key_filters (
    generation integer NOT NULL,
    format text NOT NULL,
    hashes integer NOT NULL CHECK (hashes > 0),
    keys bigint NOT NULL CHECK (keys >= 0),
    bits bytea NOT NULL CHECK (length(bits) > 0 AND length(bits) % 8 = 0),
    built_at timestamptz NOT NULL,
    PRIMARY KEY (generation, format)
);
-- Random bits do not compress: stored out of line without trying.
ALTER TABLE usage_key_filters ALTER COLUMN bits SET STORAGE EXTERNAL;

-- The claim of migration 000026 with the keys split by the caller: `keys` are
-- looked up in the previous generation (outside the overlap day), `unseen` are keys
-- the previous generation's filter rules out, inserted without the lookup. Within
-- `overlap` both are claimed in both generations as before. Both arrays sorted;
-- returns the keys claimed now.
CREATE FUNCTION usage_claim_keys(current_generation integer, overlap boolean, keys uuid[], unseen uuid[])
RETURNS SETOF uuid LANGUAGE plpgsql AS $$
BEGIN
    IF overlap THEN
        RETURN QUERY
        WITH claimed AS (INSERT INTO usage_event_keys AS t (generation, key)
                         SELECT g, k FROM (SELECT unnest(keys) UNION ALL SELECT unnest(unseen)) AS v(k),
                                          (VALUES (current_generation - 1), (current_generation)) AS gs(g)
                          ORDER BY k, g
                         ON CONFLICT DO NOTHING RETURNING t.key)
        SELECT c.key FROM claimed c GROUP BY c.key HAVING count(*) = 2;
    ELSE
        RETURN QUERY
        WITH claimed AS (INSERT INTO usage_event_keys AS t (generation, key)
                         SELECT current_generation, v.k
                           FROM (SELECT p.k FROM unnest(keys) AS p(k)
                                  WHERE NOT EXISTS (SELECT 1 FROM usage_event_keys o
                                                     WHERE o.generation = current_generation - 1 AND o.key = p.k)
                                 UNION ALL
                                 SELECT u.k FROM unnest(unseen) AS u(k)) AS v
                          ORDER BY v.k
                         ON CONFLICT DO NOTHING RETURNING t.key)
        SELECT c.key FROM claimed c;
    END IF;
END $$;

-- The three-argument claim stays for the earlier release's API replicas during a
-- rolling update: every key looked up.
CREATE OR REPLACE FUNCTION usage_claim_keys(current_generation integer, overlap boolean, keys uuid[])
RETURNS SETOF uuid LANGUAGE sql AS $$
    SELECT * FROM usage_claim_keys(current_generation, overlap, keys, '{}'::uuid[])
$$;
