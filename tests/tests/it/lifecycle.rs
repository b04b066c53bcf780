//! Cancel, resume, manual plans (expiry, extension, expiring_soon), price versions
//! at renewal, notices exactly once.

use billing_tests::cloudpayments::CARD_OK;
use serde_json::{Value, json};

use crate::renewals::{bought_monthly, orbita, payments_of};
use crate::support::{Tenant, TestApp};

async fn sub(app: &TestApp, t: &Tenant, id: &str) -> Value {
    app.get(t, &format!("/v1/subscriptions/{id}")).await.expect(200)
}

fn count(events: &[String], ty: &str) -> usize {
    events.iter().filter(|e| *e == ty).count()
}

#[tokio::test]
async fn cancel_keeps_access_to_the_period_end_and_charges_nothing() {
    let app = TestApp::with_worker().await;
    let t = orbita(&app, json!({})).await;
    let (customer, id) = bought_monthly(&app, &t, "life-1", "2026-03-10T09:00:00Z").await;
    app.set_clock("2026-03-20T09:00:00Z").await;
    let canceled = app.post(&t, &format!("/v1/subscriptions/{id}/cancel"), json!({})).await.expect(200);
    assert_eq!(canceled["status"], "canceled");
    assert_eq!(canceled["auto_renew"], false);
    assert_eq!(canceled["next_charge_at"], Value::Null);
    assert_eq!(canceled["canceled_at"], "2026-03-20T09:00:00Z");
    // Cancelling again changes nothing.
    assert_eq!(
        app.post(&t, &format!("/v1/subscriptions/{id}/cancel"), json!({})).await.expect(200)["status"],
        "canceled"
    );
    app.advance_to("2026-04-10T08:59:59Z").await;
    assert_eq!(app.get(&t, &format!("/v1/customers/{customer}/entitlements")).await.expect(200)["access"], true);
    app.advance_to("2026-04-10T09:00:00Z").await;
    let s = sub(&app, &t, &id).await;
    assert_eq!(s["status"], "expired");
    assert_eq!(app.get(&t, &format!("/v1/customers/{customer}/entitlements")).await.expect(200)["access"], false);
    app.advance_to("2026-06-10T09:00:00Z").await;
    assert_eq!(app.sim.captures_for_account(&customer), 1, "only the purchase was ever charged");
    let events = app.event_types(&t).await;
    assert_eq!(count(&events, "subscription.canceled"), 1);
    assert_eq!(count(&events, "subscription.expired"), 1);
    assert_eq!(count(&events, "subscription.renewal_upcoming"), 0, "no renewal to announce after cancelling");
    app.post(&t, &format!("/v1/subscriptions/{id}/cancel"), json!({})).await.problem(409, "subscription_ended");
    app.post(&t, &format!("/v1/subscriptions/{id}/resume"), json!({})).await.problem(409, "not_canceled");
}

#[tokio::test]
async fn resume_before_the_end_turns_autopay_back_on() {
    let app = TestApp::with_worker().await;
    let t = orbita(&app, json!({})).await;
    let (customer, id) = bought_monthly(&app, &t, "life-2", "2026-03-10T09:00:00Z").await;
    app.post(&t, &format!("/v1/subscriptions/{id}/cancel"), json!({})).await.expect(200);
    app.set_clock("2026-04-01T00:00:00Z").await;
    let resumed = app.post(&t, &format!("/v1/subscriptions/{id}/resume"), json!({})).await.expect(200);
    assert_eq!(resumed["status"], "active");
    assert_eq!(resumed["auto_renew"], true);
    assert_eq!(resumed["next_charge_at"], "2026-04-10T09:00:00Z");
    app.advance_to("2026-04-10T09:00:00Z").await;
    let s = sub(&app, &t, &id).await;
    assert_eq!(s["current_period_start"], "2026-04-10T09:00:00Z");
    assert_eq!(app.sim.captures_for_account(&customer), 2);
    let events = app.event_types(&t).await;
    assert_eq!(count(&events, "subscription.resumed"), 1);
    assert_eq!(count(&events, "subscription.renewed"), 1);
    // Too late to resume once the period is over.
    let (_, other) = bought_monthly(&app, &t, "life-2b", "2026-04-20T09:00:00Z").await;
    app.post(&t, &format!("/v1/subscriptions/{other}/cancel"), json!({})).await.expect(200);
    app.advance_to("2026-05-20T09:00:00Z").await;
    app.post(&t, &format!("/v1/subscriptions/{other}/resume"), json!({})).await.problem(409, "not_canceled");
}

async fn whatsmonster(app: &TestApp) -> Tenant {
    let t = app
        .tenant(
            "WhatsMonster",
            "Europe/Moscow",
            json!({"upgrade_mode": "restart_with_credit", "renewal_notice_days": 3}),
        )
        .await;
    app.plan_pro(&t).await;
    t
}

async fn bought_pro(app: &TestApp, t: &Tenant, external_id: &str) -> (String, String) {
    let customer = app.customer(t, external_id).await;
    let bought = app.purchase(t, &customer, "PRO").await;
    assert_eq!(app.pay(&bought, CARD_OK).await.status, "Completed");
    (customer, bought["subscription"]["id"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_manual_plan_expires_at_its_end_after_one_expiring_soon_notice() {
    let app = TestApp::with_worker().await;
    let t = whatsmonster(&app).await;
    let (customer, id) = bought_pro(&app, &t, "wm-exp").await;
    // T0 = 2026-03-05T09:00Z; 30 days later 2026-04-04T09:00Z; the notice 3 days before.
    for at in [
        "2026-03-20T00:00:00Z",
        "2026-04-01T08:59:59Z",
        "2026-04-01T09:00:00Z",
        "2026-04-02T00:00:00Z",
        "2026-04-03T00:00:00Z",
    ] {
        app.advance_to(at).await;
    }
    let events = app.events(&t).await;
    let notices: Vec<&Value> = events.iter().filter(|e| e["type"] == "subscription.expiring_soon").collect();
    assert_eq!(notices.len(), 1, "exactly once per period");
    assert_eq!(notices[0]["created_at"], "2026-04-01T09:00:00Z");
    assert_eq!(notices[0]["data"]["ends_at"], "2026-04-04T09:00:00Z");
    app.advance_to("2026-04-04T09:00:00Z").await;
    assert_eq!(sub(&app, &t, &id).await["status"], "expired");
    assert_eq!(app.sim.captures_for_account(&customer), 1, "manual plans are never charged automatically");
}

#[tokio::test]
async fn a_paid_extension_starts_when_the_current_period_ends() {
    let app = TestApp::with_worker().await;
    let t = whatsmonster(&app).await;
    let (customer, id) = bought_pro(&app, &t, "wm-ext").await;
    app.set_clock("2026-03-25T12:00:00Z").await;
    // The price dropped since the purchase: an extension is priced when it is paid.
    app.post(
        &t,
        "/v1/plans/PRO/prices",
        json!({"price": {"value": "1290.00", "currency": "RUB"}, "effective_from": "2026-03-25T12:00:00Z"}),
    )
    .await
    .expect(201);
    let ext = app
        .post_idem(&t, &format!("/v1/subscriptions/{id}/extend"), "ext-1", json!({"pay_with": "saved_card"}))
        .await
        .expect(200);
    assert_eq!(ext["payment"]["kind"], "extension");
    assert_eq!(ext["payment"]["amount"]["value"], "1290.00");
    app.settle().await;
    let payment = app.get(&t, &format!("/v1/payments/{}", ext["payment"]["id"].as_str().unwrap())).await.expect(200);
    assert_eq!(payment["status"], "succeeded");
    assert_eq!(payment["period_start"], "2026-04-04T09:00:00Z");
    assert_eq!(payment["period_end"], "2026-05-04T09:00:00Z");
    let s = sub(&app, &t, &id).await;
    assert_eq!(s["current_period_end"], "2026-04-04T09:00:00Z", "the current period is unchanged");
    assert_eq!(s["paid_through"], "2026-05-04T09:00:00Z");
    // A second extension queues after the first, paid with a new card through the widget.
    let second = app.post(&t, &format!("/v1/subscriptions/{id}/extend"), json!({"pay_with": "card"})).await.expect(200);
    assert_eq!(second["payment"]["confirmation"]["amount"], "1290.00");
    assert_eq!(app.pay(&second, "4111111111111111").await.status, "Completed");
    app.settle().await;
    assert_eq!(sub(&app, &t, &id).await["paid_through"], "2026-06-03T09:00:00Z");

    app.advance_to("2026-04-04T09:00:00Z").await;
    let s = sub(&app, &t, &id).await;
    assert_eq!(s["status"], "active");
    assert_eq!(s["current_period_start"], "2026-04-04T09:00:00Z");
    assert_eq!(s["current_period_end"], "2026-05-04T09:00:00Z");
    assert_eq!(s["paid_amount"]["value"], "1290.00");
    app.advance_to("2026-05-04T09:00:00Z").await;
    assert_eq!(sub(&app, &t, &id).await["current_period_end"], "2026-06-03T09:00:00Z");
    app.advance_to("2026-06-03T09:00:00Z").await;
    assert_eq!(sub(&app, &t, &id).await["status"], "expired");
    let events = app.event_types(&t).await;
    assert_eq!(count(&events, "subscription.renewed"), 2);
    assert_eq!(count(&events, "subscription.expiring_soon"), 1, "only the last paid period ends");
    assert_eq!(payments_of(&app, &t, &customer).await.iter().filter(|p| p["status"] == "succeeded").count(), 3);
    app.assert_ledger_balanced().await;
    app.post(&t, &format!("/v1/subscriptions/{id}/extend"), json!({"pay_with": "saved_card"}))
        .await
        .problem(409, "not_extendable");
}

#[tokio::test]
async fn a_price_increase_applies_from_the_first_renewal_at_or_after_it() {
    let app = TestApp::with_worker().await;
    let t = orbita(&app, json!({"price_change_notice_days": 14})).await;
    let (customer, id) = bought_monthly(&app, &t, "price-1", "2026-03-10T09:00:00Z").await;
    app.set_clock("2026-03-15T00:00:00Z").await;
    // Effective 2026-05-01: the renewal of 2026-04-10 is at the old price, 2026-05-10 at the new one.
    app.post(
        &t,
        "/v1/plans/START/prices",
        json!({"price": {"value": "2490.00", "currency": "RUB"}, "effective_from": "2026-05-01T00:00:00Z"}),
    )
    .await
    .expect(201);
    app.advance_to("2026-06-10T09:00:00Z").await;
    let renewals: Vec<Value> =
        payments_of(&app, &t, &customer).await.into_iter().filter(|p| p["kind"] == "renewal").collect();
    let amounts: Vec<(&str, &str)> = renewals
        .iter()
        .map(|p| (p["period_start"].as_str().unwrap(), p["amount"]["value"].as_str().unwrap()))
        .collect();
    assert_eq!(
        amounts,
        vec![
            ("2026-04-10T09:00:00Z", "1990.00"),
            ("2026-05-10T09:00:00Z", "2490.00"),
            ("2026-06-10T09:00:00Z", "2490.00"),
        ]
    );
    let events = app.events(&t).await;
    let upcoming: Vec<&Value> = events.iter().filter(|e| e["type"] == "subscription.renewal_upcoming").collect();
    assert_eq!(
        upcoming.iter().map(|e| e["data"]["amount"]["value"].as_str().unwrap()).collect::<Vec<_>>(),
        vec!["1990.00", "2490.00", "2490.00"]
    );
    assert_eq!(events.iter().filter(|e| e["type"] == "price_change.notice").count(), 1);
    assert_eq!(sub(&app, &t, &id).await["paid_amount"]["value"], "2490.00");
}

#[tokio::test]
async fn renewal_notices_go_out_exactly_once_per_period() {
    let app = TestApp::with_worker().await;
    let t = orbita(&app, json!({"renewal_notice_days": 5})).await;
    let (_customer, _id) = bought_monthly(&app, &t, "notice-1", "2026-03-10T09:00:00Z").await;
    // Walk the clock across the notice instant (2026-04-05T09:00Z) in small steps,
    // with the scheduler ticking in between.
    for at in [
        "2026-04-05T08:00:00Z",
        "2026-04-05T09:00:00Z",
        "2026-04-05T09:00:01Z",
        "2026-04-06T00:00:00Z",
        "2026-04-09T00:00:00Z",
    ] {
        app.advance_to(at).await;
        tokio::time::sleep(std::time::Duration::from_millis(60)).await;
    }
    let events = app.events(&t).await;
    let upcoming: Vec<&Value> = events.iter().filter(|e| e["type"] == "subscription.renewal_upcoming").collect();
    assert_eq!(upcoming.len(), 1);
    assert_eq!(upcoming[0]["created_at"], "2026-04-05T09:00:00Z");
    assert_eq!(upcoming[0]["data"]["charge_at"], "2026-04-10T09:00:00Z");
    assert_eq!(app.count("SELECT count(*) AS n FROM subscription_notices").await, 1);
    app.advance_to("2026-05-10T09:00:00Z").await;
    assert_eq!(app.events(&t).await.iter().filter(|e| e["type"] == "subscription.renewal_upcoming").count(), 2);
}
