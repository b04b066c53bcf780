//! Plan changes over HTTP against the simulator: upgrades in both modes (worked
//! examples from the offers), an annual plan from a month end, the minimum charge,
//! scheduled downgrades, trials and free plans.

use billing_tests::cloudpayments::CARD_OK;
use serde_json::{Value, json};

use crate::renewals::{bought_monthly, orbita, payments_of};
use crate::support::{Tenant, TestApp};

async fn sub(app: &TestApp, t: &Tenant, id: &str) -> Value {
    app.get(t, &format!("/v1/subscriptions/{id}")).await.expect(200)
}

async fn entitlements(app: &TestApp, t: &Tenant, customer: &str) -> Value {
    app.get(t, &format!("/v1/customers/{customer}/entitlements")).await.expect(200)
}

fn money(v: &Value) -> &str {
    v["value"].as_str().unwrap_or("?")
}

/// Ledger entries of the tenant's `plan_change` transactions, as (account code, amount).
async fn plan_change_entries(app: &TestApp, t: &Tenant) -> Vec<(String, String)> {
    use diesel::sql_types::Text;
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct E {
        #[diesel(sql_type = Text)]
        code: String,
        #[diesel(sql_type = Text)]
        amount: String,
    }
    let mut conn = app.db.conn().await;
    let rows: Vec<E> = diesel::sql_query(format!(
        "SELECT a.code, e.amount::text AS amount FROM ledger_entries e JOIN ledger_transactions x ON x.id = e.transaction_id \
         JOIN ledger_accounts a ON a.id = e.account_id WHERE x.tenant_id = '{}' AND x.kind = 'plan_change' ORDER BY e.id",
        t.id
    ))
    .load(&mut conn)
    .await
    .unwrap();
    rows.into_iter().map(|r| (r.code, r.amount)).collect()
}

async fn whatsmonster(app: &TestApp) -> Tenant {
    let t = app.tenant("WhatsMonster", "Europe/Moscow", json!({"upgrade_mode": "restart_with_credit"})).await;
    app.post(&t, "/v1/plans", json!({
        "code": "USER", "name": "USER", "price": {"value": "690.00", "currency": "RUB"},
        "period": {"unit": "day", "count": 30}, "auto_renew": false,
        "quotas": {"messages": {"limit": 10000, "mode": "overage", "unit_price": {"value": "0.05", "currency": "RUB"}}},
        "quota_reset": "last_day_local_midnight"
    }))
    .await
    .expect(201);
    app.plan_pro(&t).await;
    app.post(
        &t,
        "/v1/plans",
        json!({
            "code": "DEMO", "name": "DEMO", "price": {"value": "0.00", "currency": "RUB"},
            "period": {"unit": "day", "count": 7}, "auto_renew": false, "once_per_customer": true,
            "quotas": {"messages": {"limit": 100, "mode": "block"}}, "quota_reset": "last_day_local_midnight"
        }),
    )
    .await
    .expect(201);
    t
}

#[tokio::test]
async fn whatsmonster_user_to_pro_restarts_with_credit_once_paid() {
    let mut app = TestApp::spawn().await;
    let t = whatsmonster(&app).await;
    let customer = app.customer(&t, "wm-up").await;
    let bought = app.purchase(&t, &customer, "USER").await;
    assert_eq!(app.pay(&bought, CARD_OK).await.status, "Completed");
    let id = bought["subscription"]["id"].as_str().unwrap().to_owned();
    // Bought 2026-03-05 12:00 MSK for 30 days; ten days later 20 of 30 days are left:
    // 1390 - 690 x 20/30 = 1390 - 460 = 930 (WhatsMonster 7.13).
    app.set_clock("2026-03-15T09:00:00Z").await;
    let path = format!("/v1/subscriptions/{id}/change-plan");
    let quote = app.post(&t, &path, json!({"plan": "PRO", "preview": true})).await.expect(200);
    assert_eq!(quote["effective"], "now");
    assert_eq!(money(&quote["amount_due"]), "930.00");
    assert_eq!(money(&quote["credit"]), "460.00");
    assert_eq!(money(&quote["charge"]), "1390.00");
    assert_eq!(quote["restarts"], true);
    assert_eq!(quote["remaining_days"], 20);
    assert_eq!(quote["period_days"], 30);
    assert_eq!(quote["payment"], Value::Null);
    assert_eq!(sub(&app, &t, &id).await["plan"], "USER", "a preview changes nothing");
    assert_eq!(app.count("SELECT count(*) AS n FROM payments WHERE kind = 'upgrade'").await, 0);

    let changed = app.post_idem(&t, &path, "up-1", json!({"plan": "PRO"})).await.expect(200);
    assert_eq!(changed["payment"]["kind"], "upgrade");
    assert_eq!(money(&changed["payment"]["amount"]), "930.00");
    assert_eq!(changed["payment"]["lines"][0]["kind"], "upgrade");
    // Not paid yet: the old plan's entitlements stay.
    let e = entitlements(&app, &t, &customer).await;
    assert_eq!(e["plan"], "USER");
    assert_eq!(e["metrics"]["messages"]["limit"], 10000);

    // The saved card is charged by the worker.
    app.start_worker();
    app.settle().await;
    let payment =
        app.get(&t, &format!("/v1/payments/{}", changed["payment"]["id"].as_str().unwrap())).await.expect(200);
    assert_eq!(payment["status"], "succeeded");
    let s = sub(&app, &t, &id).await;
    assert_eq!(s["plan"], "PRO");
    assert_eq!(s["current_period_start"], "2026-03-15T09:00:00Z");
    assert_eq!(s["current_period_end"], "2026-04-14T09:00:00Z");
    let e = entitlements(&app, &t, &customer).await;
    assert_eq!(e["plan"], "PRO");
    assert_eq!(e["metrics"]["messages"]["limit"], 100000);
    assert_eq!(app.sim.captures_for_account(&customer), 2);

    // The ledger books the credit and the new charge as their own entries.
    let entries = plan_change_entries(&app, &t).await;
    let has = |code: &str, amount: &str| entries.iter().any(|(c, a)| c == code && a == amount);
    assert!(has("gateway_clearing", "-930.00") && has("customer_balance", "930.00"), "{entries:?}");
    assert!(has("revenue", "-460.00") && has("customer_balance", "460.00"), "{entries:?}");
    assert!(has("customer_balance", "-1390.00") && has("revenue", "1390.00"), "{entries:?}");
    assert_eq!(entries.len(), 6);
    app.assert_ledger_balanced().await;
    let events = app.events(&t).await;
    let changed: Vec<&Value> = events.iter().filter(|e| e["type"] == "subscription.plan_changed").collect();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0]["data"]["from_plan"], "USER");
    assert_eq!(changed[0]["data"]["to_plan"], "PRO");
    assert_eq!(changed[0]["data"]["credit"]["value"], "460.00");
    // Irreversible: back to USER is a downgrade for the next period, not a refund.
    let back = app.post(&t, &path, json!({"plan": "USER"})).await.expect(200);
    assert_eq!(back["effective"], "next_period");
    assert_eq!(money(&back["amount_due"]), "0.00");
    assert_eq!(sub(&app, &t, &id).await["scheduled_plan"], "USER");
}

#[tokio::test]
async fn orbita_prorates_the_surcharge_and_keeps_the_period_end() {
    let app = TestApp::with_worker().await;
    let t = orbita(&app, json!({"upgrade_mode": "prorate", "renewal_notice_days": 0})).await;
    app.plan_monthly(&t, "BUSINESS", "4990.00").await;
    let (customer, id) = bought_monthly(&app, &t, "orb-up", "2026-03-10T09:00:00Z").await;
    // 31 days (Mar 10 - Apr 10), 17 left on Mar 24: 3000 x 17/31 = 1645.16 (Orbita 18.3.1);
    // the credit 1990 x 17/31 = 1091.29 and the charge 2736.45 add up to it.
    app.set_clock("2026-03-24T09:00:00Z").await;
    let changed =
        app.post(&t, &format!("/v1/subscriptions/{id}/change-plan"), json!({"plan": "BUSINESS"})).await.expect(200);
    assert_eq!(money(&changed["amount_due"]), "1645.16");
    assert_eq!(money(&changed["credit"]), "1091.29");
    assert_eq!(money(&changed["charge"]), "2736.45");
    assert_eq!(changed["restarts"], false);
    app.settle().await;
    let s = sub(&app, &t, &id).await;
    assert_eq!(s["plan"], "BUSINESS");
    assert_eq!(s["current_period_start"], "2026-03-10T09:00:00Z");
    assert_eq!(s["current_period_end"], "2026-04-10T09:00:00Z", "prorate keeps the period end");
    assert_eq!(s["next_charge_at"], "2026-04-10T09:00:00Z");
    // The renewal charges the new plan's full price.
    app.advance_to("2026-04-10T09:00:00Z").await;
    let payments = payments_of(&app, &t, &customer).await;
    let amounts: Vec<(&str, &str)> =
        payments.iter().map(|p| (p["kind"].as_str().unwrap(), money(&p["amount"]))).collect();
    assert_eq!(amounts, [("purchase", "1990.00"), ("upgrade", "1645.16"), ("renewal", "4990.00")]);
    assert!(payments.iter().all(|p| p["status"] == "succeeded"));
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_month_end_monthly_plan_upgrades_to_an_annual_one_with_credit() {
    let app = TestApp::with_worker().await;
    let t = orbita(&app, json!({"upgrade_mode": "prorate", "renewal_notice_days": 0})).await;
    app.post(
        &t,
        "/v1/plans",
        json!({
            "code": "BUSINESS_YEAR", "name": "Бизнес на год", "price": {"value": "49900.00", "currency": "RUB"},
            "period": {"unit": "year", "count": 1}, "auto_renew": true
        }),
    )
    .await
    .expect(201);
    // Bought Jan 31: the period ends Feb 28 (28 days); on Feb 10, 18 days are left.
    let (_, id) = bought_monthly(&app, &t, "orb-year", "2026-01-31T10:00:00Z").await;
    app.set_clock("2026-02-10T10:00:00Z").await;
    let path = format!("/v1/subscriptions/{id}/change-plan");
    // Different period lengths always restart with credit: 1990 x 18/28 = 1279.29 credit,
    // 49900 - 1279.2857... = 48620.71 due.
    let quote = app.post(&t, &path, json!({"plan": "BUSINESS_YEAR", "preview": true})).await.expect(200);
    assert_eq!(quote["period_days"], 28);
    assert_eq!(quote["remaining_days"], 18);
    assert_eq!(money(&quote["credit"]), "1279.29");
    assert_eq!(money(&quote["amount_due"]), "48620.71");
    assert_eq!(money(&quote["charge"]), "49900.00");
    assert_eq!(quote["restarts"], true);
    app.post(&t, &path, json!({"plan": "BUSINESS_YEAR"})).await.expect(200);
    app.settle().await;
    let s = sub(&app, &t, &id).await;
    assert_eq!(s["plan"], "BUSINESS_YEAR");
    assert_eq!(s["current_period_start"], "2026-02-10T10:00:00Z");
    assert_eq!(s["current_period_end"], "2027-02-10T10:00:00Z");
    assert_eq!(s["next_charge_at"], "2027-02-10T10:00:00Z");
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_change_worth_less_than_a_rouble_applies_at_once_without_a_charge() {
    let app = TestApp::spawn().await;
    let t = orbita(&app, json!({"upgrade_mode": "prorate"})).await;
    app.plan_monthly(&t, "START_PLUS", "1991.00").await;
    let (customer, id) = bought_monthly(&app, &t, "orb-min", "2026-03-10T09:00:00Z").await;
    // 1.00 x 15/31 = 0.48: below the minimum, not charged, applied now.
    app.set_clock("2026-03-26T09:00:00Z").await;
    let changed =
        app.post(&t, &format!("/v1/subscriptions/{id}/change-plan"), json!({"plan": "START_PLUS"})).await.expect(200);
    assert_eq!(changed["effective"], "now");
    assert_eq!(money(&changed["amount_due"]), "0.00");
    assert_eq!(changed["payment"], Value::Null);
    assert_eq!(changed["subscription"]["plan"], "START_PLUS");
    assert_eq!(changed["subscription"]["current_period_end"], "2026-04-10T09:00:00Z");
    assert_eq!(app.count("SELECT count(*) AS n FROM payments WHERE kind = 'upgrade'").await, 0);
    assert_eq!(app.sim.captures_for_account(&customer), 1);
    // Credit 1990 x 15/31 = 962.90, charge 963.38, the 0.48 waived: the balance stays zero.
    let entries = plan_change_entries(&app, &t).await;
    assert!(entries.contains(&("revenue".into(), "-962.90".into())), "{entries:?}");
    assert!(entries.contains(&("revenue".into(), "963.38".into())), "{entries:?}");
    assert!(entries.contains(&("revenue".into(), "-0.48".into())), "{entries:?}");
    app.assert_ledger_balanced().await;
    let balance = app
        .count(&format!(
            "SELECT coalesce(sum(e.amount), 0)::int8 * 100 AS n FROM ledger_entries e JOIN ledger_accounts a ON a.id = e.account_id \
             WHERE a.customer_id = '{customer}'"
        ))
        .await;
    assert_eq!(balance, 0);
}

#[tokio::test]
async fn a_downgrade_waits_for_the_renewal_and_can_be_cancelled() {
    let app = TestApp::with_worker().await;
    let t = app.tenant("Orbita", "Europe/Moscow", json!({"renewal_notice_days": 0})).await;
    app.plan_monthly(&t, "BUSINESS", "4990.00").await;
    app.plan_monthly(&t, "START", "1990.00").await;
    app.set_clock("2026-03-10T09:00:00Z").await;
    let customer = app.customer(&t, "orb-down").await;
    let bought = app.purchase(&t, &customer, "BUSINESS").await;
    assert_eq!(app.pay(&bought, CARD_OK).await.status, "Completed");
    let id = bought["subscription"]["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/subscriptions/{id}/change-plan");
    app.set_clock("2026-03-20T09:00:00Z").await;
    let down = app.post(&t, &path, json!({"plan": "START"})).await.expect(200);
    assert_eq!(down["effective"], "next_period");
    assert_eq!(down["effective_at"], "2026-04-10T09:00:00Z");
    assert_eq!(money(&down["amount_due"]), "0.00");
    assert_eq!(down["subscription"]["scheduled_plan"], "START");
    assert_eq!(down["subscription"]["plan"], "BUSINESS");
    // Changing back to the current plan cancels it; then it is scheduled again.
    let kept = app.post(&t, &path, json!({"plan": "BUSINESS"})).await.expect(200);
    assert_eq!(kept["subscription"]["scheduled_plan"], Value::Null);
    app.post(&t, &path, json!({"plan": "BUSINESS"})).await.problem(409, "same_plan");
    app.post(&t, &path, json!({"plan": "START"})).await.expect(200);
    assert_eq!(entitlements(&app, &t, &customer).await["plan"], "BUSINESS", "the current plan stays until the end");
    app.advance_to("2026-04-10T09:00:00Z").await;
    let s = sub(&app, &t, &id).await;
    assert_eq!(s["plan"], "START");
    assert_eq!(s["scheduled_plan"], Value::Null);
    assert_eq!(s["current_period_start"], "2026-04-10T09:00:00Z");
    let payments = payments_of(&app, &t, &customer).await;
    let renewal = payments.iter().find(|p| p["kind"] == "renewal").unwrap();
    assert_eq!(money(&renewal["amount"]), "1990.00");
    assert_eq!(renewal["status"], "succeeded");
    let types = app.event_types(&t).await;
    assert_eq!(types.iter().filter(|e| *e == "subscription.plan_change_scheduled").count(), 3);
    let events = app.events(&t).await;
    let changed: Vec<&Value> = events.iter().filter(|e| e["type"] == "subscription.plan_changed").collect();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0]["data"]["effective"], "next_period");
    assert_eq!(changed[0]["data"]["to_plan"], "START");
    // Errors: unknown plan, a subscription that is not changeable.
    app.post(&t, &path, json!({"plan": "NOPE"})).await.problem(404, "plan_not_found");
}

#[tokio::test]
async fn demo_is_free_once_per_customer_and_a_paid_purchase_replaces_it() {
    let app = TestApp::spawn().await;
    let t = whatsmonster(&app).await;
    let customer = app.customer(&t, "wm-demo").await;
    let demo = app.post(&t, "/v1/subscriptions", json!({"customer_id": customer, "plan": "DEMO"})).await.expect(201);
    assert_eq!(demo["payment"], Value::Null);
    assert_eq!(demo["subscription"]["status"], "trialing");
    assert_eq!(demo["subscription"]["current_period_start"], "2026-03-05T09:00:00Z");
    assert_eq!(demo["subscription"]["current_period_end"], "2026-03-12T09:00:00Z");
    let e = entitlements(&app, &t, &customer).await;
    assert_eq!(e["access"], true);
    assert_eq!(e["plan"], "DEMO");
    assert_eq!(e["metrics"]["messages"]["limit"], 100);
    let demo_id = demo["subscription"]["id"].as_str().unwrap().to_owned();
    // Change-plan is not for trials: a purchase replaces them.
    app.post(&t, &format!("/v1/subscriptions/{demo_id}/change-plan"), json!({"plan": "PRO"}))
        .await
        .problem(409, "purchase_instead");
    // Buying PRO during the trial: the trial stays until PRO is paid.
    app.set_clock("2026-03-07T09:00:00Z").await;
    let pro = app.purchase(&t, &customer, "PRO").await;
    assert_eq!(sub(&app, &t, &demo_id).await["status"], "trialing");
    assert_eq!(app.pay(&pro, CARD_OK).await.status, "Completed");
    let replaced = sub(&app, &t, &demo_id).await;
    assert_eq!(replaced["status"], "expired");
    assert_eq!(replaced["history"].as_array().unwrap().last().unwrap()["cause"], "replaced_by_purchase");
    let e = entitlements(&app, &t, &customer).await;
    assert_eq!(e["plan"], "PRO");
    assert_eq!(e["status"], "active");
    // Once per customer: DEMO again is refused, for this customer only.
    app.post(&t, "/v1/subscriptions", json!({"customer_id": customer, "plan": "DEMO"}))
        .await
        .problem(422, "trial_already_used");
    let other = app.customer(&t, "wm-demo-2").await;
    app.post(&t, "/v1/subscriptions", json!({"customer_id": other, "plan": "DEMO"})).await.expect(201);
    assert_eq!(app.count("SELECT count(*) AS n FROM trials").await, 2);
}

#[tokio::test]
async fn a_free_tier_that_renews_automatically_renews_for_nothing() {
    let app = TestApp::with_worker().await;
    let t = app.tenant("Orbita", "Europe/Moscow", json!({"renewal_notice_days": 0})).await;
    app.plan_monthly(&t, "FREE", "0.00").await;
    let customer = app.customer(&t, "orb-free").await;
    let free = app.post(&t, "/v1/subscriptions", json!({"customer_id": customer, "plan": "FREE"})).await.expect(201);
    assert_eq!(free["payment"], Value::Null);
    assert_eq!(free["subscription"]["status"], "active");
    assert_eq!(free["subscription"]["auto_renew"], true);
    let id = free["subscription"]["id"].as_str().unwrap().to_owned();
    app.advance_to("2026-05-05T09:00:00Z").await;
    let s = sub(&app, &t, &id).await;
    assert_eq!(s["status"], "active");
    assert_eq!(s["current_period_start"], "2026-05-05T09:00:00Z");
    assert_eq!(s["current_period_end"], "2026-06-05T09:00:00Z");
    assert!(payments_of(&app, &t, &customer).await.is_empty(), "nothing is charged");
    let events = app.events(&t).await;
    let renewed: Vec<&Value> = events.iter().filter(|e| e["type"] == "subscription.renewed").collect();
    assert_eq!(renewed.len(), 2);
    assert_eq!(renewed[0]["data"]["amount"]["value"], "0.00");
    // Free renewals never open a charge, and the entitlement follows the period.
    assert_eq!(entitlements(&app, &t, &customer).await["period_end"], "2026-06-05T09:00:00Z");
}

#[tokio::test]
async fn a_repeated_upgrade_request_supersedes_the_first_and_charges_once() {
    let mut app = TestApp::spawn().await;
    let t = whatsmonster(&app).await;
    let customer = app.customer(&t, "wm-twice").await;
    let bought = app.purchase(&t, &customer, "USER").await;
    assert_eq!(app.pay(&bought, CARD_OK).await.status, "Completed");
    let id = bought["subscription"]["id"].as_str().unwrap().to_owned();
    app.set_clock("2026-03-15T09:00:00Z").await;
    let path = format!("/v1/subscriptions/{id}/change-plan");
    // A client retry without an Idempotency-Key: two requests, both queued on the saved card.
    let first = app.post(&t, &path, json!({"plan": "PRO"})).await.expect(200);
    let second = app.post(&t, &path, json!({"plan": "PRO"})).await.expect(200);
    app.start_worker();
    app.settle().await;
    let p1 = app.get(&t, &format!("/v1/payments/{}", first["payment"]["id"].as_str().unwrap())).await.expect(200);
    let p2 = app.get(&t, &format!("/v1/payments/{}", second["payment"]["id"].as_str().unwrap())).await.expect(200);
    assert_eq!((p1["status"].as_str(), p1["failure_reason"].as_str()), (Some("failed"), Some("superseded")));
    assert_eq!(p2["status"], "succeeded");
    assert_eq!(app.sim.captures_for_account(&customer), 2, "the purchase and one upgrade");
    assert_eq!(sub(&app, &t, &id).await["plan"], "PRO");
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn an_upgrade_paid_with_another_card_bills_the_ended_periods_overage_to_that_card() {
    let app = TestApp::spawn().await;
    let t = whatsmonster(&app).await;
    let customer = app.customer(&t, "wm-card").await;
    let bought = app.purchase(&t, &customer, "USER").await;
    assert_eq!(app.pay(&bought, CARD_OK).await.status, "Completed");
    let id = bought["subscription"]["id"].as_str().unwrap().to_owned();
    app.set_clock("2026-03-15T09:00:00Z").await;
    let usage = json!({"events": [{"event_id": "m1", "customer_id": customer, "metric": "messages",
        "quantity": 10_200, "occurred_at": "2026-03-14T09:00:00Z"}]});
    app.post(&t, "/v1/usage", usage).await.expect(200);
    let path = format!("/v1/subscriptions/{id}/change-plan");
    let changed = app.post_idem(&t, &path, "up-card", json!({"plan": "PRO", "pay_with": "card"})).await.expect(200);
    // The customer pays the upgrade in the widget with a new card.
    let new_card = "4242424242424242";
    assert_eq!(app.pay(&changed, new_card).await.status, "Completed");
    assert_eq!(sub(&app, &t, &id).await["plan"], "PRO");
    // The restart billed the ended USER period's 200 messages above the quota
    // (x 0.05 = 10.00) to the card just used, not to the one saved at purchase.
    let overage = |card: &str| {
        format!(
            "SELECT count(*) AS n FROM payments p JOIN payment_attempts a ON a.payment_id = p.id \
             JOIN payment_methods m ON m.id = a.payment_method_id \
             WHERE p.kind = 'overage' AND p.amount = 10.00 AND m.card_last_four = '{}'",
            &card[card.len() - 4..]
        )
    };
    assert_eq!(app.count(&overage(new_card)).await, 1);
    assert_eq!(app.count(&overage(CARD_OK)).await, 0);
    app.assert_ledger_balanced().await;
}
