ALTER TABLE outbox_events
    ADD COLUMN exchange    text NOT NULL DEFAULT 'billing.events',
    ADD COLUMN routing_key text;
UPDATE outbox_events
SET exchange    = CASE WHEN message = 'event' THEN 'billing.events'
                       WHEN delay_step IS NULL THEN 'billing.work' ELSE 'billing.retry' END,
    routing_key = CASE WHEN message = 'event' THEN tenant_id::text || '.' || event_type
                       ELSE (CASE event_type WHEN 'charge_attempt' THEN 'billing.renewals'
                                             WHEN 'execute_refund' THEN 'billing.refunds'
                                             WHEN 'register_receipt' THEN 'billing.receipts'
                                             ELSE 'billing.gateway-followups' END)
                            || COALESCE('.retry.' || delay_step::text, '') END;
ALTER TABLE outbox_events DROP COLUMN message, DROP COLUMN delay_step;
