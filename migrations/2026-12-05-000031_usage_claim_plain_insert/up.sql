-- A usage batch's id claim without `ON CONFLICT` when no id of the batch was claimed
-- before (issue 15, part 5). `INSERT … ON CONFLICT DO NOTHING` inserts each key
-- speculatively: it probes the partition's hash index, inserts, probes again and
-- confirms the insertion (one more WAL record). A plain `INSERT` inserts and probes
-- once (the exclusion constraint's check). Measured in SQL on one session, 100 calls
-- of 10 000 new random keys each way interleaved into three like tables: 106 ms a
-- call the `ON CONFLICT` way, 84-86 ms the plain way (bench/README, "The claim
-- without ON CONFLICT").
--
-- A batch holding an id claimed before (a retry) or by a batch still in flight makes
-- the plain insert fail (exclusion_violation on a generation's partition,
-- unique_violation on the default one); the subtransaction is rolled back and the
-- keys are claimed the `ON CONFLICT` way (usage_claim_keys, migration 000030). So
-- does deadlock_detected: two plain inserts of one key can each see the other's
-- in-progress key in their constraint check and wait for each other (an exclusion
-- constraint's check comes after the insertion); the one the deadlock detector ends
-- then waits for the other's commit in the `ON CONFLICT` claim. That victim's
-- batch has waited `deadlock_timeout` (1 s by default) first: two batches claiming one
-- id at the same instant are a client's retry racing its first try. Catching
-- deadlock_detected here is safe because the claim is its transaction's first write:
-- every lock in such a cycle is the subtransaction's, and rolling it back frees
-- them. usage_claim_keys stays while this function falls back to it. Within `overlap` (a
-- generation's first day) every key is claimed in both generations the
-- `ON CONFLICT` way as before.
--
-- The arrays are unnested in the select list (no tuplestore holds their rows first,
-- as a function in FROM does).
--
-- Arguments as usage_claim_keys: `keys` (looked up in the previous generation) and
-- `unseen` (ruled out by the previous generation's filter), each sorted. Returns the
-- keys claimed now, as one array (empty when none).
CREATE FUNCTION usage_claim(current_generation integer, overlap boolean, keys uuid[], unseen uuid[])
RETURNS uuid[] LANGUAGE plpgsql AS $$
DECLARE
    claimed uuid[];
BEGIN
    IF NOT overlap THEN
        BEGIN
            WITH c AS (INSERT INTO usage_event_keys AS t (generation, key)
                       SELECT current_generation, v.k
                         FROM (SELECT p.k FROM (SELECT unnest(keys) AS k) AS p
                                WHERE NOT EXISTS (SELECT 1 FROM usage_event_keys o
                                                   WHERE o.generation = current_generation - 1 AND o.key = p.k)
                               UNION ALL
                               SELECT unnest(unseen)) AS v(k)
                        ORDER BY v.k
                       RETURNING t.key)
            SELECT array_agg(c.key) INTO claimed FROM c;
            RETURN coalesce(claimed, '{}');
        EXCEPTION WHEN exclusion_violation OR unique_violation OR deadlock_detected THEN
            NULL; -- claimed below, the ON CONFLICT way
        END;
    END IF;
    SELECT array_agg(k) INTO claimed FROM usage_claim_keys(current_generation, overlap, keys, unseen) AS k;
    RETURN coalesce(claimed, '{}');
END $$;
