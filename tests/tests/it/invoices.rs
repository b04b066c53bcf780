//! Invoices for bank transfer (SPEC §8; SellerGPT 3.1.2-3.1.3, Alfa CRM 5.3):
//! gapless numbers under concurrency, mark-paid activating access, closing acts,
//! PDFs, under-, over- and late payment, bank statement imports that never guess,
//! and bad input that writes nothing.

use serde_json::{Value, json};

use crate::support::{Tenant, TestApp};

fn requisites() -> Value {
    json!({"name": "ООО \"СеллерГПТ\"", "inn": "7704211201", "kpp": "770401001", "address": "Москва, ул. Тверская, 1",
           "bank_name": "АО «Тинькофф Банк»", "bik": "044525974", "account": "40702810910000000001",
           "correspondent_account": "30101810145250000974", "signatory": "Генеральный директор Петров П. П.",
           "vat": "none", "invoice_due_days": 5})
}

/// SellerGPT with requisites and fiscal settings (to show invoices get no receipts).
async fn sellergpt(app: &TestApp) -> Tenant {
    let fiscal = json!({"inn": "7704211201", "sno": "usn_income", "vat": "none", "settlement_sign": "full_payment",
                        "payment_object": 4, "payment_address": "https://sellergpt.ru", "email": "billing@sellergpt.ru"});
    let t = app.fiscal_tenant("SellerGPT", json!({}), fiscal).await;
    app.admin(
        reqwest::Method::PATCH,
        &format!("/v1/admin/tenants/{}", t.id),
        Some(&json!({"requisites": requisites()})),
    )
    .await
    .expect(200);
    app.post(
        &t,
        "/v1/plans",
        json!({"code": "START", "name": "Старт", "price": {"value": "990.00", "currency": "RUB"},
        "period": {"unit": "month", "count": 1}, "auto_renew": false}),
    )
    .await
    .expect(201);
    t
}

async fn company(app: &TestApp, t: &Tenant, external_id: &str, inn: &str) -> String {
    let c = app
        .post(t, "/v1/customers", json!({"external_id": external_id, "email": format!("{external_id}@corp.ru"),
            "legal_entity": {"name": format!("ООО \"{external_id}\""), "inn": inn, "kpp": "770101001", "address": "Москва"}}))
        .await
        .expect(201);
    c["id"].as_str().unwrap().to_owned()
}

async fn buy_by_invoice(app: &TestApp, t: &Tenant, customer: &str) -> (Value, Value) {
    let bought = app
        .post(t, "/v1/subscriptions", json!({"customer_id": customer, "plan": "START", "pay_with": "invoice"}))
        .await
        .expect(201);
    let invoice_id = bought["payment"]["invoice_id"].as_str().expect("invoice id").to_owned();
    let invoice = app.get(t, &format!("/v1/invoices/{invoice_id}")).await.expect(200);
    (bought, invoice)
}

async fn mark_paid(
    app: &TestApp,
    t: &Tenant,
    invoice: &Value,
    amount: &str,
    paid_at: &str,
    reference: &str,
) -> crate::support::Answer {
    app.post(
        t,
        &format!("/v1/invoices/{}/mark-paid", invoice["id"].as_str().unwrap()),
        json!({"amount": {"value": amount, "currency": "RUB"}, "paid_at": paid_at, "reference": reference}),
    )
    .await
}

async fn pdf(app: &TestApp, t: &Tenant, path: &str) -> Vec<u8> {
    let res = app.http.get(format!("{}{path}", app.base)).bearer_auth(&t.api_key).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["content-type"], "application/pdf");
    res.bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn an_invoice_paid_by_transfer_activates_access_and_issues_an_act() {
    let mut app = TestApp::spawn().await;
    app.start_worker();
    let t = sellergpt(&app).await;
    let customer = company(&app, &t, "alpha", "7701234567").await;
    let (bought, invoice) = buy_by_invoice(&app, &t, &customer).await;
    assert_eq!(bought["subscription"]["status"], "pending_payment");
    assert_eq!(
        (bought["payment"]["gateway"].as_str(), bought["payment"]["status"].as_str()),
        (Some("invoice"), Some("pending"))
    );
    assert_eq!((invoice["number"].as_str(), invoice["status"].as_str()), (Some("2026-00001"), Some("issued")));
    assert_eq!(invoice["buyer"]["inn"], "7701234567");
    assert_eq!(invoice["seller"]["account"], "40702810910000000001");
    assert_eq!(invoice["total"]["value"], "990.00");
    assert_eq!(invoice["vat_label"], "Без НДС");
    assert_eq!(invoice["total_in_words"], "Девятьсот девяносто рублей 00 копеек");
    // Issued 2026-03-05 in Moscow, five days to pay: due at 24:00 on 2026-03-10.
    assert_eq!(invoice["due_at"], "2026-03-10T21:00:00Z");
    let doc = pdf(&app, &t, &format!("/v1/invoices/{}/pdf", invoice["id"].as_str().unwrap())).await;
    assert!(doc.starts_with(b"%PDF-") && doc.len() > 2000);

    // The purchase waits for the invoice beyond the usual 24 hours.
    app.advance_to("2026-03-07T09:00:00Z").await;
    let sub = bought["subscription"]["id"].as_str().unwrap();
    assert_eq!(app.get(&t, &format!("/v1/subscriptions/{sub}")).await.expect(200)["status"], "pending_payment");

    let paid =
        mark_paid(&app, &t, &invoice, "990.00", "2026-03-06T10:00:00Z", "пп 512 от 06.03.2026").await.expect(200);
    assert_eq!((paid["outcome"].as_str(), paid["invoice"]["status"].as_str()), (Some("paid"), Some("paid")));
    assert_eq!(paid["invoice"]["amount_due"]["value"], "0.00");
    let s = app.get(&t, &format!("/v1/subscriptions/{sub}")).await.expect(200);
    assert_eq!(
        (s["status"].as_str(), s["current_period_start"].as_str()),
        (Some("active"), Some("2026-03-07T09:00:00Z"))
    );
    let payment = app.get(&t, &format!("/v1/payments/{}", bought["payment"]["id"].as_str().unwrap())).await.expect(200);
    assert_eq!(
        (payment["status"].as_str(), payment["from_prepaid"]["value"].as_str()),
        (Some("succeeded"), Some("990.00"))
    );

    // The act closes the paid period, dated its end.
    let act_id = paid["invoice"]["act_id"].as_str().expect("act").to_owned();
    let act = app.get(&t, &format!("/v1/acts/{act_id}")).await.expect(200);
    assert_eq!((act["number"].as_str(), act["total"]["value"].as_str()), (Some("2026-00001"), Some("990.00")));
    assert_eq!(
        (act["period_start"].as_str(), act["period_end"].as_str()),
        (Some("2026-03-07T09:00:00Z"), Some("2026-04-07T09:00:00Z"))
    );
    assert_eq!(act["issued_at"], "2026-04-07T09:00:00Z");
    assert!(act["lines"][0]["name"].as_str().unwrap().contains("за период 07.03.2026 – 07.04.2026"));
    assert!(pdf(&app, &t, &format!("/v1/acts/{act_id}/pdf")).await.starts_with(b"%PDF-"));

    // A second mark-paid is refused and writes nothing.
    let transfers = app.count("SELECT count(*) AS n FROM invoice_payments").await;
    mark_paid(&app, &t, &invoice, "990.00", "2026-03-06T10:00:00Z", "пп 513")
        .await
        .problem(409, "invoice_already_paid");
    mark_paid(&app, &t, &invoice, "990.00", "2026-03-06T10:00:00Z", "пп 512 от 06.03.2026")
        .await
        .problem(409, "duplicate_payment_reference");
    assert_eq!(app.count("SELECT count(*) AS n FROM invoice_payments").await, transfers);

    app.settle().await;
    // A legal entity's bank transfer needs no 54-FZ receipt.
    assert_eq!(app.count("SELECT count(*) AS n FROM receipts").await, 0);
    let types = app.event_types(&t).await;
    for ty in ["invoice.issued", "invoice.paid", "act.issued", "subscription.activated"] {
        assert!(types.iter().any(|x| x == ty), "{ty} in {types:?}");
    }
    let balance = app.get(&t, &format!("/v1/customers/{customer}/balance")).await.expect(200);
    assert_eq!(balance["value"], "0.00");
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn invoice_numbers_have_no_gaps_and_no_duplicates_under_concurrency() {
    let app = TestApp::spawn().await;
    let t = sellergpt(&app).await;
    let mut customers = Vec::new();
    for i in 0..10 {
        customers.push(company(&app, &t, &format!("c{i}"), &format!("77000000{i:02}")).await);
    }
    // A refused request in between takes no number.
    let person = app.customer(&t, "person").await;
    app.post(&t, "/v1/subscriptions", json!({"customer_id": person, "plan": "START", "pay_with": "invoice"}))
        .await
        .problem(422, "legal_entity_required");
    let tries = customers
        .iter()
        .map(|c| app.post(&t, "/v1/subscriptions", json!({"customer_id": c, "plan": "START", "pay_with": "invoice"})));
    let answers = futures_util::future::join_all(tries).await;
    assert!(
        answers.iter().all(|a| a.status.as_u16() == 201),
        "{:?}",
        answers.iter().map(|a| &a.body).collect::<Vec<_>>()
    );
    let mut numbers = app.rows("SELECT number AS row FROM invoices ORDER BY number").await;
    numbers.dedup();
    let expected: Vec<String> = (1..=10).map(|n| format!("2026-{n:05}")).collect();
    assert_eq!(numbers, expected);
    let refused = format!("SELECT count(*) AS n FROM subscriptions WHERE customer_id = '{person}'");
    assert_eq!(app.count(&refused).await, 0);
}

#[tokio::test]
async fn under_over_and_late_payments_each_have_their_outcome() {
    let app = TestApp::spawn().await;
    let t = sellergpt(&app).await;
    let a = company(&app, &t, "under", "7701111111").await;
    let (_, invoice) = buy_by_invoice(&app, &t, &a).await;
    // Underpaid: waits for the rest; what came stays on the prepaid balance.
    let part = mark_paid(&app, &t, &invoice, "500.00", "2026-03-05T08:00:00Z", "п1").await.expect(200);
    assert_eq!(
        (part["outcome"].as_str(), part["invoice"]["status"].as_str()),
        (Some("partially_paid"), Some("partially_paid"))
    );
    assert_eq!(part["invoice"]["amount_due"]["value"], "490.00");
    assert_eq!(app.get(&t, &format!("/v1/customers/{a}/balance")).await.expect(200)["prepaid"]["value"], "500.00");
    // Overpaid by the second transfer: paid, the excess stays on the balance.
    let rest = mark_paid(&app, &t, &invoice, "600.00", "2026-03-05T08:30:00Z", "п2").await.expect(200);
    assert_eq!(rest["outcome"], "paid");
    assert_eq!(rest["invoice"]["amount_received"]["value"], "1100.00");
    assert_eq!(rest["invoice"]["transfers"].as_array().unwrap().len(), 2);
    assert_eq!(app.get(&t, &format!("/v1/customers/{a}/balance")).await.expect(200)["prepaid"]["value"], "110.00");

    // Late: money arriving after the due date stays on the balance; nothing activates.
    let b = company(&app, &t, "late", "7702222222").await;
    let (bought, invoice) = buy_by_invoice(&app, &t, &b).await;
    app.set_clock("2026-03-12T09:00:00Z").await;
    let late = mark_paid(&app, &t, &invoice, "990.00", "2026-03-11T10:00:00Z", "п3").await.expect(200);
    assert_eq!((late["outcome"].as_str(), late["invoice"]["status"].as_str()), (Some("late"), Some("issued")));
    assert_eq!(app.get(&t, &format!("/v1/customers/{b}/balance")).await.expect(200)["prepaid"]["value"], "990.00");
    let s =
        app.get(&t, &format!("/v1/subscriptions/{}", bought["subscription"]["id"].as_str().unwrap())).await.expect(200);
    assert_ne!(s["status"], "active");
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn bad_invoice_requests_are_refused_and_write_nothing() {
    let app = TestApp::spawn().await;
    let t = sellergpt(&app).await;
    let c = company(&app, &t, "bad", "7703333333").await;
    let (_, invoice) = buy_by_invoice(&app, &t, &c).await;
    let before = app.count("SELECT count(*) AS n FROM invoice_payments").await;
    for (amount, code) in [("-5.00", "invalid_money"), ("10.001", "invalid_money"), ("0.00", "invalid_money")] {
        mark_paid(&app, &t, &invoice, amount, "2026-03-05T08:00:00Z", "x").await.problem(422, code);
    }
    mark_paid(&app, &t, &invoice, "990.00", "2027-01-01T00:00:00Z", "x").await.problem(422, "validation_failed");
    mark_paid(&app, &t, &invoice, "990.00", "2026-03-05T08:00:00Z", " ").await.problem(422, "validation_failed");
    app.post(
        &t,
        "/v1/invoices/00000000-0000-0000-0000-000000000000/mark-paid",
        json!({"amount": {"value": "1.00", "currency": "RUB"}, "paid_at": "2026-03-05T08:00:00Z", "reference": "y"}),
    )
    .await
    .problem(404, "invoice_not_found");
    assert_eq!(app.count("SELECT count(*) AS n FROM invoice_payments").await, before);
    // Another tenant cannot see it; a tenant without requisites cannot invoice.
    let other = app.tenant("Other", "Europe/Moscow", json!({})).await;
    app.get(&other, &format!("/v1/invoices/{}", invoice["id"].as_str().unwrap()))
        .await
        .problem(404, "invoice_not_found");
    app.post(
        &other,
        "/v1/plans",
        json!({"code": "START", "name": "S", "price": {"value": "990.00", "currency": "RUB"},
        "period": {"unit": "month", "count": 1}}),
    )
    .await
    .expect(201);
    let oc = company(&app, &other, "oc", "7704444444").await;
    app.post(&other, "/v1/subscriptions", json!({"customer_id": oc, "plan": "START", "pay_with": "invoice"}))
        .await
        .problem(422, "requisites_missing");
    assert_eq!(app.count("SELECT count(*) AS n FROM invoices").await, 1);
    // Bad requisites are refused.
    let bad = json!({"requisites": {"name": "x", "inn": "1", "address": "a", "bank_name": "b", "bik": "1",
                     "account": "1", "correspondent_account": "1"}});
    app.admin(reqwest::Method::PATCH, &format!("/v1/admin/tenants/{}", other.id), Some(&bad))
        .await
        .problem(422, "validation_failed");
}
