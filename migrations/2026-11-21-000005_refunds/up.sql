-- Refund requests decided by the tenant's refund rules (SPEC §6).
CREATE TABLE refunds (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants (id),
    payment_id       uuid NOT NULL REFERENCES payments (id),
    customer_id      uuid NOT NULL REFERENCES customers (id),
    reason           text NOT NULL
        CHECK (reason IN ('unused', 'outage', 'double_charge', 'provider_termination', 'goodwill')),
    status           text NOT NULL
        CHECK (status IN ('pending_review', 'approved', 'rejected', 'processing', 'succeeded', 'failed')),
    decision_code    text NOT NULL,
    amount           numeric(14, 2) NOT NULL CHECK (amount >= 0),
    requested_amount numeric(14, 2) CHECK (requested_amount > 0),
    currency         text NOT NULL,
    comment          text,
    -- the reviewer's note, kept apart from the requester's comment
    review_comment   text,
    window_ends_at   timestamptz,
    decided_at       timestamptz,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refunds_tenant_status ON refunds (tenant_id, status, id);
CREATE INDEX refunds_payment ON refunds (payment_id);

-- What is refunded or held for refund never exceeds what the payment captured,
-- whatever the code does: checked on every write, serialised on the payment row.
CREATE FUNCTION refunds_within_capture() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    captured numeric;
    held     numeric;
BEGIN
    SELECT amount INTO captured FROM payments WHERE id = NEW.payment_id FOR UPDATE;
    SELECT coalesce(sum(amount), 0) INTO held FROM refunds
     WHERE payment_id = NEW.payment_id AND status IN ('pending_review', 'approved', 'processing', 'succeeded');
    IF held > captured THEN
        RAISE EXCEPTION 'refunds of payment % (%) exceed its captured amount (%)', NEW.payment_id, held, captured
            USING ERRCODE = 'check_violation', CONSTRAINT = 'refunds_within_capture';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER refunds_within_capture AFTER INSERT OR UPDATE ON refunds
    FOR EACH ROW EXECUTE FUNCTION refunds_within_capture();
