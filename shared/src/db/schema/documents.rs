//! Tables of partners, invoices and acts (issue 12), beside the core schema.

diesel::table! {
    partners (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        code -> Text,
        name -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    partner_commissions (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        partner_id -> Uuid,
        customer_id -> Uuid,
        payment_id -> Uuid,
        refund_id -> Nullable<Uuid>,
        kind -> Text,
        base -> Numeric,
        rate -> Numeric,
        amount -> Numeric,
        currency -> Text,
        occurred_at -> Timestamptz,
    }
}

diesel::joinable!(partner_commissions -> partners (partner_id));

diesel::table! {
    invoice_counters (tenant_id, kind, year) {
        tenant_id -> Uuid,
        kind -> Text,
        year -> Int4,
        last -> Int4,
    }
}

diesel::table! {
    invoices (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        customer_id -> Uuid,
        payment_id -> Uuid,
        subscription_id -> Nullable<Uuid>,
        number -> Text,
        status -> Text,
        total -> Numeric,
        amount_received -> Numeric,
        currency -> Text,
        seller -> Jsonb,
        buyer -> Jsonb,
        lines -> Jsonb,
        issued_at -> Timestamptz,
        due_at -> Timestamptz,
        paid_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    invoice_payments (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        invoice_id -> Uuid,
        amount -> Numeric,
        currency -> Text,
        paid_at -> Timestamptz,
        reference -> Text,
        source -> Text,
        recorded_at -> Timestamptz,
    }
}

diesel::table! {
    acts (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        invoice_id -> Uuid,
        payment_id -> Uuid,
        customer_id -> Uuid,
        number -> Text,
        period_start -> Timestamptz,
        period_end -> Timestamptz,
        total -> Numeric,
        currency -> Text,
        seller -> Jsonb,
        buyer -> Jsonb,
        lines -> Jsonb,
        issued_at -> Timestamptz,
    }
}

diesel::joinable!(invoice_payments -> invoices (invoice_id));
diesel::joinable!(acts -> invoices (invoice_id));
