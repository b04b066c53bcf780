-- The statement-level ledger checks of migration 000015 looped over a statement's
-- transactions in PL/pgSQL: three queries per transaction, each started and ended
-- by the executor on its own (a renewal wave's posting of 128 transactions ran 384
-- of them plus 128 probes for the transactions' own check). The same guarantees,
-- one query per trigger call:
-- * every transaction an inserted entry belongs to exists, has at least two
--   entries, and sums to zero in each currency (one that does not is reported,
--   with the same messages and error codes as before);
-- * every inserted transaction has at least one entry (so none is left empty;
--   the entries' check then requires two).
CREATE OR REPLACE FUNCTION ledger_assert_balanced(txns uuid[]) RETURNS void LANGUAGE plpgsql
SET enable_seqscan = off AS $$
DECLARE
    bad record;
BEGIN
    SELECT t.id, lt.id IS NULL AS missing, s.n, s.unbalanced INTO bad
      FROM unnest(txns) AS t(id)
      LEFT JOIN ledger_transactions lt ON lt.id = t.id
      CROSS JOIN LATERAL (
          SELECT coalesce(sum(g.c), 0) AS n,
                 string_agg(CASE WHEN g.total <> 0 THEN g.currency || ' ' || g.total::text END, ', '
                            ORDER BY g.currency) AS unbalanced
            FROM (SELECT e.currency, sum(e.amount) AS total, count(*) AS c
                    FROM ledger_entries e WHERE e.transaction_id = t.id GROUP BY e.currency) g) s
     WHERE lt.id IS NULL OR s.n < 2 OR s.unbalanced IS NOT NULL
     LIMIT 1;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF bad.missing THEN
        RAISE EXCEPTION 'ledger entries reference transaction %, which does not exist', bad.id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF bad.n < 2 THEN
        RAISE EXCEPTION 'ledger transaction % has % entries; at least two are required', bad.id, bad.n
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RAISE EXCEPTION 'ledger transaction % does not balance: %', bad.id, bad.unbalanced
        USING ERRCODE = 'integrity_constraint_violation';
END $$;

CREATE OR REPLACE FUNCTION ledger_transactions_balanced() RETURNS trigger LANGUAGE plpgsql
SET enable_seqscan = off AS $$
DECLARE
    txn uuid;
BEGIN
    SELECT n.id INTO txn FROM new_transactions n
     WHERE NOT EXISTS (SELECT 1 FROM ledger_entries e WHERE e.transaction_id = n.id)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger transaction % has 0 entries; at least two are required', txn
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;
