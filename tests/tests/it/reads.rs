//! Entitlement reads on the API's shared read connection (`billing-api`'s
//! `ReadLane`): concurrent reads pipelined on one connection each get their own
//! customer's answer, and a read whose connection PostgreSQL terminated is answered
//! on a new one.

use billing_tests::cloudpayments::CARD_OK;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::support::{Tenant, TestApp};

/// Customers with a PRO subscription paid at 2026-03-10T09:00Z and the
/// `messages` each used on its first day (the clock then at 2026-03-11T09:00Z):
/// (customer id, subscription id, used), in `used`'s order.
async fn subscribers(app: &TestApp, t: &Tenant, used: &[i64]) -> Vec<(String, String, i64)> {
    app.set_clock("2026-03-10T09:00:00Z").await;
    app.plan_pro(t).await;
    let mut bought = Vec::new();
    for (i, messages) in used.iter().enumerate() {
        let customer = app.customer(t, &format!("reader-{i}")).await;
        let purchase = app.purchase(t, &customer, "PRO").await;
        assert_eq!(app.pay(&purchase, CARD_OK).await.status, "Completed");
        bought.push((customer, purchase["subscription"]["id"].as_str().unwrap().to_owned(), *messages));
    }
    app.set_clock("2026-03-11T09:00:00Z").await;
    let events: Vec<Value> = bought
        .iter()
        .map(|(customer, _, messages)| {
            json!({"event_id": format!("{customer}-1"), "customer_id": customer, "metric": "messages",
                "quantity": messages, "occurred_at": "2026-03-10T12:00:00Z"})
        })
        .collect();
    let result = app.post(t, "/v1/usage", json!({"events": events})).await.expect(200);
    assert_eq!(result["accepted"], used.len(), "{result}");
    bought
}

async fn entitlements(app: &TestApp, t: &Tenant, customer: &str) -> Value {
    app.get(t, &format!("/v1/customers/{customer}/entitlements")).await.expect(200)
}

#[tokio::test]
async fn concurrent_reads_each_get_their_own_customers_answer() {
    let app = TestApp::spawn().await;
    let t = app.tenant("SMM-GPT", "Europe/Moscow", json!({})).await;
    let subscribers = subscribers(&app, &t, &[7, 14, 21, 28]).await;
    // 200 reads, 32 in flight at once: each answer names its own subscription and usage.
    let answers: Vec<(usize, Value)> = futures_util::stream::iter(0..200)
        .map(|n| {
            let (app, t, subscribers) = (&app, &t, &subscribers);
            async move { (n % 4, entitlements(app, t, &subscribers[n % 4].0).await) }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert_eq!(answers.len(), 200);
    for (i, answer) in answers {
        let (_, subscription, used) = &subscribers[i];
        assert_eq!(answer["subscription_id"], subscription.as_str(), "{answer}");
        assert_eq!(answer["metrics"]["messages"]["used"], *used, "{answer}");
        assert_eq!(answer["metrics"]["messages"]["remaining"], 100_000 - used, "{answer}");
        assert_eq!(answer["access"], true);
    }
}

#[tokio::test]
async fn a_read_whose_connection_was_terminated_is_answered_on_a_new_one() {
    let app = TestApp::spawn().await;
    let t = app.tenant("SMM-GPT", "Europe/Moscow", json!({})).await;
    let (customer, subscription, _) = subscribers(&app, &t, &[42]).await.remove(0);
    // Twice: the second read's statement is the last its connection ran (the first
    // one also reads the plan).
    for _ in 0..2 {
        assert_eq!(entitlements(&app, &t, &customer).await["metrics"]["messages"]["used"], 42);
    }
    // Every other session on the database ends, the API's read connection with them.
    let others = "datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'";
    let reader = app
        .count(&format!(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE {others} AND query LIKE '%LEFT OUTER JOIN \"usage_counters\"%'"
        ))
        .await;
    assert!(reader >= 1, "a read connection that last ran the entitlement read ({reader})");
    let ended = app
        .count(&format!(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE {others}"
        ))
        .await;
    assert!(ended >= 1, "the API's connections were terminated ({ended})");
    let left = app.count_when(&format!("SELECT count(*) AS n FROM pg_stat_activity WHERE {others}"), 0).await;
    assert_eq!(left, 0, "the terminated sessions have ended");
    for _ in 0..3 {
        let answer = entitlements(&app, &t, &customer).await;
        assert_eq!(answer["subscription_id"], subscription.as_str(), "{answer}");
        assert_eq!(answer["metrics"]["messages"]["used"], 42, "{answer}");
    }
}
