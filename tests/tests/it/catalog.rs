//! Catalog: plans, price versions, notice enforcement, grandfathering.

use billing_tests::cloudpayments::CARD_OK;
use serde_json::json;

use crate::support::TestApp;

#[tokio::test]
async fn plans_are_created_listed_and_validated() {
    let app = TestApp::spawn().await;
    let t = app.tenant("WhatsMonster", "Europe/Moscow", json!({})).await;
    let pro = app.plan_pro(&t).await;
    assert_eq!(pro["price"], json!({"value": "1390.00", "currency": "RUB"}));
    assert_eq!(pro["period"], json!({"unit": "day", "count": 30}));
    assert_eq!(pro["quotas"]["messages"]["unit_price"], json!({"value": "0.05", "currency": "RUB"}));
    assert_eq!(pro["quotas"]["accounts"]["kind"], "gauge");
    assert_eq!(pro["quota_reset"], "last_day_local_midnight");
    assert_eq!(pro["prices"][0]["status"], "current");
    for code in ["USER", "VIP"] {
        app.plan_monthly(&t, code, "690.00").await;
    }
    let page1 = app.get(&t, "/v1/plans?limit=2").await.expect(200);
    assert_eq!(page1["data"].as_array().unwrap().len(), 2);
    assert_eq!(page1["has_more"], true);
    let last = page1["data"][1]["id"].as_str().unwrap();
    let page2 = app.get(&t, &format!("/v1/plans?limit=2&starting_after={last}")).await.expect(200);
    assert_eq!(page2["data"].as_array().unwrap().len(), 1);
    assert_eq!(page2["has_more"], false);
    assert_eq!(app.get(&t, "/v1/plans/PRO").await.expect(200)["id"], pro["id"]);
    app.get(&t, "/v1/plans/NOPE").await.problem(404, "plan_not_found");
    app.get(&t, "/v1/plans?limit=0").await.problem(422, "validation_failed");
    app.get(&t, "/v1/plans?limit=many").await.problem(422, "validation_failed");

    let base = json!({"code": "X", "name": "X", "price": {"value": "1.00", "currency": "RUB"}, "period": {"unit": "day", "count": 30}});
    let with = |k: &str, v: serde_json::Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    app.post(&t, "/v1/plans", with("code", json!("PRO"))).await.problem(409, "plan_exists");
    app.post(&t, "/v1/plans", with("code", json!("has space"))).await.problem(422, "validation_failed");
    app.post(&t, "/v1/plans", with("period", json!({"unit": "week", "count": 1})))
        .await
        .problem(422, "validation_failed");
    app.post(&t, "/v1/plans", with("period", json!({"unit": "day", "count": 0})))
        .await
        .problem(422, "validation_failed");
    app.post(&t, "/v1/plans", with("quotas", json!({"m": {"limit": 5, "mode": "overage"}})))
        .await
        .problem(422, "validation_failed");
    app.post(
        &t,
        "/v1/plans",
        with(
            "quotas",
            json!({"m": {"limit": 5, "mode": "overage", "unit_price": {"value": "0.1234567", "currency": "RUB"}}}),
        ),
    )
    .await
    .problem(422, "invalid_money");
    app.post(&t, "/v1/plans", with("cashback_rate", json!("1.5"))).await.problem(422, "validation_failed");
    assert_eq!(app.count("SELECT count(*) AS n FROM plans").await, 3);
}

#[tokio::test]
async fn price_increases_need_the_tenants_notice_decreases_do_not() {
    let app = TestApp::spawn().await;
    // Orbita 5.7: 14 days' notice of a price change.
    let t = app.tenant("Orbita", "Europe/Moscow", json!({"price_change_notice_days": 14})).await;
    app.plan_monthly(&t, "START", "1990.00").await;
    // T0 = 2026-03-05T09:00Z; 14 days later is 2026-03-19T09:00Z.
    let too_soon = app
        .post(
            &t,
            "/v1/plans/START/prices",
            json!({"price": {"value": "2490.00", "currency": "RUB"}, "effective_from": "2026-03-19T08:59:59Z"}),
        )
        .await
        .problem(422, "notice_period_too_short");
    assert!(too_soon["detail"].as_str().unwrap().contains("14 days"));
    let ok = app
        .post(
            &t,
            "/v1/plans/START/prices",
            json!({"price": {"value": "2490.00", "currency": "RUB"}, "effective_from": "2026-03-19T09:00:00Z"}),
        )
        .await
        .expect(201);
    assert_eq!(ok["status"], "scheduled");
    let plan = app.get(&t, "/v1/plans/START").await.expect(200);
    assert_eq!(plan["price"]["value"], "1990.00");
    assert_eq!(plan["scheduled_prices"][0]["price"]["value"], "2490.00");
    // A decrease applies at once, without notice.
    app.post(
        &t,
        "/v1/plans/START/prices",
        json!({"price": {"value": "1790.00", "currency": "RUB"}, "effective_from": "2026-03-05T09:00:00Z"}),
    )
    .await
    .expect(201);
    let plan = app.get(&t, "/v1/plans/START").await.expect(200);
    assert_eq!(plan["price"]["value"], "1790.00");
    // The scheduled increase now raises 1790 -> 2490 and was announced 14 days ahead: still valid.
    app.set_clock("2026-03-19T09:00:00Z").await;
    assert_eq!(app.get(&t, "/v1/plans/START").await.expect(200)["price"]["value"], "2490.00");
    // Past instants are refused.
    app.post(
        &t,
        "/v1/plans/START/prices",
        json!({"price": {"value": "1.00", "currency": "RUB"}, "effective_from": "2026-03-01T00:00:00Z"}),
    )
    .await
    .problem(422, "validation_failed");
}

#[tokio::test]
async fn subscribers_get_one_notice_and_keep_their_paid_price() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Orbita", "Europe/Moscow", json!({"price_change_notice_days": 14})).await;
    app.plan_monthly(&t, "START", "1990.00").await;
    let early = app.customer(&t, "early").await;
    let bought = app.purchase(&t, &early, "START").await;
    app.pay(&bought, CARD_OK).await;

    let price = app
        .post(
            &t,
            "/v1/plans/START/prices",
            json!({"price": {"value": "2490.00", "currency": "RUB"}, "effective_from": "2026-03-25T00:00:00Z"}),
        )
        .await
        .expect(201);
    let notices: Vec<_> = app.events(&t).await.into_iter().filter(|e| e["type"] == "price_change.notice").collect();
    assert_eq!(notices.len(), 1);
    let n = &notices[0]["data"];
    assert_eq!(n["subscription_id"], bought["subscription"]["id"]);
    assert_eq!(n["customer_id"], early.as_str());
    assert_eq!(n["old_price"]["value"], "1990.00");
    assert_eq!(n["new_price"]["value"], "2490.00");
    assert_eq!(n["effective_from"], "2026-03-25T00:00:00Z");
    assert_eq!(n["direction"], "increase");
    assert_eq!(n["price_id"], price["id"]);

    // A customer buying between announcement and effective date sees the scheduled
    // price in the answer, pays today's price, and gets the notice too.
    let late = app.customer(&t, "late").await;
    let late_buy = app.purchase(&t, &late, "START").await;
    assert_eq!(late_buy["payment"]["amount"]["value"], "1990.00");
    assert_eq!(late_buy["scheduled_prices"][0]["price"]["value"], "2490.00");
    assert_eq!(late_buy["scheduled_prices"][0]["effective_from"], "2026-03-25T00:00:00Z");
    let notices: Vec<_> = app.events(&t).await.into_iter().filter(|e| e["type"] == "price_change.notice").collect();
    assert_eq!(notices.len(), 2);
    assert_eq!(notices[1]["data"]["subscription_id"], late_buy["subscription"]["id"]);

    // The paid period is never recalculated.
    let sub =
        app.get(&t, &format!("/v1/subscriptions/{}", bought["subscription"]["id"].as_str().unwrap())).await.expect(200);
    assert_eq!(sub["paid_amount"]["value"], "1990.00");
    // A purchase after the effective date pays the new price.
    app.set_clock("2026-03-25T00:00:00Z").await;
    let newer = app.customer(&t, "newer").await;
    assert_eq!(app.purchase(&t, &newer, "START").await["payment"]["amount"]["value"], "2490.00");
}

#[tokio::test]
async fn scheduled_prices_can_be_cancelled_before_they_take_effect() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Orbita", "Europe/Moscow", json!({"price_change_notice_days": 14})).await;
    let plan = app.plan_monthly(&t, "START", "1990.00").await;
    let price = app
        .post(
            &t,
            "/v1/plans/START/prices",
            json!({"price": {"value": "2490.00", "currency": "RUB"}, "effective_from": "2026-04-01T00:00:00Z"}),
        )
        .await
        .expect(201);
    let id = price["id"].as_str().unwrap();
    let del = app
        .send(reqwest::Method::DELETE, &format!("/v1/plans/START/prices/{id}"), Some(&t.api_key), None, None)
        .await
        .expect(200);
    assert_eq!(del["scheduled_prices"], json!([]));
    assert_eq!(del["prices"][1]["status"], "canceled");
    app.set_clock("2026-04-02T00:00:00Z").await;
    assert_eq!(app.get(&t, "/v1/plans/START").await.expect(200)["price"]["value"], "1990.00");
    app.send(reqwest::Method::DELETE, &format!("/v1/plans/START/prices/{id}"), Some(&t.api_key), None, None)
        .await
        .problem(409, "price_already_canceled");
    let initial = plan["prices"][0]["id"].as_str().unwrap();
    app.send(reqwest::Method::DELETE, &format!("/v1/plans/START/prices/{initial}"), Some(&t.api_key), None, None)
        .await
        .problem(409, "price_already_effective");
    app.send(
        reqwest::Method::DELETE,
        &format!("/v1/plans/START/prices/{}", uuid::Uuid::new_v4()),
        Some(&t.api_key),
        None,
        None,
    )
    .await
    .problem(404, "price_not_found");
}

#[tokio::test]
async fn a_purchase_racing_a_price_announcement_waits_for_it_and_gets_its_notice() {
    use diesel_async::SimpleAsyncConnection;
    let app = TestApp::spawn().await;
    let t = app.tenant("Orbita", "Europe/Moscow", json!({"price_change_notice_days": 14})).await;
    app.plan_monthly(&t, "START", "1990.00").await;
    let racer = app.customer(&t, "racer").await;

    // An announcement in flight holds the plan row (as `POST /v1/plans/{code}/prices`
    // does) while it writes its price version.
    let mut announcing = app.db.conn().await;
    announcing
        .batch_execute(&format!(
            "BEGIN; SELECT id FROM plans WHERE tenant_id = '{}' AND code = 'START' FOR UPDATE",
            t.id
        ))
        .await
        .unwrap();
    let purchase = app.purchase(&t, &racer, "START");
    tokio::pin!(purchase);
    let early = tokio::time::timeout(std::time::Duration::from_millis(500), &mut purchase).await;
    assert!(early.is_err(), "the purchase read the plan's prices while an announcement was being written");
    announcing
        .batch_execute(&format!(
            "INSERT INTO plan_prices (id, plan_id, amount, currency, effective_from, announced_at) \
             SELECT gen_random_uuid(), id, 2490.00, 'RUB', '2026-03-25T00:00:00Z', '2026-03-05T09:00:00Z' \
             FROM plans WHERE tenant_id = '{}' AND code = 'START'; COMMIT",
            t.id
        ))
        .await
        .unwrap();

    // The purchase went on after the announcement: it pays today's price, shows the
    // scheduled one, and its subscriber has the notice (no subscriber is missed).
    let bought = purchase.await;
    assert_eq!(bought["payment"]["amount"]["value"], "1990.00");
    assert_eq!(bought["scheduled_prices"][0]["price"]["value"], "2490.00");
    let notices: Vec<_> = app.events(&t).await.into_iter().filter(|e| e["type"] == "price_change.notice").collect();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert_eq!(notices[0]["data"]["subscription_id"], bought["subscription"]["id"]);
    assert_eq!(notices[0]["data"]["new_price"]["value"], "2490.00");
}
