-- Faults found from outside (issue 10).
--
-- 1. A charge attempt the provider refused for the merchant's own request
--    (credentials, malformed request): nothing was charged, the same attempt is
--    re-sent later. Its own status, so it is never mistaken for a decline.
ALTER TABLE payment_attempts DROP CONSTRAINT payment_attempts_status_check;
ALTER TABLE payment_attempts ADD CONSTRAINT payment_attempts_status_check
    CHECK (status IN ('pending', 'sent', 'succeeded', 'failed', 'unknown', 'refused'));
DROP INDEX payment_attempts_open;
CREATE INDEX payment_attempts_open ON payment_attempts (payment_id)
    WHERE status IN ('pending', 'sent', 'unknown', 'refused');

-- 2. Unit prices were stored normalised ("20" for 20.00), which the contract's
--    money parser does not read back: every stored unit price gets at least two
--    decimals, in plans' quotas and in payments' overage lines.
CREATE FUNCTION pg_temp.two_decimals(v text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN v ~ '^[0-9]+$' THEN v || '.00'
                WHEN v ~ '^[0-9]+\.[0-9]$' THEN v || '0'
                ELSE v END
$$;

UPDATE plans p
SET quotas = (
    SELECT jsonb_object_agg(q.key,
        CASE WHEN q.value ? 'unit_price'
             THEN jsonb_set(q.value, '{unit_price,value}',
                            to_jsonb(pg_temp.two_decimals(q.value -> 'unit_price' ->> 'value')))
             ELSE q.value END)
    FROM jsonb_each(p.quotas) q)
WHERE EXISTS (SELECT 1 FROM jsonb_each(p.quotas) q
              WHERE q.value -> 'unit_price' ->> 'value' !~ '\.[0-9]{2}');

UPDATE payments p
SET lines = (
    SELECT jsonb_agg(
        CASE WHEN l.value ? 'unit_price'
             THEN jsonb_set(l.value, '{unit_price,value}',
                            to_jsonb(pg_temp.two_decimals(l.value -> 'unit_price' ->> 'value')))
             ELSE l.value END
        ORDER BY l.ordinality)
    FROM jsonb_array_elements(p.lines) WITH ORDINALITY l)
WHERE jsonb_typeof(p.lines) = 'array'
  AND EXISTS (SELECT 1 FROM jsonb_array_elements(p.lines) l
              WHERE l.value -> 'unit_price' ->> 'value' !~ '\.[0-9]{2}');
