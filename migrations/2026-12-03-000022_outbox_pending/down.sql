LOCK TABLE outbox_events IN ACCESS EXCLUSIVE MODE;
DROP TRIGGER outbox_events_pending ON outbox_events;
DROP FUNCTION outbox_pending_append();
UPDATE outbox_events o SET published_at = o.inserted_at
 WHERE o.published_at IS NULL AND NOT EXISTS (SELECT 1 FROM outbox_pending p WHERE p.seq = o.seq);
CREATE INDEX outbox_events_pending ON outbox_events (lane, seq) WHERE published_at IS NULL;
DROP TABLE outbox_pending;
