//! CloudPayments notifications: authenticated by HMAC over the raw body, both
//! encodings, refusals write nothing.

use base64::Engine as _;
use billing_tests::cloudpayments::{CARD_OK, Format, Site, base_fields, hmac_sha256};
use serde_json::{Value, json};

use crate::support::{Tenant, TestApp};

async fn setup(app: &TestApp) -> (Tenant, Value) {
    let t = app.tenant("WhatsMonster", "Europe/Moscow", json!({})).await;
    app.plan_pro(&t).await;
    let customer = app.customer(&t, "hook-1").await;
    let bought = app.purchase(&t, &customer, "PRO").await;
    (t, bought)
}

pub(crate) fn pay_body(bought: &Value, tx: i64) -> String {
    let params = serde_json::from_value(bought["payment"]["confirmation"].clone()).unwrap();
    let mut fields = base_fields(tx, &params, "1390.00".parse().unwrap(), CARD_OK);
    fields.push(("Status".into(), "Completed".into()));
    fields.push(("Token".into(), "tk_forged".into()));
    serde_urlencoded::to_string(&fields).unwrap()
}

pub(crate) async fn post_raw(
    app: &TestApp,
    t: &Tenant,
    kind: &str,
    body: &str,
    headers: &[(&str, String)],
) -> reqwest::Response {
    let mut req = app
        .http
        .post(format!("{}/v1/webhooks/cloudpayments/{}/{kind}", app.base, t.id))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    req.send().await.unwrap()
}

pub(crate) fn sign(secret: &str, body: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(hmac_sha256(secret.as_bytes(), body.as_bytes()))
}

#[tokio::test]
async fn unsigned_or_missigned_notifications_are_refused_and_write_nothing() {
    let app = TestApp::spawn().await;
    let (t, bought) = setup(&app).await;
    let body = pay_body(&bought, 9001);
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("no signature", vec![]),
        ("wrong secret", vec![("Content-HMAC", sign("not-the-secret", &body))]),
        ("signature of another body", vec![("Content-HMAC", sign(&t.api_secret, &body.replace("1390.00", "1.00")))]),
        ("garbage", vec![("Content-HMAC", "!!!not base64".into()), ("X-Content-HMAC", String::new())]),
        ("other tenant's secret", vec![("X-Content-HMAC", sign("secret-of-someone-else", &body))]),
    ];
    for (case, headers) in cases {
        let res = post_raw(&app, &t, "pay", &body, &headers).await;
        assert_eq!(res.status().as_u16(), 401, "{case}");
        let problem: Value = res.json().await.unwrap();
        assert_eq!(problem["code"], "invalid_signature", "{case}");
    }
    assert_eq!(app.count("SELECT count(*) AS n FROM gateway_events").await, 0);
    assert_eq!(app.count("SELECT count(*) AS n FROM payments WHERE status = 'succeeded'").await, 0);
    assert_eq!(app.count("SELECT count(*) AS n FROM ledger_transactions").await, 0);
    assert_eq!(app.count("SELECT count(*) AS n FROM outbox_events").await, 0);
    assert_eq!(app.count("SELECT count(*) AS n FROM payment_methods").await, 0);

    // The same body correctly signed (either header) is accepted.
    let res = post_raw(&app, &t, "pay", &body, &[("X-Content-HMAC", sign(&t.api_secret, &body))]).await;
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"code": 0}));
    assert_eq!(app.count("SELECT count(*) AS n FROM payments WHERE status = 'succeeded'").await, 1);
}

#[tokio::test]
async fn signed_but_malformed_notifications_are_refused_without_writes() {
    let app = TestApp::spawn().await;
    let (t, _) = setup(&app).await;
    for body in ["Amount=1390.00&InvoiceId=x", "TransactionId=5&Amount=lots", "%ZZ=1"] {
        let res = post_raw(&app, &t, "pay", body, &[("Content-HMAC", sign(&t.api_secret, body))]).await;
        assert_eq!(res.status().as_u16(), 422, "{body}");
        assert_eq!(res.json::<Value>().await.unwrap()["code"], "invalid_notification");
    }
    assert_eq!(app.count("SELECT count(*) AS n FROM gateway_events").await, 0);
}

#[tokio::test]
async fn unknown_tenant_or_kind_is_404() {
    let app = TestApp::spawn().await;
    let (t, bought) = setup(&app).await;
    let body = pay_body(&bought, 1);
    let sig = sign(&t.api_secret, &body);
    let res = app
        .http
        .post(format!("{}/v1/webhooks/cloudpayments/{}/pay", app.base, uuid::Uuid::new_v4()))
        .header("Content-HMAC", &sig)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 404);
    let res = post_raw(&app, &t, "teleport", &body, &[("Content-HMAC", sig)]).await;
    assert_eq!(res.status().as_u16(), 404);
    let res =
        app.http.post(format!("{}/v1/webhooks/cloudpayments/not-a-uuid/pay", app.base)).body("x").send().await.unwrap();
    assert_eq!(res.status().as_u16(), 404);
}

#[tokio::test]
async fn json_notifications_are_read_exactly() {
    let app = TestApp::spawn().await;
    let (t, bought) = setup(&app).await;
    app.sim.set_format(&t.public_id, Format::Json);
    assert_eq!(app.sim.site(&t.public_id).map(|s: Site| s.format), Some(Format::Json));
    let outcome = app.pay(&bought, CARD_OK).await;
    assert_eq!(outcome.status, "Completed");
    assert_eq!(outcome.deliveries.iter().map(|d| d.code).collect::<Vec<_>>(), vec![Some(0), Some(0)]);
    let payment = app.get(&t, &format!("/v1/payments/{}", bought["payment"]["id"].as_str().unwrap())).await.expect(200);
    assert_eq!(payment["status"], "succeeded");
    assert_eq!(app.count("SELECT count(*) AS n FROM gateway_events WHERE content_type = 'application/json'").await, 2);
}

#[tokio::test]
async fn recurrent_notifications_are_stored_once_and_acknowledged() {
    let app = TestApp::spawn().await;
    let (t, _) = setup(&app).await;
    let body = "Id=sc_123&AccountId=a&Status=Active&SuccessfulTransactionsNumber=1&FailedTransactionsNumber=0";
    let res = post_raw(&app, &t, "recurrent", body, &[("Content-HMAC", sign(&t.api_secret, body))]).await;
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"code": 0}));
    let res = post_raw(&app, &t, "recurrent", body, &[("Content-HMAC", sign(&t.api_secret, body))]).await;
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"code": 0}));
    assert_eq!(app.count("SELECT count(*) AS n FROM gateway_events WHERE kind = 'recurrent'").await, 1, "deduplicated");
}

#[tokio::test]
async fn a_notification_replayed_a_day_later_with_a_valid_signature_changes_nothing() {
    let app = TestApp::spawn().await;
    let (t, bought) = setup(&app).await;
    let body = pay_body(&bought, 777_001);
    let signed = [("Content-HMAC", sign(&t.api_secret, &body))];
    let res = post_raw(&app, &t, "pay", &body, &signed).await;
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"code": 0}));
    let sub_id = bought["subscription"]["id"].as_str().unwrap();
    let sub_before = app.get(&t, &format!("/v1/subscriptions/{sub_id}")).await.expect(200);
    assert_eq!(sub_before["status"], "active");
    let snapshot = async || {
        (
            app.count("SELECT count(*) AS n FROM payments").await,
            app.count("SELECT count(*) AS n FROM ledger_transactions").await,
            app.count("SELECT count(*) AS n FROM outbox_events").await,
            app.count("SELECT count(*) AS n FROM payment_methods").await,
            app.count("SELECT count(*) AS n FROM subscription_transitions").await,
        )
    };
    let before = snapshot().await;

    // A day later someone replays the captured bytes, signature and all.
    app.set_clock("2026-03-06T09:00:00Z").await;
    for _ in 0..2 {
        let res = post_raw(&app, &t, "pay", &body, &signed).await;
        assert_eq!(res.json::<Value>().await.unwrap(), json!({"code": 0}), "acknowledged, not acted on");
    }
    // A replayed Check of the paid invoice is refused (its payment window has
    // passed: 20), and changes nothing either.
    let check = post_raw(&app, &t, "check", &body, &signed).await;
    assert_eq!(check.json::<Value>().await.unwrap(), json!({"code": 20}));
    assert_eq!(snapshot().await, before);
    let sub_after = app.get(&t, &format!("/v1/subscriptions/{sub_id}")).await.expect(200);
    assert_eq!(sub_after["current_period_end"], sub_before["current_period_end"]);
    assert_eq!(app.count("SELECT count(*) AS n FROM gateway_events WHERE kind = 'pay'").await, 1);
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_pay_notification_deadlocked_by_another_writer_is_applied_again_and_accepted() {
    use diesel_async::SimpleAsyncConnection;
    // PostgreSQL looks for a deadlock once, `deadlock_timeout` after a backend began
    // to wait, and rolls back the backend whose check finds the cycle. The API's
    // connections look after 4 s (by then the other writer waits too, even on a
    // loaded host), the other writer only after a minute: the Pay is the victim.
    let app = TestApp::spawn_with_db_settings(&[("deadlock_timeout", "4s")]).await;
    let (t, bought) = setup(&app).await;
    let (payment, sub) = (bought["payment"]["id"].as_str().unwrap(), bought["subscription"]["id"].as_str().unwrap());
    // Another writer holds the subscription row; the Pay notification locks its
    // payment, then waits for the subscription; the other writer then asks for the
    // payment: a deadlock, which PostgreSQL breaks by rolling back the Pay's transaction.
    let mut other = app.db.conn().await;
    other
        .batch_execute(&format!(
            "SET deadlock_timeout = '60s'; BEGIN; SELECT id FROM subscriptions WHERE id = '{sub}' FOR UPDATE"
        ))
        .await
        .unwrap();
    let waiting = "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() \
                   AND wait_event_type = 'Lock'";
    let interfere = async {
        assert_eq!(app.count_when(waiting, 1).await, 1, "the Pay waits for the subscription");
        other
            .batch_execute(&format!("SELECT id FROM payments WHERE id = '{payment}' FOR UPDATE"))
            .await
            .expect("the other writer is not the deadlock's victim");
        // The Pay runs again and now waits for the payment this writer took.
        assert_eq!(app.count_when(waiting, 1).await, 1, "the Pay is applied again");
        other.batch_execute("ROLLBACK").await.unwrap();
    };
    let (paid, ()) = tokio::join!(app.pay(&bought, CARD_OK), interfere);
    assert_eq!(paid.status, "Completed");
    assert_eq!(paid.deliveries.last().map(|d| (d.http_status, d.code)), Some((200, Some(0))), "{:?}", paid.deliveries);
    let s = app.get(&t, &format!("/v1/subscriptions/{sub}")).await.expect(200);
    assert_eq!(s["status"], "active");
    let p = app.get(&t, &format!("/v1/payments/{payment}")).await.expect(200);
    assert_eq!(p["status"], "succeeded");
    let succeeded = app.event_types(&t).await.iter().filter(|e| *e == "payment.succeeded").count();
    assert_eq!(succeeded, 1, "applied once");
    app.assert_ledger_balanced().await;
}
