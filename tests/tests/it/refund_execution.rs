//! Approved refunds executed by the worker through the gateways' simulators
//! (CloudPayments `payments/refund`, YooKassa `POST /v3/refunds`) with their
//! idempotency keys, the provider's notification closing the refund,
//! reconciliation when it does not come, failures and retries, refunds made in the
//! dashboard, the ledger reversal, and access ending with a full refund.

use billing_tests::cloudpayments::{CARD_OK, RefundScript};
use serde_json::{Value, json};

use crate::refunds::{whatsmonster, whatsmonster_on};
use crate::support::{Card, Gw, Tenant, TestApp};

crate::on_both_gateways!(
    approved_refunds_are_paid_back_and_a_full_refund_ends_access,
    refunds_made_in_the_dashboard_are_recorded_once
);

/// A paid PRO purchase: (customer, subscription, payment, gateway transaction).
async fn paid(app: &TestApp, t: &Tenant, external_id: &str) -> (String, String, String, String) {
    let customer = app.customer(t, external_id).await;
    let bought = app.purchase(t, &customer, "PRO").await;
    let paid = app.pay_by(&bought, Card::Ok).await;
    assert!(paid.approved);
    let id = |v: &Value| v.as_str().unwrap().to_owned();
    (customer, id(&bought["subscription"]["id"]), id(&bought["payment"]["id"]), paid.transaction_id)
}

async fn request(app: &TestApp, t: &Tenant, payment: &str, amount: Option<&str>) -> Value {
    let mut body = json!({"payment_id": payment, "reason": "unused"});
    if let Some(a) = amount {
        body["amount"] = json!({"value": a, "currency": "RUB"});
    }
    let r = app.post(t, "/v1/refunds", body).await.expect(201);
    assert_eq!(r["status"], "approved", "{r}");
    r
}

async fn refund_of(app: &TestApp, t: &Tenant, id: &Value) -> Value {
    let list = app.get(t, "/v1/refunds").await.expect(200);
    list["data"].as_array().unwrap().iter().find(|r| r["id"] == *id).cloned().expect("refund listed")
}

async fn approved_refunds_are_paid_back_and_a_full_refund_ends_access(gw: Gw) {
    let app = TestApp::with_worker().await;
    let t = whatsmonster_on(&app, gw).await;
    let (_, sub, payment, tx) = paid(&app, &t, "rx-1").await;

    let first = request(&app, &t, &payment, Some("390.00")).await;
    app.settle().await;
    let done = refund_of(&app, &t, &first["id"]).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let key = format!("{}-1", first["id"].as_str().unwrap());
    match gw {
        Gw::CloudPayments => {
            let refunds = app.sim.refunds();
            assert_eq!(refunds.len(), 1);
            assert_eq!(refunds[0].payment_transaction_id.to_string(), tx);
            assert_eq!(refunds[0].amount.to_string(), "390.00");
            assert_eq!(refunds[0].request_id.as_deref(), Some(key.as_str()));
            assert_eq!(refunds[0].json_data, Some(json!({"refund_id": first["id"]})));
        }
        Gw::YooKassa => {
            let refunds = app.yk.refunds();
            assert_eq!(refunds.len(), 1);
            assert_eq!(refunds[0].payment_id, tx);
            assert_eq!(refunds[0].amount.to_string(), "390.00");
            assert_eq!(refunds[0].idempotence_key.as_deref(), Some(key.as_str()));
            assert_eq!(refunds[0].description, Some(format!("refund {}", first["id"].as_str().unwrap())));
            let ours = format!("SELECT count(*) AS n FROM refunds WHERE gateway_transaction_id = '{}'", refunds[0].id);
            assert_eq!(app.count(&ours).await, 1, "the refund object's id is the refund's transaction");
        }
    }
    let p = app.get(&t, &format!("/v1/payments/{payment}")).await.expect(200);
    assert_eq!(
        (p["status"].as_str(), p["refunded_amount"]["value"].as_str()),
        (Some("partially_refunded"), Some("390.00"))
    );
    // A partial refund leaves access alone.
    assert_eq!(app.get(&t, &format!("/v1/subscriptions/{sub}")).await.expect(200)["status"], "active");

    // The rest: the payment is refunded in full and the paid period ends now.
    let rest = request(&app, &t, &payment, None).await;
    assert_eq!(rest["amount"]["value"], "1000.00");
    app.settle().await;
    assert_eq!(refund_of(&app, &t, &rest["id"]).await["status"], "succeeded");
    assert_eq!(app.refunded_at_provider(&t, &tx).to_string(), "1390.00");
    let p = app.get(&t, &format!("/v1/payments/{payment}")).await.expect(200);
    assert_eq!((p["status"].as_str(), p["refunded_amount"]["value"].as_str()), (Some("refunded"), Some("1390.00")));
    let s = app.get(&t, &format!("/v1/subscriptions/{sub}")).await.expect(200);
    assert_eq!(s["status"], "expired", "{s}");
    // Nothing more can be refunded: the gateway is never asked for more than was captured.
    app.post(&t, "/v1/refunds", json!({"payment_id": payment, "reason": "unused"}))
        .await
        .problem(409, "payment_not_refundable");

    // The ledger reverses the revenue and returns the money through the gateway.
    app.assert_ledger_balanced().await;
    let revenue = app
        .count(&format!(
            "SELECT coalesce(sum(e.amount) * 100, 0)::bigint AS n FROM ledger_entries e JOIN ledger_accounts a ON a.id = e.account_id \
             WHERE a.tenant_id = '{}' AND a.code = 'revenue'",
            t.id
        ))
        .await;
    assert_eq!(revenue, 0);
    let types = app.event_types(&t).await;
    assert_eq!(types.iter().filter(|e| *e == "refund.succeeded").count(), 2);
    assert_eq!(types.iter().filter(|e| *e == "payment.refunded").count(), 2);
    let expired = app.events(&t).await.into_iter().find(|e| e["type"] == "subscription.expired").expect("expired");
    assert_eq!(expired["data"]["cause"], "refunded");
}

#[tokio::test]
async fn lost_answers_and_notifications_are_reconciled_and_failed_refunds_retried() {
    let app = TestApp::with_worker().await;
    let t = whatsmonster(&app).await;
    let (_, _, payment, tx) = paid(&app, &t, "rx-2").await;
    let tx: i64 = tx.parse().unwrap();

    // The refund happens but its answer is an HTTP 500 and no notification comes: the
    // same try is re-sent (same X-Request-ID, nothing refunded twice) and the refund's
    // transaction is then confirmed with payments/get.
    app.sim.set_refund_notifications(false);
    app.sim.script_refunds(&[RefundScript::ErrorAfterRefund]);
    let r = request(&app, &t, &payment, Some("100.00")).await;
    app.settle().await;
    assert_eq!(refund_of(&app, &t, &r["id"]).await["status"], "succeeded");
    assert_eq!(app.sim.refunds().len(), 1, "one refund at the gateway");
    assert_eq!(app.sim.refunded_of(tx).to_string(), "100.00");

    // The gateway refuses: the refund fails with the reason, and a retry is a new try.
    app.sim.set_refund_notifications(true);
    app.sim.script_refunds(&[RefundScript::Refuse { message: "Refunds are temporarily disabled".into() }]);
    let r2 = request(&app, &t, &payment, Some("200.00")).await;
    app.settle().await;
    let failed = refund_of(&app, &t, &r2["id"]).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(
        app.count("SELECT count(*) AS n FROM refunds WHERE failure_reason = 'Refunds are temporarily disabled'").await,
        1
    );
    assert!(app.event_types(&t).await.contains(&"refund.failed".to_owned()));
    let id = r2["id"].as_str().unwrap();
    let retried = app.post(&t, &format!("/v1/refunds/{id}/retry"), json!({})).await.expect(200);
    assert_eq!(retried["status"], "approved");
    app.post(&t, &format!("/v1/refunds/{}/retry", r["id"].as_str().unwrap()), json!({}))
        .await
        .problem(409, "refund_not_failed");
    app.settle().await;
    assert_eq!(refund_of(&app, &t, &r2["id"]).await["status"], "succeeded");
    let keys: Vec<Option<String>> = app.sim.refunds().iter().map(|r| r.request_id.clone()).collect();
    assert_eq!(keys.last().cloned().flatten(), Some(format!("{id}-2")));
    assert_eq!(app.sim.refunded_of(tx).to_string(), "300.00");
    let p = app.get(&t, &format!("/v1/payments/{payment}")).await.expect(200);
    assert_eq!(p["refunded_amount"]["value"], "300.00");
    app.assert_ledger_balanced().await;
}

async fn refunds_made_in_the_dashboard_are_recorded_once(gw: Gw) {
    let app = TestApp::with_worker().await;
    let t = whatsmonster_on(&app, gw).await;
    let (_, sub, payment, tx) = paid(&app, &t, "rx-3").await;
    let dashboard = app.refund_in_dashboard(&t, &tx, "500.00".parse().unwrap()).await;
    let refund_tx = &dashboard.id;
    app.settle().await;
    // The provider retries the notification: nothing changes.
    assert_eq!(app.resend_refund_notification(&t, &dashboard).await, 200);
    let list = app.get(&t, &format!("/v1/refunds?payment_id={payment}")).await.expect(200);
    let rows = list["data"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0]["reason"].as_str(), rows[0]["status"].as_str(), rows[0]["decision_code"].as_str()),
        (Some("dashboard"), Some("succeeded"), Some("made_in_dashboard"))
    );
    assert_eq!(rows[0]["amount"]["value"], "500.00");
    assert_eq!(
        app.count(&format!("SELECT count(*) AS n FROM refunds WHERE gateway_transaction_id = '{refund_tx}'")).await,
        1
    );
    let p = app.get(&t, &format!("/v1/payments/{payment}")).await.expect(200);
    assert_eq!(
        (p["status"].as_str(), p["refunded_amount"]["value"].as_str()),
        (Some("partially_refunded"), Some("500.00"))
    );
    assert_eq!(app.get(&t, &format!("/v1/subscriptions/{sub}")).await.expect(200)["status"], "active");
    assert_eq!(app.event_types(&t).await.iter().filter(|e| *e == "refund.succeeded").count(), 1);
    let refund_entries = app.count("SELECT count(*) AS n FROM ledger_transactions WHERE kind = 'refund'").await;
    assert_eq!(refund_entries, 1);
    // The rules now see only what is left.
    let rest = request(&app, &t, &payment, None).await;
    assert_eq!(rest["amount"]["value"], "890.00");
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_payment_captured_for_a_period_no_longer_wanted_is_refunded_at_once() {
    let app = TestApp::with_worker().await;
    let t = whatsmonster(&app).await;
    let (_, sub, _, _) = paid(&app, &t, "rx-4").await;
    // An extension is started, the subscription expires before it is paid, and the
    // merchant has Check switched off: the customer's late payment is captured with
    // nothing left to apply it to.
    let ext = app.post(&t, &format!("/v1/subscriptions/{sub}/extend"), json!({"pay_with": "card"})).await.expect(200);
    app.advance_to("2026-04-04T09:00:00Z").await;
    assert_eq!(app.get(&t, &format!("/v1/subscriptions/{sub}")).await.expect(200)["status"], "expired");
    app.sim.set_check_notifications(&t.public_id, false);
    let late = app.pay(&ext, CARD_OK).await;
    assert_eq!(late.status, "Completed");
    app.settle().await;
    let payment = ext["payment"]["id"].as_str().unwrap();
    let list = app.get(&t, &format!("/v1/refunds?payment_id={payment}")).await.expect(200);
    let rows = list["data"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0]["reason"].as_str(), rows[0]["decision_code"].as_str(), rows[0]["status"].as_str()),
        (Some("double_charge"), Some("unapplied_capture"), Some("succeeded"))
    );
    assert_eq!(rows[0]["amount"]["value"], "1390.00");
    assert_eq!(app.sim.refunded_of(late.transaction_id).to_string(), "1390.00");
    let p = app.get(&t, &format!("/v1/payments/{payment}")).await.expect(200);
    assert_eq!(p["status"], "refunded");
    assert_eq!(app.get(&t, &format!("/v1/subscriptions/{sub}")).await.expect(200)["status"], "expired");
    app.assert_ledger_balanced().await;
}
