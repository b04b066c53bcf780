//! Operator API: tenants, keys, the test clock.

use reqwest::Method;
use serde_json::json;

use crate::support::{TestApp, app::ADMIN_TOKEN};

fn spec() -> serde_json::Value {
    json!({
        "name": "Orbita", "time_zone": "Europe/Moscow",
        "gateway": {"kind": "cloudpayments", "public_id": "pk_orbita", "api_secret": "cp-secret", "api_url": "http://127.0.0.1:1"},
        "fiscal": {"inn": "7700000000", "sno": "usn_income", "vat": "none", "settlement_sign": "full_payment",
                   "payment_object": 4, "payment_address": "https://my-orbita.ru", "email": "billing@my-orbita.ru",
                   "provider": {"login": "l", "password": "atol-password", "group_code": "g"}},
        "policy": {"price_change_notice_days": 14, "dunning_retry_days": [1, 3, 5], "after_last_retry": "stay_suspended"},
        "webhook_url": "http://127.0.0.1:1/hooks"
    })
}

#[tokio::test]
async fn create_tenant_shows_secrets_once_and_never_echoes_provider_passwords() {
    let app = TestApp::spawn().await;
    let created = app.admin(Method::POST, "/v1/admin/tenants", Some(&spec())).await.expect(201);
    assert!(created["api_key"].as_str().unwrap().starts_with("bk_"));
    assert!(created["webhook_secret"].as_str().unwrap().starts_with("whsec_"));
    let tenant = &created["tenant"];
    assert_eq!(
        tenant["gateway"],
        json!({"kind": "cloudpayments", "public_id": "pk_orbita", "api_url": "http://127.0.0.1:1"})
    );
    assert_eq!(tenant["fiscal"]["provider"].get("password"), None);
    assert_eq!(tenant["policy"]["price_change_notice_days"], 14);
    assert_eq!(tenant["policy"]["renewal_notice_days"], 3, "defaults filled in");
    assert_eq!(tenant["policy"]["after_last_retry"], "stay_suspended");
    // Only the hash of the key is stored.
    let key = created["api_key"].as_str().unwrap();
    assert_eq!(app.count(&format!("SELECT count(*) AS n FROM api_keys WHERE key_prefix = '{}'", &key[..10])).await, 1);
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) AS n FROM api_keys WHERE encode(key_hash, 'escape') LIKE '%{}%'",
            &key[3..]
        ))
        .await,
        0
    );
    // The key authenticates the tenant's calls.
    let res = app.send(Method::GET, "/v1/plans", Some(key), None, None).await.expect(200);
    assert_eq!(res["data"], json!([]));
}

#[tokio::test]
async fn operator_calls_need_the_operator_token() {
    let app = TestApp::spawn().await;
    app.send(Method::POST, "/v1/admin/tenants", None, None, Some(&spec())).await.problem(401, "unauthorized");
    app.send(Method::POST, "/v1/admin/tenants", Some("wrong-token-wrong-token"), None, Some(&spec()))
        .await
        .problem(401, "unauthorized");
    let t = app.tenant("X", "Europe/Moscow", json!({})).await;
    app.send(Method::POST, "/v1/admin/tenants", Some(&t.api_key), None, Some(&spec()))
        .await
        .problem(401, "unauthorized");
    assert_eq!(app.count("SELECT count(*) AS n FROM tenants").await, 1);
}

#[tokio::test]
async fn invalid_tenant_specs_are_422_and_write_nothing() {
    let app = TestApp::spawn().await;
    let mut bad_zone = spec();
    bad_zone["time_zone"] = json!("Mars/Olympus");
    app.admin(Method::POST, "/v1/admin/tenants", Some(&bad_zone)).await.problem(422, "invalid_time_zone");
    let mut unknown = spec();
    unknown["policy"]["grace_hours"] = json!(3);
    let p = app.admin(Method::POST, "/v1/admin/tenants", Some(&unknown)).await.problem(422, "validation_failed");
    assert!(p["detail"].as_str().unwrap().contains("grace_hours"));
    let mut bad_inn = spec();
    bad_inn["fiscal"]["inn"] = json!("12");
    app.admin(Method::POST, "/v1/admin/tenants", Some(&bad_inn)).await.problem(422, "validation_failed");
    let mut bad_dunning = spec();
    bad_dunning["policy"]["dunning_retry_days"] = json!([3, 1]);
    app.admin(Method::POST, "/v1/admin/tenants", Some(&bad_dunning)).await.problem(422, "validation_failed");
    assert_eq!(app.count("SELECT count(*) AS n FROM tenants").await, 0);
}

#[tokio::test]
async fn tenant_creation_is_never_replayed_with_its_secrets() {
    let app = TestApp::spawn().await;
    let first = app
        .send(Method::POST, "/v1/admin/tenants", Some(ADMIN_TOKEN), Some("tenant-1"), Some(&spec()))
        .await
        .expect(201);
    assert!(first["api_key"].is_string());
    app.send(Method::POST, "/v1/admin/tenants", Some(ADMIN_TOKEN), Some("tenant-1"), Some(&spec()))
        .await
        .problem(409, "idempotent_replay_unavailable");
    let mut other = spec();
    other["name"] = json!("Other");
    app.send(Method::POST, "/v1/admin/tenants", Some(ADMIN_TOKEN), Some("tenant-1"), Some(&other))
        .await
        .problem(422, "idempotency_key_reused");
    assert_eq!(app.count("SELECT count(*) AS n FROM tenants").await, 1);
}

#[tokio::test]
async fn patch_merges_and_keeps_secrets() {
    let app = TestApp::spawn().await;
    let t = app
        .tenant("WhatsMonster", "Europe/Moscow", json!({"price_change_notice_days": 14, "grace_period_hours": 24}))
        .await;
    let patched = app
        .admin(
            Method::PATCH,
            &format!("/v1/admin/tenants/{}", t.id),
            Some(&json!({
                "name": "WhatsMonster Ltd", "policy": {"grace_period_hours": 72}, "gateway": {"api_url": null}
            })),
        )
        .await
        .expect(200);
    assert_eq!(patched["name"], "WhatsMonster Ltd");
    assert_eq!(patched["policy"]["grace_period_hours"], 72);
    assert_eq!(patched["policy"]["price_change_notice_days"], 14, "untouched policy fields stay");
    assert_eq!(patched["gateway"]["api_url"], serde_json::Value::Null);
    assert_eq!(patched["gateway"]["public_id"], t.public_id.as_str());
    // The API secret survived the patch: signed notifications still verify.
    app.plan_pro(&t).await;
    let c = app.customer(&t, "p-1").await;
    let bought = app.purchase(&t, &c, "PRO").await;
    assert_eq!(app.pay(&bought, billing_tests::cloudpayments::CARD_OK).await.status, "Completed");
    // An invalid patch changes nothing.
    app.admin(Method::PATCH, &format!("/v1/admin/tenants/{}", t.id), Some(&json!({"time_zone": "Nowhere/Land"})))
        .await
        .problem(422, "invalid_time_zone");
    app.admin(Method::PATCH, &format!("/v1/admin/tenants/{}", uuid::Uuid::new_v4()), Some(&json!({"name": "x"})))
        .await
        .problem(404, "tenant_not_found");
}

#[tokio::test]
async fn rotated_keys_work_and_old_ones_keep_working_for_the_grace_hour() {
    let app = TestApp::spawn().await;
    let t = app.tenant("A", "Europe/Moscow", json!({})).await;
    let rotated = app
        .admin(
            Method::POST,
            &format!("/v1/admin/tenants/{}/keys/rotate", t.id),
            Some(&json!({"api_key": true, "webhook_secret": true})),
        )
        .await
        .expect(200);
    let new_key = rotated["api_key"].as_str().unwrap();
    assert_ne!(new_key, t.api_key);
    assert!(rotated["webhook_secret"].as_str().unwrap().starts_with("whsec_"));
    assert_ne!(rotated["webhook_secret"], t.webhook_secret.as_str());
    app.send(Method::GET, "/v1/plans", Some(new_key), None, None).await.expect(200);
    app.send(Method::GET, "/v1/plans", Some(&t.api_key), None, None).await.expect(200);
    // After the grace hour the old key stops working.
    let mut conn = app.db.conn().await;
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE expires_at IS NOT NULL"),
        &mut conn,
    )
    .await
    .unwrap();
    // A key's lookup (with its expiry) is cached for a moment: a change made behind
    // the API's back, as this one, is seen once the entry is older than the TTL.
    tokio::time::sleep(billing_shared::cache::TTL).await;
    app.send(Method::GET, "/v1/plans", Some(&t.api_key), None, None).await.problem(401, "unauthorized");
    app.send(Method::GET, "/v1/plans", Some(new_key), None, None).await.expect(200);
}

#[tokio::test]
async fn the_test_clock_is_shared_frozen_and_settable_into_the_past() {
    let app = TestApp::spawn().await;
    let c = app.admin(Method::GET, "/v1/admin/clock", None).await.expect(200);
    assert_eq!(c["now"], crate::support::T0);
    assert_eq!(c["settled"], true);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(app.admin(Method::GET, "/v1/admin/clock", None).await.expect(200)["now"], crate::support::T0, "frozen");
    let past = app.set_clock("2020-02-29T23:59:59.123456Z").await;
    assert_eq!(past["now"], "2020-02-29T23:59:59.123456Z");
    // The clock stamps business times: a customer created now carries it.
    let t = app.tenant("A", "Europe/Moscow", json!({})).await;
    let c = app.post(&t, "/v1/customers", json!({"external_id": "x", "email": "x@y.ru"})).await.expect(201);
    assert_eq!(c["created_at"], "2020-02-29T23:59:59.123456Z");
    app.admin(Method::POST, "/v1/admin/clock", Some(&json!({"now": "yesterday"})))
        .await
        .problem(422, "validation_failed");
}

#[tokio::test]
async fn a_move_of_the_test_clock_waits_for_the_transactions_that_claim_work_at_the_old_time() {
    use billing_shared::clock::Clock;
    use diesel_async::SimpleAsyncConnection;
    let app = TestApp::spawn().await;
    // A transaction that read the time as the scheduler's tick does, between its
    // clock read and its claims.
    let mut tick = app.db.conn().await;
    tick.batch_execute("BEGIN").await.unwrap();
    let read = Clock::Shared.now_held(&mut tick).await.unwrap();
    assert_eq!(read.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), crate::support::T0);
    let moved = app.set_clock("2026-03-01T09:00:00Z");
    tokio::pin!(moved);
    let early = tokio::time::timeout(std::time::Duration::from_millis(500), &mut moved).await;
    assert!(early.is_err(), "the clock moved back while a transaction still acted at the old time");
    tick.batch_execute("COMMIT").await.unwrap();
    assert_eq!(moved.await["now"], "2026-03-01T09:00:00Z", "moved once that transaction ended");
    let later = app.db.conn().await;
    let read = Clock::Shared.now(&later).await.unwrap();
    assert_eq!(read.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "2026-03-01T09:00:00Z");
}

#[tokio::test]
async fn a_tick_waiting_behind_a_move_of_the_test_clock_reads_the_new_time() {
    use billing_shared::clock::Clock;
    use diesel_async::SimpleAsyncConnection;
    let app = TestApp::spawn().await;
    let at = chrono::DateTime::parse_from_rfc3339("2026-03-01T09:00:00Z").unwrap().to_utc();
    // A move in progress (not committed yet).
    let mut moving = app.db.conn().await;
    moving.batch_execute("BEGIN").await.unwrap();
    Clock::set(&mut moving, at).await.unwrap();
    let mut tick = app.db.conn().await;
    tick.batch_execute("BEGIN").await.unwrap();
    let read = Clock::Shared.now_held(&mut tick);
    tokio::pin!(read);
    let early = tokio::time::timeout(std::time::Duration::from_millis(500), &mut read).await;
    assert!(early.is_err(), "a tick read the time while the clock was being moved");
    moving.batch_execute("COMMIT").await.unwrap();
    assert_eq!(read.await.unwrap(), at, "the tick acts at the new time, not the one the move replaced");
}

#[tokio::test]
async fn without_test_mode_the_clock_endpoint_does_not_exist() {
    let app = TestApp::spawn_with(&[("BILLING_TEST_CLOCK", "0")]).await;
    app.admin(Method::GET, "/v1/admin/clock", None).await.problem(404, "not_found");
    app.admin(Method::POST, "/v1/admin/clock", Some(&json!({"now": "2026-01-01T00:00:00Z"})))
        .await
        .problem(404, "not_found");
}

#[tokio::test]
async fn without_an_admin_token_operator_endpoints_are_disabled() {
    let app = TestApp::spawn_with(&[("BILLING_ADMIN_TOKEN", "")]).await;
    app.send(Method::POST, "/v1/admin/tenants", Some("anything-anything"), None, Some(&spec()))
        .await
        .problem(403, "operator_api_disabled");
}
