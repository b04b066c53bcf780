//! 54-FZ receipts registered with the ATOL Online v5 simulator: content derived by
//! hand from the tenant's fiscal settings (and a plan's override), exactly one
//! registration per receipt across lost answers, a failed attempt, duplicate
//! callbacks and a killed worker, permanent refusals dead-lettered, and the refund
//! receipt after the refund notification.

use billing_tests::atol::AtolScript;
use billing_tests::cloudpayments::CARD_OK;
use serde_json::{Value, json};

use crate::support::{Tenant, TestApp};

/// A VAT-exempt licence seller (art. 149: vat `none`, payment object 9).
pub(crate) fn licence_fiscal() -> Value {
    json!({"inn": "616812838921", "sno": "usn_income", "vat": "none", "settlement_sign": "full_prepayment",
           "payment_object": 9, "payment_address": "https://smm-gpt.ru", "email": "billing@smm-gpt.ru"})
}

/// A VAT-paying service seller (`vat22`, payment object 4).
pub(crate) fn service_fiscal() -> Value {
    json!({"inn": "7704211201", "sno": "osn", "vat": "vat22", "settlement_sign": "full_payment",
           "payment_object": 4, "payment_address": "https://orbita.example.ru", "email": "billing@orbita.example.ru"})
}

pub(crate) fn unused_refunds() -> Value {
    json!({"refund_rules": [{"reasons": ["unused"], "decision": "approve", "amount": "full"}]})
}

/// Buys and pays PRO; returns (payment id, customer e-mail, gateway transaction).
pub(crate) async fn paid(app: &TestApp, t: &Tenant, external_id: &str) -> (String, String, i64) {
    let customer = app.customer(t, external_id).await;
    let bought = app.purchase(t, &customer, "PRO").await;
    let paid = app.pay(&bought, CARD_OK).await;
    assert_eq!(paid.status, "Completed");
    (bought["payment"]["id"].as_str().unwrap().to_owned(), format!("{external_id}@example.ru"), paid.transaction_id)
}

pub(crate) async fn receipts(app: &TestApp, t: &Tenant, payment: &str) -> Vec<Value> {
    let list = app.get(t, &format!("/v1/receipts?payment_id={payment}")).await.expect(200);
    list["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn an_exempt_licence_and_a_vat_service_get_receipts_built_from_their_settings() {
    let app = TestApp::with_worker().await;
    let smm = app.fiscal_tenant("SMM-GPT", unused_refunds(), licence_fiscal()).await;
    app.plan_pro(&smm).await;
    let (payment, email, _) = paid(&app, &smm, "rc-licence").await;
    app.settle().await;
    let list = receipts(&app, &smm, &payment).await;
    assert_eq!(list.len(), 1);
    let r = &list[0];
    assert_eq!((r["kind"].as_str(), r["status"].as_str()), (Some("income"), Some("registered")), "{r}");
    assert_eq!(r["total"], json!({"value": "1390.00", "currency": "RUB"}));
    let description = app.get(&smm, &format!("/v1/payments/{payment}")).await.expect(200)["description"].clone();
    // Derived by hand from the settings: one item for the tariff, "без НДС", licence.
    assert_eq!(
        r["receipt"],
        json!({
            "client": {"email": email},
            "company": {"email": "billing@smm-gpt.ru", "sno": "usn_income", "inn": "616812838921",
                        "payment_address": "https://smm-gpt.ru"},
            "items": [{"name": description, "price": "1390.00", "quantity": "1", "measure": 0, "sum": "1390.00",
                       "payment_method": "full_prepayment", "payment_object": 9, "vat": {"type": "none"}}],
            "payments": [{"type": 1, "sum": "1390.00"}],
            "total": "1390.00"
        })
    );
    // ATOL got the amounts as JSON numbers with two decimals.
    let sent = app.atol.documents_of(r["id"].as_str().unwrap()).remove(0);
    assert_eq!(sent.total.map(|t| t.to_string()), Some("1390.00".to_owned()));
    assert!(sent.raw.contains(r#""total":1390.00"#) && sent.raw.contains(r#""price":1390.00"#), "{}", sent.raw);
    // Registered once, as attempt 1, with the fiscal attributes of the report.
    let id = r["id"].as_str().unwrap();
    assert_eq!(r["external_id"], format!("{id}-1"));
    let docs = app.atol.documents_of(id);
    assert_eq!(docs.len(), 1);
    assert_eq!((docs[0].op.as_str(), docs[0].status.as_str()), ("sell", "done"));
    let payload = docs[0].payload.clone().unwrap();
    assert_eq!(r["fiscal"]["fiscal_document_number"], payload.fiscal_document_number);
    assert_eq!(r["fiscal"]["fiscal_document_attribute"], payload.fiscal_document_attribute);
    assert_eq!(r["fiscal"]["fn_number"], payload.fn_number);
    assert_eq!(r["fiscal"]["receipt_datetime"], payload.receipt_datetime);
    assert!(app.event_types(&smm).await.contains(&"receipt.registered".to_owned()));

    // A services tenant: vat22 and object 4, unless a plan overrides them.
    let orbita = app.fiscal_tenant("Orbita", unused_refunds(), service_fiscal()).await;
    app.plan_pro(&orbita).await;
    app.post(
        &orbita,
        "/v1/plans",
        json!({"code": "LIC", "name": "Licence", "price": {"value": "500.00", "currency": "RUB"},
               "period": {"unit": "month", "count": 1}, "fiscal": {"vat": "none", "payment_object": 9}}),
    )
    .await
    .expect(201);
    let (service_payment, _, _) = paid(&app, &orbita, "rc-service").await;
    let customer = app.customer(&orbita, "rc-lic").await;
    let bought = app.purchase(&orbita, &customer, "LIC").await;
    app.pay(&bought, CARD_OK).await;
    app.settle().await;
    let service = &receipts(&app, &orbita, &service_payment).await[0];
    let item = &service["receipt"]["items"][0];
    assert_eq!((item["vat"]["type"].as_str(), item["payment_object"].as_i64()), (Some("vat22"), Some(4)));
    assert_eq!(item["payment_method"], "full_payment");
    assert_eq!(service["receipt"]["company"]["sno"], "osn");
    let licence = &receipts(&app, &orbita, bought["payment"]["id"].as_str().unwrap()).await[0];
    let item = &licence["receipt"]["items"][0];
    assert_eq!((item["vat"]["type"].as_str(), item["payment_object"].as_i64()), (Some("none"), Some(9)));
    assert_eq!(licence["status"], "registered");
}

#[tokio::test]
async fn a_refund_receipt_follows_the_refund_notification() {
    let app = TestApp::with_worker().await;
    let t = app.fiscal_tenant("SMM-GPT", unused_refunds(), licence_fiscal()).await;
    app.plan_pro(&t).await;
    let (payment, email, _) = paid(&app, &t, "rc-refund").await;
    app.settle().await;
    let r = app
        .post(
            &t,
            "/v1/refunds",
            json!({"payment_id": payment, "reason": "unused", "amount": {"value": "400.00", "currency": "RUB"}}),
        )
        .await
        .expect(201);
    assert_eq!(r["status"], "approved");
    app.settle().await;
    let list = receipts(&app, &t, &payment).await;
    assert_eq!(list.len(), 2);
    let refund = list.iter().find(|x| x["kind"] == "income_refund").expect("refund receipt");
    assert_eq!(refund["refund_id"], r["id"]);
    assert_eq!(refund["status"], "registered");
    assert_eq!(refund["total"]["value"], "400.00");
    assert_eq!(refund["receipt"]["client"]["email"], email);
    assert_eq!(refund["receipt"]["items"][0]["sum"], "400.00");
    assert_eq!(refund["receipt"]["items"][0]["vat"]["type"], "none");
    assert_eq!(refund["receipt"]["payments"], json!([{"type": 1, "sum": "400.00"}]));
    let id = refund["id"].as_str().unwrap();
    let docs = app.atol.documents_of(id);
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].op, "sell_refund");
    // The refund receipt exists only because the refund succeeded at the gateway,
    // as its Refund notification said.
    let refund_row = app.get(&t, &format!("/v1/refunds?payment_id={payment}")).await.expect(200);
    assert_eq!(refund_row["data"][0]["status"], "succeeded");
    assert_eq!(
        app.count("SELECT count(*) AS n FROM gateway_events WHERE kind = 'refund' AND outcome = 'refund_succeeded'")
            .await,
        1
    );
}

#[tokio::test]
async fn each_receipt_is_registered_exactly_once_whatever_goes_wrong() {
    let app = TestApp::with_worker().await;
    let t = app.fiscal_tenant("SMM-GPT", unused_refunds(), licence_fiscal()).await;
    app.plan_pro(&t).await;
    // 1: ATOL answers HTTP 500 (nothing recorded): the same attempt is sent again;
    // 2: the first attempt ends `fail` (queue timeout): a second attempt follows;
    // 3: refused as invalid (error 32): failed, `receipt.failed`, dead-lettered.
    app.atol.script(&[AtolScript::ServerError, AtolScript::Done]);
    let (p1, _, _) = paid(&app, &t, "rc-x1").await;
    app.settle().await;
    app.atol.script(&[AtolScript::FailTimeout, AtolScript::Done]);
    let (p2, _, _) = paid(&app, &t, "rc-x2").await;
    app.settle().await;
    app.atol.script(&[AtolScript::Reject32]);
    let (p3, _, _) = paid(&app, &t, "rc-x3").await;
    app.settle().await;

    let r1 = receipts(&app, &t, &p1).await.remove(0);
    assert_eq!((r1["status"].as_str(), r1["attempt"].as_i64()), (Some("registered"), Some(1)));
    let r2 = receipts(&app, &t, &p2).await.remove(0);
    assert_eq!((r2["status"].as_str(), r2["attempt"].as_i64()), (Some("registered"), Some(2)));
    let id2 = r2["id"].as_str().unwrap();
    let docs2 = app.atol.documents_of(id2);
    assert_eq!(docs2.len(), 2, "a new attempt only after the first failed");
    assert_eq!((docs2[0].external_id.clone(), docs2[0].status.as_str()), (format!("{id2}-1"), "fail"));
    assert_eq!((docs2[1].external_id.clone(), docs2[1].status.as_str()), (format!("{id2}-2"), "done"));
    let r3 = receipts(&app, &t, &p3).await.remove(0);
    assert_eq!(r3["status"], "failed");
    assert!(r3["failure_reason"].as_str().unwrap().contains("32"), "{r3}");
    assert!(app.event_types(&t).await.contains(&"receipt.failed".to_owned()));
    let dead = app.admin(reqwest::Method::GET, "/v1/admin/dead-letters", None).await.expect(200);
    let dead = dead["data"].as_array().unwrap();
    assert!(
        dead.iter().any(|d| d["queue"] == "billing.receipts" && d["reason"].as_str().unwrap_or("").contains("32")),
        "{dead:?}"
    );
    // 4: ATOL holds the document; callbacks (duplicated) only make the worker read
    //    the report again, and the receipt is registered once it is done.
    app.atol.script(&[AtolScript::NeverProcess]);
    let (p4, _, _) = paid(&app, &t, "rc-x4").await;
    let id4 = loop {
        let pending = receipts(&app, &t, &p4).await;
        if let Some(r) = pending.first().filter(|r| !r["attempt"].is_null())
            && !app.atol.documents_of(r["id"].as_str().unwrap()).is_empty()
        {
            break r["id"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let uuid = app.atol.documents().into_iter().find(|d| d.external_id == format!("{id4}-1")).unwrap().uuid;
    // The simulator holds the document before we have stored its uuid.
    let stored = format!("SELECT count(*) AS n FROM receipts WHERE id = '{id4}' AND provider_uuid = '{uuid}'");
    assert_eq!(app.count_when(&stored, 1).await, 1, "the document's uuid was not stored");
    // A callback is found by the external_id we sent and the document's uuid: one
    // naming another document or attempt asks for nothing, one without an
    // external_id is refused.
    let jobs = format!(
        "SELECT count(*) AS n FROM outbox_events WHERE event_type = 'register_receipt' AND payload->'data'->>'receipt_id' = '{id4}'"
    );
    let queued = app.count(&jobs).await;
    let callback = format!("/v1/webhooks/atol/{}", t.id);
    let post = async |body: Value| app.send(reqwest::Method::POST, &callback, None, None, Some(&body)).await;
    post(json!({"uuid": uuid})).await.problem(422, "invalid_callback");
    post(json!({"uuid": uuid, "external_id": "rcpt-1"})).await.problem(422, "invalid_callback");
    post(json!({"uuid": "another-document", "external_id": format!("{id4}-1")})).await.expect(200);
    post(json!({"uuid": uuid, "external_id": format!("{id4}-2")})).await.expect(200);
    assert_eq!(app.count(&jobs).await, queued, "a callback naming another document queued a poll");
    let polls = app.atol.report_requests();
    for _ in 0..3 {
        assert_eq!(app.atol.resend_callback(&uuid).await.unwrap(), 200);
    }
    assert_eq!(app.count(&jobs).await, queued + 3);
    let start = std::time::Instant::now();
    while app.atol.report_requests() < polls + 3 {
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "the callbacks did not make the worker look");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(receipts(&app, &t, &p4).await[0]["status"], "pending", "a callback is not trusted on its own");
    app.atol.release_all();
    app.settle().await;
    for (p, done) in [(&p1, 1), (&p2, 1), (&p3, 0), (&p4, 1)] {
        let r = receipts(&app, &t, p).await.remove(0);
        let id = r["id"].as_str().unwrap().to_owned();
        assert_eq!(app.atol.done_for_prefix(&id), done, "receipt {id}");
        assert_eq!(r["status"], if done == 1 { "registered" } else { "failed" });
    }
    assert_eq!(app.count("SELECT count(*) AS n FROM receipts").await, 4);
}

#[tokio::test]
async fn a_worker_killed_while_atol_holds_the_answer_registers_the_receipt_once() {
    let mut app = TestApp::spawn().await;
    let t = app.fiscal_tenant("SMM-GPT", unused_refunds(), licence_fiscal()).await;
    app.plan_pro(&t).await;
    // ATOL records the document but answers only after 5 s: the worker is killed
    // while it waits, so it never learns the document's uuid.
    app.atol.set_slow_ms(5000);
    app.atol.script(&[AtolScript::Slow]);
    let mut worker = app.worker_process();
    let (payment, _, _) = paid(&app, &t, "rc-kill").await;
    let start = std::time::Instant::now();
    while app.atol.operation_requests() == 0 {
        assert!(start.elapsed() < std::time::Duration::from_secs(60), "the worker never called ATOL");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    worker.kill_hard();
    let r = receipts(&app, &t, &payment).await.remove(0);
    assert_eq!((r["status"].as_str(), r["attempt"].as_i64()), (Some("pending"), Some(1)));
    assert_eq!(app.count("SELECT count(*) AS n FROM receipts WHERE provider_uuid IS NOT NULL").await, 0);
    // The restarted worker re-sends the same attempt: ATOL answers "already exists"
    // (error 33) with the document's uuid, and the report confirms it.
    app.start_worker();
    app.settle().await;
    let r = receipts(&app, &t, &payment).await.remove(0);
    assert_eq!((r["status"].as_str(), r["attempt"].as_i64()), (Some("registered"), Some(1)));
    let id = r["id"].as_str().unwrap();
    let docs = app.atol.documents_of(id);
    assert_eq!(docs.len(), 1, "one document at ATOL");
    assert_eq!(app.atol.done_for_prefix(id), 1);
    assert!(app.atol.operation_requests() >= 2, "the attempt was sent again");
}

#[tokio::test]
async fn an_autopay_renewal_gets_its_own_income_receipt() {
    let app = TestApp::with_worker().await;
    let t = app.fiscal_tenant("Orbita", unused_refunds(), service_fiscal()).await;
    app.plan_monthly(&t, "START", "1990.00").await;
    let customer = app.customer(&t, "rc-renew").await;
    let bought = app.purchase(&t, &customer, "START").await;
    assert_eq!(app.pay(&bought, CARD_OK).await.status, "Completed");
    app.advance_to("2026-04-05T09:00:00Z").await;
    let payments = app.get(&t, &format!("/v1/payments?customer_id={customer}")).await.expect(200);
    let renewal =
        payments["data"].as_array().unwrap().iter().find(|p| p["kind"] == "renewal").cloned().expect("renewal");
    assert_eq!(renewal["status"], "succeeded");
    let list = receipts(&app, &t, renewal["id"].as_str().unwrap()).await;
    assert_eq!(list.len(), 1);
    let r = &list[0];
    assert_eq!((r["kind"].as_str(), r["status"].as_str()), (Some("income"), Some("registered")));
    assert_eq!(r["receipt"]["items"][0]["sum"], "1990.00");
    assert_eq!(r["receipt"]["items"][0]["vat"]["type"], "vat22");
    assert_eq!(r["receipt"]["client"]["email"], "rc-renew@example.ru");
    assert_eq!(app.atol.done_for_prefix(r["id"].as_str().unwrap()), 1);
    assert_eq!(app.count("SELECT count(*) AS n FROM receipts WHERE status = 'registered'").await, 2);
    crate::events::renewal_events_carry_their_data(&app, &t, &customer, &renewal, r).await;
}

/// `n` customers of a fiscal tenant whose START subscriptions all renew at the same
/// instant, renewed in one wave with `scripts` set at ATOL first; returns the tenant
/// and each customer's (external id, registered renewal receipt).
async fn renewal_wave(app: &TestApp, n: usize, scripts: &[AtolScript]) -> (Tenant, Vec<(String, Value)>) {
    let t = app.fiscal_tenant("Orbita", unused_refunds(), service_fiscal()).await;
    app.plan_monthly(&t, "START", "1990.00").await;
    app.set_clock("2026-03-05T09:00:00Z").await;
    let mut customers = Vec::new();
    for i in 0..n {
        let external_id = format!("rc-wave-{i}");
        let customer = app.customer(&t, &external_id).await;
        let bought = app.purchase(&t, &customer, "START").await;
        assert_eq!(app.pay(&bought, CARD_OK).await.status, "Completed");
        customers.push((customer, external_id));
    }
    app.settle().await;
    app.atol.script(scripts);
    // Only the charges' own answers report the captures (no Pay notification races
    // one into the one-by-one path).
    app.sim.set_token_charge_notifications(false);
    // One wave of renewals, whose receipts are created in the wave's transaction
    // and registered together.
    app.advance_to("2026-04-05T09:00:00Z").await;
    app.settle().await;
    let mut renewed = Vec::new();
    for (customer, external_id) in customers {
        let payments = app.get(&t, &format!("/v1/payments?customer_id={customer}")).await.expect(200);
        let renewal =
            payments["data"].as_array().unwrap().iter().find(|p| p["kind"] == "renewal").cloned().expect("renewal");
        assert_eq!(renewal["status"], "succeeded", "{renewal}");
        let mut list = receipts(app, &t, renewal["id"].as_str().unwrap()).await;
        assert_eq!(list.len(), 1, "one receipt for {external_id}'s renewal: {list:?}");
        let r = list.remove(0);
        assert_eq!((r["kind"].as_str(), r["status"].as_str()), (Some("income"), Some("registered")), "{r}");
        assert_eq!(r["receipt"]["client"]["email"], format!("{external_id}@example.ru"), "each its own customer's");
        assert_eq!(r["receipt"]["items"][0]["sum"], "1990.00");
        assert_eq!(r["total"], json!({"value": "1990.00", "currency": "RUB"}));
        assert!(r["fiscal"]["fiscal_document_number"].is_number(), "the report's attributes are stored: {r}");
        assert_eq!(app.atol.done_for_prefix(r["id"].as_str().unwrap()), 1, "one document done for {external_id}");
        renewed.push((external_id, r));
    }
    let registered = app.event_types(&t).await.iter().filter(|e| *e == "receipt.registered").count();
    assert_eq!(registered, 2 * n, "one receipt.registered per purchase and per renewal");
    app.assert_ledger_balanced().await;
    (t, renewed)
}

#[tokio::test]
async fn a_wave_of_renewals_gets_each_customer_its_own_receipt_registered_once() {
    let app = TestApp::with_worker().await;
    let (t, renewed) = renewal_wave(&app, 6, &[]).await;
    // The six were registered by wave jobs (however the charges were batched), all
    // in their first round (`"round": 0`).
    let waves = app
        .rows(&format!(
            "SELECT payload->'data'->>'round' || ':' || jsonb_array_length(payload->'data'->'receipt_ids') AS row \
             FROM outbox_events WHERE tenant_id = '{}' AND event_type = 'register_receipts'",
            t.id
        ))
        .await;
    let registered: usize = waves.iter().filter_map(|w| w.strip_prefix("0:")?.parse::<usize>().ok()).sum();
    assert_eq!(registered, 6, "every renewal receipt in a wave: {waves:?}");
    for (external_id, r) in &renewed {
        let id = r["id"].as_str().unwrap();
        assert_eq!(r["external_id"], format!("{id}-1"), "{external_id}'s registered at the first attempt");
        let docs = app.atol.documents_of(id).len();
        assert_eq!(docs, 1, "sent once");
    }
}

#[tokio::test]
async fn a_receipt_failing_in_a_wave_is_carried_on_by_its_own_job_and_registered_once() {
    let app = TestApp::with_worker().await;
    // The wave's first document ends `fail` at ATOL (queue timeout); its second
    // registration call answers HTTP 500 (nothing recorded).
    let (_, renewed) = renewal_wave(&app, 4, &[AtolScript::FailTimeout, AtolScript::ServerError]).await;
    let mut attempts: Vec<i64> = renewed.iter().map(|(_, r)| r["attempt"].as_i64().unwrap()).collect();
    attempts.sort();
    assert_eq!(attempts, [1, 1, 1, 2], "only the failed document needed a second attempt");
    for (_, r) in &renewed {
        let id = r["id"].as_str().unwrap();
        let docs = app.atol.documents_of(id);
        let sent: Vec<(String, &str)> = docs.iter().map(|d| (d.external_id.clone(), d.status.as_str())).collect();
        if r["attempt"] == 2 {
            assert_eq!(
                sent,
                [(format!("{id}-1"), "fail"), (format!("{id}-2"), "done")],
                "a new attempt after the fail"
            );
        } else {
            assert_eq!(sent, [(format!("{id}-1"), "done")], "the 500 recorded nothing; the re-send registered it");
        }
    }
}

/// A document ATOL keeps processing through every round of its wave (the receipt
/// wave queue's retry ladder, three steps) is handed to its own job after the last
/// round, which follows it through the receipts queue's ladder until ATOL is done —
/// sent once, registered once.
#[tokio::test]
async fn a_receipt_still_processing_after_its_waves_last_round_is_registered_by_its_own_job() {
    let mut app = TestApp::spawn().await;
    // The receipts queue's ladder (about 47 hours) in about 17 seconds, the wave
    // queue's (42 s) in milliseconds.
    app.start_worker_with(&[("BILLING_RETRY_DELAY_DIVISOR", "10000")]);
    let t = app.fiscal_tenant("Orbita", unused_refunds(), service_fiscal()).await;
    app.plan_monthly(&t, "START", "1990.00").await;
    app.set_clock("2026-03-05T09:00:00Z").await;
    for i in 0..3 {
        let customer = app.customer(&t, &format!("rc-held-{i}")).await;
        let bought = app.purchase(&t, &customer, "START").await;
        assert_eq!(app.pay(&bought, CARD_OK).await.status, "Completed");
    }
    app.settle().await;
    let registered = "SELECT count(*) AS n FROM receipts WHERE status = 'registered'";
    assert_eq!(app.count_when(registered, 3).await, 3, "the purchases' receipts first");
    // The first renewal document stays `wait` at ATOL until released.
    app.atol.script(&[AtolScript::NeverProcess]);
    app.sim.set_token_charge_notifications(false);
    // Not `advance_to`: the clock settles only once every receipt is decided.
    app.set_clock("2026-04-05T09:00:00Z").await;

    // The wave follows the held document through every round of the ladder; the
    // round after the last hands it to its own job.
    let last_round = "SELECT count(*) AS n FROM outbox_events \
                      WHERE event_type = 'register_receipts' AND payload->'data'->>'round' = '3'";
    assert_eq!(app.count_when(last_round, 1).await, 1, "a wave job of round 3, the ladder's last");
    let last = app
        .rows(
            "SELECT seq || ' ' || (payload->'data'->'receipt_ids')::text AS row FROM outbox_events \
             WHERE event_type = 'register_receipts' AND payload->'data'->>'round' = '3'",
        )
        .await
        .remove(0);
    let (seq, ids) = last.split_once(' ').unwrap();
    let held: Vec<String> = serde_json::from_str(ids).unwrap();
    assert_eq!(held.len(), 1, "only the held receipt is still followed: {ids}");
    let held = held[0].clone();
    let handed_over = format!(
        "SELECT count(*) AS n FROM outbox_events WHERE event_type = 'register_receipt' AND seq > {seq} \
         AND payload->'data'->>'receipt_id' = '{held}'"
    );
    assert_eq!(app.count_when(&handed_over, 1).await, 1, "handed to its own job after the last round");
    let status = app.rows(&format!("SELECT status AS row FROM receipts WHERE id = '{held}'")).await;
    assert_eq!(status, ["pending"], "still pending");
    assert_eq!(app.atol.documents_of(&held).len(), 1, "never sent again while ATOL processes it");

    app.atol.release_all();
    assert_eq!(app.count_when(registered, 6).await, 6, "the held receipt registered once ATOL is done");
    let docs = app.atol.documents_of(&held);
    let sent: Vec<(String, &str)> = docs.iter().map(|d| (d.external_id.clone(), d.status.as_str())).collect();
    assert_eq!(sent, [(format!("{held}-1"), "done")], "one document, its first attempt");
    let registrations = app
        .count_when(
            "SELECT count(*) AS n FROM outbox_events WHERE event_type = 'receipt.registered' AND message = 'event'",
            6,
        )
        .await;
    assert_eq!(registrations, 6, "one receipt.registered per receipt");
    app.assert_ledger_balanced().await;
}
