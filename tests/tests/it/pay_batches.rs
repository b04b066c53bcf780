//! Capture notifications arriving together are applied in one transaction (the
//! API's capture queue, `services::capture_batches`): each exactly as it would be
//! alone — activated once, stored once, booked once, with the same rows — while a
//! retry, a second capture, a wrong amount, a fiscal tenant's capture and a batch
//! the database refuses take the one-by-one path, and a payment row held
//! elsewhere delays only its own notification.

use std::sync::Arc;
use std::time::Duration;

use diesel_async::SimpleAsyncConnection;
use serde_json::{Value, json};

use crate::receipts::{licence_fiscal, receipts, unused_refunds};
use crate::support::{Tenant, TestApp};
use crate::webhooks::{pay_body, post_raw, sign};

/// One HTTP worker, so one queue takes every notification; it waits a second
/// after the first for others to join its batch, so notifications the test sends
/// together are batched together whatever the scheduling.
const ONE_QUEUE: &[(&str, &str)] = &[("BILLING_HTTP_WORKERS", "1"), ("BILLING_CAPTURE_LINGER_MS", "1000")];

const CUSTOMERS: usize = 12;

/// Sends each (tenant, body) as a signed Pay notification, all at once; returns
/// each answer (status, body) in order.
async fn send_together(app: &Arc<TestApp>, sends: Vec<(Arc<Tenant>, String)>) -> Vec<(u16, Value)> {
    let sent: Vec<_> = sends.into_iter().map(|(t, body)| tokio::spawn(send(app.clone(), t, body))).collect();
    let mut answers = Vec::new();
    for s in sent {
        answers.push(s.await.unwrap());
    }
    answers
}

/// `bodies`, each for tenant `t`.
fn of(t: &Arc<Tenant>, bodies: &[String]) -> Vec<(Arc<Tenant>, String)> {
    bodies.iter().map(|b| (t.clone(), b.clone())).collect()
}

async fn send(app: Arc<TestApp>, t: Arc<Tenant>, body: String) -> (u16, Value) {
    let res = post_raw(&app, &t, "pay", &body, &[("Content-HMAC", sign(&t.api_secret, &body))]).await;
    (res.status().as_u16(), res.json::<Value>().await.unwrap())
}

/// Customers of `t` with a pending PRO purchase each.
async fn purchases(app: &TestApp, t: &Tenant, prefix: &str, n: usize) -> Vec<Value> {
    let mut bought = Vec::new();
    for i in 0..n {
        let customer = app.customer(t, &format!("{prefix}-{i}")).await;
        bought.push(app.purchase(t, &customer, "PRO").await);
    }
    bought
}

/// Everything a capture changes on a purchase's subscription and payment, as
/// text: what the batch writes must equal what the one-by-one path writes.
async fn captured_rows(app: &TestApp, bought: &Value) -> String {
    let sub = bought["subscription"]["id"].as_str().unwrap();
    app.rows(&format!(
        "SELECT (s.status, s.auto_renew, s.current_period_start, s.current_period_end, s.anchor_at, s.paid_amount, \
           s.price_id, s.next_charge_at, s.grace_until, s.due_at, s.renewal_payment_id, s.next_retry_at, \
           s.dunning_ends_at, s.retries_stopped, s.paid_through, s.canceled_at, s.renewal_notice_for, \
           s.expiry_notice_for, s.pending_until, p.status, p.amount, p.period_start, p.period_end, \
           (SELECT array_agg((t.from_status, t.to_status, t.cause) ORDER BY t.id) \
              FROM subscription_transitions t WHERE t.subscription_id = s.id), \
           (SELECT array_agg((a.status, a.gateway_transaction_id IS NOT NULL) ORDER BY a.attempt_no) \
              FROM payment_attempts a WHERE a.payment_id = p.id), \
           (SELECT array_agg(e.amount ORDER BY e.amount) FROM ledger_entries e \
              JOIN ledger_transactions x ON x.id = e.transaction_id WHERE x.payment_id = p.id))::text AS row \
         FROM subscriptions s JOIN payments p ON p.subscription_id = s.id AND p.duplicate_of IS NULL \
         WHERE s.id = '{sub}'"
    ))
    .await
    .remove(0)
}

/// The largest number of `outcome` notifications one transaction stored.
async fn most_in_one_transaction(app: &TestApp, outcome: &str) -> i64 {
    app.count(&format!(
        "SELECT coalesce(max(n), 0) AS n FROM (SELECT count(*) AS n FROM gateway_events \
         WHERE outcome = '{outcome}' GROUP BY xmin::text) per_transaction"
    ))
    .await
}

/// The distinct database transactions (`xmin`) that stored the notifications
/// carrying these gateway transaction ids.
async fn transactions_of(app: &TestApp, transaction_ids: &[i64]) -> Vec<String> {
    let ids: Vec<String> = transaction_ids.iter().map(|i| format!("'{i}'")).collect();
    app.rows(&format!(
        "SELECT DISTINCT xmin::text AS row FROM gateway_events WHERE transaction_id IN ({}) ORDER BY 1",
        ids.join(", ")
    ))
    .await
}

#[tokio::test]
async fn pay_notifications_arriving_together_are_applied_in_one_transaction_each_exactly_once() {
    let app = TestApp::spawn_with(ONE_QUEUE).await;
    let t = app.tenant("WhatsMonster", "Europe/Moscow", json!({})).await;
    app.plan_pro(&t).await;
    let bought = purchases(&app, &t, "batch", CUSTOMERS).await;
    let mut bodies: Vec<String> = bought.iter().enumerate().map(|(i, b)| pay_body(b, 7000 + i as i64)).collect();
    // Customer 11's Pay reports another amount: stored as a mismatch, not applied.
    bodies[11] = bodies[11].replace("1390.00", "1.00");
    let (app, t) = (Arc::new(app), Arc::new(t));
    // Customer 3's Pay comes alone (the queue hands it back to its request); its
    // retry comes later with others.
    assert_eq!(send(app.clone(), t.clone(), bodies[3].clone()).await, (200, json!({"code": 0})));
    let lone = captured_rows(&app, &bought[3]).await;

    // Customer 0's payment row is held elsewhere while its Pay comes in a batch
    // with customers 1 and 2: the batch waits for the lock at most 200 ms, then
    // hands all three back; 1 and 2 are applied while 0 still waits.
    let first = bought[0]["payment"]["id"].as_str().unwrap().to_owned();
    let mut holder = app.db.conn().await;
    holder.batch_execute(&format!("BEGIN; SELECT id FROM payments WHERE id = '{first}' FOR UPDATE")).await.unwrap();
    let blocked = tokio::spawn(send(app.clone(), t.clone(), bodies[0].clone()));
    let others = tokio::time::timeout(Duration::from_secs(30), send_together(&app, of(&t, &bodies[1..3])))
        .await
        .expect("customers 1 and 2 are answered while customer 0's payment is held");
    assert_eq!(others, vec![(200, json!({"code": 0})); 2]);
    assert!(!blocked.is_finished(), "customer 0's Pay still waits");
    holder.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(blocked.await.unwrap(), (200, json!({"code": 0})));
    assert_eq!(transactions_of(&app, &[7000, 7001, 7002]).await.len(), 3, "each applied alone");

    // The rest together, with customer 3's retry and a second capture of customer
    // 5's payment under another transaction: one batch applies the seven plain
    // ones (customer 5's by whichever of its two captures came first).
    let mut together = of(&t, &bodies[3..]);
    together.push((t.clone(), pay_body(&bought[5], 8005)));
    assert_eq!(send_together(&app, together).await, vec![(200, json!({"code": 0})); 10]);
    let batch = app
        .rows(
            "SELECT DISTINCT xmin::text AS row FROM gateway_events WHERE outcome = 'applied' \
             AND transaction_id NOT IN ('7000', '7001', '7002', '7003')",
        )
        .await;
    assert_eq!(batch.len(), 1, "the seven plain captures in one transaction");
    assert_eq!(most_in_one_transaction(&app, "applied").await, 7);
    // Eleven purchases active and paid once, each for its own period.
    let paid = "SELECT count(*) AS n FROM payments p JOIN subscriptions s ON s.id = p.subscription_id \
                WHERE p.kind = 'purchase' AND p.duplicate_of IS NULL AND p.status = 'succeeded' \
                AND s.status = 'active' AND p.period_start = s.current_period_start \
                AND p.period_end = s.current_period_end AND p.gateway_transaction_id IS NOT NULL";
    assert_eq!(app.count(paid).await, 11);
    let s11 = app.get(&t, &format!("/v1/subscriptions/{}", bought[11]["subscription"]["id"].as_str().unwrap())).await;
    assert_eq!(s11.expect(200)["status"], "pending_payment");
    assert_eq!(
        app.rows("SELECT outcome AS row FROM gateway_events WHERE transaction_id = '7011'").await,
        vec!["amount_mismatch".to_owned()]
    );
    // The other capture of customer 5's payment: its own payment, on the
    // customer's balance, refunded at once, in a transaction of its own after the
    // batch's.
    let second = app
        .rows("SELECT transaction_id AS row FROM gateway_events WHERE outcome = 'duplicate_capture'")
        .await
        .remove(0);
    assert!(second == "7005" || second == "8005", "{second}");
    let p5 = bought[5]["payment"]["id"].as_str().unwrap();
    let refunded = format!(
        "SELECT count(*) AS n FROM payments WHERE duplicate_of = '{p5}' AND gateway_transaction_id = '{second}'"
    );
    assert_eq!(app.count(&refunded).await, 1);
    assert_eq!(app.count("SELECT count(*) AS n FROM refunds").await, 1);
    assert_ne!(transactions_of(&app, &[second.parse().unwrap()]).await, batch);
    // Each notification stored once (the retry changed nothing), each applied
    // capture with its events and saved card.
    assert_eq!(app.count("SELECT count(*) AS n FROM gateway_events WHERE kind = 'pay'").await, 13);
    let types = app.event_types(&t).await;
    assert_eq!(types.iter().filter(|e| *e == "payment.succeeded").count(), 12, "11 purchases and the second capture");
    assert_eq!(types.iter().filter(|e| *e == "subscription.activated").count(), 11);
    assert_eq!(app.count("SELECT count(*) AS n FROM payment_methods").await, 11);
    let booked = "SELECT count(*) AS n FROM ledger_transactions WHERE kind = 'payment_captured'";
    assert_eq!(app.count(booked).await, 11);
    app.assert_ledger_balanced().await;
    // A capture applied in the batch leaves the very rows the one-by-one path does.
    for i in [0, 1, 2, 4, 5, 6, 7, 8, 9, 10] {
        assert_eq!(captured_rows(&app, &bought[i]).await, lone, "customer {i}");
    }
}

#[tokio::test]
async fn a_batch_the_database_refuses_is_applied_one_by_one() {
    let app = TestApp::spawn_with(ONE_QUEUE).await;
    let t = app.tenant("WhatsMonster", "Europe/Moscow", json!({})).await;
    app.plan_pro(&t).await;
    let bought = purchases(&app, &t, "refused", 4).await;
    // The fault: the batch's set-based period move
    // (`db::subscription_batches::apply_paid_periods`) raises.
    app.refuse_statements("subscriptions", "UPDATE subscriptions s SET status = v.status").await;
    let bodies: Vec<String> = bought.iter().enumerate().map(|(i, b)| pay_body(b, 7100 + i as i64)).collect();
    let (app, t) = (Arc::new(app), Arc::new(t));

    assert_eq!(send_together(&app, of(&t, &bodies)).await, vec![(200, json!({"code": 0})); 4]);

    assert!(app.refusals().await, "the batch was tried and refused");
    for b in &bought {
        let sub = app.get(&t, &format!("/v1/subscriptions/{}", b["subscription"]["id"].as_str().unwrap())).await;
        assert_eq!(sub.expect(200)["status"], "active");
        let payment = app.get(&t, &format!("/v1/payments/{}", b["payment"]["id"].as_str().unwrap())).await;
        assert_eq!(payment.expect(200)["status"], "succeeded");
    }
    // Nothing of the refused batch stayed: each applied once, in its own transaction.
    assert_eq!(transactions_of(&app, &[7100, 7101, 7102, 7103]).await.len(), 4);
    assert_eq!(app.count("SELECT count(*) AS n FROM gateway_events WHERE outcome = 'applied'").await, 4);
    let types = app.event_types(&t).await;
    assert_eq!(types.iter().filter(|e| *e == "payment.succeeded").count(), 4);
    assert_eq!(types.iter().filter(|e| *e == "subscription.activated").count(), 4);
    let booked = "SELECT count(*) AS n FROM ledger_transactions WHERE kind = 'payment_captured'";
    assert_eq!(app.count(booked).await, 4);
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_fiscal_tenants_captures_in_a_batch_are_applied_alone_each_with_its_receipt() {
    let app = TestApp::spawn_with(ONE_QUEUE).await;
    let fiscal = app.fiscal_tenant("SMM-GPT", unused_refunds(), licence_fiscal()).await;
    app.plan_pro(&fiscal).await;
    let plain = app.tenant("WhatsMonster", "Europe/Moscow", json!({})).await;
    app.plan_pro(&plain).await;
    let receipted = purchases(&app, &fiscal, "fiscal", 4).await;
    let not_receipted = purchases(&app, &plain, "plain", 2).await;
    let (app, fiscal, plain) = (Arc::new(app), Arc::new(fiscal), Arc::new(plain));
    let mut together: Vec<(Arc<Tenant>, String)> =
        receipted.iter().enumerate().map(|(i, b)| (fiscal.clone(), pay_body(b, 7200 + i as i64))).collect();
    together.extend(not_receipted.iter().enumerate().map(|(i, b)| (plain.clone(), pay_body(b, 7300 + i as i64))));

    assert_eq!(send_together(&app, together).await, vec![(200, json!({"code": 0})); 6]);

    // The batch applied the other tenant's two captures; the fiscal tenant's,
    // which issue receipts, each alone with its income receipt.
    let batch = transactions_of(&app, &[7300, 7301]).await;
    assert_eq!(batch.len(), 1, "the two plain captures in one transaction");
    let alone = transactions_of(&app, &[7200, 7201, 7202, 7203]).await;
    assert_eq!(alone.len(), 4);
    assert!(!alone.contains(&batch[0]));
    for b in &receipted {
        let payment = b["payment"]["id"].as_str().unwrap();
        let list = receipts(&app, &fiscal, payment).await;
        assert_eq!(list.len(), 1, "{list:#?}");
        assert_eq!(list[0]["kind"], "income");
        assert_eq!(list[0]["total"], json!({"value": "1390.00", "currency": "RUB"}));
        assert_eq!(list[0]["receipt"]["payments"], json!([{"type": 1, "sum": "1390.00"}]));
        let sub = app.get(&fiscal, &format!("/v1/subscriptions/{}", b["subscription"]["id"].as_str().unwrap())).await;
        assert_eq!(sub.expect(200)["status"], "active");
    }
    assert_eq!(app.count("SELECT count(*) AS n FROM receipts").await, 4, "none for the other tenant's");
    app.assert_ledger_balanced().await;
}
