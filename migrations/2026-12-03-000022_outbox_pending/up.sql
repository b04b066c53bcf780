-- The relay's work list moves out of outbox_events. Before, publishing a message
-- updated its row (published_at): a new version of a row carrying the whole payload,
-- an entry in each of its three indexes, and a dead entry left at the head of its
-- lane in the partial index the relay probes, which the relay walked on every probe
-- until vacuum reached the table (73-83 ms a probe in a 100 000-renewal run;
-- bench/README, "Where a fiscal renewal's time goes"). Now a message is written with
-- a two-column row here and the relay deletes that row once the broker confirmed the
-- message; outbox_events is append-only.
CREATE TABLE outbox_pending (
    lane        smallint NOT NULL,
    seq         bigint NOT NULL,
    inserted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (lane, seq)
);
INSERT INTO outbox_pending (lane, seq, inserted_at)
    SELECT lane, seq, inserted_at FROM outbox_events WHERE published_at IS NULL;
DROP INDEX outbox_events_pending;
ALTER TABLE outbox_events DROP COLUMN published_at;
