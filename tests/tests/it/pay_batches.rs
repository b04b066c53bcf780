//! Capture notifications arriving together are applied in one transaction (the
//! API's capture queue, `services::capture_batches`): each exactly as it would be
//! alone — activated once, stored once, booked once — with a retry, a second
//! capture and a wrong amount among them taking the one-by-one path.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use diesel_async::SimpleAsyncConnection;
use serde_json::{Value, json};

use crate::support::{Tenant, TestApp};
use crate::webhooks::{pay_body, post_raw, sign};

const CUSTOMERS: usize = 12;

fn signed(t: &Tenant, body: &str) -> Vec<(&'static str, String)> {
    vec![("Content-HMAC", sign(&t.api_secret, body))]
}

#[tokio::test]
async fn pay_notifications_arriving_together_are_applied_in_one_transaction_each_exactly_once() {
    let app = TestApp::spawn().await;
    let t = app.tenant("WhatsMonster", "Europe/Moscow", json!({})).await;
    app.plan_pro(&t).await;
    let mut bought = Vec::new();
    for i in 0..CUSTOMERS {
        let customer = app.customer(&t, &format!("batch-{i}")).await;
        bought.push(app.purchase(&t, &customer, "PRO").await);
    }
    let mut bodies: Vec<String> = bought.iter().enumerate().map(|(i, b)| pay_body(b, 7000 + i as i64)).collect();
    // Customer 11's Pay reports another amount: stored as a mismatch, not applied.
    bodies[11] = bodies[11].replace("1390.00", "1.00");
    // Customer 3's Pay is applied before the others; its retry comes with them.
    let res = post_raw(&app, &t, "pay", &bodies[3], &signed(&t, &bodies[3])).await;
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"code": 0}));
    let mut together: Vec<String> =
        bodies.iter().enumerate().filter(|(i, _)| *i != 0).map(|(_, b)| b.clone()).collect();
    // A second capture of customer 5's payment, under another transaction.
    together.push(pay_body(&bought[5], 8005));

    // Customer 0's payment row is held: the queue that takes its Pay waits for it,
    // and the notifications reaching that queue meanwhile wait behind it.
    let first = bought[0]["payment"]["id"].as_str().unwrap().to_owned();
    let mut holder = app.db.conn().await;
    holder.batch_execute(&format!("BEGIN; SELECT id FROM payments WHERE id = '{first}' FOR UPDATE")).await.unwrap();
    let waiting = "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() \
                   AND wait_event_type = 'Lock'";
    let app = Arc::new(app);
    let t = Arc::new(t);
    let send = |body: String| {
        let (app, t) = (app.clone(), t.clone());
        async move {
            let res = post_raw(&app, &t, "pay", &body, &signed(&t, &body)).await;
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    let blocked = tokio::spawn(send(bodies[0].clone()));
    assert_eq!(app.count_when(waiting, 1).await, 1, "customer 0's Pay waits for its payment");
    let answered = Arc::new(AtomicUsize::new(0));
    let others: Vec<_> = together
        .into_iter()
        .map(|body| {
            let (answered, sent) = (answered.clone(), send(body));
            tokio::spawn(async move {
                let answer = sent.await;
                answered.fetch_add(1, Ordering::SeqCst);
                answer
            })
        })
        .collect();
    // Whatever the other worker's queue takes is answered; the rest waits.
    let mut last = usize::MAX;
    while answered.load(Ordering::SeqCst) != last {
        last = answered.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    assert!(last < CUSTOMERS, "some notifications wait behind customer 0's ({last} answered)");
    holder.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(blocked.await.unwrap(), (200, json!({"code": 0})));
    for other in others {
        assert_eq!(other.await.unwrap(), (200, json!({"code": 0})));
    }

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
    // The second capture: its own payment, on the customer's balance, refunded at once.
    let p5 = bought[5]["payment"]["id"].as_str().unwrap();
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) AS n FROM payments WHERE duplicate_of = '{p5}' AND gateway_transaction_id = '8005'"
        ))
        .await,
        1
    );
    assert_eq!(app.count("SELECT count(*) AS n FROM refunds").await, 1);
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
    // The notifications that waited were applied together: fewer transactions
    // stored the applied ones than there are of them.
    let applied = "SELECT count(DISTINCT xmin::text) AS n FROM gateway_events WHERE outcome = 'applied'";
    let transactions = app.count(applied).await;
    assert!(transactions < 11, "{transactions} transactions applied 11 captures");
}
