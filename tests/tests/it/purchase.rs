//! Purchases on both gateways: a pending payment with the checkout's confirmation
//! (CloudPayments widget parameters, YooKassa's embedded-widget token), the
//! provider's capture activates with the right period, repeated notifications
//! change nothing, a second capture is a duplicate; CloudPayments' Fail gives no
//! access, one live subscription.

use billing_tests::cloudpayments::{CARD_INSUFFICIENT_FUNDS, CARD_OK};
use serde_json::json;

use crate::support::{Card, Gw, TestApp};

crate::on_both_gateways!(
    purchase_then_pay_gives_access_for_thirty_days,
    a_repeated_capture_notification_changes_nothing,
    a_second_capture_of_a_paid_invoice_is_recorded_as_a_duplicate,
);

async fn purchase_then_pay_gives_access_for_thirty_days(gw: Gw) {
    let app = TestApp::spawn().await;
    let t = app.tenant_on(gw, "WhatsMonster", "Europe/Moscow", json!({"upgrade_mode": "restart_with_credit"})).await;
    app.plan_pro(&t).await;
    let customer = app.customer(&t, "wm-user-1").await;

    let bought = app.purchase(&t, &customer, "PRO").await;
    let sub_id = bought["subscription"]["id"].as_str().unwrap().to_owned();
    let payment_id = bought["payment"]["id"].as_str().unwrap().to_owned();
    assert_eq!(bought["subscription"]["status"], "pending_payment");
    assert_eq!(bought["payment"]["status"], "pending");
    assert_eq!(bought["payment"]["kind"], "purchase");
    assert_eq!(bought["payment"]["amount"], json!({"value": "1390.00", "currency": "RUB"}));
    assert_eq!(bought["payment"]["expires_at"], "2026-03-06T09:00:00Z");
    assert_eq!(bought["payment"]["gateway"], if gw == Gw::YooKassa { "yookassa" } else { "cloudpayments" });
    let widget = &bought["payment"]["confirmation"];
    match gw {
        Gw::CloudPayments => {
            assert_eq!(widget["type"], "cloudpayments_widget");
            assert_eq!(widget["public_id"], t.public_id.as_str());
            assert_eq!(widget["invoice_id"], payment_id.as_str());
            assert_eq!(widget["account_id"], customer.as_str());
            assert_eq!(widget["amount"], "1390.00");
            assert_eq!(widget["currency"], "RUB");
            assert_eq!(widget["email"], "wm-user-1@example.ru");
            assert_eq!(widget["description"], "WhatsMonster: тариф PRO");
        }
        Gw::YooKassa => {
            // The payment exists at YooKassa, created under our attempt id.
            assert_eq!(widget["type"], "yookassa_widget");
            let at_provider = app.yk.payments();
            assert_eq!(at_provider.len(), 1);
            let p = &at_provider[0];
            assert_eq!(widget["payment_id"], p.id.as_str());
            assert_eq!(widget["confirmation_token"].as_str(), p.confirmation_token.as_deref());
            assert_eq!(
                (p.status.as_str(), p.amount.to_string().as_str(), p.currency.as_str()),
                ("pending", "1390.00", "RUB")
            );
            assert!(p.capture && p.save_payment_method, "one-stage, saving the card");
            assert_eq!(p.idempotence_key, payment_id, "Idempotence-Key = the attempt id");
            assert_eq!(p.metadata, json!({"attempt_id": payment_id, "customer_id": customer}));
            assert_eq!(p.description, "WhatsMonster: тариф PRO");
            // Reading the payment again answers the same confirmation (same key, no new payment).
            let again = app.get(&t, &format!("/v1/payments/{payment_id}")).await.expect(200);
            assert_eq!(&again["confirmation"], widget);
            assert_eq!(app.yk.payments().len(), 1);
        }
    }
    let ent = app.get(&t, &format!("/v1/customers/{customer}/entitlements")).await.expect(200);
    assert_eq!(ent["access"], false);

    // The customer pays ten minutes later: the period starts at the payment.
    app.set_clock("2026-03-05T09:10:00Z").await;
    let outcome = app.pay_by(&bought, Card::Ok).await;
    assert!(outcome.approved);

    let sub = app.get(&t, &format!("/v1/subscriptions/{sub_id}")).await.expect(200);
    assert_eq!(sub["status"], "active");
    assert_eq!(sub["plan"], "PRO");
    assert_eq!(sub["auto_renew"], false);
    assert_eq!(sub["current_period_start"], "2026-03-05T09:10:00Z");
    assert_eq!(sub["current_period_end"], "2026-04-04T09:10:00Z");
    assert_eq!(sub["next_charge_at"], serde_json::Value::Null, "manual plans are never charged automatically");
    assert_eq!(sub["paid_amount"]["value"], "1390.00");
    let history: Vec<_> = sub["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["to"].as_str().unwrap(), h["cause"].as_str().unwrap()))
        .collect();
    assert_eq!(history, vec![("pending_payment", "purchase"), ("active", "payment_succeeded")]);

    let payment = app.get(&t, &format!("/v1/payments/{payment_id}")).await.expect(200);
    assert_eq!(payment["status"], "succeeded");
    assert_eq!(payment["gateway_transaction_id"], outcome.transaction_id.as_str());
    assert_eq!(payment["captured_at"], "2026-03-05T09:10:00Z");
    assert_eq!(payment["period_start"], "2026-03-05T09:10:00Z");
    assert_eq!(payment["period_end"], "2026-04-04T09:10:00Z");
    assert_eq!(payment["confirmation"], serde_json::Value::Null);

    let ent = app.get(&t, &format!("/v1/customers/{customer}/entitlements")).await.expect(200);
    assert_eq!(ent["access"], true);
    assert_eq!(ent["subscription_id"], sub_id.as_str());
    assert_eq!(ent["plan"], "PRO");
    assert_eq!(ent["status"], "active");
    assert_eq!(ent["period_end"], "2026-04-04T09:10:00Z");
    assert_eq!(
        ent["metrics"]["messages"],
        json!({"limit": 100000, "used": 0, "peak": 0, "kind": "counter", "remaining": 100000, "mode": "overage", "access": true})
    );
    assert_eq!(ent["metrics"]["accounts"]["limit"], 10);

    // Access ends with the period (a manual plan: nothing renews it).
    app.set_clock("2026-04-04T09:09:59Z").await;
    assert_eq!(app.get(&t, &format!("/v1/customers/{customer}/entitlements")).await.expect(200)["access"], true);
    app.set_clock("2026-04-04T09:10:00Z").await;
    assert_eq!(app.get(&t, &format!("/v1/customers/{customer}/entitlements")).await.expect(200)["access"], false);

    assert_eq!(app.event_types(&t).await, vec!["payment.succeeded", "subscription.activated"]);
    let events = app.events(&t).await;
    assert_eq!(events[1]["data"]["subscription_id"], sub_id.as_str());
    assert_eq!(events[1]["data"]["current_period_end"], "2026-04-04T09:10:00Z");
    assert_eq!(events[0]["data"]["amount"]["value"], "1390.00");
    assert_eq!(events[0]["tenant_id"], t.id.as_str());
    assert_eq!(app.count("SELECT count(*) AS n FROM payment_methods").await, 1, "the card token is saved for renewals");
    if gw == Gw::YooKassa {
        assert_eq!(app.saved_method(&customer).await, outcome.transaction_id, "payment_method.id is saved");
    }
    app.assert_ledger_balanced().await;
    assert_eq!(app.account_total("revenue").await, "1390.00");
    assert_eq!(app.account_total("gateway_clearing").await, "-1390.00");
    assert_eq!(app.account_total("customer_balance").await, "0.00");
}

#[tokio::test]
async fn monthly_period_from_the_31st_ends_on_the_last_day_of_february() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Orbita", "Europe/Moscow", json!({"price_change_notice_days": 14})).await;
    app.plan_monthly(&t, "START", "1990.00").await;
    let customer = app.customer(&t, "orbita-1").await;
    app.set_clock("2026-01-31T10:00:00Z").await;
    let bought = app.purchase(&t, &customer, "START").await;
    app.pay(&bought, CARD_OK).await;
    let sub =
        app.get(&t, &format!("/v1/subscriptions/{}", bought["subscription"]["id"].as_str().unwrap())).await.expect(200);
    assert_eq!(sub["current_period_start"], "2026-01-31T10:00:00Z");
    assert_eq!(sub["current_period_end"], "2026-02-28T10:00:00Z");
    assert_eq!(sub["next_charge_at"], "2026-02-28T10:00:00Z", "auto-renew plans are charged at the period end");
}

#[tokio::test]
async fn declined_card_gives_no_access_and_another_card_can_still_pay() {
    let app = TestApp::spawn().await;
    let t = app.tenant("WhatsMonster", "Europe/Moscow", json!({})).await;
    app.plan_pro(&t).await;
    let customer = app.customer(&t, "wm-2").await;
    let bought = app.purchase(&t, &customer, "PRO").await;
    let payment_id = bought["payment"]["id"].as_str().unwrap();

    let outcome = app.pay(&bought, CARD_INSUFFICIENT_FUNDS).await;
    assert_eq!(outcome.status, "Declined");
    assert_eq!(outcome.deliveries.last().map(|d| (d.kind.as_str(), d.code)), Some(("fail", Some(0))));
    let payment = app.get(&t, &format!("/v1/payments/{payment_id}")).await.expect(200);
    assert_eq!(payment["status"], "failed");
    assert_eq!(payment["failure_reason"], "InsufficientFunds");
    assert_eq!(payment["failure_code"], "5051");
    let ent = app.get(&t, &format!("/v1/customers/{customer}/entitlements")).await.expect(200);
    assert_eq!(ent["access"], false);
    assert_eq!(ent["status"], "pending_payment");
    assert_eq!(app.event_types(&t).await, vec!["payment.failed"]);
    assert_eq!(app.count("SELECT count(*) AS n FROM ledger_transactions").await, 0, "no money moved");

    // The widget lets the customer retry the same invoice with another card.
    let outcome = app.pay(&bought, CARD_OK).await;
    assert_eq!(outcome.status, "Completed");
    let payment = app.get(&t, &format!("/v1/payments/{payment_id}")).await.expect(200);
    assert_eq!(payment["status"], "succeeded");
    assert_eq!(payment["failure_reason"], serde_json::Value::Null);
    assert_eq!(app.get(&t, &format!("/v1/customers/{customer}/entitlements")).await.expect(200)["access"], true);
    assert_eq!(app.event_types(&t).await, vec!["payment.failed", "payment.succeeded", "subscription.activated"]);
}

/// The provider's retry of the capture notification (CloudPayments Pay,
/// YooKassa `payment.succeeded`); answers its HTTP status.
async fn resend_capture(app: &TestApp, t: &crate::support::Tenant, tx: &str, paid_fields: &[(String, String)]) -> u16 {
    match t.gateway {
        Gw::CloudPayments => {
            let again = app.sim.resend(&t.public_id, "pay", paid_fields).await.unwrap();
            assert_eq!(again.code, Some(0));
            again.http_status
        }
        Gw::YooKassa => app.yk.resend_payment(tx).await.unwrap(),
    }
}

/// The fields of CloudPayments' Pay notification of `tx` (empty for YooKassa).
async fn pay_fields(app: &TestApp, bought: &serde_json::Value, gw: Gw) -> (String, Vec<(String, String)>) {
    match gw {
        Gw::CloudPayments => {
            let outcome = app.pay(bought, CARD_OK).await;
            (outcome.transaction_id.to_string(), outcome.fields)
        }
        Gw::YooKassa => (app.pay_by(bought, Card::Ok).await.transaction_id, Vec::new()),
    }
}

async fn a_repeated_capture_notification_changes_nothing(gw: Gw) {
    let app = TestApp::spawn().await;
    let t = app.tenant_on(gw, "WhatsMonster", "Europe/Moscow", json!({})).await;
    app.plan_pro(&t).await;
    let customer = app.customer(&t, "wm-3").await;
    let bought = app.purchase(&t, &customer, "PRO").await;
    let (tx, fields) = pay_fields(&app, &bought, gw).await;
    let events_before = app.event_types(&t).await;

    for _ in 0..3 {
        assert_eq!(resend_capture(&app, &t, &tx, &fields).await, 200);
    }
    assert_eq!(app.count("SELECT count(*) AS n FROM payments").await, 1);
    assert_eq!(app.count("SELECT count(*) AS n FROM ledger_transactions").await, 1);
    let kind = if gw == Gw::YooKassa { "payment.succeeded" } else { "pay" };
    assert_eq!(app.count(&format!("SELECT count(*) AS n FROM gateway_events WHERE kind = '{kind}'")).await, 1);
    assert_eq!(app.event_types(&t).await, events_before);
    let sub =
        app.get(&t, &format!("/v1/subscriptions/{}", bought["subscription"]["id"].as_str().unwrap())).await.expect(200);
    assert_eq!(sub["history"].as_array().unwrap().len(), 2);
}

async fn a_second_capture_of_a_paid_invoice_is_recorded_as_a_duplicate(gw: Gw) {
    let app = TestApp::spawn().await;
    let t = app.tenant_on(gw, "WhatsMonster", "Europe/Moscow", json!({})).await;
    app.plan_pro(&t).await;
    let customer = app.customer(&t, "wm-4").await;
    let bought = app.purchase(&t, &customer, "PRO").await;
    let (tx, fields) = pay_fields(&app, &bought, gw).await;
    // The customer pays the same order a second time (another transaction).
    match gw {
        Gw::CloudPayments => {
            let mut second = fields.clone();
            for (k, v) in second.iter_mut() {
                if k == "TransactionId" {
                    *v = (tx.parse::<i64>().unwrap() + 7).to_string();
                }
            }
            assert_eq!(resend_capture(&app, &t, "", &second).await, 200);
        }
        Gw::YooKassa => {
            app.yk.duplicate_capture(&tx).await.unwrap();
        }
    }
    let payments = app.get(&t, &format!("/v1/payments?customer_id={customer}")).await.expect(200);
    let data = payments["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let original = bought["payment"]["id"].as_str().unwrap();
    let dup = data.iter().find(|p| p["id"] != original).unwrap();
    assert_eq!(dup["duplicate_of"], original);
    assert_eq!(dup["status"], "succeeded");
    assert_eq!(dup["amount"]["value"], "1390.00");
    // One subscription, one activation; the duplicate money sits on the customer's balance
    // and its refund is approved at once, outside the refund rules (the tenant has none).
    assert_eq!(app.count("SELECT count(*) AS n FROM subscriptions").await, 1);
    assert_eq!(
        app.event_types(&t).await,
        vec!["payment.succeeded", "subscription.activated", "payment.succeeded", "refund.requested", "refund.approved"]
    );
    let refunds = app.get(&t, &format!("/v1/refunds?payment_id={}", dup["id"].as_str().unwrap())).await.expect(200);
    let refund = &refunds["data"][0];
    assert_eq!(
        (refund["status"].as_str(), refund["decision_code"].as_str()),
        (Some("approved"), Some("duplicate_capture"))
    );
    assert_eq!(
        (refund["reason"].as_str(), refund["amount"]["value"].as_str()),
        (Some("double_charge"), Some("1390.00"))
    );
    assert_eq!(app.account_total("customer_balance").await, "1390.00");
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn one_live_subscription_per_customer() {
    let app = TestApp::spawn().await;
    let t = app.tenant("WhatsMonster", "Europe/Moscow", json!({})).await;
    app.plan_pro(&t).await;
    let customer = app.customer(&t, "wm-5").await;
    let first = app.purchase(&t, &customer, "PRO").await;
    // An abandoned checkout is superseded by a new purchase...
    let second = app.purchase(&t, &customer, "PRO").await;
    let old =
        app.get(&t, &format!("/v1/subscriptions/{}", first["subscription"]["id"].as_str().unwrap())).await.expect(200);
    assert_eq!(old["status"], "expired");
    assert_eq!(old["history"][1]["cause"], "superseded");
    let old_payment =
        app.get(&t, &format!("/v1/payments/{}", first["payment"]["id"].as_str().unwrap())).await.expect(200);
    assert_eq!(
        (old_payment["status"].as_str(), old_payment["failure_reason"].as_str()),
        (Some("failed"), Some("superseded"))
    );
    // ...and its widget can no longer be paid: Check answers 13.
    let outcome = app.pay(&first, CARD_OK).await;
    assert_eq!((outcome.status.as_str(), outcome.check_code), ("Rejected", Some(13)));

    app.pay(&second, CARD_OK).await;
    let third = app.post(&t, "/v1/subscriptions", json!({"customer_id": customer, "plan": "PRO"})).await;
    let problem = third.problem(409, "subscription_exists");
    assert!(problem["detail"].as_str().unwrap().contains(second["subscription"]["id"].as_str().unwrap()));
    assert_eq!(app.count("SELECT count(*) AS n FROM subscriptions WHERE status = 'active'").await, 1);
}

#[tokio::test]
async fn a_purchase_after_a_manual_period_ended_is_allowed() {
    let app = TestApp::spawn().await;
    let t = app.tenant("WhatsMonster", "Europe/Moscow", json!({})).await;
    app.plan_pro(&t).await;
    let customer = app.customer(&t, "wm-6").await;
    let first = app.purchase(&t, &customer, "PRO").await;
    app.pay(&first, CARD_OK).await;
    app.set_clock("2026-04-04T09:00:01Z").await;
    let second = app.purchase(&t, &customer, "PRO").await;
    assert_eq!(second["subscription"]["status"], "pending_payment");
    let old =
        app.get(&t, &format!("/v1/subscriptions/{}", first["subscription"]["id"].as_str().unwrap())).await.expect(200);
    assert_eq!(old["status"], "expired");
    assert_eq!(old["history"].as_array().unwrap().last().unwrap()["cause"], "period_ended");
    assert!(app.event_types(&t).await.contains(&"subscription.expired".to_owned()));
}

#[tokio::test]
async fn an_invoice_purchase_without_requisites_is_refused_whole() {
    let app = TestApp::spawn().await;
    let t = app.tenant("WhatsMonster", "Europe/Moscow", json!({})).await;
    app.plan_pro(&t).await;
    let customer = app.customer(&t, "wm-7").await;
    // Invoices need requisites and a legal entity: refused whole, nothing written.
    app.post(&t, "/v1/subscriptions", json!({"customer_id": customer, "plan": "PRO", "pay_with": "invoice"}))
        .await
        .problem(422, "requisites_missing");
    assert_eq!(app.count("SELECT count(*) AS n FROM subscriptions").await, 0, "nothing written");
}

#[tokio::test]
async fn archived_plans_cannot_be_bought() {
    let app = TestApp::spawn().await;
    let t = app.tenant("WhatsMonster", "Europe/Moscow", json!({})).await;
    app.plan_pro(&t).await;
    let customer = app.customer(&t, "wm-8").await;
    let archived = app.post(&t, "/v1/plans/PRO/archive", json!({})).await.expect(200);
    assert_eq!(archived["archived"], true);
    app.post(&t, "/v1/subscriptions", json!({"customer_id": customer, "plan": "PRO"}))
        .await
        .problem(409, "plan_archived");
    app.post(&t, "/v1/subscriptions", json!({"customer_id": customer, "plan": "NOPE"}))
        .await
        .problem(404, "plan_not_found");
    let other = uuid::Uuid::new_v4();
    app.post(&t, "/v1/subscriptions", json!({"customer_id": other, "plan": "PRO"}))
        .await
        .problem(404, "customer_not_found");
}

#[tokio::test]
async fn check_refuses_wrong_amount_account_invoice_and_expired_payments() {
    let app = TestApp::spawn().await;
    let t = app.tenant("WhatsMonster", "Europe/Moscow", json!({})).await;
    app.plan_pro(&t).await;
    let customer = app.customer(&t, "wm-9").await;
    let bought = app.purchase(&t, &customer, "PRO").await;
    let pay_with = |field: &str, value: &str| {
        let mut b = bought.clone();
        b["payment"]["confirmation"][field] = json!(value);
        b
    };
    let wrong_amount = app.pay(&pay_with("amount", "139.00"), CARD_OK).await;
    assert_eq!((wrong_amount.status.as_str(), wrong_amount.check_code), ("Rejected", Some(12)));
    let wrong_account = app.pay(&pay_with("account_id", &uuid::Uuid::new_v4().to_string()), CARD_OK).await;
    assert_eq!(wrong_account.check_code, Some(11));
    let wrong_invoice = app.pay(&pay_with("invoice_id", "no-such-invoice"), CARD_OK).await;
    assert_eq!(wrong_invoice.check_code, Some(10));
    // 24 hours after the purchase the payment has expired.
    app.set_clock("2026-03-06T08:59:59Z").await;
    let just_in_time = app.pay(&bought.clone(), CARD_INSUFFICIENT_FUNDS).await;
    assert_eq!(just_in_time.check_code, Some(0));
    app.set_clock("2026-03-06T09:00:00Z").await;
    let expired = app.pay(&bought, CARD_OK).await;
    assert_eq!((expired.status.as_str(), expired.check_code), ("Rejected", Some(20)));
    assert_eq!(app.count("SELECT count(*) AS n FROM payments WHERE status = 'succeeded'").await, 0);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM gateway_events WHERE kind = 'check'").await,
        5,
        "every Check is stored raw"
    );
}
