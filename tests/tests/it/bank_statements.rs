//! Invoice payments from a bank statement in the 1C exchange format (Alfa CRM
//! 5.3: legal entities pay invoices by bank transfer): a Windows-1251 file whose
//! incoming documents are recorded for the invoices they name, and every other
//! line reported with its reason — never guessed; importing it again records
//! nothing twice.

use serde_json::{Value, json};

use crate::support::{Tenant, TestApp};

async fn alfa(app: &TestApp) -> Tenant {
    let t = app.tenant("Alfa CRM", "Europe/Moscow", json!({})).await;
    let requisites = json!({"name": "ООО \"Альфа СРМ\"", "inn": "5406123456", "address": "Новосибирск",
        "bank_name": "ПАО Сбербанк", "bik": "045004641", "account": "40702810444050000001",
        "correspondent_account": "30101810500000000641", "invoice_due_days": 3});
    app.admin(reqwest::Method::PATCH, &format!("/v1/admin/tenants/{}", t.id), Some(&json!({"requisites": requisites})))
        .await
        .expect(200);
    app.post(
        &t,
        "/v1/plans",
        json!({"code": "CRM", "name": "Альфа CRM", "price": {"value": "12000.00", "currency": "RUB"},
        "period": {"unit": "year", "count": 1}, "auto_renew": false}),
    )
    .await
    .expect(201);
    t
}

fn document(number: &str, amount: &str, payer_inn: &str, payee_inn: &str, purpose: &str) -> String {
    // The tenant's own account when it is the payee, a landlord's otherwise.
    let payee_account = if payee_inn == "5406123456" { "40702810444050000001" } else { "40702810900000009999" };
    format!(
        "СекцияДокумент=Платежное поручение\nНомер={number}\nДата=06.03.2026\nСумма={amount}\n\
         ПлательщикСчет=40702810100000000777\nПлательщикИНН={payer_inn}\nПлательщик1=ООО \"Плательщик\"\n\
         ПолучательСчет={payee_account}\nПолучательИНН={payee_inn}\nДатаПоступило=06.03.2026\n\
         НазначениеПлатежа={purpose}\nКонецДокумента\n"
    )
}

async fn import(app: &TestApp, t: &Tenant, body: Vec<u8>) -> crate::support::Answer {
    let res = app
        .http
        .post(format!("{}/v1/invoices/import", app.base))
        .bearer_auth(&t.api_key)
        .header("Content-Type", "text/plain")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let content_type = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body = res.json::<Value>().await.unwrap_or(Value::Null);
    crate::support::Answer { status, body, content_type }
}

#[tokio::test]
async fn a_statement_pays_the_invoices_it_names_and_reports_the_rest() {
    let app = TestApp::spawn().await;
    let t = alfa(&app).await;
    let customer = app
        .post(
            &t,
            "/v1/customers",
            json!({"external_id": "corp", "email": "corp@x.ru",
            "legal_entity": {"name": "ООО \"Клиент\"", "inn": "7701234567"}}),
        )
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bought = app
        .post(&t, "/v1/subscriptions", json!({"customer_id": customer, "plan": "CRM", "pay_with": "invoice"}))
        .await
        .expect(201);
    let invoice_id = bought["payment"]["invoice_id"].as_str().unwrap().to_owned();
    let number =
        app.get(&t, &format!("/v1/invoices/{invoice_id}")).await.expect(200)["number"].as_str().unwrap().to_owned();
    assert_eq!(number, "2026-00001");

    let text = format!(
        "1CClientBankExchange\nВерсияФормата=1.03\nКодировка=Windows\nРасчСчет=40702810444050000001\n\
         СекцияРасчСчет\nНачальныйОстаток=0.00\nКонецРасчСчет\n{}{}{}{}{}{}КонецФайла\n",
        document(
            "101",
            "12000.00",
            "7701234567",
            "5406123456",
            &format!("Оплата по счету № {number} от 05.03.2026. Без НДС")
        ),
        document("102", "500.00", "7701234567", "5406123456", "Оплата по договору"),
        document("103", "700.00", "7701234567", "5406123456", "Оплата по счету 2026-00099"),
        document("104", "12000.00", "7799999999", "5406123456", &format!("Оплата счета {number} за третье лицо")),
        document("105", "3000.00", "5406123456", "7712345678", "Аренда офиса"),
        document("106", "abc", "7701234567", "5406123456", &format!("счет {number}")),
    );
    let (cp1251, _, _) = encoding_rs::WINDOWS_1251.encode(&text);
    // The statement of 6 March, imported that afternoon.
    app.set_clock("2026-03-06T12:00:00Z").await;
    let report = import(&app, &t, cp1251.to_vec()).await.expect(200);
    assert_eq!((report["documents"].as_u64(), report["not_incoming"].as_u64()), (Some(6), Some(1)));
    let matched = report["matched"].as_array().unwrap();
    assert_eq!(matched.len(), 1, "{report}");
    assert_eq!(
        (matched[0]["document_number"].as_str(), matched[0]["invoice_number"].as_str()),
        (Some("101"), Some(number.as_str()))
    );
    assert_eq!(
        (matched[0]["amount"]["value"].as_str(), matched[0]["outcome"].as_str()),
        (Some("12000.00"), Some("paid"))
    );
    let reasons: Vec<(&str, &str)> = report["unmatched"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["document_number"].as_str().unwrap(), u["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("102", "no_invoice_number"),
            ("103", "invoice_not_found"),
            ("104", "payer_mismatch"),
            ("106", "invalid_amount")
        ]
    );
    let unmatched_payer = &report["unmatched"][0];
    assert_eq!(
        (unmatched_payer["payer"].as_str(), unmatched_payer["amount"].as_str()),
        (Some("ООО \"Плательщик\""), Some("500.00"))
    );

    let invoice = app.get(&t, &format!("/v1/invoices/{invoice_id}")).await.expect(200);
    assert_eq!(invoice["status"], "paid");
    assert_eq!(invoice["transfers"][0]["source"], "bank_statement");
    assert_eq!(invoice["transfers"][0]["paid_at"], "2026-03-05T21:00:00Z");
    let sub =
        app.get(&t, &format!("/v1/subscriptions/{}", bought["subscription"]["id"].as_str().unwrap())).await.expect(200);
    assert_eq!(sub["status"], "active");

    // The same statement again: nothing is recorded twice.
    let again = import(&app, &t, cp1251.to_vec()).await.expect(200);
    assert!(again["matched"].as_array().unwrap().is_empty());
    assert_eq!(again["unmatched"][0]["reason"], "already_recorded");
    assert_eq!(app.count("SELECT count(*) AS n FROM invoice_payments").await, 1);

    // Not a statement at all.
    import(&app, &t, b"hello".to_vec()).await.problem(422, "invalid_statement");
    app.assert_ledger_balanced().await;
}
