//! Faults found when the service was driven from outside (issue 10), each kept as
//! the input that exposed it: a whole-number unit price that was never billed, a
//! merchant-side gateway refusal that expired paying customers, and a hard decline
//! that ended a subscription before the customer could pay.

use std::time::Duration;

use billing_tests::cloudpayments::{CARD_OK, CloudPaymentsSim, TokenScript};
use reqwest::Method;
use serde_json::{Value, json};

use crate::renewals::{bought_monthly, orbita, orbita_on, payments_of};
use crate::support::{Gw, Tenant, TestApp};

crate::on_both_gateways!(credentials_refused_for_a_renewal_never_suspend_it_and_one_charge_captures_it);

async fn sub(app: &TestApp, t: &Tenant, id: &str) -> Value {
    app.get(t, &format!("/v1/subscriptions/{id}")).await.expect(200)
}

fn statuses(sub: &Value) -> Vec<String> {
    sub["history"].as_array().unwrap().iter().map(|h| h["to"].as_str().unwrap().to_owned()).collect()
}

fn scheduled_charges(app: &TestApp) -> Vec<billing_tests::cloudpayments::Transaction> {
    app.sim.transactions().into_iter().filter(|t| t.tr_initiator_code.is_some()).collect()
}

/// Waits (up to a minute on a loaded machine) until `queue` has `n` open dead letters.
pub(crate) async fn dead_letters(app: &TestApp, queue: &str, n: usize) -> Vec<Value> {
    let mut dead = Value::Null;
    for _ in 0..1200 {
        dead = app.admin(Method::GET, &format!("/v1/admin/dead-letters?queue={queue}"), None).await.expect(200);
        if dead["data"].as_array().unwrap().len() == n {
            return dead["data"].as_array().unwrap().clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("expected {n} dead letters in {queue}: {dead}");
}

#[tokio::test]
async fn a_whole_unit_price_is_shown_with_two_decimals_and_billed() {
    let app = TestApp::with_worker().await;
    let t = app.tenant("Alfa CRM", "Europe/Moscow", json!({"renewal_notice_days": 0})).await;
    // Alfa 5.8: active clients above the tariff are recalculated; 20.00 each.
    let created = app
        .post(
            &t,
            "/v1/plans",
            json!({
                "code": "CLIENTS_100", "name": "До 100 клиентов", "price": {"value": "2000.00", "currency": "RUB"},
                "period": {"unit": "month", "count": 1}, "auto_renew": true,
                "quotas": {"active_clients": {"limit": 100, "mode": "overage", "kind": "gauge",
                           "unit_price": {"value": "20.00", "currency": "RUB"}}}
            }),
        )
        .await
        .expect(201);
    let shown = app.get(&t, "/v1/plans/CLIENTS_100").await.expect(200);
    assert_eq!(shown["quotas"]["active_clients"]["unit_price"], json!({"value": "20.00", "currency": "RUB"}));
    assert_eq!(shown, created, "a plan reads back exactly as it was accepted");

    let (customer, id) = {
        app.set_clock("2026-03-10T09:00:00Z").await;
        let c = app.customer(&t, "alfa-20").await;
        let bought = app.purchase(&t, &c, "CLIENTS_100").await;
        assert_eq!(app.pay(&bought, CARD_OK).await.status, "Completed");
        (c, bought["subscription"]["id"].as_str().unwrap().to_owned())
    };
    app.set_clock("2026-03-25T09:00:00Z").await;
    let levels =
        [("a1", 110, "2026-03-12T09:00:00Z"), ("a2", 120, "2026-03-18T09:00:00Z"), ("a3", 95, "2026-03-24T09:00:00Z")];
    let events: Vec<Value> = levels
        .iter()
        .map(|(e, n, at)| json!({"event_id": e, "customer_id": customer, "metric": "active_clients", "quantity": n, "occurred_at": at}))
        .collect();
    let accepted = app.post(&t, "/v1/usage", json!({"events": events})).await.expect(200);
    assert_eq!(accepted["accepted"], 3);

    app.advance_to("2026-04-10T09:00:00Z").await;
    let renewal = payments_of(&app, &t, &customer).await.into_iter().find(|p| p["kind"] == "renewal").unwrap();
    assert_eq!(renewal["status"], "succeeded");
    // 2000.00 + (120 - 100) x 20.00.
    assert_eq!(renewal["amount"]["value"], "2400.00");
    let overage = &renewal["lines"][1];
    assert_eq!((overage["metric"].as_str(), overage["quantity"].as_i64()), (Some("active_clients"), Some(20)));
    assert_eq!(overage["unit_price"], json!({"value": "20.00", "currency": "RUB"}));
    assert_eq!(overage["amount"]["value"], "400.00");
    assert_eq!(sub(&app, &t, &id).await["current_period_start"], "2026-04-10T09:00:00Z");
    let captured = scheduled_charges(&app);
    assert_eq!(captured.len(), 1);
    assert_eq!(captured[0].amount.to_string(), "2400.00", "the provider charged the overage too");
    app.assert_ledger_balanced().await;
}

async fn credentials_refused_for_a_renewal_never_suspend_it_and_one_charge_captures_it(gw: Gw) {
    let app = TestApp::with_worker().await;
    let policy = json!({"grace_period_hours": 0, "dunning_retry_days": [1, 3, 5], "renewal_notice_days": 0});
    let t = orbita_on(&app, gw, policy).await;
    let (customer, id) = bought_monthly(&app, &t, "creds-1", "2026-03-01T09:00:00Z").await;
    // The merchant rotates the API secret in the provider's dashboard and forgets us.
    match gw {
        Gw::CloudPayments => app.sim.rotate_secret(&t.public_id, "rotated-secret-2"),
        Gw::YooKassa => app.yk.rotate_secret(&t.public_id, "rotated-secret-2"),
    }

    app.set_clock("2026-04-01T09:00:00Z").await;
    let dead = dead_letters(&app, "billing.renewals", 1).await;
    assert!(dead[0]["reason"].as_str().unwrap().contains("refused the merchant's"), "{}", dead[0]);
    assert!(app.saved_method_charges(&t).is_empty(), "nothing was charged");
    // Refused for the merchant, not declined for the customer: access goes on.
    let s = sub(&app, &t, &id).await;
    assert_eq!(s["status"], "active");
    assert_eq!(app.get(&t, &format!("/v1/customers/{customer}/entitlements")).await.expect(200)["access"], true);
    assert_eq!(app.count("SELECT count(*) AS n FROM payment_attempts WHERE status = 'refused'").await, 1);
    assert_eq!(app.count("SELECT count(*) AS n FROM payment_methods WHERE revoked_at IS NOT NULL").await, 0);
    let metrics = app.http.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("billing_provider_refusals_total") && l.contains(&t.id)),
        "the operator sees the refusals"
    );
    // Days pass while nobody looks: the dunning window would have ended by now.
    app.set_clock("2026-04-08T09:00:00Z").await;
    assert_eq!(sub(&app, &t, &id).await["status"], "active");

    // The operator puts the new secret in and replays the dead letter.
    app.admin(
        Method::PATCH,
        &format!("/v1/admin/tenants/{}", t.id),
        Some(&json!({"gateway": {"api_secret": "rotated-secret-2"}})),
    )
    .await
    .expect(200);
    let replayed =
        app.admin(Method::POST, "/v1/admin/dead-letters/billing.renewals/replay", Some(&json!({}))).await.expect(200);
    assert_eq!(replayed["replayed"], 1);
    app.settle().await;

    let s = sub(&app, &t, &id).await;
    assert_eq!(s["status"], "active");
    assert_eq!(s["current_period_start"], "2026-04-01T09:00:00Z", "access never stopped: the anchor is kept");
    assert_eq!(s["current_period_end"], "2026-05-01T09:00:00Z");
    assert_eq!(statuses(&s), ["pending_payment", "active", "active"], "never past_due, suspended or expired");
    let charges = app.saved_method_charges(&t);
    assert_eq!(charges.len(), 1, "exactly one charge captures the renewal");
    assert!(charges[0].0, "captured");
    let renewals: Vec<Value> =
        payments_of(&app, &t, &customer).await.into_iter().filter(|p| p["kind"] == "renewal").collect();
    assert_eq!(renewals.len(), 1);
    assert_eq!(renewals[0]["status"], "succeeded");
    assert_eq!(
        app.count("SELECT count(*) AS n FROM payment_attempts WHERE channel = 'token'").await,
        1,
        "the same attempt was re-sent"
    );
    let events = app.event_types(&t).await;
    for never in ["payment.failed", "subscription.past_due", "subscription.suspended", "subscription.expired"] {
        assert!(!events.iter().any(|e| e == never), "{never} in {events:?}");
    }
    assert_eq!(events.iter().filter(|e| *e == "subscription.renewed").count(), 1);
    app.assert_ledger_balanced().await;
}

const EXPIRED_CARD: TokenScript = TokenScript::Decline { reason_code: 5054 };

/// Orbita's dunning (grace 0, retries on days 1, 3 and 5, then expire) and a
/// renewal on 2026-04-01 declined for an expired card.
async fn hard_declined(app: &TestApp, external_id: &str) -> (Tenant, String) {
    let t =
        orbita(app, json!({"grace_period_hours": 0, "dunning_retry_days": [1, 3, 5], "after_last_retry": "expire"}))
            .await;
    let (_customer, id) = bought_monthly(app, &t, external_id, "2026-03-01T09:00:00Z").await;
    app.sim.script_token(&CloudPaymentsSim::token_for(CARD_OK), &[EXPIRED_CARD]);
    app.advance_to("2026-04-01T09:00:00Z").await;
    let s = sub(app, &t, &id).await;
    assert_eq!(s["status"], "suspended", "grace 0: no access");
    assert_eq!(s["next_retry_at"], Value::Null, "a hard decline stops the automatic retries");
    assert_eq!(s["dunning_ends_at"], "2026-04-06T09:00:00Z", "but the window stays as the schedule set it");
    assert_eq!(
        app.count("SELECT count(*) AS n FROM payment_methods WHERE revoked_at IS NOT NULL AND revoked_reason = '5054'")
            .await,
        1
    );
    (t, id)
}

#[tokio::test]
async fn after_a_hard_decline_the_customer_has_until_the_window_ends_to_pay() {
    let app = TestApp::with_worker().await;
    let (t, id) = hard_declined(&app, "hard-pays").await;
    app.advance_to("2026-04-03T09:00:00Z").await;
    assert_eq!(sub(&app, &t, &id).await["status"], "suspended");
    // Day 2: the customer pays by hand with a new card.
    let paid = app.post(&t, &format!("/v1/subscriptions/{id}/pay"), json!({"pay_with": "card"})).await.expect(200);
    assert_eq!(paid["payment"]["amount"]["value"], "1990.00");
    assert_eq!(app.pay(&paid, "4111111111111111").await.status, "Completed");
    app.settle().await;
    let s = sub(&app, &t, &id).await;
    assert_eq!(s["status"], "active");
    assert_eq!(s["current_period_start"], "2026-04-03T09:00:00Z", "a new period from the payment");
    assert_eq!(s["current_period_end"], "2026-05-03T09:00:00Z");
    assert_eq!(s["dunning_ends_at"], Value::Null);
    app.advance_to("2026-04-07T09:00:00Z").await;
    assert_eq!(sub(&app, &t, &id).await["status"], "active");
    assert_eq!(scheduled_charges(&app).len(), 1, "no automatic charge after the decline");
}

#[tokio::test]
async fn after_a_hard_decline_a_customer_who_never_pays_expires_when_the_window_ends() {
    let app = TestApp::with_worker().await;
    let (t, id) = hard_declined(&app, "hard-never").await;
    app.advance_to("2026-04-06T08:59:00Z").await;
    assert_eq!(sub(&app, &t, &id).await["status"], "suspended", "still time to pay on day 5");
    app.advance_to("2026-04-06T09:00:00Z").await;
    let s = sub(&app, &t, &id).await;
    assert_eq!(s["status"], "expired");
    assert_eq!(s["history"].as_array().unwrap().last().unwrap()["cause"], "dunning_exhausted");
    assert_eq!(scheduled_charges(&app).len(), 1, "no automatic charge after the decline");
    let events = app.event_types(&t).await;
    assert_eq!(events.iter().filter(|e| *e == "subscription.expired").count(), 1);
}

#[tokio::test]
async fn an_approved_refund_refused_for_the_merchant_stays_processing_and_is_paid_once_after_the_fix() {
    let mut app = TestApp::spawn().await;
    // The refund queue's ~10-hour ladder compressed to well under a second.
    app.start_worker_with(&[("BILLING_RETRY_DELAY_DIVISOR", "100000")]);
    let t = crate::refunds::whatsmonster(&app).await;
    let customer = app.customer(&t, "refund-creds").await;
    let bought = app.purchase(&t, &customer, "PRO").await;
    let paid = app.pay(&bought, CARD_OK).await;
    app.settle().await;
    app.sim.rotate_secret(&t.public_id, "rotated-secret-3");
    let body = json!({"payment_id": bought["payment"]["id"], "reason": "unused"});
    let refund = app.post(&t, "/v1/refunds", body).await.expect(201);
    assert_eq!(refund["status"], "approved");

    let dead = dead_letters(&app, "billing.refunds", 1).await;
    assert!(dead[0]["reason"].as_str().unwrap().contains("payments/refund"), "{}", dead[0]);
    let listed = app.get(&t, "/v1/refunds").await.expect(200);
    assert_eq!(listed["data"][0]["status"], "processing", "not failed: the customer was refused nothing");
    assert!(app.sim.refunds().is_empty());
    assert!(!app.event_types(&t).await.iter().any(|e| e == "refund.failed"));

    app.admin(
        Method::PATCH,
        &format!("/v1/admin/tenants/{}", t.id),
        Some(&json!({"gateway": {"api_secret": "rotated-secret-3"}})),
    )
    .await
    .expect(200);
    app.admin(Method::POST, "/v1/admin/dead-letters/billing.refunds/replay", Some(&json!({}))).await.expect(200);
    app.settle().await;
    let listed = app.get(&t, "/v1/refunds").await.expect(200);
    assert_eq!(listed["data"][0]["status"], "succeeded");
    assert_eq!(app.sim.refunds().len(), 1, "refunded once");
    assert_eq!(app.sim.refunded_of(paid.transaction_id).to_string(), "1390.00");
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_receipt_whose_atol_login_is_refused_stays_pending_and_registers_once_after_the_fix() {
    let mut app = TestApp::spawn().await;
    // The receipt queue's ~two-day ladder compressed to a couple of seconds.
    app.start_worker_with(&[("BILLING_RETRY_DELAY_DIVISOR", "100000")]);
    let fiscal = json!({"inn": "7704211201", "sno": "osn", "vat": "vat22", "settlement_sign": "full_payment",
        "payment_object": 4, "payment_address": "https://orbita.example.ru", "email": "billing@orbita.example.ru"});
    let t = app.fiscal_tenant("Orbita", json!({}), fiscal).await;
    app.plan_monthly(&t, "START", "1990.00").await;
    let tenant_path = format!("/v1/admin/tenants/{}", t.id);
    let password = |p: &str| json!({"fiscal": {"provider": {"password": p}}});
    app.admin(Method::PATCH, &tenant_path, Some(&password("mistyped"))).await.expect(200);
    let customer = app.customer(&t, "atol-creds").await;
    let bought = app.purchase(&t, &customer, "START").await;
    assert_eq!(app.pay(&bought, CARD_OK).await.status, "Completed");

    let dead = dead_letters(&app, "billing.receipts", 1).await;
    assert!(dead[0]["reason"].as_str().unwrap().contains("refused the merchant's"), "{}", dead[0]);
    let path = format!("/v1/receipts?payment_id={}", bought["payment"]["id"].as_str().unwrap());
    let receipt = app.get(&t, &path).await.expect(200)["data"][0].clone();
    assert_eq!((receipt["status"].as_str(), receipt["attempt"].as_i64()), (Some("pending"), Some(1)), "{receipt}");
    assert!(app.atol.documents().is_empty());
    assert!(!app.event_types(&t).await.iter().any(|e| e == "receipt.failed"));

    app.admin(Method::PATCH, &tenant_path, Some(&password("atol-pass"))).await.expect(200);
    app.admin(Method::POST, "/v1/admin/dead-letters/billing.receipts/replay", Some(&json!({}))).await.expect(200);
    app.settle().await;
    let receipt = app.get(&t, &path).await.expect(200)["data"][0].clone();
    assert_eq!((receipt["status"].as_str(), receipt["attempt"].as_i64()), (Some("registered"), Some(1)), "{receipt}");
    let docs = app.atol.documents();
    assert_eq!(docs.len(), 1, "registered once");
    assert_eq!(docs[0].external_id, format!("{}-1", receipt["id"].as_str().unwrap()));
}
