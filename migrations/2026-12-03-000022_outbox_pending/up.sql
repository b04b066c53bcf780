-- The relay's work list moves out of outbox_events. Before, publishing a message
-- updated its row (published_at): a new version of a row carrying the whole payload,
-- an entry in each of its three indexes, and a dead entry left at the head of its
-- lane in the partial index the relay probes, which the relay walked on every probe
-- until vacuum reached the table (73-83 ms a probe in a 100 000-renewal run;
-- bench/README, "Where a fiscal renewal's time goes"). Now every appended message
-- gets a three-column row here, and the relay deletes that row once the broker
-- confirmed the message; outbox_events is append-only.
--
-- Backward compatible for one release (deploy/k8s/README, "Upgrades"): the rows are
-- added by a trigger, so an old API or worker still appending during a rolling
-- update has its messages on the list too; published_at stays (nothing writes it
-- any more but an old relay, which may publish a message again: consumers
-- deduplicate by message id) and is dropped in a later release.
LOCK TABLE outbox_events IN ACCESS EXCLUSIVE MODE;
CREATE TABLE outbox_pending (
    lane        smallint NOT NULL,
    seq         bigint NOT NULL,
    inserted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (lane, seq)
);
INSERT INTO outbox_pending (lane, seq, inserted_at)
    SELECT lane, seq, inserted_at FROM outbox_events WHERE published_at IS NULL;
CREATE FUNCTION outbox_pending_append() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox_pending (lane, seq, inserted_at) SELECT lane, seq, inserted_at FROM appended;
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_events_pending AFTER INSERT ON outbox_events
    REFERENCING NEW TABLE AS appended FOR EACH STATEMENT EXECUTE FUNCTION outbox_pending_append();
DROP INDEX outbox_events_pending;
