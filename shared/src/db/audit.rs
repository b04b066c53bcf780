//! The invariants `billing-api audit` checks, each one query listing what breaches
//! it (at most [`LIMIT`] keys), optionally for one tenant (`$1`, NULL for all).

use diesel::sql_types::{Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use diesel::QueryResult;

/// How many offending keys a check lists at most.
pub const LIMIT: i64 = 1000;

/// One invariant: a stable name, what it promises, and the query listing breaches.
#[derive(Debug, Clone, Copy)]
pub struct Invariant {
    pub name: &'static str,
    pub promise: &'static str,
    sql: &'static str,
}

/// Every invariant, in the order the audit prints them.
pub const INVARIANTS: [Invariant; 13] = [
    Invariant {
        name: "ledger_balanced",
        promise: "every ledger transaction sums to zero per currency",
        sql: "SELECT t.id::text || ' ' || e.currency AS key FROM ledger_entries e \
              JOIN ledger_transactions t ON t.id = e.transaction_id \
              WHERE ($1::uuid IS NULL OR t.tenant_id = $1) \
              GROUP BY t.id, e.currency HAVING sum(e.amount) <> 0",
    },
    // No foreign key holds this since migrations 000003 (accounts) and 000015
    // (transactions): the statement-level checks (ledger_entries_balanced) enforce
    // the transaction on insert and 000016 refuses TRUNCATE; this finds what got
    // past them (a partial restore, triggers disabled). An entry is the tenant's
    // through its account or its transaction (entries have no tenant column; one
    // whose account and transaction are both gone shows only in an audit of all
    // tenants).
    Invariant {
        name: "ledger_complete",
        promise: "every ledger entry belongs to an existing transaction and an existing account, \
                  and every transaction has at least two entries",
        sql: "SELECT 'entry ' || e.id::text AS key FROM ledger_entries e \
              LEFT JOIN ledger_accounts a ON a.id = e.account_id \
              LEFT JOIN ledger_transactions t ON t.id = e.transaction_id \
              WHERE ($1::uuid IS NULL OR a.tenant_id = $1 OR t.tenant_id = $1) \
                AND (a.id IS NULL OR t.id IS NULL) \
              UNION ALL \
              SELECT 'transaction ' || t.id::text FROM ledger_transactions t \
              LEFT JOIN ledger_entries e ON e.transaction_id = t.id \
              WHERE ($1::uuid IS NULL OR t.tenant_id = $1) \
              GROUP BY t.id HAVING count(e.id) < 2",
    },
    Invariant {
        name: "balances_match_entries",
        promise: "each customer's prepaid and cashback balance equals its entries",
        sql: "SELECT a.id::text AS key FROM ledger_accounts a \
              WHERE a.code IN ('customer_prepaid', 'customer_cashback') AND ($1::uuid IS NULL OR a.tenant_id = $1) \
                AND a.balance <> (SELECT coalesce(sum(e.amount), 0) FROM ledger_entries e WHERE e.account_id = a.id)",
    },
    // No foreign key holds these since migration 000021 (they locked one tenant,
    // plan or price row from every concurrent writer) and 000027 (the references a
    // renewal writes: their checks were about 7 % of the machine in a renewal run):
    // tenants, plans, prices, customers, subscriptions, payments and saved cards are
    // never deleted, truncated or renumbered (triggers refuse it); this finds a row
    // naming one that does not exist (a partial restore, a bug).
    Invariant {
        name: "references_exist",
        promise: "the rows whose foreign keys migrations 000021 and 000027 dropped name existing rows: \
                  a tenant; a subscription's plans, price and renewal payment; a payment's plan, price, \
                  customer and subscription; an attempt's payment and saved card; a ledger transaction's \
                  and a receipt's payment",
        sql: concat!(
            "SELECT DISTINCT x.tab || ' of tenant ' || x.tenant_id::text AS key FROM (",
            "SELECT 'api_keys' AS tab, tenant_id FROM api_keys ",
            "UNION ALL SELECT 'plans' AS tab, tenant_id FROM plans ",
            "UNION ALL SELECT 'customers' AS tab, tenant_id FROM customers ",
            "UNION ALL SELECT 'payment_methods' AS tab, tenant_id FROM payment_methods ",
            "UNION ALL SELECT 'subscriptions' AS tab, tenant_id FROM subscriptions ",
            "UNION ALL SELECT 'payments' AS tab, tenant_id FROM payments ",
            "UNION ALL SELECT 'payment_attempts' AS tab, tenant_id FROM payment_attempts ",
            "UNION ALL SELECT 'ledger_accounts' AS tab, tenant_id FROM ledger_accounts ",
            "UNION ALL SELECT 'gateway_events' AS tab, tenant_id FROM gateway_events ",
            "UNION ALL SELECT 'webhook_deliveries' AS tab, tenant_id FROM webhook_deliveries ",
            "UNION ALL SELECT 'maintenance_extensions' AS tab, tenant_id FROM maintenance_extensions ",
            "UNION ALL SELECT 'refunds' AS tab, tenant_id FROM refunds ",
            "UNION ALL SELECT 'receipts' AS tab, tenant_id FROM receipts ",
            "UNION ALL SELECT 'partners' AS tab, tenant_id FROM partners ",
            "UNION ALL SELECT 'partner_commissions' AS tab, tenant_id FROM partner_commissions ",
            "UNION ALL SELECT 'invoice_counters' AS tab, tenant_id FROM invoice_counters ",
            "UNION ALL SELECT 'invoices' AS tab, tenant_id FROM invoices ",
            "UNION ALL SELECT 'invoice_payments' AS tab, tenant_id FROM invoice_payments ",
            "UNION ALL SELECT 'acts' AS tab, tenant_id FROM acts ",
            ") x WHERE ($1::uuid IS NULL OR x.tenant_id = $1) \
               AND NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = x.tenant_id) \
               UNION ALL SELECT 'subscription ' || s.id::text FROM subscriptions s \
               WHERE ($1::uuid IS NULL OR s.tenant_id = $1) \
                 AND (NOT EXISTS (SELECT 1 FROM plans l WHERE l.id = s.plan_id) \
                      OR (s.price_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM plan_prices r WHERE r.id = s.price_id)) \
                      OR (s.scheduled_plan_id IS NOT NULL \
                          AND NOT EXISTS (SELECT 1 FROM plans l WHERE l.id = s.scheduled_plan_id)) \
                      OR (s.renewal_payment_id IS NOT NULL \
                          AND NOT EXISTS (SELECT 1 FROM payments q WHERE q.id = s.renewal_payment_id))) \
               UNION ALL SELECT 'payment ' || p.id::text FROM payments p \
               WHERE ($1::uuid IS NULL OR p.tenant_id = $1) \
                 AND ((p.plan_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM plans l WHERE l.id = p.plan_id)) \
                      OR (p.price_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM plan_prices r WHERE r.id = p.price_id)) \
                      OR NOT EXISTS (SELECT 1 FROM customers c WHERE c.id = p.customer_id) \
                      OR (p.subscription_id IS NOT NULL \
                          AND NOT EXISTS (SELECT 1 FROM subscriptions s WHERE s.id = p.subscription_id))) \
               UNION ALL SELECT 'payment attempt ' || a.id::text FROM payment_attempts a \
               WHERE ($1::uuid IS NULL OR a.tenant_id = $1) \
                 AND (NOT EXISTS (SELECT 1 FROM payments q WHERE q.id = a.payment_id) \
                      OR (a.payment_method_id IS NOT NULL \
                          AND NOT EXISTS (SELECT 1 FROM payment_methods m WHERE m.id = a.payment_method_id))) \
               UNION ALL SELECT 'ledger transaction ' || t.id::text FROM ledger_transactions t \
               WHERE ($1::uuid IS NULL OR t.tenant_id = $1) AND t.payment_id IS NOT NULL \
                 AND NOT EXISTS (SELECT 1 FROM payments q WHERE q.id = t.payment_id) \
               UNION ALL SELECT 'receipt ' || r.id::text FROM receipts r \
               WHERE ($1::uuid IS NULL OR r.tenant_id = $1) \
                 AND NOT EXISTS (SELECT 1 FROM payments q WHERE q.id = r.payment_id)"
        ),
    },
    Invariant {
        name: "transaction_in_one_payment",
        promise: "a provider transaction is recorded in one payment only",
        sql: "SELECT p.gateway || ':' || p.gateway_transaction_id AS key FROM payments p \
              WHERE p.gateway_transaction_id IS NOT NULL AND ($1::uuid IS NULL OR p.tenant_id = $1) \
              GROUP BY p.tenant_id, p.gateway, p.gateway_transaction_id HAVING count(*) > 1",
    },
    Invariant {
        name: "capture_booked_once",
        promise: "no payment's capture is booked to the ledger twice",
        sql: "SELECT t.payment_id::text AS key FROM ledger_transactions t \
              WHERE t.kind IN ('payment_captured', 'payment_captured_unapplied', 'duplicate_capture') \
                AND t.payment_id IS NOT NULL AND ($1::uuid IS NULL OR t.tenant_id = $1) \
              GROUP BY t.payment_id HAVING count(*) > 1",
    },
    Invariant {
        name: "income_receipts",
        promise: "every captured card or balance payment of a fiscal tenant has exactly one income receipt \
                  (since the tenant's first receipt)",
        sql: "SELECT p.id::text AS key FROM payments p JOIN tenants t ON t.id = p.tenant_id \
              WHERE t.fiscal IS NOT NULL AND p.captured_at IS NOT NULL AND p.gateway <> 'invoice' \
                AND p.amount - p.from_cashback > 0 AND ($1::uuid IS NULL OR p.tenant_id = $1) \
                AND p.captured_at >= (SELECT min(r.created_at) FROM receipts r WHERE r.tenant_id = p.tenant_id) \
                AND (SELECT count(*) FROM receipts r WHERE r.payment_id = p.id AND r.kind = 'income') <> 1",
    },
    Invariant {
        name: "refund_receipts",
        promise: "every refund paid back in money by a fiscal tenant has exactly one refund receipt \
                  (since the tenant's first receipt)",
        sql: "SELECT f.id::text AS key FROM refunds f JOIN payments p ON p.id = f.payment_id \
              JOIN tenants t ON t.id = f.tenant_id \
              WHERE t.fiscal IS NOT NULL AND f.status = 'succeeded' AND p.gateway <> 'invoice' \
                AND (CASE WHEN f.to_prepaid + f.to_cashback = 0 THEN f.amount ELSE f.to_prepaid END) > 0 \
                AND ($1::uuid IS NULL OR f.tenant_id = $1) \
                AND f.updated_at >= (SELECT min(r.created_at) FROM receipts r WHERE r.tenant_id = f.tenant_id) \
                AND (SELECT count(*) FROM receipts r WHERE r.refund_id = f.id AND r.kind = 'income_refund') <> 1",
    },
    Invariant {
        name: "refunds_within_captures",
        promise: "a payment's refunded amount never exceeds it and equals its succeeded refunds",
        sql: "SELECT p.id::text AS key FROM payments p WHERE ($1::uuid IS NULL OR p.tenant_id = $1) \
                AND (p.refunded_amount > p.amount OR p.refunded_amount <> \
                     (SELECT coalesce(sum(f.amount), 0) FROM refunds f WHERE f.payment_id = p.id AND f.status = 'succeeded'))",
    },
    Invariant {
        name: "subscriptions_match_payments",
        promise: "no subscription waits for a purchase payment that succeeded",
        sql: "SELECT s.id::text AS key FROM subscriptions s \
              WHERE s.status = 'pending_payment' AND ($1::uuid IS NULL OR s.tenant_id = $1) \
                AND EXISTS (SELECT 1 FROM payments p WHERE p.subscription_id = s.id AND p.kind = 'purchase' \
                            AND p.status IN ('succeeded', 'partially_refunded') AND p.duplicate_of IS NULL)",
    },
    Invariant {
        name: "usage_counted_once",
        promise: "each subscription's usage counters add up to the usage events stored for it, \
                  with the totals of days dropped past retention (no event counted twice or counted \
                  without being stored)",
        sql: "SELECT coalesce(c.subscription_id, e.subscription_id)::text || ' ' || coalesce(c.metric, e.metric) AS key \
              FROM (SELECT subscription_id, metric, sum(used) AS used FROM usage_counters \
                     WHERE kind = 'counter' AND ($1::uuid IS NULL OR tenant_id = $1) GROUP BY 1, 2) c \
              FULL JOIN (SELECT subscription_id, metric, sum(quantity) AS used \
                           FROM (SELECT subscription_id, metric, tenant_id, quantity FROM usage_events \
                                 UNION ALL SELECT subscription_id, metric, tenant_id, quantity FROM usage_archived) v \
                          WHERE ($1::uuid IS NULL OR tenant_id = $1) AND NOT EXISTS (SELECT 1 FROM usage_counters g \
                                WHERE g.subscription_id = v.subscription_id AND g.metric = v.metric AND g.kind <> 'counter') \
                          GROUP BY 1, 2) e ON e.subscription_id = c.subscription_id AND e.metric = c.metric \
              WHERE coalesce(c.used, 0) <> coalesce(e.used, 0)",
    },
    // The scheduler's list is kept by triggers (migration 000029); this finds what
    // got past them (a partial restore, triggers disabled).
    Invariant {
        name: "due_subscriptions_follow",
        promise: "the scheduler's list holds exactly the subscriptions with a due instant, at that instant",
        sql: "SELECT DISTINCT coalesce(s.id, d.subscription_id)::text AS key \
              FROM (SELECT id, tenant_id, due_at FROM subscriptions WHERE due_at IS NOT NULL) s \
              FULL JOIN due_subscriptions d ON d.subscription_id = s.id AND d.due_at = s.due_at \
              LEFT JOIN subscriptions t ON t.id = d.subscription_id \
              WHERE (s.id IS NULL OR d.subscription_id IS NULL) \
                AND ($1::uuid IS NULL OR s.tenant_id = $1 OR t.tenant_id = $1)",
    },
    Invariant {
        name: "outbox_draining",
        promise: "no outbox message waits unpublished for more than 5 minutes",
        sql: "SELECT o.seq::text AS key FROM outbox_pending p JOIN outbox_events o ON o.seq = p.seq \
              WHERE p.inserted_at < now() - interval '5 minutes' AND ($1::uuid IS NULL OR o.tenant_id = $1)",
    },
];

#[derive(diesel::QueryableByName)]
struct Key {
    #[diesel(sql_type = Text)]
    key: String,
}

/// The keys (ids) breaching `invariant`, at most [`LIMIT`].
pub async fn breaches(
    conn: &mut AsyncPgConnection,
    invariant: &Invariant,
    tenant: Option<Uuid>,
) -> QueryResult<Vec<String>> {
    let sql = format!("SELECT key FROM ({}) breaches ORDER BY key LIMIT {LIMIT}", invariant.sql);
    let rows: Vec<Key> = diesel::sql_query(sql).bind::<Nullable<SqlUuid>, _>(tenant).load(conn).await?;
    Ok(rows.into_iter().map(|k| k.key).collect())
}
