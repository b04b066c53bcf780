-- Worker: scheduling, dunning, notices, extensions, outbox destinations and lanes,
-- webhook deliveries, dead letters. Expand-only: every column is nullable or
-- defaulted, so a binary of the previous version keeps working on this schema.

ALTER TABLE subscriptions
    -- the earliest business instant at which something is due for this
    -- subscription (renewal, retry, notice, grace end, period end); the scheduler
    -- claims rows with due_at <= clock, so its cost grows with what is due only
    ADD COLUMN due_at timestamptz,
    -- the renewal payment being collected (first attempt or dunning retries)
    ADD COLUMN renewal_payment_id uuid REFERENCES payments (id),
    ADD COLUMN next_retry_at timestamptz,
    -- when dunning gives up (after_last_retry applies) unless paid before
    ADD COLUMN dunning_ends_at timestamptz,
    -- a hard decline stopped automatic retries for the outstanding renewal
    ADD COLUMN retries_stopped boolean NOT NULL DEFAULT false,
    -- end of the last queued paid extension (manual renewal), if any
    ADD COLUMN paid_through timestamptz,
    ADD COLUMN canceled_at timestamptz;
CREATE INDEX subscriptions_due ON subscriptions (due_at) WHERE due_at IS NOT NULL;

-- One renewal payment per subscription period: a renewal is never created twice.
CREATE UNIQUE INDEX payments_one_renewal_per_period ON payments (subscription_id, period_start)
    WHERE kind = 'renewal';

ALTER TABLE payment_attempts
    ADD COLUMN payment_method_id uuid REFERENCES payment_methods (id),
    ADD COLUMN sent_at timestamptz;
-- attempts the worker has to finish (token charges not yet resolved)
CREATE INDEX payment_attempts_open ON payment_attempts (payment_id)
    WHERE status IN ('pending', 'sent', 'unknown');

-- Renewal notices and expiry notices: exactly once per (subscription, kind, period).
CREATE TABLE subscription_notices (
    subscription_id uuid NOT NULL REFERENCES subscriptions (id),
    kind            text NOT NULL,
    period_end      timestamptz NOT NULL,
    sent_at         timestamptz NOT NULL,
    PRIMARY KEY (subscription_id, kind, period_end)
);

-- The outbox carries both events (to the topic exchange billing.events) and work
-- messages (to billing.work, routing key = queue). Rows are spread over lanes by
-- ordering key; one relay holds a lane at a time, so order per key is kept even
-- with several worker replicas.
ALTER TABLE outbox_events
    ADD COLUMN exchange    text NOT NULL DEFAULT 'billing.events',
    ADD COLUMN routing_key text,
    ADD COLUMN lane        smallint NOT NULL DEFAULT 0,
    ADD COLUMN inserted_at timestamptz NOT NULL DEFAULT now();
DROP INDEX outbox_events_unpublished;
CREATE INDEX outbox_events_pending ON outbox_events (lane, seq) WHERE published_at IS NULL;

-- Outgoing webhook deliveries, one row per event: consumers deduplicate by event id.
CREATE TABLE webhook_deliveries (
    event_id    uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    url         text,
    status      text NOT NULL CHECK (status IN ('delivered', 'failing', 'skipped', 'dead')),
    attempts    integer NOT NULL,
    last_status integer,
    last_error  text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- What the worker dead-lettered, for operators (the messages themselves sit in
-- the <queue>.dead queues, visible in the RabbitMQ dashboard).
CREATE TABLE dead_letters (
    id          uuid PRIMARY KEY,
    queue       text NOT NULL,
    reason      text NOT NULL,
    attempts    integer NOT NULL,
    payload     jsonb,
    dead_at     timestamptz NOT NULL DEFAULT now(),
    replayed_at timestamptz
);
CREATE INDEX dead_letters_open ON dead_letters (queue, dead_at) WHERE replayed_at IS NULL;

-- Attempts a customer asked for (pay now, extension by saved card) are told apart
-- from scheduled renewal attempts: only the latter drive dunning.
ALTER TABLE payment_attempts DROP CONSTRAINT payment_attempts_channel_check;
ALTER TABLE payment_attempts ADD CONSTRAINT payment_attempts_channel_check
    CHECK (channel IN ('widget', 'token', 'token_manual'));

-- One card can belong to several customers of a tenant (the provider issues the
-- same token for the same card): a saved card is unique per customer.
ALTER TABLE payment_methods DROP CONSTRAINT payment_methods_tenant_id_gateway_token_key;
ALTER TABLE payment_methods ADD CONSTRAINT payment_methods_customer_token_key UNIQUE (customer_id, gateway, token);
