-- Partner commissions (issue 12, part 4; SPEC §8, SellerGPT 3.2.2): a tenant's
-- partners, customers attributed to one, and the commission every captured
-- payment of such a customer accrues (reversed pro rata by refunds).
CREATE TABLE partners (
    id         uuid PRIMARY KEY,
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    code       text NOT NULL CHECK (length(code) BETWEEN 1 AND 64),
    name       text NOT NULL,
    created_at timestamptz NOT NULL,
    UNIQUE (tenant_id, code)
);
-- Codes customers already carry become partners, so the attribution can be enforced.
INSERT INTO partners (id, tenant_id, code, name, created_at)
SELECT gen_random_uuid(), tenant_id, partner_code, partner_code, now()
FROM (SELECT DISTINCT tenant_id, partner_code FROM customers WHERE partner_code IS NOT NULL) c;
ALTER TABLE customers ADD CONSTRAINT customers_partner_fk
    FOREIGN KEY (tenant_id, partner_code) REFERENCES partners (tenant_id, code);

-- One accrual per captured payment, one reversal per refund paid back.
CREATE TABLE partner_commissions (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    partner_id  uuid NOT NULL REFERENCES partners (id),
    customer_id uuid NOT NULL REFERENCES customers (id),
    payment_id  uuid NOT NULL REFERENCES payments (id),
    refund_id   uuid REFERENCES refunds (id),
    kind        text NOT NULL CHECK (kind IN ('accrual', 'reversal')),
    base        numeric(14, 2) NOT NULL CHECK (base >= 0),
    rate        numeric(7, 6) NOT NULL CHECK (rate >= 0 AND rate <= 1),
    amount      numeric(14, 2) NOT NULL CHECK (amount > 0),
    currency    text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    occurred_at timestamptz NOT NULL,
    CHECK ((kind = 'accrual') = (refund_id IS NULL))
);
CREATE UNIQUE INDEX partner_commissions_one_accrual ON partner_commissions (payment_id) WHERE kind = 'accrual';
CREATE UNIQUE INDEX partner_commissions_one_reversal ON partner_commissions (refund_id) WHERE kind = 'reversal';
CREATE INDEX partner_commissions_statement ON partner_commissions (partner_id, occurred_at);
