//! Secrets never leave through logs or problem details: the real binaries run with
//! debug logging to files while a tenant is created, buys, pays, is renewed by the
//! worker with a saved card, has receipts registered with ATOL, gets refused
//! requests and rotates its keys; then no API key, webhook secret, gateway or
//! fiscal credential, card token or operator token appears in any log line or
//! error answer.

use std::time::Duration;

use billing_tests::cloudpayments::{CARD_OK, CloudPaymentsSim, Site, WidgetParams};
use billing_tests::process::{Proc, binary, free_port, wait_http_ok};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::TestApp;
use crate::support::app::ADMIN_TOKEN;

struct Api {
    base: String,
    http: reqwest::Client,
    /// Every error answer's body, to search for secrets.
    problems: std::sync::Mutex<Vec<String>>,
}

impl Api {
    async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        if status >= 400 {
            self.problems.lock().unwrap().push(text.clone());
        }
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn secrets_never_reach_logs_or_problem_details() {
    let app = TestApp::spawn().await;
    let port = free_port();
    let (mut env, dir) = app.process_env("secrets", port);
    env.push(("RUST_LOG", "debug".to_owned()));
    let mut api_proc = Proc::spawn_logged(&binary("billing-api"), &env, &dir.join("api.log"));
    let api = Api {
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
        problems: Default::default(),
    };
    assert!(wait_http_ok(&format!("{}/healthz", api.base), Duration::from_secs(30)).await, "API up");
    let mut worker = Proc::spawn_logged(&binary("billing-worker"), &env, &dir.join("worker.log"));

    let (api_secret, atol_password) = ("cp-secret-Zq81xkP0", "atol-pass-Wm42rTy7");
    app.atol.add_account("secret-login", atol_password, "secret-group");
    let (_, created) = api
        .call(Method::POST, "/v1/admin/tenants", ADMIN_TOKEN, Some(json!({
            "name": "Orbita", "time_zone": "Europe/Moscow",
            "gateway": {"kind": "cloudpayments", "public_id": "pk_secret", "api_secret": api_secret, "api_url": app.sim.base_url},
            "fiscal": {"inn": "7704211201", "sno": "osn", "vat": "vat22", "settlement_sign": "full_payment",
                       "payment_object": 4, "payment_address": "https://orbita.example.ru", "email": "b@orbita.example.ru",
                       "provider": {"login": "secret-login", "password": atol_password, "group_code": "secret-group",
                                    "api_url": app.atol.base_url}},
            "policy": {"renewal_notice_days": 0}})))
        .await;
    let (tenant, key, webhook_secret) = (
        created["id"].as_str().unwrap().to_owned(),
        created["api_key"].as_str().unwrap().to_owned(),
        created["webhook_secret"].as_str().unwrap().to_owned(),
    );
    app.sim.register_site(Site {
        public_id: "pk_secret".into(),
        api_secret: api_secret.into(),
        notify_base: format!("{}/v1/webhooks/cloudpayments/{tenant}", api.base),
        format: Default::default(),
    });
    let plan = json!({"code": "START", "name": "START", "price": {"value": "1990.00", "currency": "RUB"},
                      "period": {"unit": "month", "count": 1}, "auto_renew": true});
    assert_eq!(api.call(Method::POST, "/v1/plans", &key, Some(plan)).await.0, 201);
    let (_, customer) = api
        .call(Method::POST, "/v1/customers", &key, Some(json!({"external_id": "s-1", "email": "s-1@example.ru"})))
        .await;
    let customer = customer["id"].as_str().unwrap().to_owned();
    let (_, bought) = api
        .call(
            Method::POST,
            "/v1/subscriptions",
            &key,
            Some(json!({"customer_id": customer, "plan": "START", "pay_with": "card"})),
        )
        .await;
    let params: WidgetParams = serde_json::from_value(bought["payment"]["confirmation"].clone()).unwrap();
    assert_eq!(app.sim.pay_widget(&params, CARD_OK).await.unwrap().status, "Completed");

    // The worker renews with the saved card and registers receipts with ATOL.
    let next_month = json!({"now": "2026-04-05T09:00:01Z"});
    assert_eq!(api.call(Method::POST, "/v1/admin/clock", ADMIN_TOKEN, Some(next_month)).await.0, 200);
    let path = format!("/v1/payments?customer_id={customer}");
    let mut renewed = false;
    for _ in 0..300 {
        let (_, list) = api.call(Method::GET, &path, &key, None).await;
        renewed = list["data"].as_array().unwrap().iter().any(|p| p["kind"] == "renewal" && p["status"] == "succeeded");
        let (_, receipts) = api.call(Method::GET, "/v1/receipts", &key, None).await;
        let registered = receipts["data"].as_array().unwrap().iter().filter(|r| r["status"] == "registered").count();
        if renewed && registered == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(renewed, "the worker renewed with the saved card");

    // Refused requests of every kind, some carrying secrets of their own.
    let rotated_secret = "cp-secret-Rot9vvB2";
    let bad_url = json!({"gateway": {"api_secret": rotated_secret, "api_url": "ftp://nowhere"}});
    assert_eq!(
        api.call(Method::PATCH, &format!("/v1/admin/tenants/{tenant}"), ADMIN_TOKEN, Some(bad_url)).await.0,
        422
    );
    assert_eq!(api.call(Method::GET, "/v1/plans", &format!("{key}x"), None).await.0, 401);
    assert_eq!(api.call(Method::GET, "/v1/admin/dead-letters", &format!("{ADMIN_TOKEN}x"), None).await.0, 401);
    let forged = api
        .http
        .post(format!("{}/v1/webhooks/cloudpayments/{tenant}/pay", api.base))
        .header("Content-HMAC", "c2lnbmF0dXJl")
        .body(format!("TransactionId=1&Amount=1.00&Token={}", CloudPaymentsSim::token_for(CARD_OK)))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 401);
    let forged_answer = forged.text().await.unwrap();
    api.problems.lock().unwrap().push(forged_answer);
    let (_, rotated) = api
        .call(
            Method::POST,
            &format!("/v1/admin/tenants/{tenant}/keys/rotate"),
            ADMIN_TOKEN,
            Some(json!({"api_key": true, "webhook_secret": true})),
        )
        .await;

    worker.terminate(Duration::from_secs(30));
    api_proc.terminate(Duration::from_secs(30));
    let logs = ["api.log", "worker.log"].map(|f| std::fs::read_to_string(dir.join(f)).unwrap());
    assert!(logs.iter().all(|l| l.lines().count() > 10), "the processes logged");
    let secrets = [
        ("API key", key.clone()),
        ("rotated API key", rotated["api_key"].as_str().unwrap().to_owned()),
        ("webhook secret", webhook_secret),
        ("rotated webhook secret", rotated["webhook_secret"].as_str().unwrap().to_owned()),
        ("gateway API secret", api_secret.to_owned()),
        ("refused new gateway secret", rotated_secret.to_owned()),
        ("ATOL password", atol_password.to_owned()),
        ("card token", CloudPaymentsSim::token_for(CARD_OK)),
        ("operator token", ADMIN_TOKEN.to_owned()),
    ];
    let problems = api.problems.lock().unwrap().join("\n");
    for (what, secret) in &secrets {
        for (name, text) in [("api.log", &logs[0]), ("worker.log", &logs[1]), ("problem details", &problems)] {
            assert!(!text.contains(secret.as_str()), "the {what} appears in {name}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
