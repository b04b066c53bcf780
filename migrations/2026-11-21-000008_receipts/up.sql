-- 54-FZ receipts (SPEC §7): an income receipt per captured payment, a refund
-- receipt per refund, registered with the tenant's ATOL Online account through the
-- worker. `document` is the receipt as built when it was created (the tenant's
-- fiscal settings then); registration attempt N is sent with external_id
-- `<id>-<N>`, and a new attempt is made only after ATOL reported the last one
-- `fail`. The unique indexes make a second receipt for the same thing impossible.
CREATE TABLE receipts (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants (id),
    payment_id      uuid NOT NULL REFERENCES payments (id),
    refund_id       uuid REFERENCES refunds (id),
    kind            text NOT NULL CHECK (kind IN ('income', 'income_refund')),
    status          text NOT NULL CHECK (status IN ('pending', 'registered', 'failed')),
    -- JSON text, kept verbatim: amounts stay exact decimals (1390.00), never floats
    document        text NOT NULL,
    total           numeric(14, 2) NOT NULL CHECK (total > 0),
    currency        text NOT NULL,
    attempt         integer NOT NULL DEFAULT 1 CHECK (attempt > 0),
    provider_uuid   text,
    failure_reason  text,
    fiscal          text,
    registered_at   timestamptz,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'income') = (refund_id IS NULL))
);
CREATE UNIQUE INDEX receipts_one_income ON receipts (payment_id) WHERE kind = 'income';
CREATE UNIQUE INDEX receipts_one_per_refund ON receipts (refund_id) WHERE refund_id IS NOT NULL;
CREATE INDEX receipts_payment ON receipts (payment_id, id);
CREATE UNIQUE INDEX receipts_provider_uuid ON receipts (tenant_id, provider_uuid) WHERE provider_uuid IS NOT NULL;
-- Receipts still to register: the test clock's `settled` waits for them.
CREATE INDEX receipts_pending ON receipts (id) WHERE status = 'pending';
