//! What only YooKassa has: unsigned notifications trusted by source address and
//! re-fetch, two-stage payments captured or cancelled by the service, declines by
//! `cancellation_details`, merchant-side cancellations, `202` and `pending`
//! answers, and tenant settings.

use billing_tests::yookassa::{CARD_OK, CardBehaviour, MethodScript};
use reqwest::Method;
use serde_json::{Value, json};

use crate::renewals::{bought_monthly, orbita_on, payments_of};
use crate::support::{Card, Gw, Tenant, TestApp};

async fn whatsmonster(app: &TestApp) -> Tenant {
    let t = app.tenant_on(Gw::YooKassa, "WhatsMonster", "Europe/Moscow", json!({})).await;
    app.plan_pro(&t).await;
    t
}

/// POSTs a notification to the service as if from YooKassa; answers (status, body).
async fn notify(app: &TestApp, t: &Tenant, body: &Value) -> (u16, Value) {
    let res = app.http.post(format!("{}/v1/webhooks/yookassa/{}", app.base, t.id)).json(body).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn succeeded(id: &str) -> Value {
    json!({"type": "notification", "event": "payment.succeeded",
           "object": {"id": id, "status": "succeeded", "paid": true, "amount": {"value": "1390.00", "currency": "RUB"}}})
}

#[tokio::test]
async fn a_notification_is_only_a_hint_acted_on_after_the_object_is_fetched() {
    let app = TestApp::spawn().await;
    let t = whatsmonster(&app).await;
    let customer = app.customer(&t, "yk-hint").await;
    let bought = app.purchase(&t, &customer, "PRO").await;
    let yk_payment = bought["payment"]["confirmation"]["payment_id"].as_str().unwrap().to_owned();

    // A forged "succeeded" for the real, still pending payment: the fetched object
    // says pending, so nothing is activated.
    let (status, body) = notify(&app, &t, &succeeded(&yk_payment)).await;
    assert_eq!((status, body), (200, json!({})));
    let sub = app.get(&t, &format!("/v1/subscriptions/{}", bought["subscription"]["id"].as_str().unwrap())).await;
    assert_eq!(sub.expect(200)["status"], "pending_payment");
    assert_eq!(app.count("SELECT count(*) AS n FROM gateway_events WHERE kind = 'payment.pending'").await, 1);
    assert_eq!(app.count("SELECT count(*) AS n FROM ledger_transactions").await, 0);

    // An object YooKassa does not know: refused, and stored raw for the operator.
    let (status, problem) = notify(&app, &t, &succeeded("2d1f6b1e-000f-5000-9000-1b68e7b15f3f")).await;
    assert_eq!((status, problem["code"].as_str()), (422, Some("unknown_object")), "{problem}");
    assert_eq!(
        app.count("SELECT count(*) AS n FROM gateway_events WHERE kind = 'unverified' AND outcome LIKE 'refused%'")
            .await,
        1
    );
    // Unreadable: 422, nothing stored.
    let (status, problem) = notify(&app, &t, &json!({"event": "payment.succeeded"})).await;
    assert_eq!((status, problem["code"].as_str()), (422, Some("invalid_notification")));

    // YooKassa cannot be asked right now: 503, so it delivers the notification again.
    app.yk.set_unreachable(&yk_payment, true);
    let (status, problem) = notify(&app, &t, &succeeded(&yk_payment)).await;
    assert_eq!((status, problem["code"].as_str()), (503, Some("dependency_unavailable")));
    app.yk.set_unreachable(&yk_payment, false);

    // The real payment: the customer pays, and the notification is acted on once.
    assert!(app.pay_by(&bought, Card::Ok).await.approved);
    for _ in 0..2 {
        assert_eq!(app.yk.resend_payment(&yk_payment).await.unwrap(), 200);
    }
    assert_eq!(app.count("SELECT count(*) AS n FROM gateway_events WHERE kind = 'payment.succeeded'").await, 1);
    assert_eq!(app.count("SELECT count(*) AS n FROM ledger_transactions").await, 1);
    assert_eq!(app.get(&t, &format!("/v1/customers/{customer}/entitlements")).await.expect(200)["access"], true);
}

#[tokio::test]
async fn notifications_from_outside_the_allowlist_are_refused_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let t = whatsmonster(&app).await;
    // The shop now trusts only one of YooKassa's published ranges: the test runner's
    // 127.0.0.1 is outside it.
    let patch = json!({"gateway": {"notification_ips": ["185.71.76.0/27"]}});
    let view = app.admin(Method::PATCH, &format!("/v1/admin/tenants/{}", t.id), Some(&patch)).await.expect(200);
    assert_eq!(view["gateway"]["kind"], "yookassa");
    assert!(view["gateway"].get("api_secret").is_none(), "secrets are never answered");
    let customer = app.customer(&t, "yk-ip").await;
    let bought = app.purchase(&t, &customer, "PRO").await;
    let yk_payment = bought["payment"]["confirmation"]["payment_id"].as_str().unwrap().to_owned();
    let paid = app.yk.confirm(bought["payment"]["confirmation"]["confirmation_token"].as_str().unwrap(), CARD_OK);
    let outcome = paid.await.unwrap();
    assert_eq!(outcome.notification_status, Some(401));
    let (status, problem) = notify(&app, &t, &succeeded(&yk_payment)).await;
    assert_eq!((status, problem["code"].as_str()), (401, Some("invalid_signature")));
    assert_eq!(app.count("SELECT count(*) AS n FROM gateway_events").await, 0);
    assert_eq!(app.get(&t, &format!("/v1/customers/{customer}/entitlements")).await.expect(200)["access"], false);
}

#[tokio::test]
async fn tenant_settings_are_validated_and_shown_without_secrets() {
    let app = TestApp::spawn().await;
    let body = |ips: Value| {
        json!({"name": "Y", "time_zone": "Europe/Moscow",
               "gateway": {"kind": "yookassa", "shop_id": "12345", "api_secret": "test_s", "notification_ips": ips}})
    };
    app.admin(Method::POST, "/v1/admin/tenants", Some(&body(json!(["185.71.76.0/33"]))))
        .await
        .problem(422, "validation_failed");
    app.admin(Method::POST, "/v1/admin/tenants", Some(&body(json!(["not-an-ip"]))))
        .await
        .problem(422, "validation_failed");
    assert_eq!(app.count("SELECT count(*) AS n FROM tenants").await, 0);
    let created = app
        .admin(Method::POST, "/v1/admin/tenants", Some(&body(json!(["77.75.156.11", "2a02:5180::/32"]))))
        .await
        .expect(201);
    let unchanged = json!({});
    let view = app
        .admin(Method::PATCH, &format!("/v1/admin/tenants/{}", created["id"].as_str().unwrap()), Some(&unchanged))
        .await;
    let gateway = view.expect(200)["gateway"].clone();
    assert_eq!(gateway["notification_ips"], json!(["77.75.156.11", "2a02:5180::/32"]));
    assert_eq!(gateway["shop_id"], "12345");
    assert!(gateway.get("api_secret").is_none());
}

#[tokio::test]
async fn a_declined_checkout_gives_no_access_and_names_the_reason() {
    let app = TestApp::spawn().await;
    let t = whatsmonster(&app).await;
    let customer = app.customer(&t, "yk-declined").await;
    let bought = app.purchase(&t, &customer, "PRO").await;
    let payment_id = bought["payment"]["id"].as_str().unwrap();
    assert!(!app.pay_by(&bought, Card::InsufficientFunds).await.approved);
    let payment = app.get(&t, &format!("/v1/payments/{payment_id}")).await.expect(200);
    assert_eq!(payment["status"], "failed");
    assert_eq!(payment["failure_code"], "insufficient_funds");
    assert_eq!(payment["failure_reason"], "insufficient funds");
    assert_eq!(app.get(&t, &format!("/v1/customers/{customer}/entitlements")).await.expect(200)["access"], false);
    assert_eq!(app.event_types(&t).await, vec!["payment.failed"]);
    assert_eq!(app.count("SELECT count(*) AS n FROM payment_methods").await, 0, "a declined card is not saved");
    assert_eq!(app.count("SELECT count(*) AS n FROM ledger_transactions").await, 0);
}

#[tokio::test]
async fn a_payment_waiting_for_capture_is_captured_when_wanted_and_cancelled_when_not() {
    let app = TestApp::spawn().await;
    let t = whatsmonster(&app).await;
    app.yk.script_card("4111111111111111", CardBehaviour::Hold);

    // Wanted: the service captures it, and YooKassa's payment.succeeded activates.
    let customer = app.customer(&t, "yk-hold-1").await;
    let bought = app.purchase(&t, &customer, "PRO").await;
    let token = bought["payment"]["confirmation"]["confirmation_token"].as_str().unwrap().to_owned();
    let held = app.yk.confirm(&token, "4111111111111111").await.unwrap();
    assert_eq!((held.status.as_str(), held.notification_status), ("waiting_for_capture", Some(200)));
    app.settle().await;
    let captured = app.yk.payments().into_iter().find(|p| p.id == held.payment_id).unwrap();
    assert_eq!(captured.status, "succeeded", "captured by the service");
    wait_for_access(&app, &t, &customer, true).await;
    assert_eq!(app.count("SELECT count(*) AS n FROM ledger_transactions").await, 1);

    // No longer wanted (the pending purchase expired a day later): cancelled, never captured.
    let other = app.customer(&t, "yk-hold-2").await;
    let late = app.purchase(&t, &other, "PRO").await;
    app.set_clock("2026-03-06T09:00:01Z").await;
    let token = late["payment"]["confirmation"]["confirmation_token"].as_str().unwrap().to_owned();
    let held = app.yk.confirm(&token, "4111111111111111").await.unwrap();
    assert_eq!(held.notification_status, Some(200));
    let canceled = app.yk.payments().into_iter().find(|p| p.id == held.payment_id).unwrap();
    assert_eq!(canceled.status, "canceled");
    assert_eq!(canceled.cancellation, Some(("merchant".into(), "canceled_by_merchant".into())));
    assert_eq!(app.yk.captures_for_customer(&other), 0);
    wait_for_access(&app, &t, &other, false).await;
    assert_eq!(app.count("SELECT count(*) AS n FROM ledger_transactions").await, 1);
}

async fn wait_for_access(app: &TestApp, t: &Tenant, customer: &str, access: bool) {
    for _ in 0..100 {
        if app.get(t, &format!("/v1/customers/{customer}/entitlements")).await.expect(200)["access"] == access {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("access of {customer} never became {access}");
}

/// A renewal whose autopayment is answered as `script`; returns once it settled.
async fn renewal_answered(script: MethodScript) -> (TestApp, Tenant, String, Value) {
    let app = TestApp::with_worker().await;
    let policy = json!({"grace_period_hours": 0, "dunning_retry_days": [1], "renewal_notice_days": 0});
    let t = orbita_on(&app, Gw::YooKassa, policy).await;
    let (customer, id) = bought_monthly(&app, &t, "yk-renew", "2026-03-10T09:00:00Z").await;
    app.yk.set_notifications(false);
    app.yk.script_method(&app.saved_method(&customer).await, &[script]);
    app.advance_to("2026-04-10T09:00:00Z").await;
    let s = app.get(&t, &format!("/v1/subscriptions/{id}")).await.expect(200);
    (app, t, customer, s)
}

#[tokio::test]
async fn a_processing_or_pending_autopayment_is_settled_by_the_same_key_and_captured_once() {
    for script in [MethodScript::Processing, MethodScript::PendingUntilFetched] {
        let (app, t, customer, s) = renewal_answered(script.clone()).await;
        assert_eq!(s["status"], "active", "{script:?}: {s}");
        assert_eq!(s["current_period_start"], "2026-04-10T09:00:00Z");
        assert_eq!(app.yk.captures_for_customer(&customer), 2, "{script:?}: purchase + one renewal");
        let autopays: Vec<_> = app.yk.payments().into_iter().filter(|p| p.autopay).collect();
        assert_eq!(autopays.len(), 1, "{script:?}: one payment at YooKassa");
        let renewal = payments_of(&app, &t, &customer).await.into_iter().find(|p| p["kind"] == "renewal").unwrap();
        assert_eq!(renewal["gateway_transaction_id"], autopays[0].id.as_str());
        app.assert_ledger_balanced().await;
    }
}

#[tokio::test]
async fn a_cancellation_on_the_merchants_side_is_not_a_decline() {
    let app = TestApp::with_worker().await;
    let policy = json!({"grace_period_hours": 0, "dunning_retry_days": [1], "renewal_notice_days": 0});
    let t = orbita_on(&app, Gw::YooKassa, policy).await;
    let (customer, id) = bought_monthly(&app, &t, "yk-merchant", "2026-03-10T09:00:00Z").await;
    let method = app.saved_method(&customer).await;
    app.yk.script_method(&method, &[MethodScript::MerchantSide { reason: "expired_on_capture".into() }]);
    app.set_clock("2026-04-10T09:00:00Z").await;
    // Refused for the merchant: retried under the same key (which keeps answering the
    // cancellation) and dead-lettered for an operator; no dunning, the method stays.
    let dead = crate::faults::dead_letters(&app, "billing.renewals", 1).await;
    assert!(dead[0]["reason"].as_str().unwrap().contains("merchant"), "{}", dead[0]);
    let s = app.get(&t, &format!("/v1/subscriptions/{id}")).await.expect(200);
    assert_eq!(s["status"], "active", "{s}");
    assert_eq!(app.count("SELECT count(*) AS n FROM payment_attempts WHERE status = 'refused'").await, 1);
    assert_eq!(app.count("SELECT count(*) AS n FROM payment_methods WHERE revoked_at IS NOT NULL").await, 0);
    assert_eq!(app.yk.captures_for_customer(&customer), 1, "only the purchase");
    let events = app.event_types(&t).await;
    assert!(!events.iter().any(|e| e == "payment.failed" || e == "subscription.past_due"), "{events:?}");
}

#[tokio::test]
async fn a_refund_whose_answer_was_lost_is_sent_again_under_its_key_and_refunded_once() {
    let app = TestApp::with_worker().await;
    let t = crate::refunds::whatsmonster_on(&app, Gw::YooKassa).await;
    let customer = app.customer(&t, "yk-refund").await;
    let bought = app.purchase(&t, &customer, "PRO").await;
    let tx = app.pay_by(&bought, Card::Ok).await.transaction_id;
    // The first try refunds but its answer is an HTTP 500, and no notification comes.
    app.yk.fail_refunds(1);
    app.yk.set_notifications(false);
    let body = json!({"payment_id": bought["payment"]["id"], "reason": "unused",
                      "amount": {"value": "100.00", "currency": "RUB"}});
    let refund = app.post(&t, "/v1/refunds", body).await.expect(201);
    app.settle().await;
    let list = app.get(&t, "/v1/refunds").await.expect(200);
    let done = list["data"].as_array().unwrap().iter().find(|r| r["id"] == refund["id"]).cloned().unwrap();
    assert_eq!(done["status"], "succeeded", "{done}");
    let refunds = app.yk.refunds();
    assert_eq!(refunds.len(), 1, "one refund at YooKassa");
    assert_eq!(app.yk.refunded_of(&tx).to_string(), "100.00");
    let first_try = format!("{}-1", refund["id"].as_str().unwrap());
    assert_eq!(refunds[0].idempotence_key.as_deref(), Some(first_try.as_str()), "re-sent under the same key");
    app.assert_ledger_balanced().await;
}
