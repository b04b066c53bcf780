//! Charges whose outcome is unknown (timeout, 5xx), on both gateways. CloudPayments:
//! reconciled with `payments/find` before anything else; a re-send reuses the same
//! InvoiceId and X-Request-ID, and with the simulator's X-Request-ID
//! de-duplication switched off a blind retry would show up as a second capture.
//! YooKassa: settled by re-sending the same request under the same
//! Idempotence-Key, which YooKassa answers with the first result. Either way there
//! is exactly one capture.

use billing_tests::cloudpayments::{CARD_OK, CloudPaymentsSim, TokenScript};
use serde_json::json;

use crate::renewals::{bought_monthly, orbita, orbita_on, payments_of};
use crate::support::{ChargeScript, Gw, Tenant, TestApp};

crate::on_both_gateways!(
    a_timeout_after_the_charge_is_reconciled_not_retried,
    a_5xx_after_the_charge_is_reconciled_not_retried,
    a_5xx_before_the_charge_resends_the_same_attempt,
    a_timeout_before_the_charge_resends_the_same_attempt,
);

/// A renewal whose first charge goes as `script`; returns once it succeeded.
async fn renew_with(gw: Gw, script: ChargeScript) -> (TestApp, Tenant, String) {
    let app = TestApp::with_worker().await;
    app.sim.set_slow_ms(1500);
    app.yk.set_slow_ms(1500);
    let t = orbita_on(&app, gw, json!({})).await;
    let (customer, id) = bought_monthly(&app, &t, "unknown-1", "2026-03-10T09:00:00Z").await;
    // Only reconciliation can tell the worker what happened.
    app.sim.set_token_charge_notifications(false);
    app.yk.set_notifications(false);
    // CloudPayments' find is the safeguard, so a blind re-send would charge twice;
    // YooKassa's safeguard is the Idempotence-Key itself.
    app.sim.set_request_dedup(false);
    app.script_charges(&t, &customer, &[script]).await;
    app.advance_to("2026-04-10T09:00:00Z").await;
    let renewal = payments_of(&app, &t, &customer).await.into_iter().find(|p| p["kind"] == "renewal").unwrap();
    assert_eq!(renewal["status"], "succeeded", "{renewal}");
    let s = app.get(&t, &format!("/v1/subscriptions/{id}")).await.expect(200);
    assert_eq!(s["status"], "active");
    assert_eq!(s["current_period_start"], "2026-04-10T09:00:00Z");
    assert_eq!(app.captures_of(&t, &customer), 2, "purchase + one renewal");
    assert_eq!(app.saved_method_captures(&t), 1);
    assert_eq!(app.count("SELECT count(*) AS n FROM payment_attempts WHERE channel = 'token'").await, 1);
    assert!(renewal["gateway_transaction_id"].as_str().is_some_and(|tx| !tx.is_empty()));
    app.assert_ledger_balanced().await;
    (app, t, customer)
}

/// The renewal's charge requests at the provider: (attempt id, idempotency key) each.
fn renewal_requests(app: &TestApp, t: &Tenant) -> Vec<(String, String)> {
    match t.gateway {
        Gw::CloudPayments => app
            .sim
            .transactions()
            .into_iter()
            .filter(|x| x.tr_initiator_code.is_some())
            .map(|x| (x.invoice_id.unwrap_or_default(), x.request_id.unwrap_or_default()))
            .collect(),
        Gw::YooKassa => app
            .yk
            .payments()
            .into_iter()
            .filter(|p| p.autopay)
            .map(|p| (p.metadata["attempt_id"].as_str().unwrap_or_default().to_owned(), p.idempotence_key))
            .collect(),
    }
}

async fn a_timeout_after_the_charge_is_reconciled_not_retried(gw: Gw) {
    let (app, t, _) = renew_with(gw, ChargeScript::TimeoutAfterCharge).await;
    match gw {
        Gw::CloudPayments => assert_eq!(app.sim.charge_requests(), 1, "found by payments/find: never re-sent"),
        // The checkout, the charge, and its re-send under the same key.
        Gw::YooKassa => assert!(app.yk.payment_requests() >= 3, "re-sent under the same key"),
    }
    assert_eq!(renewal_requests(&app, &t).len(), 1, "one charge at the provider");
}

async fn a_5xx_after_the_charge_is_reconciled_not_retried(gw: Gw) {
    let (app, t, _) = renew_with(gw, ChargeScript::ErrorAfterCharge).await;
    if gw == Gw::CloudPayments {
        assert_eq!(app.sim.charge_requests(), 1);
    }
    assert_eq!(renewal_requests(&app, &t).len(), 1, "one charge at the provider");
}

async fn a_5xx_before_the_charge_resends_the_same_attempt(gw: Gw) {
    let (app, t, _) = renew_with(gw, ChargeScript::ErrorBeforeCharge).await;
    assert_eq!(app.charge_requests(&t), 2 + u64::from(gw == Gw::YooKassa), "unknown to the provider: sent again");
    let requests = renewal_requests(&app, &t);
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].0, requests[0].1, "the same attempt, its id as the idempotency key");
}

async fn a_timeout_before_the_charge_resends_the_same_attempt(gw: Gw) {
    let (app, t, _) = renew_with(gw, ChargeScript::TimeoutBeforeCharge).await;
    assert_eq!(renewal_requests(&app, &t).len(), 1);
}

fn renewal_captures(app: &TestApp) -> Vec<billing_tests::cloudpayments::Transaction> {
    app.sim.transactions().into_iter().filter(|t| t.tr_initiator_code.is_some() && t.status == "Completed").collect()
}

#[tokio::test]
async fn a_408_is_an_unknown_outcome_not_a_decline() {
    let app = TestApp::with_worker().await;
    app.sim.set_request_dedup(false);
    let t = orbita(&app, json!({})).await;
    let (customer, _) = bought_monthly(&app, &t, "unknown-1", "2026-03-10T09:00:00Z").await;
    app.sim.script_token(&CloudPaymentsSim::token_for(CARD_OK), &[TokenScript::BusyBeforeCharge]);
    app.advance_to("2026-04-10T09:00:00Z").await;
    assert_eq!(app.sim.captures_for_account(&customer), 2);
    assert_eq!(app.sim.charge_requests(), 2, "reconciled, then the same attempt sent again");
    assert_eq!(renewal_captures(&app).len(), 1);
    assert_eq!(app.count("SELECT count(*) AS n FROM payment_attempts WHERE status = 'failed'").await, 0);
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
