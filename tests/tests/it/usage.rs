//! Usage over HTTP: idempotent ingestion with per-event rejections, block quotas,
//! resets at the customer's local midnight (DST included), overage on the next
//! renewal and at a period's end, gauges billed on the peak, maintenance shifts.

use billing_tests::cloudpayments::CARD_OK;
use serde_json::{Value, json};

use crate::renewals::payments_of;
use crate::support::{Tenant, TestApp};

fn event(id: &str, customer: &str, metric: &str, quantity: i64, at: &str) -> Value {
    json!({"event_id": id, "customer_id": customer, "metric": metric, "quantity": quantity, "occurred_at": at})
}

async fn report(app: &TestApp, t: &Tenant, events: Vec<Value>) -> Value {
    app.post(t, "/v1/usage", json!({"events": events})).await.expect(200)
}

async fn metric(app: &TestApp, t: &Tenant, customer: &str, name: &str) -> Value {
    app.get(t, &format!("/v1/customers/{customer}/entitlements")).await.expect(200)["metrics"][name].clone()
}

async fn customer_in(app: &TestApp, t: &Tenant, external_id: &str, tz: &str) -> String {
    let c = app
        .post(
            t,
            "/v1/customers",
            json!({"external_id": external_id, "email": format!("{external_id}@example.ru"), "time_zone": tz}),
        )
        .await
        .expect(201);
    c["id"].as_str().unwrap().to_owned()
}

async fn buy(app: &TestApp, t: &Tenant, customer: &str, plan: &str) -> String {
    let bought = app.purchase(t, customer, plan).await;
    assert_eq!(app.pay(&bought, CARD_OK).await.status, "Completed");
    bought["subscription"]["id"].as_str().unwrap().to_owned()
}

async fn plan(app: &TestApp, t: &Tenant, body: Value) {
    app.post(t, "/v1/plans", body).await.expect(201);
}

fn codes(result: &Value) -> Vec<(u64, String)> {
    result["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["code"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn events_count_once_and_invalid_ones_are_listed_by_index() {
    let app = TestApp::spawn().await;
    let t = app.tenant("SMM-GPT", "Europe/Moscow", json!({})).await;
    plan(
        &app,
        &t,
        json!({
            "code": "START", "name": "Старт", "price": {"value": "490.00", "currency": "RUB"},
            "period": {"unit": "month", "count": 1}, "auto_renew": true,
            "quotas": {"generations": {"limit": 5, "mode": "block"}}
        }),
    )
    .await;
    let c = app.customer(&t, "smm-1").await;
    buy(&app, &t, &c, "START").await; // 2026-03-05T09:00Z
    app.set_clock("2026-03-06T09:00:00Z").await;
    let batch = vec![
        event("e1", &c, "generations", 2, "2026-03-05T10:00:00Z"),
        event("e1", &c, "generations", 2, "2026-03-05T10:00:00Z"),
        event("e2", &c, "generations", -1, "2026-03-05T10:00:00Z"),
        event("e3", &c, "images", 1, "2026-03-05T10:00:00Z"),
        event("e4", &uuid::Uuid::new_v4().to_string(), "generations", 1, "2026-03-05T10:00:00Z"),
        event("e5", &c, "generations", 1, "2026-03-07T09:00:00Z"),
        event("e6", &c, "generations", 1, "2026-03-01T09:00:00Z"),
        json!({"event_id": 6, "customer_id": c}),
        event("e7", &c, "generations", 2, "2026-03-06T08:00:00Z"),
        event("", &c, "generations", 1, "2026-03-06T08:00:00Z"),
    ];
    let first = report(&app, &t, batch.clone()).await;
    assert_eq!(first["accepted"], 2);
    assert_eq!(first["duplicates"], 1);
    let expected = vec![
        (2, "invalid_quantity".to_owned()),
        (3, "unknown_metric".to_owned()),
        (4, "customer_not_found".to_owned()),
        (5, "occurred_in_future".to_owned()),
        (6, "period_closed".to_owned()),
        (7, "validation_failed".to_owned()),
        (9, "invalid_event_id".to_owned()),
    ];
    assert_eq!(codes(&first), expected);
    // The same batch again (a client retry) counts nothing twice.
    let again = report(&app, &t, batch).await;
    assert_eq!(again["accepted"], 0);
    assert_eq!(again["duplicates"], 3);
    assert_eq!(codes(&again), expected);
    assert_eq!(app.count("SELECT count(*) AS n FROM usage_events").await, 2);
    let m = metric(&app, &t, &c, "generations").await;
    assert_eq!((m["limit"].as_i64(), m["used"].as_i64(), m["remaining"].as_i64()), (Some(5), Some(4), Some(1)));
    assert_eq!(m["access"], true);

    // Block: once used up the metric reports no access, and quota.exhausted fires once.
    report(&app, &t, vec![event("e8", &c, "generations", 1, "2026-03-06T08:30:00Z")]).await;
    let m = metric(&app, &t, &c, "generations").await;
    assert_eq!((m["used"].as_i64(), m["remaining"].as_i64(), m["access"].as_bool()), (Some(5), Some(0), Some(false)));
    report(&app, &t, vec![event("e9", &c, "generations", 3, "2026-03-06T08:40:00Z")]).await;
    assert_eq!(metric(&app, &t, &c, "generations").await["used"], 8);
    let events = app.events(&t).await;
    let exhausted: Vec<&Value> = events.iter().filter(|e| e["type"] == "quota.exhausted").collect();
    assert_eq!(exhausted.len(), 1);
    assert_eq!(exhausted[0]["data"]["metric"], "generations");
    assert_eq!(exhausted[0]["data"]["limit"], 5);
    assert_eq!(exhausted[0]["data"]["used"], 5);
    let entitlements = app.get(&t, &format!("/v1/customers/{c}/entitlements")).await.expect(200);
    assert_eq!(entitlements["access"], true, "the subscription itself still has access");

    // A customer without a subscription, and a batch above the limit (nothing written).
    let idle = app.customer(&t, "smm-idle").await;
    let r = report(
        &app,
        &t,
        vec![
            event("x1", &idle, "generations", 1, "2026-03-06T08:00:00Z"),
            event("x2", &c, "generations", 1_000_000_001, "2026-03-06T08:00:00Z"),
        ],
    )
    .await;
    assert_eq!(codes(&r), vec![(0, "no_active_subscription".to_owned()), (1, "invalid_quantity".to_owned())]);
    // 1.0 is the integer 1 (read, then refused for the idle customer); 2.5 is not.
    let mut whole = event("x3", &idle, "generations", 0, "2026-03-06T08:00:00Z");
    whole["quantity"] = json!(1.0);
    let mut half = event("x4", &c, "generations", 0, "2026-03-06T08:00:00Z");
    half["quantity"] = json!(2.5);
    let r = report(&app, &t, vec![whole, half]).await;
    assert_eq!(codes(&r), vec![(0, "no_active_subscription".to_owned()), (1, "validation_failed".to_owned())]);
    let too_many: Vec<Value> =
        (0..10_001).map(|i| event(&format!("big-{i}"), &c, "generations", 1, "2026-03-06T08:00:00Z")).collect();
    app.post(&t, "/v1/usage", json!({"events": too_many})).await.problem(422, "too_many_events");
    assert_eq!(app.count("SELECT count(*) AS n FROM usage_events").await, 4);
    app.post(&t, "/v1/usage", json!({"events": "nope"})).await.problem(422, "validation_failed");
}

#[tokio::test]
async fn quotas_reset_at_local_midnight_of_the_last_day_in_each_customers_zone() {
    let app = TestApp::spawn().await;
    let t = app.tenant("WhatsMonster", "Europe/Moscow", json!({})).await;
    plan(&app, &t, json!({
        "code": "USER", "name": "USER", "price": {"value": "690.00", "currency": "RUB"},
        "period": {"unit": "day", "count": 30}, "auto_renew": false,
        "quotas": {"messages": {"limit": 10000, "mode": "overage", "unit_price": {"value": "0.05", "currency": "RUB"}}},
        "quota_reset": "last_day_local_midnight"
    }))
    .await;
    // All bought 2026-03-05T09:00Z; the period ends 2026-04-04T09:00Z (12:00 in Moscow).
    // The last day's local midnight: Moscow (UTC+3) 2026-04-03T21:00Z, Yekaterinburg
    // (UTC+5) 19:00Z, Berlin — on summer time since March 29 (UTC+2) — 22:00Z.
    let zones = [
        ("Europe/Moscow", "2026-04-03T21:00:00Z", "2026-04-03T20:59:59Z"),
        ("Asia/Yekaterinburg", "2026-04-03T19:00:00Z", "2026-04-03T18:59:59Z"),
        ("Europe/Berlin", "2026-04-03T22:00:00Z", "2026-04-03T21:59:59Z"),
    ];
    let mut customers = Vec::new();
    for (i, (tz, _, _)) in zones.iter().enumerate() {
        let c = customer_in(&app, &t, &format!("wm-tz-{i}"), tz).await;
        buy(&app, &t, &c, "USER").await;
        customers.push(c);
    }
    app.set_clock("2026-04-03T23:00:00Z").await;
    let mut events = Vec::new();
    for ((_, reset, before), c) in zones.iter().zip(&customers) {
        events.push(event(&format!("{c}-early"), c, "messages", 9000, "2026-03-20T09:00:00Z"));
        events.push(event(&format!("{c}-before"), c, "messages", 1, before));
        events.push(event(&format!("{c}-at"), c, "messages", 10, reset));
    }
    let r = report(&app, &t, events).await;
    assert_eq!(r["accepted"], 9, "{r}");
    for c in &customers {
        // After the reset the quota is fresh: only the 10 messages from midnight on count.
        let m = metric(&app, &t, c, "messages").await;
        assert_eq!((m["used"].as_i64(), m["remaining"].as_i64()), (Some(10), Some(9990)), "{c}");
    }
    let old = app
        .count("SELECT count(*) AS n FROM usage_counters WHERE period_start = '2026-03-05T09:00:00Z' AND used = 9001")
        .await;
    let new = app
        .count("SELECT count(*) AS n FROM usage_counters WHERE period_start = '2026-04-04T09:00:00Z' AND used = 10")
        .await;
    assert_eq!((old, new), (3, 3), "each customer's usage split exactly at its own midnight");
}

async fn api_tenant(app: &TestApp) -> Tenant {
    let t = app.tenant("Alfa CRM", "Europe/Moscow", json!({"renewal_notice_days": 0})).await;
    plan(app, &t, json!({
        "code": "API", "name": "API", "price": {"value": "1000.00", "currency": "RUB"},
        "period": {"unit": "month", "count": 1}, "auto_renew": true,
        "quotas": {"requests": {"limit": 100, "mode": "overage", "unit_price": {"value": "0.123456", "currency": "RUB"}}}
    }))
    .await;
    plan(
        app,
        &t,
        json!({
            "code": "CLIENTS_100_M", "name": "До 100 клиентов", "price": {"value": "1690.00", "currency": "RUB"},
            "period": {"unit": "month", "count": 1}, "auto_renew": true,
            "quotas": {"active_clients": {"limit": 100, "mode": "overage", "kind": "gauge",
                       "unit_price": {"value": "16.90", "currency": "RUB"}}}
        }),
    )
    .await;
    t
}

#[tokio::test]
async fn overage_is_its_own_line_of_the_next_renewal_and_counters_restart() {
    let app = TestApp::with_worker().await;
    let t = api_tenant(&app).await;
    app.set_clock("2026-03-10T09:00:00Z").await;
    let c = app.customer(&t, "api-1").await;
    let id = buy(&app, &t, &c, "API").await;
    app.set_clock("2026-03-25T09:00:00Z").await;
    report(
        &app,
        &t,
        vec![
            event("r1", &c, "requests", 150, "2026-03-11T09:00:00Z"),
            event("r2", &c, "requests", 100, "2026-03-24T09:00:00Z"),
        ],
    )
    .await;
    let m = metric(&app, &t, &c, "requests").await;
    assert_eq!((m["used"].as_i64(), m["remaining"].as_i64(), m["access"].as_bool()), (Some(250), Some(0), Some(true)));
    // 150 units above the quota x 0.123456 = 18.5184 -> 18.52, rounded once.
    app.advance_to("2026-04-10T09:00:00Z").await;
    let payments = payments_of(&app, &t, &c).await;
    let renewal = payments.iter().find(|p| p["kind"] == "renewal").unwrap();
    assert_eq!(renewal["status"], "succeeded");
    assert_eq!(renewal["amount"]["value"], "1018.52");
    let lines = renewal["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!((lines[0]["kind"].as_str(), lines[0]["amount"]["value"].as_str()), (Some("tariff"), Some("1000.00")));
    assert_eq!(lines[1]["kind"], "overage");
    assert_eq!(lines[1]["metric"], "requests");
    assert_eq!(lines[1]["quantity"], 150);
    assert_eq!(lines[1]["unit_price"]["value"], "0.123456");
    assert_eq!(lines[1]["amount"]["value"], "18.52");
    let s = app.get(&t, &format!("/v1/subscriptions/{id}")).await.expect(200);
    assert_eq!(s["paid_amount"]["value"], "1000.00", "the tariff, without the overage");
    // A new period starts from zero; a late event for the billed period is refused,
    // and the events beside it in the batch count (stored and counted once).
    assert_eq!(metric(&app, &t, &c, "requests").await["used"], 0);
    let batch = vec![
        event("r3", &c, "requests", 5, "2026-04-09T09:00:00Z"),
        event("r4", &c, "requests", 100, "2026-04-10T09:00:00Z"),
    ];
    let late = report(&app, &t, batch.clone()).await;
    assert_eq!((late["accepted"].as_i64(), late["duplicates"].as_i64()), (Some(1), Some(0)));
    assert_eq!(codes(&late), vec![(0, "period_closed".to_owned())]);
    // Retried, the late event is refused again (its id was given back), not a duplicate.
    let again = report(&app, &t, batch).await;
    assert_eq!((again["accepted"].as_i64(), again["duplicates"].as_i64()), (Some(0), Some(1)));
    assert_eq!(codes(&again), vec![(0, "period_closed".to_owned())]);
    assert_eq!(app.count("SELECT count(*) AS n FROM usage_events WHERE event_id IN ('r3', 'r4')").await, 1);
    // A period within the quota adds no line.
    assert_eq!(metric(&app, &t, &c, "requests").await["used"], 100);
    app.advance_to("2026-05-10T09:00:00Z").await;
    let payments = payments_of(&app, &t, &c).await;
    let second = payments.iter().filter(|p| p["kind"] == "renewal").nth(1).unwrap();
    assert_eq!(second["amount"]["value"], "1000.00");
    assert_eq!(second["lines"].as_array().unwrap().len(), 1);
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn gauges_bill_the_period_maximum_above_the_included_amount() {
    let app = TestApp::with_worker().await;
    let t = api_tenant(&app).await;
    app.set_clock("2026-03-10T09:00:00Z").await;
    let c = app.customer(&t, "alfa-1").await;
    buy(&app, &t, &c, "CLIENTS_100_M").await;
    app.set_clock("2026-03-25T09:00:00Z").await;
    // Levels arrive out of order: the latest is 110, the maximum 130 (Alfa 5.8).
    report(
        &app,
        &t,
        vec![
            event("g1", &c, "active_clients", 90, "2026-03-11T09:00:00Z"),
            event("g3", &c, "active_clients", 110, "2026-03-20T09:00:00Z"),
        ],
    )
    .await;
    report(&app, &t, vec![event("g2", &c, "active_clients", 130, "2026-03-15T09:00:00Z")]).await;
    let m = metric(&app, &t, &c, "active_clients").await;
    assert_eq!((m["used"].as_i64(), m["peak"].as_i64(), m["kind"].as_str()), (Some(110), Some(130), Some("gauge")));
    app.advance_to("2026-04-10T09:00:00Z").await;
    let payments = payments_of(&app, &t, &c).await;
    let renewal = payments.iter().find(|p| p["kind"] == "renewal").unwrap();
    // 30 clients above 100 x 16.90 = 507.00.
    assert_eq!(renewal["amount"]["value"], "2197.00");
    assert_eq!(renewal["lines"][1]["quantity"], 30);
    assert_eq!(renewal["lines"][1]["amount"]["value"], "507.00");
}

#[tokio::test]
async fn overage_of_a_period_ending_without_renewal_is_charged_at_its_end() {
    let app = TestApp::with_worker().await;
    let t = app.tenant("WhatsMonster", "Europe/Moscow", json!({"renewal_notice_days": 0})).await;
    app.plan_pro(&t).await; // 100 000 messages, 0.05 above
    let c = app.customer(&t, "wm-over").await;
    let id = buy(&app, &t, &c, "PRO").await;
    app.set_clock("2026-03-20T09:00:00Z").await;
    report(&app, &t, vec![event("m1", &c, "messages", 100_200, "2026-03-19T09:00:00Z")]).await;
    app.advance_to("2026-04-04T09:00:00Z").await;
    assert_eq!(app.get(&t, &format!("/v1/subscriptions/{id}")).await.expect(200)["status"], "expired");
    let payments = payments_of(&app, &t, &c).await;
    let overage = payments.iter().find(|p| p["kind"] == "overage").expect("an overage payment");
    assert_eq!(overage["status"], "succeeded");
    assert_eq!(overage["amount"]["value"], "10.00"); // 200 x 0.05
    assert_eq!(overage["lines"][0]["metric"], "messages");
    assert_eq!(app.sim.captures_for_account(&c), 2);
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn maintenance_moves_every_live_period_once_and_notices_follow() {
    let app = TestApp::with_worker().await;
    let t = app.tenant("SellerGPT", "Europe/Moscow", json!({"renewal_notice_days": 3})).await;
    app.plan_monthly(&t, "START", "1990.00").await;
    app.set_clock("2026-03-10T09:00:00Z").await;
    let c = app.customer(&t, "sg-1").await;
    let id = buy(&app, &t, &c, "START").await;
    let gone = app.customer(&t, "sg-2").await;
    let gone_id = buy(&app, &t, &gone, "START").await;
    app.post(&t, &format!("/v1/subscriptions/{gone_id}/cancel"), json!({})).await.expect(200);
    app.advance_to("2026-04-10T09:00:00Z").await; // the second one expires; the first renews
    app.advance_to("2026-05-07T09:00:00Z").await; // renewal notice for May 10
    let path = format!("/v1/admin/tenants/{}/maintenance", t.id);
    let body = json!({"days": 3, "reason": "плановые работы"});
    let send = |key: Option<&'static str>| {
        let body = body.clone();
        let path = path.clone();
        let app = &app;
        async move { app.send(reqwest::Method::POST, &path, Some(crate::support::app::ADMIN_TOKEN), key, Some(&body)).await }
    };
    send(None).await.problem(422, "idempotency_key_required");
    let first = send(Some("mnt-1")).await.expect(201);
    assert_eq!(first["subscriptions"], 1);
    assert_eq!(first["days"], 3);
    let replay = send(Some("mnt-1")).await.expect(201);
    assert_eq!(replay["id"], first["id"], "a retried request shifts nothing twice");
    let s = app.get(&t, &format!("/v1/subscriptions/{id}")).await.expect(200);
    assert_eq!(s["current_period_start"], "2026-04-10T09:00:00Z");
    assert_eq!(s["current_period_end"], "2026-05-13T09:00:00Z");
    assert_eq!(s["next_charge_at"], "2026-05-13T09:00:00Z");
    assert_eq!(app.get(&t, &format!("/v1/subscriptions/{gone_id}")).await.expect(200)["status"], "expired");
    // The renewal notice is sent again for the new date, and the charge follows it.
    app.advance_to("2026-05-10T09:00:00Z").await;
    app.advance_to("2026-05-13T09:00:00Z").await;
    let events = app.events(&t).await;
    let notices: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "subscription.renewal_upcoming" && e["data"]["subscription_id"] == id.as_str())
        .collect();
    let charge_dates: Vec<&str> = notices.iter().map(|n| n["data"]["charge_at"].as_str().unwrap()).collect();
    assert_eq!(charge_dates, ["2026-04-10T09:00:00Z", "2026-05-10T09:00:00Z", "2026-05-13T09:00:00Z"]);
    assert_eq!(events.iter().filter(|e| e["type"] == "subscription.period_shifted").count(), 1);
    let s = app.get(&t, &format!("/v1/subscriptions/{id}")).await.expect(200);
    assert_eq!(s["current_period_start"], "2026-05-13T09:00:00Z");
    assert_eq!(s["current_period_end"], "2026-06-13T09:00:00Z", "the anchor moved too");
    assert_eq!(app.sim.captures_for_account(&c), 3);
}

#[tokio::test]
async fn an_upgrade_raises_a_used_up_quota_and_it_can_be_used_up_again() {
    let app = TestApp::with_worker().await;
    let t = app.tenant("SMM-GPT", "Europe/Moscow", json!({"upgrade_mode": "prorate"})).await;
    for (code, price, limit) in [("START", "490.00", 5), ("PRO", "1490.00", 10)] {
        plan(
            &app,
            &t,
            json!({
                "code": code, "name": code, "price": {"value": price, "currency": "RUB"},
                "period": {"unit": "month", "count": 1}, "auto_renew": true,
                "quotas": {"generations": {"limit": limit, "mode": "block"}}
            }),
        )
        .await;
    }
    let c = app.customer(&t, "smm-up").await;
    let id = buy(&app, &t, &c, "START").await;
    app.set_clock("2026-03-10T09:00:00Z").await;
    report(&app, &t, vec![event("u1", &c, "generations", 5, "2026-03-09T09:00:00Z")]).await;
    assert_eq!(metric(&app, &t, &c, "generations").await["access"], false);
    app.post(&t, &format!("/v1/subscriptions/{id}/change-plan"), json!({"plan": "PRO"})).await.expect(200);
    app.settle().await;
    // Same period, same counter, the new limit: usable again, and exhausted again once.
    let m = metric(&app, &t, &c, "generations").await;
    assert_eq!((m["limit"].as_i64(), m["used"].as_i64(), m["access"].as_bool()), (Some(10), Some(5), Some(true)));
    report(&app, &t, vec![event("u2", &c, "generations", 5, "2026-03-10T08:00:00Z")]).await;
    assert_eq!(metric(&app, &t, &c, "generations").await["access"], false);
    let events = app.events(&t).await;
    let limits: Vec<i64> = events
        .iter()
        .filter(|e| e["type"] == "quota.exhausted")
        .map(|e| e["data"]["limit"].as_i64().unwrap())
        .collect();
    assert_eq!(limits, [5, 10]);
}

#[tokio::test]
async fn maintenance_moves_a_queued_paid_extension_with_the_period() {
    let app = TestApp::with_worker().await;
    let t = app.tenant("WhatsMonster", "Europe/Moscow", json!({"renewal_notice_days": 0})).await;
    app.plan_pro(&t).await; // 30 days, manual renewal
    let c = app.customer(&t, "wm-mnt").await;
    let id = buy(&app, &t, &c, "PRO").await; // 2026-03-05T09:00Z .. 2026-04-04T09:00Z
    app.set_clock("2026-03-25T09:00:00Z").await;
    let ext = app
        .post_idem(&t, &format!("/v1/subscriptions/{id}/extend"), "ext-m", json!({"pay_with": "saved_card"}))
        .await
        .expect(200);
    app.settle().await;
    let ext_id = ext["payment"]["id"].as_str().unwrap().to_owned();
    let paid = app.get(&t, &format!("/v1/payments/{ext_id}")).await.expect(200);
    assert_eq!(
        (paid["period_start"].as_str(), paid["period_end"].as_str()),
        (Some("2026-04-04T09:00:00Z"), Some("2026-05-04T09:00:00Z"))
    );
    app.set_clock("2026-03-26T09:00:00Z").await;
    let body = json!({"days": 5, "reason": "обновление серверов"});
    let path = format!("/v1/admin/tenants/{}/maintenance", t.id);
    let done = app
        .send(reqwest::Method::POST, &path, Some(crate::support::app::ADMIN_TOKEN), Some("mnt-q"), Some(&body))
        .await;
    assert_eq!(done.expect(201)["subscriptions"], 1);
    let s = app.get(&t, &format!("/v1/subscriptions/{id}")).await.expect(200);
    assert_eq!(s["current_period_end"], "2026-04-09T09:00:00Z");
    assert_eq!(s["paid_through"], "2026-05-09T09:00:00Z");
    let moved = app.get(&t, &format!("/v1/payments/{ext_id}")).await.expect(200);
    assert_eq!(
        (moved["period_start"].as_str(), moved["period_end"].as_str()),
        (Some("2026-04-09T09:00:00Z"), Some("2026-05-09T09:00:00Z"))
    );
    // The extension takes over at the shifted end and runs to its shifted end.
    app.advance_to("2026-04-09T09:00:00Z").await;
    let s = app.get(&t, &format!("/v1/subscriptions/{id}")).await.expect(200);
    assert_eq!(s["status"], "active");
    assert_eq!(s["current_period_start"], "2026-04-09T09:00:00Z");
    assert_eq!(s["current_period_end"], "2026-05-09T09:00:00Z");
    app.advance_to("2026-05-09T09:00:00Z").await;
    assert_eq!(app.get(&t, &format!("/v1/subscriptions/{id}")).await.expect(200)["status"], "expired");
}
