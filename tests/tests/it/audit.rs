//! `billing-api audit`: a clean run exits 0 with a table of every invariant; data
//! that breaks an invariant is named, per tenant or for all, and exits 1.

use std::process::Command;

use serde_json::json;

use crate::renewals::{bought_monthly, orbita_on};
use crate::support::{Gw, TestApp};

/// Runs `billing-api audit` with `args` on the test database: (exit code, stdout).
fn audit(app: &TestApp, args: &[&str]) -> (i32, String) {
    let out = Command::new(billing_tests::process::binary("billing-api"))
        .arg("audit")
        .args(args)
        .env("DATABASE_URL", &app.db.url)
        .env("BILLING_LOG_FORMAT", "text")
        .env_remove("RUST_LOG")
        .output()
        .expect("run billing-api audit");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn row<'a>(table: &'a str, name: &str) -> &'a str {
    table.lines().find(|l| l.starts_with(&format!("| {name} "))).unwrap_or_else(|| panic!("no {name} row in\n{table}"))
}

#[tokio::test]
async fn the_audit_passes_on_real_traffic_and_names_every_breach() {
    let app = TestApp::with_worker().await;
    let t = orbita_on(&app, Gw::CloudPayments, json!({})).await;
    let other = orbita_on(&app, Gw::YooKassa, json!({})).await;
    let (_, sub) = bought_monthly(&app, &t, "audit-1", "2026-03-10T09:00:00Z").await;
    bought_monthly(&app, &other, "audit-2", "2026-03-10T09:00:00Z").await;
    app.advance_to("2026-04-10T09:00:00Z").await;

    let (code, table) = audit(&app, &[]);
    assert_eq!(code, 0, "{table}");
    assert!(table.ends_with("13 invariants checked, 0 breaches\n"), "{table}");
    for name in [
        "ledger_balanced",
        "ledger_complete",
        "income_receipts",
        "refunds_within_captures",
        "usage_counted_once",
        "outbox_draining",
        "references_exist",
        "due_subscriptions_follow",
    ] {
        assert!(row(&table, name).contains("|        0 |"), "{table}");
    }

    // Break promises in the first tenant's data: a counter holding usage no
    // stored event accounts for is usage counted twice; an entry whose transaction
    // does not exist and two whose accounts do not (written past the ledger's insert
    // check, as a restore of one table could).
    app.db.execute(&format!("UPDATE subscriptions SET status = 'pending_payment' WHERE id = '{sub}'")).await;
    app.db
        .execute(&format!(
            "UPDATE payments SET refunded_amount = 10.00 WHERE subscription_id = '{sub}' AND kind = 'renewal'"
        ))
        .await;
    app.db
        .execute(
            // On a lane no relay serves: the running worker cannot publish it again.
            "INSERT INTO outbox_pending (lane, seq, inserted_at) \
             SELECT 32000, max(seq), now() - interval '1 hour' FROM outbox_events",
        )
        .await;
    app.db
        .execute(&format!(
            "INSERT INTO usage_counters (subscription_id, period_start, metric, tenant_id, kind, used, peak) \
             SELECT id, current_period_start, 'messages', tenant_id, 'counter', 3, 3 FROM subscriptions WHERE id = '{sub}'"
        ))
        .await;
    // No foreign key names the catalog or the tenant (migration 000021): a payment
    // whose price is gone and a stored notification of a tenant that is not.
    app.db
        .execute(&format!(
            "UPDATE payments SET price_id = gen_random_uuid() WHERE subscription_id = '{sub}' AND kind = 'purchase'"
        ))
        .await;
    app.db
        .execute(
            "INSERT INTO gateway_events (id, tenant_id, provider, kind, transaction_id, content_type, raw_body, outcome) \
             VALUES (gen_random_uuid(), '00000000-0000-0000-0000-00000000dead', 'cloudpayments', 'pay', 'x', \
                     'application/json', '\\x7b7d', 'recorded')",
        )
        .await;
    // Nor the renewal's references (migration 000027): its attempt names a saved
    // card, its payment a customer, and the subscription a renewal payment, that do
    // not exist.
    app.db
        .execute(&format!(
            "UPDATE payment_attempts SET payment_method_id = gen_random_uuid() WHERE payment_id IN \
             (SELECT id FROM payments WHERE subscription_id = '{sub}' AND kind = 'renewal')"
        ))
        .await;
    app.db
        .execute(&format!(
            "UPDATE payments SET customer_id = gen_random_uuid() WHERE subscription_id = '{sub}' AND kind = 'renewal'"
        ))
        .await;
    app.db
        .execute(&format!("UPDATE subscriptions SET renewal_payment_id = gen_random_uuid() WHERE id = '{sub}'"))
        .await;
    // The scheduler's list (migration 000029) out of step with the subscription's
    // due instant, as a restore of one table could leave it.
    app.db
        .execute(&format!(
            "UPDATE due_subscriptions SET due_at = due_at + interval '1 day' WHERE subscription_id = '{sub}'"
        ))
        .await;
    app.db.execute("ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_balanced").await;
    app.db
        .execute(&format!(
            "INSERT INTO ledger_entries (transaction_id, account_id, amount, currency) \
             SELECT gen_random_uuid(), id, 1.00, 'RUB' FROM ledger_accounts \
             WHERE tenant_id = '{}' AND code = 'revenue' LIMIT 1",
            t.id
        ))
        .await;
    // Two entries (balanced) of one of its transactions on accounts that do not exist.
    app.db
        .execute(&format!(
            "INSERT INTO ledger_entries (transaction_id, account_id, amount, currency) \
             SELECT t.id, gen_random_uuid(), v.amount, 'RUB' FROM (SELECT id FROM ledger_transactions \
             WHERE tenant_id = '{}' LIMIT 1) t, (VALUES (1.00), (-1.00)) v(amount)",
            t.id
        ))
        .await;
    app.db.execute("ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_balanced").await;
    let (code, table) = audit(&app, &[]);
    assert_eq!(code, 1, "{table}");
    assert!(row(&table, "ledger_complete").contains("|        3 | entry "), "{table}");
    let (_, own) = audit(&app, &["--tenant", &t.id]);
    assert!(row(&own, "ledger_complete").contains("|        3 | entry "), "the tenant's own audit: {own}");
    assert!(row(&table, "usage_counted_once").contains(&format!("|        1 | {sub} messages")), "{table}");
    assert!(row(&table, "subscriptions_match_payments").contains(&format!("|        1 | {sub}")), "{table}");
    assert!(row(&table, "refunds_within_captures").contains("|        1 |"), "{table}");
    assert!(row(&table, "outbox_draining").contains("|        1 |"), "{table}");
    assert!(row(&table, "ledger_balanced").contains("|        0 |"), "{table}");
    assert!(row(&table, "due_subscriptions_follow").contains(&format!("|        1 | {sub}")), "{table}");
    assert!(row(&own, "due_subscriptions_follow").contains(&format!("|        1 | {sub}")), "{own}");
    let refs = row(&table, "references_exist");
    assert!(
        refs.contains("|        5 |") && refs.contains("gateway_events of tenant 00000000-0000-0000-0000-00000000dead"),
        "{table}"
    );
    let own_refs = row(&own, "references_exist");
    // Four: the purchase (its price), the renewal payment (its customer), its attempt
    // (the saved card) and the subscription (its renewal payment); the table shows
    // three examples.
    assert!(own_refs.contains("|        4 | payment "), "the tenant's own audit: {own}");
    assert!(own_refs.contains("payment attempt "), "the tenant's own audit: {own}");
    assert!(table.ends_with("13 invariants checked, 13 breaches\n"), "{table}");

    // Per tenant: the other tenant's data is clean.
    let (code, table) = audit(&app, &["--tenant", &other.id]);
    let outbox_tenant = app.rows("SELECT tenant_id::text AS row FROM outbox_events ORDER BY seq DESC LIMIT 1").await;
    let expected = if outbox_tenant[0] == other.id { 1 } else { 0 };
    assert_eq!(code, expected, "{table}");
    assert!(row(&table, "subscriptions_match_payments").contains("|        0 |"), "{table}");
    assert!(row(&table, "ledger_complete").contains("|        0 |"), "{table}");
    assert_eq!(audit(&app, &["--tenant", "nope"]).0, 2);
    assert_eq!(audit(&app, &["--everything"]).0, 2);

    // What the dropped foreign keys guarded is refused at its source.
    let mut conn = app.db.conn().await;
    for sql in [
        format!("DELETE FROM tenants WHERE id = '{}'", t.id),
        format!("UPDATE tenants SET id = gen_random_uuid() WHERE id = '{}'", t.id),
        "DELETE FROM plans".to_owned(),
        "DELETE FROM plan_prices".to_owned(),
        "TRUNCATE tenants CASCADE".to_owned(),
        format!("DELETE FROM subscriptions WHERE id = '{sub}'"),
        format!("UPDATE subscriptions SET id = gen_random_uuid() WHERE id = '{sub}'"),
        "DELETE FROM payments".to_owned(),
        "DELETE FROM customers".to_owned(),
        "DELETE FROM payment_methods".to_owned(),
        "TRUNCATE payments CASCADE".to_owned(),
    ] {
        let err = diesel_async::RunQueryDsl::execute(diesel::sql_query(&sql), &mut conn).await.unwrap_err().to_string();
        assert!(err.contains("rows are never deleted or renumbered"), "{sql}: {err}");
    }
    assert_eq!(app.count("SELECT count(*) AS n FROM tenants").await, 2);
    assert!(app.count("SELECT count(*) AS n FROM payments").await >= 4);
}
