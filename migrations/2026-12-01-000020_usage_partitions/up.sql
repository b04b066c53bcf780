-- Usage at scale (issue 15, part 5). Events are partitioned by the UTC day they were
-- received, so retention drops whole days instead of deleting rows. Exactly-once by
-- event id moves to usage_event_keys, partitioned by 35-day generation: a key is
-- claimed in its own generation and checked against the previous one, so a retry is
-- recognised for at least 35 days (up to 70) while inserts only grow the current
-- generation's index. Rows arriving for a day or generation without its own
-- partition land in the default partitions; usage_partitions_prepare moves them.

ALTER TABLE usage_events RENAME TO usage_events_unpartitioned;

CREATE TABLE usage_events (
    tenant_id       uuid NOT NULL,
    event_id        text NOT NULL,
    customer_id     uuid NOT NULL,
    subscription_id uuid NOT NULL,
    metric          text NOT NULL,
    quantity        bigint NOT NULL CHECK (quantity >= 0),
    occurred_at     timestamptz NOT NULL,
    -- the paid period the event counts in (its start)
    period_start    timestamptz NOT NULL,
    -- the service's clock when the event was accepted: chooses the partition
    received_at     timestamptz NOT NULL
) PARTITION BY RANGE (received_at);
CREATE TABLE usage_events_default PARTITION OF usage_events DEFAULT;

-- One row per accepted event id and generation (floor(epoch seconds / 3 024 000)).
-- Ids are opaque: compared byte by byte (COLLATE "C"), not by the database's
-- locale, which makes every index step cheaper.
CREATE TABLE usage_event_keys (
    generation integer NOT NULL,
    tenant_id  uuid NOT NULL,
    event_id   text COLLATE "C" NOT NULL,
    PRIMARY KEY (generation, tenant_id, event_id)
) PARTITION BY LIST (generation);
CREATE TABLE usage_event_keys_default PARTITION OF usage_event_keys DEFAULT;

-- Totals of the event partitions dropped past retention, so the audit's
-- usage_counted_once still adds up: counters = stored events + archived totals.
CREATE TABLE usage_archived (
    subscription_id uuid NOT NULL,
    metric          text NOT NULL,
    tenant_id       uuid NOT NULL,
    quantity        numeric NOT NULL,
    events          bigint NOT NULL,
    PRIMARY KEY (subscription_id, metric)
);

INSERT INTO usage_events
SELECT tenant_id, event_id, customer_id, subscription_id, metric, quantity, occurred_at, period_start, received_at
  FROM usage_events_unpartitioned;
INSERT INTO usage_event_keys
SELECT floor(extract(epoch FROM received_at) / 3024000)::integer, tenant_id, event_id FROM usage_events_unpartitioned;
DROP TABLE usage_events_unpartitioned;

-- Moves the rows of `lo`..`hi` (events) or generation `lo` (keys) out of a default
-- partition into a new partition NAME and attaches it. The caller holds the default
-- partition's lock, so no row can arrive meanwhile.
CREATE FUNCTION usage_partition_attach(parent regclass, name text, bounds text, rows_filter text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TABLE %I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', name, parent);
    EXECUTE format('WITH moved AS (DELETE FROM %s_default WHERE %s RETURNING *) INSERT INTO %I SELECT * FROM moved',
                   parent, rows_filter, name);
    EXECUTE format('ALTER TABLE %s ATTACH PARTITION %I %s', parent, name, bounds);
END $$;

-- Creates the partitions ingestion will need: the days from yesterday to three days
-- ahead of `today` and the generations `generation` and the next, plus any day or
-- generation waiting in a default partition that is still kept. Returns the names
-- created. One transaction; it locks the two default partitions first.
CREATE FUNCTION usage_partitions_prepare(today date, generation integer, keep_from date)
RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    d date;
    g integer;
    name text;
BEGIN
    LOCK TABLE usage_events_default, usage_event_keys_default IN ACCESS EXCLUSIVE MODE;
    FOR d IN SELECT today + i FROM generate_series(-1, 3) i
             UNION SELECT DISTINCT (received_at AT TIME ZONE 'UTC')::date FROM usage_events_default
             ORDER BY 1
    LOOP
        name := 'usage_events_' || to_char(d, 'YYYYMMDD');
        CONTINUE WHEN d < keep_from OR to_regclass(name) IS NOT NULL;
        PERFORM usage_partition_attach('usage_events', name,
            format('FOR VALUES FROM (%L) TO (%L)', d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC'),
            format('received_at >= %L AND received_at < %L', d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC'));
        RETURN NEXT name;
    END LOOP;
    FOR g IN SELECT x FROM (VALUES (generation), (generation + 1)) v(x)
             UNION SELECT DISTINCT k.generation FROM usage_event_keys_default k
             ORDER BY 1
    LOOP
        name := 'usage_event_keys_' || g;
        CONTINUE WHEN g < generation - 1 OR to_regclass(name) IS NOT NULL;
        PERFORM usage_partition_attach('usage_event_keys', name, format('FOR VALUES IN (%s)', g),
                                       format('generation = %s', g));
        RETURN NEXT name;
    END LOOP;
END $$;

-- Drops what is past its time: event days before `keep_from` (their totals added to
-- usage_archived first) and key generations before `generation - 1` (beyond the
-- de-duplication window). Rows of such days or generations still in a default
-- partition are archived and deleted. Returns the names dropped.
CREATE FUNCTION usage_partitions_expire(generation integer, keep_from date)
RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    r record;
    archive constant text := 'INSERT INTO usage_archived AS a (subscription_id, metric, tenant_id, quantity, events) '
        'SELECT subscription_id, metric, tenant_id, sum(quantity), count(*) FROM %s WHERE %s GROUP BY 1, 2, 3 '
        'ON CONFLICT (subscription_id, metric) DO UPDATE SET quantity = a.quantity + excluded.quantity, '
        'events = a.events + excluded.events';
    horizon constant timestamptz := keep_from::timestamp AT TIME ZONE 'UTC';
BEGIN
    FOR r IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'usage_events'::regclass AND c.relname ~ '^usage_events_[0-9]{8}$'
                AND to_date(right(c.relname, 8), 'YYYYMMDD') < keep_from
              ORDER BY 1
    LOOP
        EXECUTE format(archive, quote_ident(r.relname), 'true');
        EXECUTE format('DROP TABLE %I', r.relname);
        RETURN NEXT r.relname;
    END LOOP;
    EXECUTE format(archive, 'usage_events_default', format('received_at < %L', horizon));
    DELETE FROM usage_events_default WHERE received_at < horizon;
    FOR r IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'usage_event_keys'::regclass AND c.relname ~ '^usage_event_keys_[0-9]+$'
                AND right(c.relname, -17)::integer < generation - 1
              ORDER BY 1
    LOOP
        EXECUTE format('DROP TABLE %I', r.relname);
        RETURN NEXT r.relname;
    END LOOP;
    DELETE FROM usage_event_keys_default k WHERE k.generation < usage_partitions_expire.generation - 1;
END $$;

-- Every ingestion batch rewrites its counters: room left on each page lets those
-- updates stay HOT (no new index entries, pruned in place) instead of bloating.
ALTER TABLE usage_counters SET (fillfactor = 50);
