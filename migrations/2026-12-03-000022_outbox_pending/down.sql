ALTER TABLE outbox_events ADD COLUMN published_at timestamptz;
UPDATE outbox_events o SET published_at = o.inserted_at
 WHERE NOT EXISTS (SELECT 1 FROM outbox_pending p WHERE p.seq = o.seq);
CREATE INDEX outbox_events_pending ON outbox_events (lane, seq) WHERE published_at IS NULL;
DROP TABLE outbox_pending;
