//! A customer's balance (SPEC §8, WhatsMonster 7.18, 7.25): top-ups by card and
//! saved card, paying purchases, extensions and renewals from it (cashback first
//! for tariffs), insufficient balances that write nothing, concurrent spends that
//! never overdraw, cashback earned and spent, and refunds that go back where the
//! money came from.

use billing_tests::cloudpayments::CARD_OK;
use serde_json::{Value, json};

use crate::support::{Tenant, TestApp};

/// WhatsMonster with PRO (1390.00 / 30 days, manual) and refunds of unused money.
async fn whatsmonster(app: &TestApp, cashback: Option<&str>) -> Tenant {
    let t = app
        .tenant(
            "WhatsMonster",
            "Europe/Moscow",
            json!({"refund_rules": [{"reasons": ["unused"], "decision": "approve", "amount": "full"}]}),
        )
        .await;
    let mut plan = json!({"code": "PRO", "name": "PRO", "price": {"value": "1390.00", "currency": "RUB"},
                          "period": {"unit": "day", "count": 30}, "auto_renew": false});
    if let Some(rate) = cashback {
        plan["cashback_rate"] = json!(rate);
    }
    app.post(&t, "/v1/plans", plan).await.expect(201);
    t
}

async fn balance(app: &TestApp, t: &Tenant, customer: &str) -> (String, String, String) {
    let b = app.get(t, &format!("/v1/customers/{customer}/balance")).await.expect(200);
    assert_eq!(b["currency"], "RUB");
    let s = |v: &Value| v.as_str().unwrap().to_owned();
    (s(&b["value"]), s(&b["prepaid"]["value"]), s(&b["cashback"]["value"]))
}

/// Tops up `amount` by card through the widget; returns the top-up payment.
async fn top_up(app: &TestApp, t: &Tenant, customer: &str, amount: &str) -> Value {
    let answer = app
        .post(t, &format!("/v1/customers/{customer}/top-ups"), json!({"amount": {"value": amount, "currency": "RUB"}}))
        .await
        .expect(201);
    assert_eq!(
        (answer["payment"]["kind"].as_str(), answer["payment"]["status"].as_str()),
        (Some("top_up"), Some("pending"))
    );
    let paid = app.pay(&answer, CARD_OK).await;
    assert_eq!(paid.status, "Completed");
    app.get(t, &format!("/v1/payments/{}", answer["payment"]["id"].as_str().unwrap())).await.expect(200)
}

fn data_of<'a>(events: &'a [Value], ty: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == ty).map(|e| &e["data"]).collect()
}

#[tokio::test]
async fn a_top_up_pays_a_purchase_and_an_extension_from_the_balance() {
    let app = TestApp::spawn().await;
    let t = whatsmonster(&app, None).await;
    let customer = app.customer(&t, "bal-1").await;
    assert_eq!(balance(&app, &t, &customer).await, ("0.00".into(), "0.00".into(), "0.00".into()));

    let topped = top_up(&app, &t, &customer, "2000.00").await;
    assert_eq!((topped["status"].as_str(), topped["amount"]["value"].as_str()), (Some("succeeded"), Some("2000.00")));
    assert_eq!(balance(&app, &t, &customer).await, ("2000.00".into(), "2000.00".into(), "0.00".into()));

    // PRO from the balance: active at once, nothing sent to the gateway.
    let charges_before = app.sim.transactions().len();
    let bought = app
        .post(&t, "/v1/subscriptions", json!({"customer_id": customer, "plan": "PRO", "pay_with": "balance"}))
        .await
        .expect(201);
    assert_eq!(bought["subscription"]["status"], "active", "{bought}");
    let p = &bought["payment"];
    assert_eq!((p["status"].as_str(), p["gateway"].as_str()), (Some("succeeded"), Some("balance")));
    assert_eq!(
        (p["from_prepaid"]["value"].as_str(), p["from_cashback"]["value"].as_str()),
        (Some("1390.00"), Some("0.00"))
    );
    assert!(p["confirmation"].is_null());
    assert_eq!(app.sim.transactions().len(), charges_before);
    assert_eq!(balance(&app, &t, &customer).await, ("610.00".into(), "610.00".into(), "0.00".into()));

    // The extension costs more than is left: 422, and nothing is written.
    let sub = bought["subscription"]["id"].as_str().unwrap();
    let payments_before = app.count("SELECT count(*) AS n FROM payments").await;
    let ledger_before = app.count("SELECT count(*) AS n FROM ledger_entries").await;
    app.post(&t, &format!("/v1/subscriptions/{sub}/extend"), json!({"pay_with": "balance"}))
        .await
        .problem(422, "insufficient_balance");
    assert_eq!(app.count("SELECT count(*) AS n FROM payments").await, payments_before);
    assert_eq!(app.count("SELECT count(*) AS n FROM ledger_entries").await, ledger_before);
    assert_eq!(balance(&app, &t, &customer).await.0, "610.00");

    top_up(&app, &t, &customer, "1000.00").await;
    let ext =
        app.post(&t, &format!("/v1/subscriptions/{sub}/extend"), json!({"pay_with": "balance"})).await.expect(200);
    assert_eq!(
        (ext["payment"]["status"].as_str(), ext["payment"]["kind"].as_str()),
        (Some("succeeded"), Some("extension"))
    );
    assert_eq!(balance(&app, &t, &customer).await, ("220.00".into(), "220.00".into(), "0.00".into()));
    let s = app.get(&t, &format!("/v1/subscriptions/{sub}")).await.expect(200);
    assert_eq!(s["current_period_end"], "2026-04-04T09:00:00Z");

    // Events: two credits by top-up, two debits by payments, each with the balance after it.
    let events = app.events(&t).await;
    let credited = data_of(&events, "balance.credited");
    let debited = data_of(&events, "balance.debited");
    assert_eq!(credited.len(), 2);
    assert_eq!(
        (credited[0]["source"].as_str(), credited[0]["amount"]["value"].as_str()),
        (Some("top_up"), Some("2000.00"))
    );
    assert_eq!(credited[0]["prepaid"]["value"], "2000.00");
    assert_eq!(debited.len(), 2);
    assert_eq!(
        (debited[0]["source"].as_str(), debited[0]["amount"]["value"].as_str()),
        (Some("payment"), Some("1390.00"))
    );
    assert_eq!(debited[1]["prepaid"]["value"], "220.00");
    // The ledger: the prepaid account holds exactly what the API says.
    let prepaid = app
        .rows(&format!(
            "SELECT sum(e.amount)::text AS row FROM ledger_entries e JOIN ledger_accounts a ON a.id = e.account_id \
             WHERE a.code = 'customer_prepaid' AND a.customer_id = '{customer}'"
        ))
        .await;
    assert_eq!(prepaid, ["220.00"]);
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn bad_top_ups_are_refused_and_write_nothing() {
    let app = TestApp::spawn().await;
    let t = whatsmonster(&app, None).await;
    let customer = app.customer(&t, "bal-bad").await;
    let path = format!("/v1/customers/{customer}/top-ups");
    for (amount, code) in [
        (json!({"value": "-5.00", "currency": "RUB"}), "invalid_money"),
        (json!({"value": "10.001", "currency": "RUB"}), "invalid_money"),
        (json!({"value": 100, "currency": "RUB"}), "invalid_money"),
        (json!({"value": "0.50", "currency": "RUB"}), "invalid_money"),
        (json!({"value": "100.00", "currency": "USD"}), "unsupported_currency"),
    ] {
        app.post(&t, &path, json!({"amount": amount})).await.problem(422, code);
    }
    app.post(&t, &path, json!({"amount": {"value": "100.00", "currency": "RUB"}, "pay_with": "balance"}))
        .await
        .problem(422, "validation_failed");
    app.post(&t, &path, json!({"amount": {"value": "100.00", "currency": "RUB"}, "extra": 1}))
        .await
        .problem(422, "validation_failed");
    app.post(
        &t,
        "/v1/customers/00000000-0000-0000-0000-000000000000/top-ups",
        json!({"amount": {"value": "100.00", "currency": "RUB"}}),
    )
    .await
    .problem(404, "customer_not_found");
    app.get(&t, "/v1/customers/not-a-uuid/balance").await.problem(404, "customer_not_found");
    assert_eq!(app.count("SELECT count(*) AS n FROM payments").await, 0);
    // No saved card yet: a saved-card top-up is refused.
    app.post(&t, &path, json!({"amount": {"value": "100.00", "currency": "RUB"}, "pay_with": "saved_card"}))
        .await
        .problem(422, "no_saved_card");
    // Nothing to spend: a purchase from the balance is refused whole.
    app.post(&t, "/v1/subscriptions", json!({"customer_id": customer, "plan": "PRO", "pay_with": "balance"}))
        .await
        .problem(422, "insufficient_balance");
    assert_eq!(app.count("SELECT count(*) AS n FROM subscriptions").await, 0);
    assert_eq!(app.count("SELECT count(*) AS n FROM payments").await, 0);
}

#[tokio::test]
async fn cashback_is_earned_spent_on_tariffs_first_and_reversed_by_refunds() {
    let mut app = TestApp::spawn().await;
    app.start_worker();
    let t = whatsmonster(&app, Some("0.05")).await;
    let customer = app.customer(&t, "bal-cb").await;
    // PRO by card: 5% of 1390.00 = 69.50 cashback.
    let bought = app.purchase(&t, &customer, "PRO").await;
    app.pay(&bought, CARD_OK).await;
    let first = app.get(&t, &format!("/v1/payments/{}", bought["payment"]["id"].as_str().unwrap())).await.expect(200);
    assert_eq!(first["cashback_earned"]["value"], "69.50");
    assert_eq!(balance(&app, &t, &customer).await, ("69.50".into(), "0.00".into(), "69.50".into()));

    // The extension from the balance: cashback 69.50 first, prepaid 1320.50; it
    // earns 5% of the money part: 66.025 -> 66.03.
    top_up(&app, &t, &customer, "1500.00").await;
    let sub = bought["subscription"]["id"].as_str().unwrap();
    let ext =
        app.post(&t, &format!("/v1/subscriptions/{sub}/extend"), json!({"pay_with": "balance"})).await.expect(200);
    let p = &ext["payment"];
    assert_eq!(
        (p["from_cashback"]["value"].as_str(), p["from_prepaid"]["value"].as_str()),
        (Some("69.50"), Some("1320.50"))
    );
    let ext_id = p["id"].as_str().unwrap().to_owned();
    let ext = app.get(&t, &format!("/v1/payments/{ext_id}")).await.expect(200);
    assert_eq!(ext["cashback_earned"]["value"], "66.03");
    assert_eq!(balance(&app, &t, &customer).await, ("245.53".into(), "179.50".into(), "66.03".into()));

    // Refunding the extension: back onto the balance (prepaid first), and its
    // cashback is taken back.
    let r = app.post(&t, "/v1/refunds", json!({"payment_id": ext_id, "reason": "unused"})).await.expect(201);
    assert_eq!((r["status"].as_str(), r["amount"]["value"].as_str()), (Some("approved"), Some("1390.00")));
    assert_eq!(
        (r["to_prepaid"]["value"].as_str(), r["to_cashback"]["value"].as_str()),
        (Some("1320.50"), Some("69.50"))
    );
    assert_eq!(
        (r["cashback_reversed"]["value"].as_str(), r["cashback_deducted"]["value"].as_str()),
        (Some("66.03"), Some("0.00"))
    );
    app.settle().await;
    let refunds = app.get(&t, "/v1/refunds").await.expect(200);
    let done = refunds["data"].as_array().unwrap().iter().find(|x| x["id"] == r["id"]).unwrap();
    assert_eq!(done["status"], "succeeded");
    assert_eq!(balance(&app, &t, &customer).await, ("1569.50".into(), "1500.00".into(), "69.50".into()));
    assert_eq!(app.get(&t, &format!("/v1/payments/{ext_id}")).await.expect(200)["status"], "refunded");

    // A second extension spends the cashback again (69.50) and earns 66.03. The
    // card purchase is then refunded: its 69.50 cashback is taken back — 66.03
    // from the cashback left, the spent 3.47 off the money paid back.
    let second =
        app.post(&t, &format!("/v1/subscriptions/{sub}/extend"), json!({"pay_with": "balance"})).await.expect(200);
    assert_eq!(second["payment"]["from_cashback"]["value"], "69.50");
    assert_eq!(balance(&app, &t, &customer).await, ("245.53".into(), "179.50".into(), "66.03".into()));
    let r = app
        .post(&t, "/v1/refunds", json!({"payment_id": bought["payment"]["id"], "reason": "unused"}))
        .await
        .expect(201);
    assert_eq!(
        (r["cashback_reversed"]["value"].as_str(), r["cashback_deducted"]["value"].as_str()),
        (Some("66.03"), Some("3.47")),
        "{r}"
    );
    assert_eq!(r["amount"]["value"], "1386.53");
    app.settle().await;
    let sent = app.sim.refunds();
    assert_eq!(sent.last().map(|x| x.amount.to_string()), Some("1386.53".to_owned()));
    assert_eq!(balance(&app, &t, &customer).await, ("179.50".into(), "179.50".into(), "0.00".into()));
    let events = app.event_types(&t).await;
    assert!(events.iter().filter(|e| *e == "balance.credited").count() >= 4, "{events:?}");
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_top_up_is_refunded_only_as_far_as_it_is_unspent() {
    let mut app = TestApp::spawn().await;
    app.start_worker();
    let t = whatsmonster(&app, None).await;
    let customer = app.customer(&t, "bal-ref").await;
    let topped = top_up(&app, &t, &customer, "2000.00").await;
    app.post(&t, "/v1/subscriptions", json!({"customer_id": customer, "plan": "PRO", "pay_with": "balance"}))
        .await
        .expect(201);
    // 610.00 is unspent: that is all a refund of the 2000.00 top-up pays back.
    let r = app.post(&t, "/v1/refunds", json!({"payment_id": topped["id"], "reason": "unused"})).await.expect(201);
    assert_eq!((r["status"].as_str(), r["amount"]["value"].as_str()), (Some("approved"), Some("610.00")));
    // Set aside at once: nothing left to spend while the gateway pays it back.
    assert_eq!(balance(&app, &t, &customer).await.0, "0.00");
    app.settle().await;
    let sent = app.sim.refunds();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].amount.to_string(), "610.00");
    let p = app.get(&t, &format!("/v1/payments/{}", topped["id"].as_str().unwrap())).await.expect(200);
    assert_eq!(
        (p["status"].as_str(), p["refunded_amount"]["value"].as_str()),
        (Some("partially_refunded"), Some("610.00"))
    );
    // Nothing is left: a second request is rejected.
    let again = app.post(&t, "/v1/refunds", json!({"payment_id": topped["id"], "reason": "unused"})).await.expect(201);
    assert_eq!((again["status"].as_str(), again["decision_code"].as_str()), (Some("rejected"), Some("balance_spent")));
    assert_eq!(balance(&app, &t, &customer).await.0, "0.00");
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn concurrent_spends_of_one_balance_never_overdraw_it() {
    let app = TestApp::spawn().await;
    let t = whatsmonster(&app, None).await;
    // Each extension locks the subscription, then spends; the database keeps the
    // balance and refuses to let any writer take it below zero.
    let customer = app.customer(&t, "bal-race").await;
    top_up(&app, &t, &customer, "1500.00").await;
    let bought = app
        .post(&t, "/v1/subscriptions", json!({"customer_id": customer, "plan": "PRO", "pay_with": "balance"}))
        .await
        .expect(201);
    top_up(&app, &t, &customer, "1390.00").await;
    let sub = bought["subscription"]["id"].as_str().unwrap().to_owned();
    // 1500.00 left; ten extensions of 1390.00 at once: exactly one is paid.
    let path = format!("/v1/subscriptions/{sub}/extend");
    let tries = (0..10).map(|_| app.post(&t, &path, json!({"pay_with": "balance"})));
    let answers = futures_util::future::join_all(tries).await;
    let ok = answers.iter().filter(|a| a.status.as_u16() == 200).count();
    let short = answers.iter().filter(|a| a.status.as_u16() == 422 && a.body["code"] == "insufficient_balance").count();
    assert_eq!(
        (ok, short),
        (1, 9),
        "{:?}",
        answers.iter().map(|a| (a.status, a.body["code"].clone())).collect::<Vec<_>>()
    );
    assert_eq!(balance(&app, &t, &customer).await, ("110.00".into(), "110.00".into(), "0.00".into()));
    // The database itself refuses an overdraft, whoever writes.
    let refused = app
        .rows(&format!(
            "SELECT CASE WHEN balance >= 0 THEN 'ok' END AS row FROM ledger_accounts \
             WHERE code = 'customer_prepaid' AND customer_id = '{customer}'"
        ))
        .await;
    assert_eq!(refused, ["ok"]);
    let mut conn = app.db.conn().await;
    use diesel_async::RunQueryDsl;
    let err = diesel::sql_query(format!(
        "UPDATE ledger_accounts SET balance = balance - 1000 WHERE code = 'customer_prepaid' AND customer_id = '{customer}'"
    ))
    .execute(&mut conn)
    .await
    .unwrap_err();
    assert!(err.to_string().contains("ledger_accounts_no_overdraft"), "{err}");
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_declined_overage_payment_is_paid_from_the_balance() {
    let app = TestApp::with_worker().await;
    let t = app.tenant("WhatsMonster", "Europe/Moscow", json!({"renewal_notice_days": 0})).await;
    app.plan_pro(&t).await; // 100 000 messages, 0.05 above, manual renewal
    let customer = app.customer(&t, "bal-over").await;
    let bought = app.purchase(&t, &customer, "PRO").await;
    app.pay(&bought, CARD_OK).await;
    let token = billing_tests::cloudpayments::CloudPaymentsSim::token_for(CARD_OK);
    app.sim.script_token(&token, &[billing_tests::cloudpayments::TokenScript::Decline { reason_code: 5051 }]);
    app.set_clock("2026-03-20T09:00:00Z").await;
    let usage = json!({"event_id": "m1", "customer_id": customer, "metric": "messages", "quantity": 100_200,
                       "occurred_at": "2026-03-19T09:00:00Z"});
    app.post(&t, "/v1/usage", json!({"events": [usage]})).await.expect(200);
    app.advance_to("2026-04-04T09:00:00Z").await;
    let payments = app.get(&t, &format!("/v1/payments?customer_id={customer}")).await.expect(200);
    let overage = payments["data"].as_array().unwrap().iter().find(|p| p["kind"] == "overage").cloned().unwrap();
    assert_eq!((overage["status"].as_str(), overage["amount"]["value"].as_str()), (Some("failed"), Some("10.00")));
    let path = format!("/v1/payments/{}/pay", overage["id"].as_str().unwrap());
    // Nothing on the balance yet: refused whole, the debt stays as it was.
    app.post(&t, &path, json!({"pay_with": "balance"})).await.problem(422, "insufficient_balance");
    assert_eq!(
        app.get(&t, &format!("/v1/payments/{}", overage["id"].as_str().unwrap())).await.expect(200)["status"],
        "failed"
    );
    // Top up by the saved card, then pay the overage from the balance.
    app.post(
        &t,
        &format!("/v1/customers/{customer}/top-ups"),
        json!({"amount": {"value": "100.00", "currency": "RUB"}, "pay_with": "saved_card"}),
    )
    .await
    .expect(201);
    app.settle().await;
    let paid = app.post(&t, &path, json!({"pay_with": "balance"})).await.expect(200);
    assert_eq!((paid["status"].as_str(), paid["from_prepaid"]["value"].as_str()), (Some("succeeded"), Some("10.00")));
    assert_eq!(balance(&app, &t, &customer).await, ("90.00".into(), "90.00".into(), "0.00".into()));
    app.post(&t, &path, json!({"pay_with": "balance"})).await.problem(409, "payment_not_payable");
    let purchase = format!("/v1/payments/{}/pay", bought["payment"]["id"].as_str().unwrap());
    app.post(&t, &purchase, json!({"pay_with": "balance"})).await.problem(409, "payment_not_payable_here");
    app.assert_ledger_balanced().await;
}
