-- Invoices for bank transfer and closing acts (issue 12, part 5; SPEC §8,
-- SellerGPT 3.1.2-3.1.3, Alfa CRM 5.3).

-- The seller's requisites printed on invoices and acts (name, INN/KPP, address,
-- bank account, due days).
ALTER TABLE tenants ADD COLUMN requisites jsonb;

-- A purchase awaiting an invoice waits until the invoice is due, not 24 h.
ALTER TABLE subscriptions ADD COLUMN pending_until timestamptz;

-- Gapless numbers per tenant, document kind and year: the counter row is updated
-- (and so locked) in the document's own transaction, so a rolled-back document
-- rolls its number back and concurrent ones queue.
CREATE TABLE invoice_counters (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    kind      text NOT NULL CHECK (kind IN ('invoice', 'act')),
    year      integer NOT NULL CHECK (year BETWEEN 2000 AND 9999),
    last      integer NOT NULL CHECK (last > 0),
    PRIMARY KEY (tenant_id, kind, year)
);

CREATE TABLE invoices (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants (id),
    customer_id     uuid NOT NULL REFERENCES customers (id),
    payment_id      uuid NOT NULL UNIQUE REFERENCES payments (id),
    subscription_id uuid REFERENCES subscriptions (id),
    number          text NOT NULL,
    status          text NOT NULL CHECK (status IN ('issued', 'partially_paid', 'paid')),
    total           numeric(14, 2) NOT NULL CHECK (total > 0),
    amount_received numeric(14, 2) NOT NULL DEFAULT 0 CHECK (amount_received >= 0),
    currency        text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    seller          jsonb NOT NULL,
    buyer           jsonb NOT NULL,
    lines           jsonb NOT NULL,
    issued_at       timestamptz NOT NULL,
    due_at          timestamptz NOT NULL,
    paid_at         timestamptz,
    UNIQUE (tenant_id, number)
);
CREATE INDEX invoices_customer ON invoices (customer_id, id);

-- Money received for an invoice, once per reference (a bank document, an
-- operator's note): re-importing a statement records nothing twice.
CREATE TABLE invoice_payments (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    invoice_id  uuid NOT NULL REFERENCES invoices (id),
    amount      numeric(14, 2) NOT NULL CHECK (amount > 0),
    currency    text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    paid_at     timestamptz NOT NULL,
    reference   text NOT NULL CHECK (length(reference) BETWEEN 1 AND 300),
    source      text NOT NULL CHECK (source IN ('manual', 'bank_statement')),
    recorded_at timestamptz NOT NULL,
    UNIQUE (tenant_id, reference)
);
CREATE INDEX invoice_payments_invoice ON invoice_payments (invoice_id);

-- One closing act per paid invoice, for the period it paid for.
CREATE TABLE acts (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    invoice_id   uuid NOT NULL UNIQUE REFERENCES invoices (id),
    payment_id   uuid NOT NULL REFERENCES payments (id),
    customer_id  uuid NOT NULL REFERENCES customers (id),
    number       text NOT NULL,
    period_start timestamptz NOT NULL,
    period_end   timestamptz NOT NULL,
    total        numeric(14, 2) NOT NULL CHECK (total > 0),
    currency     text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    seller       jsonb NOT NULL,
    buyer        jsonb NOT NULL,
    lines        jsonb NOT NULL,
    issued_at    timestamptz NOT NULL,
    UNIQUE (tenant_id, number)
);

-- An invoice is collected by an 'invoice' attempt.
ALTER TABLE payment_attempts DROP CONSTRAINT payment_attempts_channel_check;
ALTER TABLE payment_attempts ADD CONSTRAINT payment_attempts_channel_check
    CHECK (channel IN ('widget', 'token', 'token_manual', 'balance', 'invoice'));
