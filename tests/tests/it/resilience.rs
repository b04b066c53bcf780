//! The worker as a real process: killed with SIGKILL in the middle of a wave of due
//! renewals and restarted, two workers at once (both on each gateway), a lost
//! broker connection. Each subscription is charged exactly once — with
//! CloudPayments' X-Request-ID de-duplication off, so a blind re-send would show as
//! a second capture; YooKassa keeps its Idempotence-Key de-duplication, which is
//! what its reconciliation relies on.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;

use crate::renewals::{orbita, orbita_on};
use crate::support::{Card, Gw, Tenant, TestApp};

crate::on_both_gateways!(
    a_worker_killed_mid_wave_and_restarted_charges_each_subscription_once,
    two_workers_at_once_never_double_charge,
);

/// `n` customers with a paid monthly subscription bought at 2026-03-10T09:00Z.
async fn seed(app: &TestApp, t: &Tenant, n: usize) -> Vec<String> {
    app.set_clock("2026-03-10T09:00:00Z").await;
    futures_util::stream::iter(0..n)
        .map(|i| async move {
            let customer = app.customer(t, &format!("wave-{i}")).await;
            let bought = app.purchase(t, &customer, "START").await;
            assert!(app.pay_by(&bought, Card::Ok).await.approved);
            customer
        })
        .buffer_unordered(8)
        .collect()
        .await
}

async fn assert_each_charged_once(app: &TestApp, t: &Tenant, customers: &[String]) {
    for c in customers {
        assert_eq!(app.captures_of(t, c), 2, "customer {c}: purchase + exactly one renewal");
    }
    let n = customers.len() as i64;
    assert_eq!(
        app.count("SELECT count(*) AS n FROM payments WHERE kind = 'renewal' AND status = 'succeeded'").await,
        n
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM payment_attempts WHERE channel = 'token'").await,
        n,
        "one attempt per renewal"
    );
    assert_eq!(
        app.count("SELECT count(*) AS n FROM subscriptions WHERE status = 'active' AND current_period_start = '2026-04-10T09:00:00Z'").await,
        n
    );
    assert_eq!(app.count("SELECT count(*) AS n FROM payments WHERE duplicate_of IS NOT NULL").await, 0);
    app.assert_ledger_balanced().await;
    assert_eq!(app.count("SELECT count(*) AS n FROM ledger_transactions").await, 2 * n);
}

async fn a_worker_killed_mid_wave_and_restarted_charges_each_subscription_once(gw: Gw) {
    let app = TestApp::spawn().await;
    app.sim.set_request_dedup(false);
    let t = orbita_on(&app, gw, json!({"renewal_notice_days": 0})).await;
    let customers = seed(&app, &t, 300).await;

    let mut worker = app.worker_process();
    app.set_clock("2026-04-10T09:00:00Z").await;
    let start = Instant::now();
    while app.saved_method_captures(&t) < 40 {
        assert!(start.elapsed() < Duration::from_secs(120), "the wave did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    worker.kill_hard();
    let at_kill = app.saved_method_captures(&t);
    assert!(at_kill < customers.len(), "killed mid-wave ({at_kill} of {} done)", customers.len());

    let mut restarted = app.worker_process();
    app.settle().await;
    assert_each_charged_once(&app, &t, &customers).await;
    assert!(restarted.terminate(Duration::from_secs(40)).is_some_and(|s| s.success()));
}

async fn two_workers_at_once_never_double_charge(gw: Gw) {
    let app = TestApp::spawn().await;
    app.sim.set_request_dedup(false);
    let t = orbita_on(&app, gw, json!({"renewal_notice_days": 0})).await;
    let customers = seed(&app, &t, 200).await;
    let mut a = app.worker_process();
    let mut b = app.worker_process();
    app.advance_to("2026-04-10T09:00:00Z").await;
    assert_each_charged_once(&app, &t, &customers).await;
    assert!(a.is_running() && b.is_running());
    a.terminate(Duration::from_secs(40));
    b.terminate(Duration::from_secs(40));
}

#[tokio::test]
async fn the_worker_reconnects_after_losing_the_broker() {
    let mut app = TestApp::spawn().await;
    app.start_worker();
    let t = orbita(&app, json!({"renewal_notice_days": 0})).await;
    let customers = seed(&app, &t, 5).await;
    app.settle().await;
    // The broker drops every connection of this vhost (as on a broker restart).
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut conns: Vec<serde_json::Value> = Vec::new();
    // The management API lists connections after its next stats sample.
    for _ in 0..150 {
        conns = http
            .get(format!("http://127.0.0.1:15672/api/vhosts/{}/connections", app.mq.name))
            .basic_auth("guest", Some("guest"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or_default();
        if !conns.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!conns.is_empty(), "the worker's connection is listed");
    for c in &conns {
        let name = c["name"].as_str().unwrap();
        let url = format!("http://127.0.0.1:15672/api/connections/{}", urlencode(name));
        http.delete(url).basic_auth("guest", Some("guest")).send().await.unwrap();
    }
    app.advance_to("2026-04-10T09:00:00Z").await;
    assert_each_charged_once(&app, &t, &customers).await;
    app.stop_worker().await;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn the_worker_exposes_prometheus_metrics() {
    let app = TestApp::spawn().await;
    let port = billing_tests::process::free_port();
    let mut worker = billing_tests::process::Proc::spawn(
        &billing_tests::process::binary("billing-worker"),
        &[],
        &crate::support::app::worker_env_on(&app.db.url, &app.mq.amqp_url, port),
    );
    let t = orbita(&app, json!({"dunning_retry_days": [1]})).await;
    let customers = seed(&app, &t, 2).await;
    // A fiscal tenant's customer: an income receipt for the purchase and one for the renewal.
    let fiscal = app
        .fiscal_tenant("Orbita (fiscal)", json!({"dunning_retry_days": [1]}), crate::receipts::service_fiscal())
        .await;
    app.plan_monthly(&fiscal, "START", "1990.00").await;
    seed(&app, &fiscal, 1).await;
    app.sim.script_token(
        &billing_tests::cloudpayments::CloudPaymentsSim::token_for(billing_tests::cloudpayments::CARD_OK),
        &[billing_tests::cloudpayments::TokenScript::Decline { reason_code: 5051 }],
    );
    app.advance_to("2026-04-10T09:00:00Z").await;
    app.advance_to("2026-04-11T09:00:00Z").await;
    assert_eq!(customers.len(), 2);
    let url = format!("http://127.0.0.1:{port}/metrics");
    let mut text = String::new();
    for _ in 0..100 {
        text = reqwest::get(&url).await.unwrap().text().await.unwrap();
        if text.contains("billing_queue_messages_ready") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for metric in [
        "billing_charges_total{outcome=\"captured\"} 3",
        "billing_charges_total{outcome=\"declined\"} 1",
        "billing_dunning_retries_total 1",
        "billing_outbox_lag_seconds",
        "billing_outbox_published_total",
        "billing_queue_messages_ready{queue=\"billing.renewals\"}",
        "billing_queue_messages_ready{queue=\"billing.webhooks.dead\"}",
        "billing_receipts_registered_total{kind=\"income\"} 2",
        "billing_scheduler_claimed_total",
    ] {
        assert!(text.contains(metric), "{metric} missing from\n{text}");
    }
    worker.terminate(Duration::from_secs(40));
}
