//! Tenants' secrets at rest (issue 14, part 5): the webhook secrets, the gateway's
//! `api_secret` and ATOL's password are stored sealed under `BILLING_SECRETS_KEY`;
//! `billing-api migrate` seals plain rows (from before sealing) and moves rows
//! under the previous key to the current one; serving processes never rewrite
//! them and refuse to start under a key that does not open every tenant's.

use std::process::Command;
use std::time::Duration;

use billing_shared::sealing::Keyring;
use billing_tests::process::{Proc, binary, free_port, wait_http_ok};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::app::{SECRETS_KEY, worker_env};
use crate::support::{Tenant, TestApp};

const NEW_KEY: &str = "bmV3LXNlY3JldHMta2V5LWFmdGVyLWEtcm90YXRpb24=";

fn fiscal() -> Value {
    json!({"inn": "7704211201", "sno": "osn", "vat": "vat22", "settlement_sign": "full_payment",
           "payment_object": 4, "payment_address": "https://orbita.example.ru", "email": "b@orbita.example.ru"})
}

/// The tenant row's four secret slots as stored.
async fn stored(app: &TestApp, t: &Tenant) -> [String; 4] {
    let row = app
        .rows(&format!(
            "SELECT json_build_array(webhook_secret, webhook_secret_prev, gateway->>'api_secret', \
             fiscal->'provider'->>'password')::text AS row FROM tenants WHERE id = '{}'",
            t.id
        ))
        .await;
    let v: Vec<String> = serde_json::from_str(&row[0]).unwrap();
    v.try_into().unwrap()
}

/// The slots opened with `ring`, in the same order.
fn opened(ring: &Keyring, t: &Tenant, slots: &[String; 4]) -> Vec<String> {
    ["webhook_secret", "webhook_secret_prev", "gateway/api_secret", "fiscal/provider/password"]
        .iter()
        .zip(slots)
        .map(|(field, v)| ring.open(&format!("{}/{field}", t.id), v).unwrap_or_else(|e| panic!("{field}: {e}")))
        .collect()
}

/// Serves `billing-api` on the test database with `extra` settings until the
/// returned process is dropped.
async fn serve(app: &TestApp, extra: &[(&'static str, &str)]) -> Proc {
    let port = free_port();
    let mut env = worker_env(&app.db.url, &app.mq.amqp_url);
    env.push(("BILLING_API_ADDR", format!("127.0.0.1:{port}")));
    env.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let proc = Proc::spawn(&binary("billing-api"), &[], &env);
    assert!(wait_http_ok(&format!("http://127.0.0.1:{port}/healthz"), Duration::from_secs(30)).await, "API up");
    proc
}

#[tokio::test]
async fn tenant_secrets_are_sealed_at_rest_and_resealed_by_migrate() {
    let app = TestApp::spawn().await;
    let t = app.fiscal_tenant("Orbita", json!({}), fiscal()).await;
    let old_webhook = t.webhook_secret.clone();
    let rotated = app
        .admin(Method::POST, &format!("/v1/admin/tenants/{}/keys/rotate", t.id), Some(&json!({"webhook_secret": true})))
        .await
        .expect(200);
    let new_webhook = rotated["webhook_secret"].as_str().unwrap().to_owned();
    let plain = vec![new_webhook, old_webhook, t.api_secret.clone(), "atol-pass".to_owned()];

    // Sealed: no secret in the row, each slot names the key and opens to the secret.
    let ring = Keyring::from_base64(SECRETS_KEY, None).unwrap();
    let slots = stored(&app, &t).await;
    let whole_row = app.rows(&format!("SELECT row_to_json(t)::text AS row FROM tenants t WHERE id = '{}'", t.id)).await;
    for secret in &plain {
        assert!(!whole_row[0].contains(secret.as_str()), "{secret} stored in plain: {}", whole_row[0]);
    }
    for slot in &slots {
        assert!(slot.starts_with(&format!("v1.{}.", ring.current_id())), "{slot}");
    }
    assert_eq!(opened(&ring, &t, &slots), plain);
    // A sealed value moved to another tenant does not open there.
    let other = app.tenant("Other", "Europe/Moscow", json!({})).await;
    assert!(ring.open(&format!("{}/webhook_secret", other.id), &slots[0]).is_err());

    // A row from before sealing (plain values): serving processes refuse to start
    // (naming tenant and field, never the value) until `billing-api migrate` seals it.
    app.db
        .execute(&format!(
            "UPDATE tenants SET webhook_secret = '{}', webhook_secret_prev = '{}', \
             gateway = jsonb_set(gateway, '{{api_secret}}', to_jsonb('{}'::text)), \
             fiscal = jsonb_set(fiscal, '{{provider,password}}', '\"atol-pass\"') WHERE id = '{}'",
            plain[0], plain[1], plain[2], t.id
        ))
        .await;
    for bin in ["billing-api", "billing-worker"] {
        let stderr = refused(&app, bin, &[], &plain);
        assert!(stderr.contains(&format!("tenant {}: webhook_secret is not sealed", t.id)), "{bin}: {stderr}");
        assert!(stderr.contains("run `billing-api migrate`"), "{bin}: {stderr}");
    }
    // What a pod's init container polls: not done yet (3), and it writes nothing.
    let (code, stderr) = check(&app);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains(&format!("tenant {}: webhook_secret is not sealed", t.id)), "{stderr}");
    assert!(!plain.iter().any(|s| stderr.contains(s.as_str())), "{stderr}");
    assert!(stored(&app, &t).await.iter().any(|s| plain.contains(s)), "--check sealed something");
    migrate(&app, &[]);
    let (code, stderr) = check(&app);
    assert_eq!(code, Some(0), "done once `migrate` ran: {stderr}");
    let resealed = stored(&app, &t).await;
    assert!(resealed.iter().all(|s| ring.is_current(s)), "{resealed:?}");
    assert_eq!(opened(&ring, &t, &resealed), plain);
    drop(serve(&app, &[]).await);

    // Rotation: with the new key current and the old one previous the processes
    // serve (the old seal still opens) without rewriting anything; `migrate` moves
    // every row to the new key.
    let rotation = [("BILLING_SECRETS_KEY", NEW_KEY), ("BILLING_SECRETS_KEY_PREVIOUS", SECRETS_KEY)];
    drop(serve(&app, &rotation).await);
    assert_eq!(stored(&app, &t).await, resealed, "a serving process rewrote secrets");
    migrate(&app, &rotation);
    let new_ring = Keyring::from_base64(NEW_KEY, None).unwrap();
    let moved = stored(&app, &t).await;
    assert!(moved.iter().all(|s| new_ring.is_current(s)), "{moved:?}");
    assert_eq!(opened(&new_ring, &t, &moved), plain);
    assert!(ring.open(&format!("{}/webhook_secret", t.id), &moved[0]).is_err(), "the old key alone no longer opens");

    // Under a key that opens nothing neither binary starts and `migrate` rewrites
    // nothing; each names the tenant and field.
    for bin in ["billing-api", "billing-worker"] {
        let stderr = refused(&app, bin, &[], &plain);
        assert!(stderr.contains("webhook_secret does not open"), "{bin}: {stderr}");
        assert!(stderr.contains(&t.id) || stderr.contains(&other.id), "names the tenant: {stderr}");
    }
    let stderr = refused(&app, "billing-api", &["migrate"], &plain);
    assert!(stderr.contains("webhook_secret cannot be re-sealed"), "{stderr}");
    assert_eq!(stored(&app, &t).await, moved, "nothing rewritten by the refused runs");

    // Without any key neither binary starts.
    for bin in ["billing-api", "billing-worker"] {
        let out = Command::new(binary(bin))
            .envs(worker_env(&app.db.url, &app.mq.amqp_url).into_iter().filter(|(k, _)| *k != "BILLING_SECRETS_KEY"))
            .env("BILLING_API_ADDR", format!("127.0.0.1:{}", free_port()))
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("BILLING_SECRETS_KEY is not set"), "{bin}");
    }
}

/// Runs `bin` with `args` on the test database (the test key unless `extra`
/// overrides it) to completion: (success, stderr).
fn run(app: &TestApp, bin: &str, args: &[&str], extra: &[(&'static str, &str)]) -> (bool, String) {
    let mut env = worker_env(&app.db.url, &app.mq.amqp_url);
    env.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let out = Command::new(binary(bin))
        .args(args)
        .envs(env)
        .env("BILLING_API_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("BILLING_LOG_FORMAT", "text")
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `billing-api migrate --check` with the test key: (exit code, stderr).
fn check(app: &TestApp) -> (Option<i32>, String) {
    let out = Command::new(binary("billing-api"))
        .args(["migrate", "--check"])
        .envs(worker_env(&app.db.url, &app.mq.amqp_url))
        .env("BILLING_LOG_FORMAT", "text")
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn migrate(app: &TestApp, extra: &[(&'static str, &str)]) {
    let (ok, stderr) = run(app, "billing-api", &["migrate"], extra);
    assert!(ok, "migrate: {stderr}");
}

/// `bin args` refused to run; returns its stderr, checked to show no secret.
fn refused(app: &TestApp, bin: &str, args: &[&str], secrets: &[String]) -> String {
    let (ok, stderr) = run(app, bin, args, &[]);
    assert!(!ok, "{bin} {args:?} ran: {stderr}");
    assert!(!secrets.iter().any(|s| stderr.contains(s.as_str())), "{stderr}");
    stderr
}
