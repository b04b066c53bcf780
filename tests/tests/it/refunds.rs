//! Refund requests over HTTP: the tenant's rules at their window edges, the review
//! queue, caps by what was captured and refunded (also enforced by the database).

use billing_tests::cloudpayments::CARD_OK;
use serde_json::{Value, json};

use crate::support::{Tenant, TestApp};

async fn paid(app: &TestApp, t: &Tenant, external_id: &str, plan: &str) -> (String, String) {
    let customer = app.customer(t, external_id).await;
    let bought = app.purchase(t, &customer, plan).await;
    assert_eq!(app.pay(&bought, CARD_OK).await.status, "Completed");
    (customer, bought["payment"]["id"].as_str().unwrap().to_owned())
}

async fn refund(app: &TestApp, t: &Tenant, body: Value) -> Value {
    app.post(t, "/v1/refunds", body).await.expect(201)
}

/// Refunds of unused tariffs approved within a day of payment (WhatsMonster 7.12),
/// with its PRO tariff.
pub(crate) async fn whatsmonster(app: &TestApp) -> Tenant {
    whatsmonster_on(app, crate::support::Gw::CloudPayments).await
}

/// [`whatsmonster`] on `gw`.
pub(crate) async fn whatsmonster_on(app: &TestApp, gw: crate::support::Gw) -> Tenant {
    let t = app
        .tenant_on(
            gw,
            "WhatsMonster",
            "Europe/Moscow",
            json!({"refund_rules": [
            {"reasons": ["unused"], "window": {"count": 1, "unit": "days"}, "requires_no_usage": true,
             "decision": "approve", "amount": "full"}]}),
        )
        .await;
    app.plan_pro(&t).await;
    t
}

#[tokio::test]
async fn whatsmonster_refunds_within_one_day_of_payment_if_unused() {
    let app = TestApp::spawn().await;
    let t = whatsmonster(&app).await;
    let (_, payment) = paid(&app, &t, "wm-r1", "PRO").await; // captured 2026-03-05T09:00Z
    // The window's last minute, then the minute after.
    app.set_clock("2026-03-06T08:59:00Z").await;
    let r = refund(
        &app,
        &t,
        json!({"payment_id": payment, "reason": "unused", "amount": {"value": "390.00", "currency": "RUB"}}),
    )
    .await;
    assert_eq!((r["status"].as_str(), r["decision_code"].as_str()), (Some("approved"), Some("approved")));
    assert_eq!(r["amount"]["value"], "390.00");
    assert_eq!(r["window_ends_at"], "2026-03-06T09:00:00Z");
    app.set_clock("2026-03-06T09:00:00Z").await;
    let late = refund(&app, &t, json!({"payment_id": payment, "reason": "unused"})).await;
    assert_eq!(
        (late["status"].as_str(), late["decision_code"].as_str()),
        (Some("rejected"), Some("refund_window_closed"))
    );
    assert_eq!(late["amount"]["value"], "0.00");
    let other = refund(&app, &t, json!({"payment_id": payment, "reason": "goodwill"})).await;
    assert_eq!(other["decision_code"], "reason_not_refundable");
    // Usage in the paid period: nothing is refunded under a "nothing used" rule.
    let (c2, p2) = paid(&app, &t, "wm-r2", "PRO").await;
    app.post(
        &t,
        "/v1/usage",
        json!({"events": [{"event_id": "m1", "customer_id": c2, "metric": "messages",
        "quantity": 1, "occurred_at": "2026-03-06T09:00:00Z"}]}),
    )
    .await
    .expect(200);
    assert_eq!(refund(&app, &t, json!({"payment_id": p2, "reason": "unused"})).await["decision_code"], "usage_present");
    let types = app.event_types(&t).await;
    assert_eq!(types.iter().filter(|e| *e == "refund.requested").count(), 4);
    assert_eq!(types.iter().filter(|e| *e == "refund.approved").count(), 1);
    assert_eq!(types.iter().filter(|e| *e == "refund.rejected").count(), 3);
}

#[tokio::test]
async fn orbita_outages_wait_for_review_and_refunds_never_exceed_the_capture() {
    let app = TestApp::spawn().await;
    let t = app
        .tenant(
            "Orbita",
            "Europe/Moscow",
            json!({"refund_rules": [
            {"reasons": ["outage", "double_charge"], "decision": "review", "amount": "full"}]}),
        )
        .await;
    app.plan_monthly(&t, "START", "1990.00").await;
    let (_, payment) = paid(&app, &t, "orb-r1", "START").await;
    assert_eq!(
        refund(&app, &t, json!({"payment_id": payment, "reason": "unused"})).await["decision_code"],
        "reason_not_refundable"
    );
    let held = refund(
        &app,
        &t,
        json!({"payment_id": payment, "reason": "outage", "amount": {"value": "1500.00", "currency": "RUB"}}),
    )
    .await;
    assert_eq!(
        (held["status"].as_str(), held["decision_code"].as_str()),
        (Some("pending_review"), Some("review_required"))
    );
    let queue = app.get(&t, "/v1/refunds?status=pending_review").await.expect(200);
    assert_eq!(queue["data"].as_array().unwrap().len(), 1);
    assert_eq!(queue["data"][0]["id"], held["id"]);
    // A second request is capped by what the first one holds.
    let second = refund(&app, &t, json!({"payment_id": payment, "reason": "double_charge"})).await;
    assert_eq!(second["amount"]["value"], "490.00");
    let id = held["id"].as_str().unwrap();
    let approve = format!("/v1/refunds/{id}/approve");
    let approved = app.post_idem(&t, &approve, "ok-1", json!({"comment": "outage 2026-03-10"})).await.expect(200);
    assert_eq!(
        (approved["status"].as_str(), approved["decision_code"].as_str()),
        (Some("approved"), Some("approved_by_review"))
    );
    assert_eq!(approved["review_comment"], "outage 2026-03-10");
    assert_eq!(approved["comment"], Value::Null, "the requester's comment is kept apart");
    // A replayed approval answers the stored result; another decision is refused.
    assert_eq!(
        app.post_idem(&t, &approve, "ok-1", json!({"comment": "outage 2026-03-10"})).await.expect(200),
        approved
    );
    app.post(&t, &format!("/v1/refunds/{id}/reject"), json!({})).await.problem(409, "refund_not_pending");
    app.post(&t, &format!("/v1/refunds/{id}/retry"), json!({})).await.problem(409, "refund_not_failed");
    app.post(&t, &format!("/v1/refunds/{}/retry", uuid::Uuid::new_v4()), json!({}))
        .await
        .problem(404, "refund_not_found");
    let sid = second["id"].as_str().unwrap();
    let rejected = app.post(&t, &format!("/v1/refunds/{sid}/reject"), json!({})).await.expect(200);
    assert_eq!(rejected["decision_code"], "rejected_by_review");
    // Everything held: 1500 of 1990; asking for more is capped at the rest.
    let third = refund(
        &app,
        &t,
        json!({"payment_id": payment, "reason": "outage", "amount": {"value": "900.00", "currency": "RUB"}}),
    )
    .await;
    assert_eq!(third["amount"]["value"], "490.00");
    // Bad input writes nothing.
    let before = app.count("SELECT count(*) AS n FROM refunds").await;
    app.post(&t, "/v1/refunds", json!({"payment_id": payment, "reason": "whim"}))
        .await
        .problem(422, "validation_failed");
    app.post(
        &t,
        "/v1/refunds",
        json!({"payment_id": payment, "reason": "outage", "amount": {"value": "1.001", "currency": "RUB"}}),
    )
    .await
    .problem(422, "invalid_money");
    app.post(&t, "/v1/refunds", json!({"payment_id": uuid::Uuid::new_v4(), "reason": "outage"}))
        .await
        .problem(404, "payment_not_found");
    app.post(&t, "/v1/refunds", json!({"payment_id": payment, "reason": "outage", "comment": "a\u{0}b"}))
        .await
        .problem(422, "validation_failed");
    app.get(&t, "/v1/refunds?status=lost").await.problem(422, "validation_failed");
    assert_eq!(app.count("SELECT count(*) AS n FROM refunds").await, before);
    // Refund events travel with the payment's events (one ordering key) and name the subscription.
    let events = app.events(&t).await;
    let approved_event = events.iter().find(|e| e["type"] == "refund.approved").unwrap();
    assert_eq!(approved_event["data"]["payment_id"], payment.as_str());
    assert!(approved_event["data"]["subscription_id"].is_string());
    // The database refuses holds above the capture, whatever the code does.
    let mut conn = app.db.conn().await;
    let over = diesel_async::RunQueryDsl::execute(
        diesel::sql_query(format!(
            "UPDATE refunds SET amount = 1990.00 WHERE id = '{}'",
            third["id"].as_str().unwrap()
        )),
        &mut conn,
    )
    .await;
    assert!(over.is_err(), "refunds above the captured amount must be refused");
}

#[tokio::test]
async fn a_held_request_past_the_review_deadline_is_reported_once() {
    let app = TestApp::with_worker().await;
    let t = app
        .tenant(
            "Orbita",
            "Europe/Moscow",
            json!({"review_deadline_business_days": 10, "refund_rules": [
            {"reasons": ["outage"], "decision": "review", "amount": "full"}]}),
        )
        .await;
    app.plan_monthly(&t, "START", "1990.00").await;
    let (_, payment) = paid(&app, &t, "orb-late", "START").await;
    let held = refund(&app, &t, json!({"payment_id": payment, "reason": "outage"})).await;
    // Thu Mar 5 + 10 business days (Mar 9 is off by decree) = Fri Mar 20, 24:00 Moscow.
    assert_eq!(held["review_due_at"], "2026-03-20T21:00:00Z");
    app.advance_to("2026-03-20T20:59:00Z").await;
    assert_eq!(overdue(&app, &t).await, 0);
    app.advance_to("2026-03-20T21:00:00Z").await;
    assert_eq!(overdue(&app, &t).await, 1);
    app.advance_to("2026-04-20T21:00:00Z").await;
    assert_eq!(overdue(&app, &t).await, 1, "reported once");
    // A request decided in time is never reported.
    let (_, p2) = paid(&app, &t, "orb-late-2", "START").await;
    let r2 = refund(&app, &t, json!({"payment_id": p2, "reason": "outage"})).await;
    app.post(&t, &format!("/v1/refunds/{}/reject", r2["id"].as_str().unwrap()), json!({})).await.expect(200);
    app.advance_to("2026-06-01T00:00:00Z").await;
    assert_eq!(overdue(&app, &t).await, 1);
}

async fn overdue(app: &TestApp, t: &Tenant) -> usize {
    app.event_types(t).await.iter().filter(|e| *e == "refund.review_overdue").count()
}

/// An Alfa CRM tenant selling CLIENTS_100_M at 1 690.00 a month, and the customer
/// `external_id` who bought it on 2026-03-10 at 09:00 UTC and paid by card:
/// (tenant, customer id, the purchase's answer).
async fn alfa_paid(app: &TestApp, external_id: &str) -> (Tenant, String, Value) {
    let t = app.tenant("Alfa CRM", "Europe/Moscow", json!({})).await;
    app.plan_monthly(&t, "CLIENTS_100_M", "1690.00").await;
    app.set_clock("2026-03-10T09:00:00Z").await;
    let customer = app.customer(&t, external_id).await;
    let bought = app.purchase(&t, &customer, "CLIENTS_100_M").await;
    assert_eq!(app.pay(&bought, CARD_OK).await.status, "Completed");
    (t, customer, bought)
}

#[tokio::test]
async fn provider_termination_refunds_unused_days_unless_the_customer_is_at_fault() {
    let app = TestApp::spawn().await;
    let (t, customer, bought) = alfa_paid(&app, "alfa-t1").await;
    let id = bought["subscription"]["id"].as_str().unwrap();
    let guilty_customer = app.customer(&t, "alfa-t2").await;
    let other = app.purchase(&t, &guilty_customer, "CLIENTS_100_M").await;
    assert_eq!(app.pay(&other, CARD_OK).await.status, "Completed");
    // A paid extension waits for the current period to end (Apr 10 - May 10).
    let ext = app.post(&t, &format!("/v1/subscriptions/{id}/extend"), json!({"pay_with": "card"})).await.expect(200);
    assert_eq!(app.pay(&ext, CARD_OK).await.status, "Completed");
    // 10.2: without fault, 17 of 31 days unused: 1690 x 17/31 = 926.77; the extension
    // not yet started is refunded in full.
    app.set_clock("2026-03-24T09:00:00Z").await;
    let done = app
        .post(
            &t,
            &format!("/v1/subscriptions/{id}/terminate"),
            json!({"customer_fault": false, "reason": "сервис закрывается"}),
        )
        .await
        .expect(200);
    assert_eq!(done["subscription"]["status"], "terminated");
    assert_eq!(done["refund"]["amount"]["value"], "926.77");
    assert_eq!(done["refund"]["status"], "approved");
    assert_eq!(done["refund"]["decision_code"], "provider_termination");
    assert_eq!(done["refund"]["payment_id"], bought["payment"]["id"]);
    let extra = done["additional_refunds"].as_array().unwrap();
    assert_eq!(extra.len(), 1);
    assert_eq!(extra[0]["payment_id"], ext["payment"]["id"]);
    assert_eq!(
        (extra[0]["amount"]["value"].as_str(), extra[0]["status"].as_str()),
        (Some("1690.00"), Some("approved"))
    );
    let e = app.get(&t, &format!("/v1/customers/{customer}/entitlements")).await.expect(200);
    assert_eq!(e["access"], false);
    app.post(&t, &format!("/v1/subscriptions/{id}/terminate"), json!({"customer_fault": false, "reason": "again"}))
        .await
        .problem(409, "subscription_ended");
    // 10.3: with the customer's fault nothing is refunded.
    let oid = other["subscription"]["id"].as_str().unwrap();
    let guilty = app
        .post(
            &t,
            &format!("/v1/subscriptions/{oid}/terminate"),
            json!({"customer_fault": true, "reason": "нарушение 10.3"}),
        )
        .await
        .expect(200);
    assert_eq!(guilty["subscription"]["status"], "terminated");
    assert_eq!(guilty["refund"], Value::Null);
    assert_eq!(guilty["additional_refunds"], json!([]));
    let events = app.events(&t).await;
    let terminated: Vec<&Value> = events.iter().filter(|e| e["type"] == "subscription.terminated").collect();
    assert_eq!(terminated.len(), 2);
    assert_eq!(terminated[0]["data"]["customer_fault"], false);
    assert_eq!(terminated[1]["data"]["customer_fault"], true);
    assert_eq!(app.count("SELECT count(*) AS n FROM refunds").await, 2);
}

/// A termination reads the paid payments again once it holds the subscription: a
/// payment captured meanwhile by a writer that held the subscription (an extension
/// paid from the balance is inserted and captured under its lock) is refunded too.
#[tokio::test]
async fn termination_refunds_a_payment_captured_while_it_waited_for_the_subscription() {
    let app = TestApp::spawn().await;
    let (t, _, bought) = alfa_paid(&app, "alfa-t3").await;
    let id = bought["subscription"]["id"].as_str().unwrap();
    let ext = app.post(&t, &format!("/v1/subscriptions/{id}/extend"), json!({"pay_with": "card"})).await.expect(200);
    let ext_id = ext["payment"]["id"].as_str().unwrap();
    app.set_clock("2026-03-24T09:00:00Z").await;
    // The writer holds the subscription and captures the extension; it commits once
    // the termination waits for the subscription.
    let mut writer = app.db.conn().await;
    for sql in [
        "BEGIN".to_owned(),
        format!("SELECT id FROM subscriptions WHERE id = '{id}' FOR UPDATE"),
        format!(
            "UPDATE payments SET status = 'succeeded', captured_at = now(), gateway_transaction_id = 'held-1', \
             period_start = '2026-04-10T09:00:00Z', period_end = '2026-05-10T09:00:00Z' WHERE id = '{ext_id}'"
        ),
    ] {
        diesel_async::RunQueryDsl::execute(diesel::sql_query(sql), &mut writer).await.unwrap();
    }
    let path = format!("/v1/subscriptions/{id}/terminate");
    let terminate = app.post(&t, &path, json!({"customer_fault": false, "reason": "сервис закрывается"}));
    let waiting = "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() \
                   AND wait_event_type = 'Lock'";
    let commit = async {
        assert_eq!(app.count_when(waiting, 1).await, 1, "the termination never waited for the subscription");
        diesel_async::RunQueryDsl::execute(diesel::sql_query("COMMIT"), &mut writer).await.unwrap();
    };
    let (done, ()) = tokio::join!(terminate, commit);
    let done = done.expect(200);
    assert_eq!(done["subscription"]["status"], "terminated");
    assert_eq!(done["refund"]["payment_id"], bought["payment"]["id"]);
    assert_eq!(done["refund"]["amount"]["value"], "926.77");
    let extra = done["additional_refunds"].as_array().unwrap();
    assert_eq!(extra.len(), 1, "{done}");
    assert_eq!(extra[0]["payment_id"], ext_id);
    assert_eq!(
        (extra[0]["amount"]["value"].as_str(), extra[0]["status"].as_str()),
        (Some("1690.00"), Some("approved"))
    );
}

#[tokio::test]
async fn smm_gpt_five_business_days_from_access_skip_the_march_9_holiday() {
    let app = TestApp::spawn().await;
    let t = app
        .tenant(
            "SMM-GPT",
            "Europe/Moscow",
            json!({"refund_rules": [
            {"reasons": ["unused"], "window": {"count": 5, "unit": "business_days", "from": "access"},
             "requires_no_usage": true, "decision": "approve", "amount": "full"}]}),
        )
        .await;
    app.plan_monthly(&t, "PRO", "1990.00").await;
    // Access from Thu 2026-03-05; business days Mar 6, (Mon Mar 9 is off by decree)
    // 10, 11, 12, 13: the window ends at 24:00 Moscow on Fri Mar 13.
    let (_, first) = paid(&app, &t, "smm-r1", "PRO").await;
    let (_, second) = paid(&app, &t, "smm-r2", "PRO").await;
    app.set_clock("2026-03-13T20:59:00Z").await;
    let r = refund(&app, &t, json!({"payment_id": first, "reason": "unused"})).await;
    assert_eq!((r["status"].as_str(), r["decision_code"].as_str()), (Some("approved"), Some("approved")));
    assert_eq!(r["amount"]["value"], "1990.00");
    assert_eq!(r["window_ends_at"], "2026-03-13T21:00:00Z");
    app.set_clock("2026-03-13T21:00:00Z").await;
    let late = refund(&app, &t, json!({"payment_id": second, "reason": "unused"})).await;
    assert_eq!(
        (late["status"].as_str(), late["decision_code"].as_str()),
        (Some("rejected"), Some("refund_window_closed"))
    );
}

#[tokio::test]
async fn alfa_refunds_unused_days_pro_rata_only_on_the_providers_termination() {
    let app = TestApp::spawn().await;
    let t = app
        .tenant(
            "Alfa CRM",
            "Europe/Moscow",
            json!({"refund_rules": [{"reasons": ["provider_termination"], "decision": "approve", "amount": "prorata"}]}),
        )
        .await;
    app.plan_monthly(&t, "ALFA", "1990.00").await;
    let (_, payment) = paid(&app, &t, "alfa-r1", "ALFA").await; // Mar 5 - Apr 5: 31 days
    app.set_clock("2026-03-19T09:00:00Z").await;
    assert_eq!(
        refund(&app, &t, json!({"payment_id": payment, "reason": "unused"})).await["decision_code"],
        "reason_not_refundable"
    );
    // 17 of 31 days unused: 1990 x 17 / 31 = 1091.290... -> 1091.29.
    let r = refund(&app, &t, json!({"payment_id": payment, "reason": "provider_termination"})).await;
    assert_eq!((r["status"].as_str(), r["amount"]["value"].as_str()), (Some("approved"), Some("1091.29")));
}
