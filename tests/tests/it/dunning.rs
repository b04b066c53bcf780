//! Failed renewals: past_due, grace, retries on the tenant's schedule (each a new
//! attempt), recovery, expiry, stay_suspended, hard declines, pay now.

use billing_tests::cloudpayments::{CARD_OK, CloudPaymentsSim, TokenScript};
use serde_json::{Value, json};

use crate::renewals::{bought_monthly, orbita, orbita_on, payments_of};
use crate::support::{Card, ChargeScript, Gw, Tenant, TestApp};

crate::on_both_gateways!(
    declines_retry_on_schedule_and_a_late_success_starts_a_new_period,
    a_hard_decline_stops_retries_and_revokes_the_card,
);

fn token() -> String {
    CloudPaymentsSim::token_for(CARD_OK)
}

const DECLINE: TokenScript = TokenScript::Decline { reason_code: 5051 };

async fn sub(app: &TestApp, t: &Tenant, id: &str) -> Value {
    app.get(t, &format!("/v1/subscriptions/{id}")).await.expect(200)
}

fn causes(sub: &Value) -> Vec<(String, String)> {
    sub["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["to"].as_str().unwrap().to_owned(), h["cause"].as_str().unwrap().to_owned()))
        .collect()
}

async fn renewal_charges(app: &TestApp) -> Vec<billing_tests::cloudpayments::Transaction> {
    app.sim.transactions().into_iter().filter(|t| t.tr_initiator_code.is_some()).collect()
}

async fn declines_retry_on_schedule_and_a_late_success_starts_a_new_period(gw: Gw) {
    let app = TestApp::with_worker().await;
    let policy = json!({"grace_period_hours": 0, "dunning_retry_days": [1, 3, 5], "renewal_notice_days": 0});
    let t = orbita_on(&app, gw, policy).await;
    let (customer, id) = bought_monthly(&app, &t, "dun-1", "2026-03-01T09:00:00Z").await;
    app.script_charges(&t, &customer, &[ChargeScript::SoftDecline, ChargeScript::SoftDecline, ChargeScript::Approve])
        .await;

    app.advance_to("2026-04-01T09:00:00Z").await;
    let s = sub(&app, &t, &id).await;
    assert_eq!(s["status"], "suspended", "grace 0: suspended at once");
    assert_eq!(s["next_retry_at"], "2026-04-02T09:00:00Z");
    assert_eq!(s["dunning_ends_at"], "2026-04-06T09:00:00Z");
    let c = causes(&s);
    assert_eq!(
        &c[c.len() - 2..],
        &[("past_due".into(), "renewal_declined".into()), ("suspended".into(), "grace_ended".into())]
    );
    assert_eq!(app.get(&t, &format!("/v1/customers/{customer}/entitlements")).await.expect(200)["access"], false);

    app.advance_to("2026-04-02T09:00:00Z").await;
    assert_eq!(sub(&app, &t, &id).await["next_retry_at"], "2026-04-04T09:00:00Z");
    app.advance_to("2026-04-03T23:00:00Z").await;
    assert_eq!(app.saved_method_charges(&t).len(), 2, "nothing between retries");

    app.advance_to("2026-04-04T09:00:00Z").await;
    let s = sub(&app, &t, &id).await;
    assert_eq!(s["status"], "active");
    // Access had been suspended: the new period starts at the payment, with a new anchor.
    assert_eq!(s["current_period_start"], "2026-04-04T09:00:00Z");
    assert_eq!(s["current_period_end"], "2026-05-04T09:00:00Z");
    assert_eq!(s["next_retry_at"], Value::Null);
    let charges = app.saved_method_charges(&t);
    assert_eq!(charges.iter().map(|c| c.0).collect::<Vec<_>>(), vec![false, false, true]);
    let invoices: std::collections::HashSet<_> = charges.iter().map(|c| c.1.clone()).collect();
    assert_eq!(invoices.len(), 3, "each retry is a new attempt with its own id");
    let renewal = payments_of(&app, &t, &customer).await.into_iter().find(|p| p["kind"] == "renewal").unwrap();
    assert_eq!((renewal["status"].as_str(), renewal["amount"]["value"].as_str()), (Some("succeeded"), Some("1990.00")));
    let events = app.event_types(&t).await;
    for e in ["subscription.past_due", "subscription.suspended", "subscription.reactivated"] {
        assert_eq!(events.iter().filter(|x| *x == e).count(), 1, "{e} in {events:?}");
    }
    assert_eq!(events.iter().filter(|x| *x == "payment.failed").count(), 2, "{events:?}");
    // The next renewal is a month after the new anchor.
    app.advance_to("2026-05-04T09:00:00Z").await;
    assert_eq!(sub(&app, &t, &id).await["current_period_start"], "2026-05-04T09:00:00Z");
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn recovery_within_grace_keeps_the_anchor_and_access() {
    let app = TestApp::with_worker().await;
    let t = orbita(&app, json!({"grace_period_hours": 72, "dunning_retry_days": [1]})).await;
    let (customer, id) = bought_monthly(&app, &t, "dun-2", "2026-03-01T09:00:00Z").await;
    app.sim.script_token(&token(), &[DECLINE]);
    app.advance_to("2026-04-01T09:00:00Z").await;
    let s = sub(&app, &t, &id).await;
    assert_eq!(s["status"], "past_due");
    assert_eq!(s["grace_until"], "2026-04-04T09:00:00Z");
    assert_eq!(
        app.get(&t, &format!("/v1/customers/{customer}/entitlements")).await.expect(200)["access"],
        true,
        "access during grace"
    );
    app.advance_to("2026-04-02T09:00:00Z").await;
    let s = sub(&app, &t, &id).await;
    assert_eq!(s["status"], "active");
    assert_eq!(s["current_period_start"], "2026-04-01T09:00:00Z", "anchor kept");
    assert_eq!(s["current_period_end"], "2026-05-01T09:00:00Z");
    assert_eq!(s["grace_until"], Value::Null);
}

#[tokio::test]
async fn exhausted_dunning_expires_and_nothing_is_charged_after() {
    let app = TestApp::with_worker().await;
    let t = orbita(&app, json!({"dunning_retry_days": [1, 3], "after_last_retry": "expire"})).await;
    let (customer, id) = bought_monthly(&app, &t, "dun-3", "2026-03-01T09:00:00Z").await;
    app.sim.script_token(&token(), &[DECLINE, DECLINE, DECLINE, TokenScript::Approve]);
    for at in ["2026-04-01T09:00:00Z", "2026-04-02T09:00:00Z", "2026-04-04T09:00:00Z"] {
        app.advance_to(at).await;
    }
    let s = sub(&app, &t, &id).await;
    assert_eq!(s["status"], "expired");
    assert_eq!(causes(&s).last().unwrap(), &("expired".to_owned(), "dunning_exhausted".to_owned()));
    app.advance_to("2026-07-01T09:00:00Z").await;
    assert_eq!(renewal_charges(&app).await.len(), 3, "no charge after expiry");
    assert_eq!(app.get(&t, &format!("/v1/customers/{customer}/entitlements")).await.expect(200)["access"], false);
    let events = app.event_types(&t).await;
    assert_eq!(events.iter().filter(|x| *x == "subscription.expired").count(), 1);
    // The customer can buy again.
    app.purchase(&t, &customer, "START").await;
}

#[tokio::test]
async fn stay_suspended_waits_for_the_customer_to_pay_now() {
    let app = TestApp::with_worker().await;
    let t = orbita(&app, json!({"dunning_retry_days": [1], "after_last_retry": "stay_suspended"})).await;
    let (customer, id) = bought_monthly(&app, &t, "dun-4", "2026-03-01T09:00:00Z").await;
    app.sim.script_token(&token(), &[DECLINE, DECLINE]);
    app.advance_to("2026-04-01T09:00:00Z").await;
    app.advance_to("2026-04-02T09:00:00Z").await;
    app.advance_to("2026-05-15T12:00:00Z").await;
    let s = sub(&app, &t, &id).await;
    assert_eq!(s["status"], "suspended");
    assert_eq!(s["dunning_ends_at"], Value::Null);
    assert_eq!(renewal_charges(&app).await.len(), 2);
    // Weeks later the customer pays with the saved card.
    let paid = app
        .post_idem(&t, &format!("/v1/subscriptions/{id}/pay"), "pay-1", json!({"pay_with": "saved_card"}))
        .await
        .expect(200);
    assert_eq!(paid["payment"]["kind"], "renewal");
    app.settle().await;
    let s = sub(&app, &t, &id).await;
    assert_eq!(s["status"], "active");
    assert_eq!(s["current_period_start"], "2026-05-15T12:00:00Z", "a new period from the payment");
    assert_eq!(s["current_period_end"], "2026-06-15T12:00:00Z");
    assert_eq!(app.sim.captures_for_account(&customer), 2);
    app.post(&t, &format!("/v1/subscriptions/{id}/pay"), json!({"pay_with": "saved_card"}))
        .await
        .problem(409, "nothing_to_pay");
}

async fn a_hard_decline_stops_retries_and_revokes_the_card(gw: Gw) {
    let app = TestApp::with_worker().await;
    let t = orbita_on(&app, gw, json!({"dunning_retry_days": [1, 3, 5], "after_last_retry": "stay_suspended"})).await;
    let (customer, id) = bought_monthly(&app, &t, "dun-5", "2026-03-01T09:00:00Z").await;
    app.script_charges(&t, &customer, &[ChargeScript::HardDecline]).await;
    app.advance_to("2026-04-01T09:00:00Z").await;
    app.advance_to("2026-04-10T09:00:00Z").await;
    let s = sub(&app, &t, &id).await;
    assert_eq!(s["status"], "suspended");
    assert_eq!(s["next_retry_at"], Value::Null);
    assert_eq!(app.saved_method_charges(&t).len(), 1, "expired card: no retries");
    let revoked = format!(
        "SELECT count(*) AS n FROM payment_methods WHERE revoked_at IS NOT NULL AND revoked_reason = '{}'",
        app.hard_decline_code(&t)
    );
    assert_eq!(app.count(&revoked).await, 1);
    app.post(&t, &format!("/v1/subscriptions/{id}/pay"), json!({"pay_with": "saved_card"}))
        .await
        .problem(422, "no_saved_card");
    // Paying by hand with a new card reactivates it.
    let paid = app.post(&t, &format!("/v1/subscriptions/{id}/pay"), json!({"pay_with": "card"})).await.expect(200);
    let widget = &paid["payment"]["confirmation"];
    if gw == Gw::CloudPayments {
        assert_eq!(widget["amount"], "1990.00");
        assert_ne!(widget["invoice_id"], paid["payment"]["id"], "the widget attempt has its own invoice id");
    }
    assert!(app.pay_by(&paid, Card::Ok).await.approved);
    app.settle().await;
    assert_eq!(app.captures_of(&t, &customer), 2, "the purchase and the payment by hand");
    let s = sub(&app, &t, &id).await;
    assert_eq!(s["status"], "active");
    assert_eq!(s["current_period_start"], "2026-04-10T09:00:00Z");
}

#[tokio::test]
async fn pay_now_during_grace_recovers_and_cancels_later_retries() {
    let app = TestApp::with_worker().await;
    let t = orbita(&app, json!({"grace_period_hours": 48, "dunning_retry_days": [2]})).await;
    let (_customer, id) = bought_monthly(&app, &t, "dun-6", "2026-03-01T09:00:00Z").await;
    app.sim.script_token(&token(), &[DECLINE]);
    app.advance_to("2026-04-01T09:00:00Z").await;
    assert_eq!(sub(&app, &t, &id).await["status"], "past_due");
    app.advance_to("2026-04-01T15:00:00Z").await;
    app.post(&t, &format!("/v1/subscriptions/{id}/pay"), json!({"pay_with": "saved_card"})).await.expect(200);
    app.settle().await;
    let s = sub(&app, &t, &id).await;
    assert_eq!(s["status"], "active");
    assert_eq!(s["current_period_start"], "2026-04-01T09:00:00Z", "still in grace: anchor kept");
    app.advance_to("2026-04-05T09:00:00Z").await;
    assert_eq!(renewal_charges(&app).await.len(), 2, "the scheduled retry was not made");
    app.post(&t, &format!("/v1/subscriptions/{id}/pay"), json!({"pay_with": "balance"}))
        .await
        .problem(409, "nothing_to_pay");
}
