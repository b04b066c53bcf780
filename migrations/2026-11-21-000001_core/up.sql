-- Core slice: tenants, catalog, customers, subscriptions, payments, ledger,
-- idempotency keys, raw provider events, outbox, shared test clock.
--
-- Business times (periods, due times, captured_at, ...) are always written by the
-- application from its clock (which may be the shared test clock); `DEFAULT now()`
-- is used only for audit columns that record real time.

CREATE TABLE tenants (
    id                        uuid PRIMARY KEY,
    name                      text NOT NULL,
    time_zone                 text NOT NULL,
    gateway                   jsonb NOT NULL,
    fiscal                    jsonb,
    policy                    jsonb NOT NULL,
    webhook_url               text,
    webhook_secret            text NOT NULL,
    webhook_secret_prev       text,
    webhook_secret_prev_until timestamptz,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now()
);

-- API keys are stored as SHA-256 of the key: keys are 256-bit random values, so a
-- fast hash is enough and lookups stay a single index probe.
CREATE TABLE api_keys (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    key_hash    bytea NOT NULL UNIQUE,
    key_prefix  text NOT NULL,
    expires_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

CREATE TABLE plans (
    id                uuid PRIMARY KEY,
    tenant_id         uuid NOT NULL REFERENCES tenants (id),
    code              text NOT NULL,
    name              text NOT NULL,
    period_unit       text NOT NULL CHECK (period_unit IN ('day', 'month', 'year')),
    period_count      integer NOT NULL CHECK (period_count > 0),
    auto_renew        boolean NOT NULL,
    trial_days        integer CHECK (trial_days > 0),
    once_per_customer boolean NOT NULL DEFAULT false,
    quotas            jsonb NOT NULL DEFAULT '{}',
    quota_reset       text NOT NULL DEFAULT 'period_start'
                      CHECK (quota_reset IN ('period_start', 'last_day_local_midnight')),
    cashback_rate     numeric(7, 6) CHECK (cashback_rate >= 0 AND cashback_rate <= 1),
    fiscal            jsonb,
    archived_at       timestamptz,
    created_at        timestamptz NOT NULL,
    UNIQUE (tenant_id, code)
);

-- Price versions. effective_from NULL marks the plan's initial price (in effect from
-- the beginning of time); later versions take effect at their instant.
CREATE TABLE plan_prices (
    id             uuid PRIMARY KEY,
    plan_id        uuid NOT NULL REFERENCES plans (id),
    amount         numeric(14, 2) NOT NULL CHECK (amount >= 0),
    currency       text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    effective_from timestamptz,
    announced_at   timestamptz NOT NULL,
    canceled_at    timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX plan_prices_plan ON plan_prices (plan_id, effective_from);

-- One price_change.notice per (price version, subscription): exactly once.
CREATE TABLE price_notices (
    price_id        uuid NOT NULL,
    subscription_id uuid NOT NULL,
    sent_at         timestamptz NOT NULL,
    PRIMARY KEY (price_id, subscription_id)
);

CREATE TABLE customers (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    external_id  text NOT NULL,
    email        text NOT NULL,
    time_zone    text NOT NULL,
    partner_code text,
    legal_entity jsonb,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, external_id)
);

-- Saved card tokens (CloudPayments Pay.Token), used for renewals and upgrades.
CREATE TABLE payment_methods (
    id             uuid PRIMARY KEY,
    tenant_id      uuid NOT NULL REFERENCES tenants (id),
    customer_id    uuid NOT NULL REFERENCES customers (id),
    gateway        text NOT NULL,
    token          text NOT NULL,
    card_first_six text,
    card_last_four text,
    card_type      text,
    card_exp       text,
    created_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    revoked_reason text,
    UNIQUE (tenant_id, gateway, token)
);
CREATE INDEX payment_methods_customer ON payment_methods (customer_id, created_at DESC);

CREATE TABLE subscriptions (
    id                   uuid PRIMARY KEY,
    tenant_id            uuid NOT NULL REFERENCES tenants (id),
    customer_id          uuid NOT NULL REFERENCES customers (id),
    plan_id              uuid NOT NULL REFERENCES plans (id),
    status               text NOT NULL CHECK (status IN ('pending_payment', 'trialing', 'active',
                             'past_due', 'suspended', 'canceled', 'expired', 'terminated')),
    auto_renew           boolean NOT NULL,
    current_period_start timestamptz,
    current_period_end   timestamptz,
    -- the instant whose local day-of-month and time anchor monthly/yearly periods
    anchor_at            timestamptz,
    -- what was actually paid for the current period's tariff (grandfathered price)
    paid_amount          numeric(14, 2),
    price_id             uuid REFERENCES plan_prices (id),
    next_charge_at       timestamptz,
    grace_until          timestamptz,
    scheduled_plan_id    uuid REFERENCES plans (id),
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CHECK (current_period_end IS NULL OR current_period_end > current_period_start)
);
-- At most one live subscription per customer, enforced by the database.
CREATE UNIQUE INDEX subscriptions_one_live ON subscriptions (customer_id)
    WHERE status IN ('pending_payment', 'trialing', 'active', 'past_due', 'suspended', 'canceled');
CREATE INDEX subscriptions_tenant ON subscriptions (tenant_id, id);
CREATE INDEX subscriptions_plan ON subscriptions (plan_id)
    WHERE status IN ('trialing', 'active', 'past_due', 'suspended', 'canceled');

CREATE TABLE subscription_transitions (
    id              bigserial PRIMARY KEY,
    subscription_id uuid NOT NULL REFERENCES subscriptions (id),
    from_status     text,
    to_status       text NOT NULL,
    cause           text NOT NULL,
    at              timestamptz NOT NULL,
    details         jsonb
);
CREATE INDEX subscription_transitions_sub ON subscription_transitions (subscription_id, id);

CREATE TABLE payments (
    id                     uuid PRIMARY KEY,
    tenant_id              uuid NOT NULL REFERENCES tenants (id),
    customer_id            uuid NOT NULL REFERENCES customers (id),
    subscription_id        uuid REFERENCES subscriptions (id),
    kind                   text NOT NULL CHECK (kind IN ('purchase', 'renewal', 'upgrade',
                               'extension', 'top_up', 'overage')),
    status                 text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed',
                               'refunded', 'partially_refunded')),
    amount                 numeric(14, 2) NOT NULL CHECK (amount > 0),
    currency               text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    refunded_amount        numeric(14, 2) NOT NULL DEFAULT 0
                           CHECK (refunded_amount >= 0 AND refunded_amount <= amount),
    description            text NOT NULL,
    plan_id                uuid REFERENCES plans (id),
    price_id               uuid REFERENCES plan_prices (id),
    period_start           timestamptz,
    period_end             timestamptz,
    gateway                text NOT NULL,
    gateway_transaction_id text,
    failure_reason         text,
    failure_code           text,
    -- a second capture of the same invoice is recorded as its own payment
    duplicate_of           uuid REFERENCES payments (id),
    expires_at             timestamptz,
    captured_at            timestamptz,
    created_at             timestamptz NOT NULL,
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_customer ON payments (customer_id, id);
CREATE INDEX payments_subscription ON payments (subscription_id);
CREATE UNIQUE INDEX payments_gateway_tx ON payments (tenant_id, gateway, gateway_transaction_id)
    WHERE gateway_transaction_id IS NOT NULL;

-- One row per attempt to collect a payment: the widget session of a purchase, or
-- each token charge of a renewal (each dunning retry is a new attempt with its own
-- id). invoice_id is what the gateway knows the attempt by (CloudPayments InvoiceId).
CREATE TABLE payment_attempts (
    id                     uuid PRIMARY KEY,
    tenant_id              uuid NOT NULL REFERENCES tenants (id),
    payment_id             uuid NOT NULL REFERENCES payments (id),
    attempt_no             integer NOT NULL CHECK (attempt_no > 0),
    invoice_id             text NOT NULL,
    channel                text NOT NULL CHECK (channel IN ('widget', 'token')),
    status                 text NOT NULL CHECK (status IN ('pending', 'sent', 'succeeded',
                               'failed', 'unknown')),
    gateway_transaction_id text,
    failure_reason         text,
    failure_code           text,
    created_at             timestamptz NOT NULL,
    updated_at             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (payment_id, attempt_no),
    UNIQUE (tenant_id, invoice_id)
);

-- Double-entry ledger. Amounts are signed: credit positive, debit negative. Every
-- transaction's entries sum to zero per currency, checked at commit.
CREATE TABLE ledger_accounts (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    code        text NOT NULL,
    customer_id uuid REFERENCES customers (id),
    currency    text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_accounts_tenant ON ledger_accounts (tenant_id, code);

CREATE TABLE ledger_transactions (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    kind        text NOT NULL,
    payment_id  uuid REFERENCES payments (id),
    description text NOT NULL,
    occurred_at timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_transactions_payment ON ledger_transactions (payment_id);

CREATE TABLE ledger_entries (
    id             bigserial PRIMARY KEY,
    transaction_id uuid NOT NULL REFERENCES ledger_transactions (id),
    account_id     uuid NOT NULL REFERENCES ledger_accounts (id),
    amount         numeric(14, 2) NOT NULL CHECK (amount <> 0),
    currency       text NOT NULL CHECK (currency ~ '^[A-Z]{3}$')
);
CREATE INDEX ledger_entries_transaction ON ledger_entries (transaction_id);
CREATE INDEX ledger_entries_account ON ledger_entries (account_id);

CREATE FUNCTION ledger_assert_balanced(txn uuid) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    n integer;
    unbalanced text;
BEGIN
    SELECT count(*) INTO n FROM ledger_entries WHERE transaction_id = txn;
    IF n < 2 THEN
        RAISE EXCEPTION 'ledger transaction % has % entries; at least two are required', txn, n
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    SELECT string_agg(currency || ' ' || total::text, ', ') INTO unbalanced
      FROM (SELECT currency, sum(amount) AS total FROM ledger_entries
             WHERE transaction_id = txn GROUP BY currency HAVING sum(amount) <> 0) s;
    IF unbalanced IS NOT NULL THEN
        RAISE EXCEPTION 'ledger transaction % does not balance: %', txn, unbalanced
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
END $$;

CREATE FUNCTION ledger_entries_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ledger_assert_balanced(NEW.transaction_id);
    RETURN NULL;
END $$;

CREATE FUNCTION ledger_transactions_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ledger_assert_balanced(NEW.id);
    RETURN NULL;
END $$;

-- Checked at COMMIT, after all of the transaction's entries are in.
CREATE CONSTRAINT TRIGGER ledger_entries_balanced
    AFTER INSERT ON ledger_entries DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_balanced();
CREATE CONSTRAINT TRIGGER ledger_transactions_balanced
    AFTER INSERT ON ledger_transactions DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_transactions_balanced();

-- Nothing edits or deletes the ledger: corrections are new entries.
CREATE FUNCTION ledger_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger rows are append-only (% on %)', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER ledger_entries_immutable BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_immutable();
CREATE TRIGGER ledger_transactions_immutable BEFORE UPDATE OR DELETE ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_immutable();

-- Idempotency-Key records. The response is stored in the same database transaction
-- as the effect it describes, so a replay can never re-run a committed effect.
CREATE TABLE idempotency_keys (
    scope           text NOT NULL,
    key             text NOT NULL,
    method          text NOT NULL,
    path            text NOT NULL,
    request_hash    bytea NOT NULL,
    response_status integer NOT NULL,
    response_body   jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);

-- Every provider notification, stored raw in the transaction that acts on it; a provider retry
-- of the same notification hits the unique key and is not acted on twice.
CREATE TABLE gateway_events (
    id             uuid PRIMARY KEY,
    tenant_id      uuid NOT NULL REFERENCES tenants (id),
    provider       text NOT NULL,
    kind           text NOT NULL,
    transaction_id text NOT NULL,
    content_type   text,
    raw_body       bytea NOT NULL,
    outcome        text NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, provider, kind, transaction_id)
);

-- Transactional outbox: events commit with the state change that caused them.
CREATE TABLE outbox_events (
    seq          bigserial PRIMARY KEY,
    id           uuid NOT NULL UNIQUE,
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    event_type   text NOT NULL,
    ordering_key uuid NOT NULL,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL,
    published_at timestamptz
);
CREATE INDEX outbox_events_unpublished ON outbox_events (seq) WHERE published_at IS NULL;
CREATE INDEX outbox_events_tenant ON outbox_events (tenant_id, seq);

-- The shared test clock (only consulted when BILLING_TEST_CLOCK=1).
CREATE TABLE test_clock (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    now        timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
