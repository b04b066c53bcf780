//! Diesel table definitions, written by hand to match `migrations/` (the diesel CLI
//! would need libpq). `tests` in this crate's integration suite check every table
//! here against the migrated database.

mod documents;

pub use documents::*;

diesel::table! {
    tenants (id) {
        id -> Uuid,
        name -> Text,
        time_zone -> Text,
        gateway -> Jsonb,
        fiscal -> Nullable<Jsonb>,
        policy -> Jsonb,
        webhook_url -> Nullable<Text>,
        webhook_secret -> Text,
        webhook_secret_prev -> Nullable<Text>,
        webhook_secret_prev_until -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        requisites -> Nullable<Jsonb>,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        key_hash -> Bytea,
        key_prefix -> Text,
        expires_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    plans (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        code -> Text,
        name -> Text,
        period_unit -> Text,
        period_count -> Int4,
        auto_renew -> Bool,
        trial_days -> Nullable<Int4>,
        once_per_customer -> Bool,
        quotas -> Jsonb,
        quota_reset -> Text,
        cashback_rate -> Nullable<Numeric>,
        fiscal -> Nullable<Jsonb>,
        archived_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    plan_prices (id) {
        id -> Uuid,
        plan_id -> Uuid,
        amount -> Numeric,
        currency -> Text,
        effective_from -> Nullable<Timestamptz>,
        announced_at -> Timestamptz,
        canceled_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    price_notices (price_id, subscription_id) {
        price_id -> Uuid,
        subscription_id -> Uuid,
        sent_at -> Timestamptz,
    }
}

diesel::table! {
    customers (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        external_id -> Text,
        email -> Text,
        time_zone -> Text,
        partner_code -> Nullable<Text>,
        legal_entity -> Nullable<Jsonb>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    payment_methods (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        customer_id -> Uuid,
        gateway -> Text,
        token -> Text,
        card_first_six -> Nullable<Text>,
        card_last_four -> Nullable<Text>,
        card_type -> Nullable<Text>,
        card_exp -> Nullable<Text>,
        created_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        revoked_reason -> Nullable<Text>,
    }
}

diesel::table! {
    subscriptions (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        customer_id -> Uuid,
        plan_id -> Uuid,
        status -> Text,
        auto_renew -> Bool,
        current_period_start -> Nullable<Timestamptz>,
        current_period_end -> Nullable<Timestamptz>,
        anchor_at -> Nullable<Timestamptz>,
        paid_amount -> Nullable<Numeric>,
        price_id -> Nullable<Uuid>,
        next_charge_at -> Nullable<Timestamptz>,
        grace_until -> Nullable<Timestamptz>,
        scheduled_plan_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        due_at -> Nullable<Timestamptz>,
        renewal_payment_id -> Nullable<Uuid>,
        next_retry_at -> Nullable<Timestamptz>,
        dunning_ends_at -> Nullable<Timestamptz>,
        retries_stopped -> Bool,
        paid_through -> Nullable<Timestamptz>,
        canceled_at -> Nullable<Timestamptz>,
        renewal_notice_for -> Nullable<Timestamptz>,
        expiry_notice_for -> Nullable<Timestamptz>,
        pending_until -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    subscription_transitions (id) {
        id -> Int8,
        subscription_id -> Uuid,
        from_status -> Nullable<Text>,
        to_status -> Text,
        cause -> Text,
        at -> Timestamptz,
        details -> Nullable<Jsonb>,
    }
}

diesel::table! {
    payments (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        customer_id -> Uuid,
        subscription_id -> Nullable<Uuid>,
        kind -> Text,
        status -> Text,
        amount -> Numeric,
        currency -> Text,
        refunded_amount -> Numeric,
        description -> Text,
        plan_id -> Nullable<Uuid>,
        price_id -> Nullable<Uuid>,
        period_start -> Nullable<Timestamptz>,
        period_end -> Nullable<Timestamptz>,
        gateway -> Text,
        gateway_transaction_id -> Nullable<Text>,
        failure_reason -> Nullable<Text>,
        failure_code -> Nullable<Text>,
        duplicate_of -> Nullable<Uuid>,
        expires_at -> Nullable<Timestamptz>,
        captured_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        lines -> Nullable<Jsonb>,
        plan_change -> Nullable<Jsonb>,
        from_prepaid -> Numeric,
        from_cashback -> Numeric,
        cashback_earned -> Numeric,
    }
}

diesel::table! {
    payment_attempts (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        payment_id -> Uuid,
        attempt_no -> Int4,
        invoice_id -> Text,
        channel -> Text,
        status -> Text,
        gateway_transaction_id -> Nullable<Text>,
        failure_reason -> Nullable<Text>,
        failure_code -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        payment_method_id -> Nullable<Uuid>,
        sent_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    ledger_accounts (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        code -> Text,
        customer_id -> Nullable<Uuid>,
        currency -> Text,
        created_at -> Timestamptz,
        balance -> Numeric,
    }
}

diesel::table! {
    ledger_transactions (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        kind -> Text,
        payment_id -> Nullable<Uuid>,
        description -> Text,
        occurred_at -> Timestamptz,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    ledger_entries (id) {
        id -> Int8,
        transaction_id -> Uuid,
        account_id -> Uuid,
        amount -> Numeric,
        currency -> Text,
    }
}

diesel::table! {
    idempotency_keys (scope, key) {
        scope -> Text,
        key -> Text,
        method -> Text,
        path -> Text,
        request_hash -> Bytea,
        response_status -> Int4,
        response_body -> Nullable<Jsonb>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    gateway_events (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        provider -> Text,
        kind -> Text,
        transaction_id -> Text,
        content_type -> Nullable<Text>,
        raw_body -> Bytea,
        outcome -> Text,
        received_at -> Timestamptz,
    }
}

diesel::table! {
    outbox_events (seq) {
        seq -> Int8,
        id -> Uuid,
        tenant_id -> Uuid,
        event_type -> Text,
        ordering_key -> Uuid,
        payload -> Jsonb,
        created_at -> Timestamptz,
        lane -> Int2,
        inserted_at -> Timestamptz,
        message -> Text,
        delay_step -> Nullable<Int2>,
        trace_context -> Nullable<Text>,
    }
}

diesel::table! {
    outbox_pending (lane, seq) {
        lane -> Int2,
        seq -> Int8,
        inserted_at -> Timestamptz,
    }
}

diesel::table! {
    subscription_notices (subscription_id, kind, period_end) {
        subscription_id -> Uuid,
        kind -> Text,
        period_end -> Timestamptz,
        sent_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_deliveries (event_id) {
        event_id -> Uuid,
        tenant_id -> Uuid,
        url -> Nullable<Text>,
        status -> Text,
        attempts -> Int4,
        last_status -> Nullable<Int4>,
        last_error -> Nullable<Text>,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    dead_letters (id) {
        id -> Uuid,
        queue -> Text,
        reason -> Text,
        attempts -> Int4,
        payload -> Nullable<Jsonb>,
        dead_at -> Timestamptz,
        replayed_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    test_clock (singleton) {
        singleton -> Bool,
        now -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    trials (customer_id, plan_id) {
        customer_id -> Uuid,
        plan_id -> Uuid,
        subscription_id -> Uuid,
        started_at -> Timestamptz,
    }
}

diesel::table! {
    usage_events (tenant_id, event_id) {
        tenant_id -> Uuid,
        event_id -> Text,
        customer_id -> Uuid,
        subscription_id -> Uuid,
        metric -> Text,
        quantity -> Int8,
        occurred_at -> Timestamptz,
        period_start -> Timestamptz,
        received_at -> Timestamptz,
    }
}

diesel::table! {
    usage_counters (subscription_id, period_start, metric) {
        subscription_id -> Uuid,
        period_start -> Timestamptz,
        metric -> Text,
        tenant_id -> Uuid,
        kind -> Text,
        used -> Int8,
        peak -> Int8,
        level_at -> Nullable<Timestamptz>,
        exhausted_by -> Nullable<Uuid>,
        exhausted_at -> Nullable<Timestamptz>,
        billed_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    maintenance_extensions (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        days -> Int4,
        reason -> Text,
        applied_at -> Timestamptz,
        subscriptions -> Int4,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(api_keys -> tenants (tenant_id));
diesel::joinable!(plan_prices -> plans (plan_id));
diesel::joinable!(subscriptions -> customers (customer_id));
diesel::joinable!(payment_attempts -> payments (payment_id));
diesel::joinable!(ledger_entries -> ledger_transactions (transaction_id));
diesel::joinable!(ledger_entries -> ledger_accounts (account_id));
diesel::joinable!(subscription_transitions -> subscriptions (subscription_id));

diesel::table! {
    refunds (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        payment_id -> Uuid,
        customer_id -> Uuid,
        reason -> Text,
        status -> Text,
        decision_code -> Text,
        amount -> Numeric,
        requested_amount -> Nullable<Numeric>,
        currency -> Text,
        comment -> Nullable<Text>,
        review_comment -> Nullable<Text>,
        window_ends_at -> Nullable<Timestamptz>,
        decided_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        review_due_at -> Nullable<Timestamptz>,
        overdue_notified_at -> Nullable<Timestamptz>,
        attempt -> Int4,
        gateway_transaction_id -> Nullable<Text>,
        failure_reason -> Nullable<Text>,
        sent_at -> Nullable<Timestamptz>,
        succeeded_at -> Nullable<Timestamptz>,
        to_prepaid -> Numeric,
        to_cashback -> Numeric,
        cashback_reversed -> Numeric,
        cashback_deducted -> Numeric,
    }
}

diesel::table! {
    receipts (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        payment_id -> Uuid,
        refund_id -> Nullable<Uuid>,
        kind -> Text,
        status -> Text,
        document -> Text,
        total -> Numeric,
        currency -> Text,
        attempt -> Int4,
        provider_uuid -> Nullable<Text>,
        failure_reason -> Nullable<Text>,
        fiscal -> Nullable<Text>,
        registered_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        attempt_failed -> Bool,
    }
}

diesel::joinable!(refunds -> payments (payment_id));
diesel::joinable!(receipts -> payments (payment_id));

diesel::allow_tables_to_appear_in_same_query!(
    tenants,
    api_keys,
    plans,
    plan_prices,
    price_notices,
    customers,
    payment_methods,
    subscriptions,
    subscription_transitions,
    payments,
    payment_attempts,
    ledger_accounts,
    ledger_transactions,
    ledger_entries,
    idempotency_keys,
    gateway_events,
    outbox_events,
    outbox_pending,
    test_clock,
    subscription_notices,
    webhook_deliveries,
    dead_letters,
    trials,
    usage_events,
    usage_counters,
    maintenance_extensions,
    refunds,
    receipts,
    partners,
    partner_commissions,
    invoices,
    invoice_payments,
    invoice_counters,
    acts,
);

diesel::table! {
    console_signed_out (session_id) {
        session_id -> Text,
        expires_at -> Timestamptz,
    }
}
