-- The outbox stores what happened — an event for product backends or a job for
-- the worker, its type and payload, and for a delayed job the retry step it waits
-- on — and the relay alone decides broker routing (exchange and routing key).
ALTER TABLE outbox_events
    ADD COLUMN message    text CHECK (message IN ('event', 'job')),
    ADD COLUMN delay_step smallint CHECK (delay_step >= 0);
UPDATE outbox_events
SET message    = CASE WHEN exchange = 'billing.events' THEN 'event' ELSE 'job' END,
    delay_step = CASE WHEN exchange = 'billing.retry' THEN split_part(routing_key, '.retry.', 2)::smallint END;
ALTER TABLE outbox_events ALTER COLUMN message SET NOT NULL;
ALTER TABLE outbox_events DROP COLUMN exchange, DROP COLUMN routing_key;
