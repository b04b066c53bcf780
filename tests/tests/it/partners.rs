//! Partner commissions (SPEC §8, SellerGPT 3.2.2): customers attributed once to a
//! registered partner; every captured payment for access accrues the tenant's
//! rate (card, saved-card renewals, payments from prepaid money; never top-ups);
//! refunds reverse it pro rata; the monthly statement reconciles to the ledger.

use billing_tests::cloudpayments::CARD_OK;
use serde_json::{Value, json};

use crate::support::{Tenant, TestApp};

async fn sellergpt(app: &TestApp) -> Tenant {
    let policy = json!({"partner_commission_rate": "0.20",
                        "refund_rules": [{"reasons": ["unused"], "decision": "approve", "amount": "full"}]});
    let t = app.tenant("SellerGPT", "Europe/Moscow", policy).await;
    app.plan_monthly(&t, "START", "990.00").await;
    t
}

async fn statement(app: &TestApp, t: &Tenant, code: &str, month: &str) -> Value {
    app.get(t, &format!("/v1/partners/{code}/statement?month={month}")).await.expect(200)
}

#[tokio::test]
async fn commissions_accrue_on_paid_access_and_refunds_reverse_them() {
    let mut app = TestApp::spawn().await;
    app.start_worker();
    let t = sellergpt(&app).await;
    let partner = app.post(&t, "/v1/partners", json!({"code": "blogger-1", "name": "Блогер"})).await.expect(201);
    assert_eq!(partner["code"], "blogger-1");
    app.post(&t, "/v1/partners", json!({"code": "blogger-1", "name": "again"})).await.problem(409, "partner_exists");
    app.post(&t, "/v1/partners", json!({"code": "a b", "name": "x"})).await.problem(422, "validation_failed");

    // An unknown code is refused and writes nothing.
    app.post(&t, "/v1/customers", json!({"external_id": "p-0", "email": "p0@x.ru", "partner_code": "nope"}))
        .await
        .problem(422, "partner_not_found");
    assert_eq!(app.count("SELECT count(*) AS n FROM customers").await, 0);

    // Customer A: attributed at creation, buys START by card (990.00 -> 198.00),
    // renews by the saved card a month later (another 198.00).
    let a = app
        .post(&t, "/v1/customers", json!({"external_id": "p-1", "email": "p1@x.ru", "partner_code": "blogger-1"}))
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bought = app.purchase(&t, &a, "START").await;
    app.pay(&bought, CARD_OK).await;
    let first = bought["payment"]["id"].as_str().unwrap().to_owned();

    // Customer B: attributed by PATCH before paying; its top-up earns nothing, its
    // purchase from prepaid money does.
    let b = app.customer(&t, "p-2").await;
    let patched = app
        .send(
            reqwest::Method::PATCH,
            &format!("/v1/customers/{b}"),
            Some(&t.api_key),
            None,
            Some(&json!({"partner_code": "blogger-1"})),
        )
        .await
        .expect(200);
    assert_eq!(patched["partner_code"], "blogger-1");
    let top = app
        .post(&t, &format!("/v1/customers/{b}/top-ups"), json!({"amount": {"value": "1000.00", "currency": "RUB"}}))
        .await
        .expect(201);
    app.pay(&top, CARD_OK).await;
    app.post(&t, "/v1/subscriptions", json!({"customer_id": b, "plan": "START", "pay_with": "balance"}))
        .await
        .expect(201);
    // Attribution is closed once paid for.
    app.send(
        reqwest::Method::PATCH,
        &format!("/v1/customers/{b}"),
        Some(&t.api_key),
        None,
        Some(&json!({"partner_code": "blogger-1"})),
    )
    .await
    .problem(409, "partner_attribution_closed");

    // Half of A's first payment is refunded: 99.00 of its commission is reversed.
    let r = app
        .post(
            &t,
            "/v1/refunds",
            json!({"payment_id": first, "reason": "unused", "amount": {"value": "495.00", "currency": "RUB"}}),
        )
        .await
        .expect(201);
    assert_eq!(r["status"], "approved");
    app.settle().await;

    let march = statement(&app, &t, "blogger-1", "2026-03").await;
    assert_eq!((march["month"].as_str(), march["time_zone"].as_str()), (Some("2026-03"), Some("Europe/Moscow")));
    assert_eq!(march["from"], "2026-02-28T21:00:00Z");
    let lines = march["lines"].as_array().unwrap();
    let kinds: Vec<(&str, &str)> =
        lines.iter().map(|l| (l["kind"].as_str().unwrap(), l["amount"]["value"].as_str().unwrap())).collect();
    assert_eq!(kinds, [("accrual", "198.00"), ("accrual", "198.00"), ("reversal", "99.00")]);
    assert_eq!(lines[0]["payment_id"], first.as_str());
    assert_eq!((lines[0]["base"]["value"].as_str(), lines[0]["rate"].as_str()), (Some("990.00"), Some("0.2")));
    assert_eq!(lines[2]["refund_id"], r["id"]);
    assert_eq!(
        (march["accrued"]["value"].as_str(), march["reversed"]["value"].as_str(), march["net"]["value"].as_str()),
        (Some("396.00"), Some("99.00"), Some("297.00"))
    );
    assert_eq!(march["ledger_net"], march["net"]);

    // Both renew by their saved cards on 2026-04-05 (Moscow): April's accruals.
    app.advance_to("2026-04-05T09:00:00Z").await;
    let renewed =
        app.get(&t, &format!("/v1/subscriptions/{}", bought["subscription"]["id"].as_str().unwrap())).await.expect(200);
    assert_eq!(renewed["current_period_end"], "2026-05-05T09:00:00Z");
    let april = statement(&app, &t, "blogger-1", "2026-04").await;
    let lines = april["lines"].as_array().unwrap();
    let customers: Vec<&str> = lines.iter().map(|l| l["customer_id"].as_str().unwrap()).collect();
    assert_eq!(lines.len(), 2, "{april}");
    assert!(customers.contains(&a.as_str()) && customers.contains(&b.as_str()));
    assert!(lines.iter().all(|l| l["kind"] == "accrual" && l["amount"]["value"] == "198.00"));
    assert_eq!(april["ledger_net"], april["net"]);
    assert_eq!(april["net"]["value"], "396.00");
    // Events of each accrual and reversal.
    let types = app.event_types(&t).await;
    assert_eq!(types.iter().filter(|x| *x == "partner.commission_accrued").count(), 4);
    assert_eq!(types.iter().filter(|x| *x == "partner.commission_reversed").count(), 1);
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn statements_refuse_unknown_partners_and_bad_months() {
    let app = TestApp::spawn().await;
    let t = sellergpt(&app).await;
    app.post(&t, "/v1/partners", json!({"code": "p", "name": "P"})).await.expect(201);
    app.get(&t, "/v1/partners/nope/statement?month=2026-03").await.problem(404, "partner_not_found");
    // The parameter's pattern is the rule: 1970-01..9999-12, digits only.
    for month in ["2026-13", "2026-3", "26-03", "march", "", "1969-12", "2026-%2B1", "%2B202-03", "2026-00"] {
        app.get(&t, &format!("/v1/partners/p/statement?month={month}")).await.problem(422, "validation_failed");
    }
    for edge in ["1970-01", "9999-12"] {
        assert_eq!(statement(&app, &t, "p", edge).await["net"]["value"], "0.00", "{edge}");
    }
    let empty = statement(&app, &t, "p", "2026-03").await;
    assert_eq!((empty["net"]["value"].as_str(), empty["ledger_net"]["value"].as_str()), (Some("0.00"), Some("0.00")));
    let listed = app.get(&t, "/v1/partners").await.expect(200);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    // Another tenant cannot see them.
    let other = app.tenant("Other", "Europe/Moscow", json!({})).await;
    app.get(&other, "/v1/partners/p/statement?month=2026-03").await.problem(404, "partner_not_found");
}
