//! 54-FZ receipts of balance flows (GATEWAYS.md §5), as ATOL receives them: a
//! top-up is an advance (`advance`, subject 10 "payment", VAT at the calculated
//! rate, cashless); a tariff paid from the prepaid money offsets it
//! (`full_payment`, payment type 2) with the tariff's own VAT and subject, net of
//! the cashback spent; a refund onto the balance mirrors the offset; a payment
//! made entirely of cashback has no receipt.

use billing_tests::cloudpayments::CARD_OK;
use serde_json::{Value, json};

use crate::support::{Tenant, TestApp};

fn service_fiscal() -> Value {
    json!({"inn": "7704211201", "sno": "osn", "vat": "vat22", "settlement_sign": "full_payment",
           "payment_object": 4, "payment_address": "https://whatsmonster.example.ru", "email": "billing@whatsmonster.example.ru"})
}

async fn receipts_of(app: &TestApp, t: &Tenant, payment: &str) -> Vec<Value> {
    app.get(t, &format!("/v1/receipts?payment_id={payment}")).await.expect(200)["data"].as_array().unwrap().clone()
}

/// The document ATOL registered for a receipt (by its external id prefix).
fn sent(app: &TestApp, receipt: &Value) -> Value {
    let id = receipt["id"].as_str().unwrap();
    let doc = app.atol.documents_of(id).into_iter().next().expect("sent to ATOL");
    assert_eq!(doc.status, "done");
    doc.request
}

#[tokio::test]
async fn top_ups_are_advances_and_balance_payments_offset_them() {
    let mut app = TestApp::spawn().await;
    app.start_worker();
    let policy = json!({"refund_rules": [{"reasons": ["unused"], "decision": "approve", "amount": "full"}]});
    let t = app.fiscal_tenant("WhatsMonster", policy, service_fiscal()).await;
    app.post(
        &t,
        "/v1/plans",
        json!({"code": "PRO", "name": "PRO", "price": {"value": "1390.00", "currency": "RUB"},
        "period": {"unit": "day", "count": 30}, "auto_renew": false, "cashback_rate": "0.05"}),
    )
    .await
    .expect(201);
    let customer = app.customer(&t, "rc-bal").await;

    let answer = app
        .post(
            &t,
            &format!("/v1/customers/{customer}/top-ups"),
            json!({"amount": {"value": "2000.00", "currency": "RUB"}}),
        )
        .await
        .expect(201);
    app.pay(&answer, CARD_OK).await;
    let top_up = answer["payment"]["id"].as_str().unwrap().to_owned();
    // PRO by card earns 69.50 cashback; the extension then takes 69.50 of cashback
    // and 1320.50 of prepaid money.
    let bought = app.purchase(&t, &customer, "PRO").await;
    app.pay(&bought, CARD_OK).await;
    let sub = bought["subscription"]["id"].as_str().unwrap();
    let ext =
        app.post(&t, &format!("/v1/subscriptions/{sub}/extend"), json!({"pay_with": "balance"})).await.expect(200);
    let ext_id = ext["payment"]["id"].as_str().unwrap().to_owned();
    app.settle().await;

    let advance = receipts_of(&app, &t, &top_up).await;
    assert_eq!(advance.len(), 1);
    assert_eq!((advance[0]["kind"].as_str(), advance[0]["status"].as_str()), (Some("income"), Some("registered")));
    let doc = sent(&app, &advance[0]);
    let item = &doc["receipt"]["items"][0];
    assert_eq!((item["payment_method"].as_str(), item["payment_object"].as_i64()), (Some("advance"), Some(10)));
    assert_eq!(item["vat"]["type"], "vat122");
    assert_eq!(doc["receipt"]["payments"], json!([{"type": 1, "sum": 2000.00}]));

    let offset = receipts_of(&app, &t, &ext_id).await;
    assert_eq!(offset.len(), 1);
    let doc = sent(&app, &offset[0]);
    let item = &doc["receipt"]["items"][0];
    assert_eq!((item["payment_method"].as_str(), item["payment_object"].as_i64()), (Some("full_payment"), Some(4)));
    assert_eq!(item["vat"]["type"], "vat22");
    // Net of the 69.50 cashback: the seller's own money is a discount.
    assert_eq!(item["sum"], json!(1320.50));
    assert_eq!(doc["receipt"]["payments"], json!([{"type": 2, "sum": 1320.50}]));
    assert_eq!(offset[0]["total"]["value"], "1320.50");

    // Refunded onto the balance: the refund receipt mirrors the offset.
    let r = app.post(&t, "/v1/refunds", json!({"payment_id": ext_id, "reason": "unused"})).await.expect(201);
    assert_eq!(r["status"], "approved");
    app.settle().await;
    let both = receipts_of(&app, &t, &ext_id).await;
    let refund = both.iter().find(|x| x["kind"] == "income_refund").expect("refund receipt");
    let doc = sent(&app, refund);
    assert_eq!(doc["receipt"]["payments"], json!([{"type": 2, "sum": 1320.50}]));
    assert_eq!(doc["receipt"]["items"][0]["payment_method"], "full_payment");
    let op = app
        .atol
        .documents()
        .into_iter()
        .find(|d| d.external_id.starts_with(refund["id"].as_str().unwrap()))
        .unwrap()
        .op;
    assert_eq!(op, "sell_refund");

    // The returned 69.50 cashback pays a whole extension? No: a tariff of 1390.00
    // needs prepaid money too; a payment of cashback alone is not receipted. With
    // a plan at 50.00 the cashback pays all of it.
    app.post(
        &t,
        "/v1/plans",
        json!({"code": "MINI", "name": "MINI", "price": {"value": "50.00", "currency": "RUB"},
        "period": {"unit": "day", "count": 30}, "auto_renew": false}),
    )
    .await
    .expect(201);
    let other = app.customer(&t, "rc-bal-2").await;
    let first = app.purchase(&t, &other, "PRO").await;
    app.pay(&first, CARD_OK).await; // 69.50 cashback
    let sub2 = first["subscription"]["id"].as_str().unwrap();
    let down = app.post(&t, &format!("/v1/subscriptions/{sub2}/cancel"), json!({})).await.expect(200);
    assert_eq!(down["status"], "canceled");
    app.set_clock("2026-04-05T09:00:00Z").await;
    app.settle().await;
    let mini = app
        .post(&t, "/v1/subscriptions", json!({"customer_id": other, "plan": "MINI", "pay_with": "balance"}))
        .await
        .expect(201);
    assert_eq!(mini["payment"]["from_cashback"]["value"], "50.00");
    app.settle().await;
    assert!(receipts_of(&app, &t, mini["payment"]["id"].as_str().unwrap()).await.is_empty());
    app.assert_ledger_balanced().await;
}
