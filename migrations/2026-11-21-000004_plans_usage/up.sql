-- Plan changes, trials and free plans, usage and quotas, maintenance extensions.
-- Expand-only except for the one-live index, which is replaced by a narrower one
-- plus its own index for pending purchases (a purchase during a trial waits next
-- to the trial it will replace).

-- What a payment charges, when it is more than its plan's tariff: an upgrade's
-- credit and new charge, the overage lines of a renewal. NULL: one line, the tariff.
ALTER TABLE payments
    ADD COLUMN lines jsonb,
    -- an upgrade's quote: the plans, credit, charge and the period it applies to
    ADD COLUMN plan_change jsonb;

DROP INDEX subscriptions_one_live;
CREATE UNIQUE INDEX subscriptions_one_live ON subscriptions (customer_id)
    WHERE status IN ('trialing', 'active', 'past_due', 'suspended', 'canceled');
CREATE UNIQUE INDEX subscriptions_one_pending ON subscriptions (customer_id)
    WHERE status = 'pending_payment';

-- A trial (a free plan or a plan's trial days) is granted once per customer and
-- plan: the primary key makes a second grant impossible, also under races.
CREATE TABLE trials (
    customer_id     uuid NOT NULL REFERENCES customers (id),
    plan_id         uuid NOT NULL REFERENCES plans (id),
    subscription_id uuid NOT NULL REFERENCES subscriptions (id),
    started_at      timestamptz NOT NULL,
    PRIMARY KEY (customer_id, plan_id)
);

-- Usage events as reported, unique per tenant and event id (a retry counts once).
-- No foreign keys: ingestion is a hot path and every id is resolved before insert.
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
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, event_id)
);

-- Pre-aggregated usage per subscription, period and metric: entitlements and
-- billing read one row, never the events.
CREATE TABLE usage_counters (
    subscription_id uuid NOT NULL,
    period_start    timestamptz NOT NULL,
    metric          text NOT NULL,
    tenant_id       uuid NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('counter', 'gauge')),
    -- counter: the sum of quantities; gauge: the latest level
    used            bigint NOT NULL CHECK (used >= 0),
    -- gauge: the period's maximum level; counter: equal to used
    peak            bigint NOT NULL CHECK (peak >= 0),
    -- gauge: occurred_at of the latest level
    level_at        timestamptz,
    -- the ingestion batch that used the quota up (quota.exhausted fires once)
    exhausted_by    uuid,
    exhausted_at    timestamptz,
    -- the period's usage was billed (or closed): later events are rejected
    billed_at       timestamptz,
    PRIMARY KEY (subscription_id, period_start, metric)
);

-- Maintenance extensions (SellerGPT 3.2.10), one row per operator request.
CREATE TABLE maintenance_extensions (
    id            uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants (id),
    days          integer NOT NULL CHECK (days > 0),
    reason        text NOT NULL,
    applied_at    timestamptz NOT NULL,
    subscriptions integer NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX maintenance_extensions_tenant ON maintenance_extensions (tenant_id, applied_at);
