//! Charges whose outcome is unknown (timeout, 5xx) are reconciled with
//! `payments/find` before anything else; a re-send reuses the same InvoiceId and
//! X-Request-ID. With the simulator's X-Request-ID de-duplication switched off, a
//! blind retry would show up as a second capture: there is exactly one.

use billing_tests::cloudpayments::{CARD_OK, CloudPaymentsSim, TokenScript};
use serde_json::json;

use crate::renewals::{bought_monthly, orbita, payments_of};
use crate::support::TestApp;

async fn renew_with(script: TokenScript) -> (TestApp, String, String) {
    let app = TestApp::with_worker().await;
    app.sim.set_request_dedup(false);
    // Only reconciliation can tell the worker what happened.
    app.sim.set_token_charge_notifications(false);
    app.sim.set_slow_ms(1500);
    let t = orbita(&app, json!({})).await;
    let (customer, id) = bought_monthly(&app, &t, "unknown-1", "2026-03-10T09:00:00Z").await;
    app.sim.script_token(&CloudPaymentsSim::token_for(CARD_OK), &[script]);
    app.advance_to("2026-04-10T09:00:00Z").await;
    let renewal = payments_of(&app, &t, &customer).await.into_iter().find(|p| p["kind"] == "renewal").unwrap();
    assert_eq!(renewal["status"], "succeeded", "{renewal}");
    let s = app.get(&t, &format!("/v1/subscriptions/{id}")).await.expect(200);
    assert_eq!(s["status"], "active");
    assert_eq!(s["current_period_start"], "2026-04-10T09:00:00Z");
    (app, customer, renewal["id"].as_str().unwrap().to_owned())
}

fn renewal_captures(app: &TestApp) -> Vec<billing_tests::cloudpayments::Transaction> {
    app.sim.transactions().into_iter().filter(|t| t.tr_initiator_code.is_some() && t.status == "Completed").collect()
}

#[tokio::test]
async fn a_timeout_after_the_charge_is_reconciled_not_retried() {
    let (app, customer, _) = renew_with(TokenScript::TimeoutAfterCharge).await;
    assert_eq!(app.sim.captures_for_account(&customer), 2, "purchase + one renewal");
    assert_eq!(app.sim.charge_requests(), 1, "found by payments/find: never re-sent");
    assert_eq!(app.count("SELECT count(*) AS n FROM payment_attempts WHERE channel = 'token'").await, 1);
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_5xx_after_the_charge_is_reconciled_not_retried() {
    let (app, customer, _) = renew_with(TokenScript::ErrorAfterCharge).await;
    assert_eq!(app.sim.captures_for_account(&customer), 2);
    assert_eq!(app.sim.charge_requests(), 1);
}

#[tokio::test]
async fn a_5xx_before_the_charge_resends_the_same_attempt() {
    let (app, customer, _) = renew_with(TokenScript::ErrorBeforeCharge).await;
    assert_eq!(app.sim.captures_for_account(&customer), 2);
    assert_eq!(app.sim.charge_requests(), 2, "unknown to the provider: sent again");
    let captures = renewal_captures(&app);
    assert_eq!(captures.len(), 1);
    let attempts = app.count("SELECT count(*) AS n FROM payment_attempts WHERE channel = 'token'").await;
    assert_eq!(attempts, 1, "the re-send is the same attempt");
    assert_eq!(captures[0].request_id, captures[0].invoice_id, "same X-Request-ID and InvoiceId");
}

#[tokio::test]
async fn a_408_is_an_unknown_outcome_not_a_decline() {
    let (app, customer, _) = renew_with(TokenScript::BusyBeforeCharge).await;
    assert_eq!(app.sim.captures_for_account(&customer), 2);
    assert_eq!(app.sim.charge_requests(), 2, "reconciled, then the same attempt sent again");
    assert_eq!(renewal_captures(&app).len(), 1);
    assert_eq!(app.count("SELECT count(*) AS n FROM payment_attempts WHERE status = 'failed'").await, 0);
}

#[tokio::test]
async fn a_timeout_before_the_charge_resends_the_same_attempt() {
    let (app, customer, _) = renew_with(TokenScript::TimeoutBeforeCharge).await;
    assert_eq!(app.sim.captures_for_account(&customer), 2);
    assert_eq!(renewal_captures(&app).len(), 1);
}

#[tokio::test]
async fn provider_notifications_for_token_charges_are_matched_never_booked_twice() {
    let app = TestApp::with_worker().await;
    app.sim.set_token_charge_notifications(true);
    let t = orbita(&app, json!({"dunning_retry_days": [1], "grace_period_hours": 48})).await;
    let (customer, _) = bought_monthly(&app, &t, "notif-1", "2026-03-10T09:00:00Z").await;
    app.sim.script_token(&CloudPaymentsSim::token_for(CARD_OK), &[TokenScript::Decline { reason_code: 5051 }]);
    for at in ["2026-04-10T09:00:00Z", "2026-04-11T09:00:00Z", "2026-05-10T09:00:00Z"] {
        app.advance_to(at).await;
    }
    // Give the notifications time to land after the answers were applied.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    app.settle().await;
    let payments = payments_of(&app, &t, &customer).await;
    assert_eq!(payments.len(), 3, "purchase + two renewals, no duplicates: {payments:#?}");
    assert!(payments.iter().all(|p| p["duplicate_of"].is_null()));
    assert_eq!(
        app.count("SELECT count(*) AS n FROM gateway_events WHERE kind IN ('pay', 'fail')").await,
        4,
        "widget Pay, token Fail, token Pay x2"
    );
    assert_eq!(app.count("SELECT count(*) AS n FROM ledger_transactions").await, 3);
    let events = app.event_types(&t).await;
    assert_eq!(events.iter().filter(|e| *e == "payment.failed").count(), 1);
    app.assert_ledger_balanced().await;
}
