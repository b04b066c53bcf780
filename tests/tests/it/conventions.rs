//! Conventions of the contract: strict money, idempotency, tenant isolation,
//! problem+json for every bad input, service endpoints.

use billing_tests::cloudpayments::CARD_OK;
use reqwest::Method;
use serde_json::json;

use crate::support::TestApp;

#[tokio::test]
async fn money_is_strict() {
    let app = TestApp::spawn().await;
    let t = app.tenant("A", "Europe/Moscow", json!({})).await;
    let plan = |price: serde_json::Value| json!({"code": "P", "name": "P", "price": price, "period": {"unit": "month", "count": 1}});
    let cases = [
        (json!({"value": 690, "currency": "RUB"}), "invalid_money", "a number"),
        (json!({"value": 690.5, "currency": "RUB"}), "invalid_money", "a float"),
        (json!({"value": "690", "currency": "RUB"}), "invalid_money", "no decimals"),
        (json!({"value": "690.0", "currency": "RUB"}), "invalid_money", "one decimal"),
        (json!({"value": "690.001", "currency": "RUB"}), "invalid_money", "a third decimal"),
        (json!({"value": "-690.00", "currency": "RUB"}), "invalid_money", "negative"),
        (json!({"value": "6.9e2", "currency": "RUB"}), "invalid_money", "exponent"),
        (json!({"value": "690.00", "currency": "USD"}), "unsupported_currency", "another currency"),
        (json!({"value": "690.00", "currency": "rub"}), "unsupported_currency", "lower case"),
        (json!({"value": "690.00"}), "unsupported_currency", "missing currency"),
        (json!({"currency": "RUB"}), "invalid_money", "missing value"),
        (json!({"value": "690.00", "currency": "RUB", "extra": 1}), "validation_failed", "unknown field"),
        (json!("690.00"), "validation_failed", "not an object"),
    ];
    for (price, code, case) in cases {
        let p = app.post(&t, "/v1/plans", plan(price)).await;
        assert_eq!(p.status.as_u16(), 422, "{case}: {}", p.body);
        assert_eq!(p.body["code"], code, "{case}");
    }
    let ok = app.post(&t, "/v1/plans", plan(json!({"value": "690.00", "currency": "RUB"}))).await.expect(201);
    assert_eq!(ok["price"]["value"], "690.00");
    assert_eq!(app.count("SELECT count(*) AS n FROM plans").await, 1, "only the valid plan was written");
}

#[tokio::test]
async fn idempotency_replays_the_first_answer_and_refuses_reuse() {
    let app = TestApp::spawn().await;
    let t = app.tenant("A", "Europe/Moscow", json!({})).await;
    app.plan_pro(&t).await;
    let c = app.customer(&t, "idem").await;
    let body = json!({"customer_id": c, "plan": "PRO", "pay_with": "card"});
    let first = app.post_idem(&t, "/v1/subscriptions", "purchase-1", body.clone()).await.expect(201);
    // Same document, keys in another order: the same request.
    let reordered = json!({"pay_with": "card", "plan": "PRO", "customer_id": c});
    let replay = app.post_idem(&t, "/v1/subscriptions", "purchase-1", reordered).await.expect(201);
    assert_eq!(replay, first);
    assert_eq!(app.count("SELECT count(*) AS n FROM subscriptions").await, 1);
    assert_eq!(app.count("SELECT count(*) AS n FROM payments").await, 1);
    let other = json!({"customer_id": c, "plan": "PRO", "pay_with": "invoice"});
    app.post_idem(&t, "/v1/subscriptions", "purchase-1", other).await.problem(422, "idempotency_key_reused");
    // The same key on another endpoint is another request too.
    app.post_idem(&t, "/v1/customers", "purchase-1", json!({"external_id": "z", "email": "z@z.ru"}))
        .await
        .problem(422, "idempotency_key_reused");
    // Keys are per tenant.
    let t2 = app.tenant("B", "Europe/Moscow", json!({})).await;
    app.post_idem(&t2, "/v1/customers", "purchase-1", json!({"external_id": "z", "email": "z@z.ru"})).await.expect(201);
    // A failed request stores nothing under its key: it can be retried.
    let missing = json!({"customer_id": uuid::Uuid::new_v4(), "plan": "PRO"});
    app.post_idem(&t, "/v1/subscriptions", "purchase-2", missing.clone()).await.problem(404, "customer_not_found");
    app.post_idem(&t, "/v1/subscriptions", "purchase-2", missing).await.problem(404, "customer_not_found");
    let long = "k".repeat(256);
    app.post_idem(&t, "/v1/customers", &long, json!({"external_id": "q", "email": "q@z.ru"}))
        .await
        .problem(422, "invalid_idempotency_key");
}

#[tokio::test]
async fn another_tenants_ids_are_not_found() {
    let app = TestApp::spawn().await;
    let a = app.tenant("A", "Europe/Moscow", json!({})).await;
    let b = app.tenant("B", "Europe/Moscow", json!({})).await;
    app.plan_pro(&a).await;
    let c = app.customer(&a, "a-1").await;
    let bought = app.purchase(&a, &c, "PRO").await;
    app.pay(&bought, CARD_OK).await;
    let sub = bought["subscription"]["id"].as_str().unwrap();
    let pay = bought["payment"]["id"].as_str().unwrap();
    app.get(&b, &format!("/v1/customers/{c}")).await.problem(404, "customer_not_found");
    app.get(&b, &format!("/v1/customers/{c}/entitlements")).await.problem(404, "customer_not_found");
    app.get(&b, &format!("/v1/subscriptions/{sub}")).await.problem(404, "subscription_not_found");
    app.get(&b, &format!("/v1/payments/{pay}")).await.problem(404, "payment_not_found");
    app.get(&b, "/v1/plans/PRO").await.problem(404, "plan_not_found");
    app.post(&b, "/v1/subscriptions", json!({"customer_id": c, "plan": "PRO"}))
        .await
        .problem(404, "customer_not_found");
    app.send(Method::PATCH, &format!("/v1/customers/{c}"), Some(&b.api_key), None, Some(&json!({"email": "x@y.ru"})))
        .await
        .problem(404, "customer_not_found");
    assert_eq!(app.get(&b, &format!("/v1/payments?customer_id={c}")).await.expect(200)["data"], json!([]));
    assert_eq!(app.get(&b, &format!("/v1/subscriptions?customer_id={c}")).await.expect(200)["data"], json!([]));
    assert_eq!(app.get(&b, "/v1/customers?external_id=a-1").await.expect(200)["data"], json!([]));
    // ...and the owner sees them.
    assert_eq!(app.get(&a, "/v1/customers?external_id=a-1").await.expect(200)["data"][0]["id"], c.as_str());
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx_never_a_500() {
    let app = TestApp::spawn().await;
    let t = app.tenant("A", "Europe/Moscow", json!({})).await;
    let raw = |body: &'static str| {
        let app = &app;
        let key = t.api_key.clone();
        async move {
            let res =
                app.http.post(format!("{}/v1/customers", app.base)).bearer_auth(key).body(body).send().await.unwrap();
            let status = res.status().as_u16();
            let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
            let v: serde_json::Value = res.json().await.unwrap();
            (status, ct, v["code"].as_str().unwrap_or("").to_owned())
        }
    };
    assert_eq!(raw("{not json").await, (400, "application/problem+json".into(), "malformed_json".into()));
    assert_eq!(raw("").await, (400, "application/problem+json".into(), "malformed_json".into()));
    assert_eq!(raw("[]").await, (422, "application/problem+json".into(), "validation_failed".into()));
    // serde would take an array for a struct; a body must be an object.
    assert_eq!(raw(r#"["a", "a@b.ru"]"#).await.2, "validation_failed");
    // PostgreSQL text cannot hold U+0000: 422, not a database error.
    assert_eq!(raw(r#"{"external_id": "a\u0000", "email": "a@b.ru"}"#).await.2, "validation_failed");
    // ...nor in a path or a query: the path names nothing, the query is invalid.
    app.get(&t, "/v1/plans/a%00b").await.problem(404, "not_found");
    app.get(&t, "/v1/customers?external_id=a%00b").await.problem(422, "validation_failed");
    app.get(&t, "/v1/plans/a%2500b").await.problem(404, "plan_not_found");
    // 30.0 is the integer 30 (JSON Schema), wherever an integer is taken.
    let days = app
        .post(
            &t,
            "/v1/plans",
            json!({"code": "D", "name": "D", "price": {"value": "10.00", "currency": "RUB"},
        "period": {"unit": "day", "count": 30.0}}),
        )
        .await
        .expect(201);
    assert_eq!(days["period"]["count"], 30);
    assert_eq!(raw(r#"{"external_id": 5, "email": "a@b.ru"}"#).await.2, "validation_failed");
    assert_eq!(raw(r#"{"external_id": "a", "email": "a@b.ru", "nick": "x"}"#).await.2, "validation_failed");
    assert_eq!(raw(r#"{"external_id": "a", "email": "not-an-email"}"#).await.2, "invalid_email");
    assert_eq!(
        raw(r#"{"external_id": "a", "email": "a@b.ru", "time_zone": "Europe/Nowhere"}"#).await.2,
        "invalid_time_zone"
    );
    assert_eq!(raw(r#"{"external_id": "", "email": "a@b.ru"}"#).await.2, "validation_failed");
    app.post(&t, "/v1/customers", json!({"external_id": "dup", "email": "a@b.ru"})).await.expect(201);
    app.post(&t, "/v1/customers", json!({"external_id": "dup", "email": "a@b.ru"}))
        .await
        .problem(409, "customer_exists");
    app.get(&t, "/v1/customers/not-a-uuid").await.problem(404, "customer_not_found");
    app.get(&t, "/v1/subscriptions/12").await.problem(404, "subscription_not_found");
    app.get(&t, "/v1/customers?starting_after=xyz").await.problem(422, "validation_failed");
    app.get(&t, "/v1/customers?limit=101").await.problem(422, "validation_failed");
    app.get(&t, "/v1/nothing-here").await.problem(404, "not_found");
    // A body beyond the limit (16 MiB) is refused before it is read whole.
    let huge = format!(r#"{{"external_id": "x", "email": "a@b.ru", "pad": "{}"}}"#, "x".repeat(17 << 20));
    let res = app
        .http
        .post(format!("{}/v1/customers", app.base))
        .bearer_auth(&t.api_key)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 413);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert_eq!(res.json::<serde_json::Value>().await.unwrap()["code"], "payload_too_large");
    // A known path under a method it does not declare: 405, and which ones it does.
    let wrong = app.send(Method::DELETE, "/v1/customers", Some(&t.api_key), None, None).await;
    let detail = wrong.problem(405, "method_not_allowed");
    assert!(detail["detail"].as_str().unwrap().ends_with("allowed: GET, POST"), "{detail}");
    let res = app.http.put(format!("{}/v1/payments/{}/pay", app.base, uuid::Uuid::nil())).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 405);
    assert_eq!(res.headers()["allow"], "POST");
    app.send(Method::GET, "/v1/plans", None, None, None).await.problem(401, "unauthorized");
    app.send(Method::GET, "/v1/plans", Some("bk_unknown"), None, None).await.problem(401, "unauthorized");
    assert_eq!(app.count("SELECT count(*) AS n FROM customers").await, 1);
}

#[tokio::test]
async fn customers_can_be_found_and_patched() {
    let app = TestApp::spawn().await;
    let t = app.tenant("A", "Asia/Yekaterinburg", json!({})).await;
    app.post(&t, "/v1/partners", json!({"code": "P1", "name": "Partner 1"})).await.expect(201);
    let c = app
        .post(
            &t,
            "/v1/customers",
            json!({"external_id": "e-1", "email": "e@x.ru", "partner_code": "P1",
        "legal_entity": {"name": "ООО Ромашка", "inn": "7700000000"}}),
        )
        .await
        .expect(201);
    assert_eq!(c["time_zone"], "Asia/Yekaterinburg", "defaults to the tenant's zone");
    assert_eq!(c["legal_entity"]["name"], "ООО Ромашка");
    let id = c["id"].as_str().unwrap();
    let patched = app
        .send(
            Method::PATCH,
            &format!("/v1/customers/{id}"),
            Some(&t.api_key),
            None,
            Some(&json!({"email": "new@x.ru", "time_zone": "Europe/Berlin"})),
        )
        .await
        .expect(200);
    assert_eq!((patched["email"].as_str(), patched["time_zone"].as_str()), (Some("new@x.ru"), Some("Europe/Berlin")));
    assert_eq!(app.get(&t, &format!("/v1/customers/{id}")).await.expect(200)["email"], "new@x.ru");
}

#[tokio::test]
async fn service_endpoints() {
    let app = TestApp::spawn().await;
    let h = app.send(Method::GET, "/healthz", None, None, None).await.expect(200);
    assert_eq!(h["status"], "ok");
    let r = app.send(Method::GET, "/readyz", None, None, None).await.expect(200);
    assert_eq!(r, json!({"postgres": true, "rabbitmq": true}));
    let doc = app.send(Method::GET, "/openapi.json", None, None, None).await.expect(200);
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/v1/admin/tenants",
        "/v1/admin/clock",
        "/v1/plans",
        "/v1/plans/{code}/prices/{id}",
        "/v1/subscriptions",
        "/v1/customers/{id}/entitlements",
        "/v1/payments/{id}",
        "/v1/webhooks/cloudpayments/{tenant_id}/{kind}",
    ] {
        assert!(paths.contains_key(p), "{p} missing from the OpenAPI document");
    }
    assert!(doc["components"]["schemas"]["PurchaseView"].is_object());
    let docs = app.http.get(format!("{}/docs/", app.base)).send().await.unwrap();
    assert_eq!(docs.status().as_u16(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"), "Swagger UI is served from the binary");
    let metrics = app.http.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("http_requests_total"), "{metrics}");
}

#[tokio::test]
async fn each_api_key_is_rate_limited_with_retry_after() {
    let app = TestApp::spawn_with(&[("BILLING_RATE_LIMIT_PER_SECOND", "1"), ("BILLING_RATE_LIMIT_BURST", "5")]).await;
    let a = app.tenant("A", "Europe/Moscow", json!({})).await;
    let b = app.tenant("B", "Europe/Moscow", json!({})).await;
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..8 {
            v.push(app.get(&a, "/v1/plans").await.status.as_u16());
        }
        v
    };
    assert_eq!(&statuses[..5], &[200; 5], "the burst is served: {statuses:?}");
    assert!(statuses[5..].contains(&429), "beyond it, 429: {statuses:?}");
    let res = app.http.get(format!("{}/v1/plans", app.base)).bearer_auth(&a.api_key).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 429);
    let wait: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert_eq!(res.json::<serde_json::Value>().await.unwrap()["code"], "rate_limited");
    // Another key has its own budget; requests without a key are not limited here.
    app.get(&b, "/v1/plans").await.expect(200);
    let health = app.http.get(format!("{}/healthz", app.base)).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
}
