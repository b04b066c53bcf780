//! `billing-ops`, the operator's command line over a running API: a tenant created
//! from a file works with the key it prints, keys rotate (options before or after the
//! id), dead letters list and replay, a tenant's payments are looked up, a receipt
//! the provider refused is resent and registers once; refusals, bad usage (no
//! command, an id that is not a UUID) and an API that is down each have their exit
//! code.

use std::io::Write;

use serde_json::{Value, json};

use billing_tests::atol::AtolScript;

use crate::receipts::{licence_fiscal, paid, receipts, unused_refunds};
use crate::renewals::{bought_monthly, orbita_on};
use crate::support::app::ADMIN_TOKEN;
use crate::support::{Gw, TestApp};

/// Runs `billing-ops args` against `api` (without blocking the runtime the API under
/// test is served from): (exit code, stdout, stderr).
async fn ops(api: &str, args: &[&str]) -> (i32, String, String) {
    run_ops(&[&["--api", api], args].concat()).await
}

/// Runs `billing-ops args` as given: (exit code, stdout, stderr).
async fn run_ops(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(billing_tests::process::binary("billing-ops"))
        .args(args)
        .env("BILLING_ADMIN_TOKEN", ADMIN_TOKEN)
        .env_remove("BILLING_API_KEY")
        .output()
        .await
        .expect("run billing-ops");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

fn json_of(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[tokio::test]
async fn an_operator_manages_tenants_and_dead_letters_and_looks_up_payments() {
    let app = TestApp::with_worker().await;

    // A tenant from a file: the printed key is the tenant's.
    let mut file = TempFile::new();
    let spec = json!({"name": "Orbita (ops)", "time_zone": "Europe/Moscow",
        "gateway": {"kind": "cloudpayments", "public_id": "pk_ops", "api_secret": "ops-secret", "api_url": app.sim.base_url}});
    file.handle.write_all(spec.to_string().as_bytes()).unwrap();
    let (code, out, err) = ops(&app.base, &["tenant", "create", &file.path]).await;
    assert_eq!(code, 0, "{err}");
    let created = json_of(&out);
    let (id, key) = (created["id"].as_str().unwrap(), created["api_key"].as_str().unwrap());
    let customers = app.http.get(format!("{}/v1/customers", app.base)).bearer_auth(key).send().await.unwrap();
    assert_eq!(customers.status(), 200);

    // Rotation: a new key; the old one keeps working for the grace hour.
    let (code, out, err) = ops(&app.base, &["tenant", "rotate-keys", id]).await;
    assert_eq!(code, 0, "{err}");
    let new_key = json_of(&out)["api_key"].as_str().unwrap().to_owned();
    assert_ne!(new_key, key);
    for k in [key, new_key.as_str()] {
        let r = app.http.get(format!("{}/v1/customers", app.base)).bearer_auth(k).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    // Options before the id: the id is still the id.
    let (code, out, err) = ops(&app.base, &["tenant", "rotate-keys", "--webhook-secret", "--keep-api-key", id]).await;
    assert_eq!(code, 0, "{err}");
    let rotated = json_of(&out);
    assert!(rotated["webhook_secret"].is_string(), "{out}");
    assert!(rotated["api_key"].is_null(), "{out}");
    std::fs::write(&file.path, br#"{"name": "Orbita (renamed)"}"#).unwrap();
    let (code, out, err) = ops(&app.base, &["tenant", "patch", id, &file.path]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_of(&out)["name"], "Orbita (renamed)");
    let (code, _, err) = ops(&app.base, &["tenant", "patch", "not-a-uuid", &file.path]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not a UUID"), "{err}");

    // A tenant's payments, with that tenant's key.
    let t = orbita_on(&app, Gw::CloudPayments, json!({})).await;
    let (customer, _) = bought_monthly(&app, &t, "ops-1", "2026-03-10T09:00:00Z").await;
    let (code, out, err) = ops(&app.base, &["--key", &t.api_key, "payments", "--customer", &customer]).await;
    assert_eq!(code, 0, "{err}");
    let payments = json_of(&out)["data"].as_array().unwrap().clone();
    assert_eq!(payments.len(), 1, "{out}");
    assert_eq!(payments[0]["status"], "succeeded");
    assert_eq!(payments[0]["amount"]["value"], "1990.00");

    // Dead letters: none; a replay of the receipts queue moves none. (Settled: the
    // worker's relay has published the purchase's events, so its queues exist.)
    app.settle().await;
    let (code, out, err) = ops(&app.base, &["dead-letters", "list", "--queue", "billing.receipts"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_of(&out)["data"], json!([]));
    let (code, out, err) = ops(&app.base, &["dead-letters", "replay", "billing.receipts"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_of(&out), json!({"queue": "billing.receipts", "replayed": 0}));

    // Refusals and mistakes.
    let (code, _, err) = ops(&app.base, &["receipts", "resend", &uuid::Uuid::new_v4().to_string()]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("receipt_not_found"), "{err}");
    let (code, _, err) = ops(&app.base, &["receipts", "resend", "not-a-uuid"]).await;
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = ops(&app.base, &["dead-letters", "replay", "billing.nope"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("queue_not_found"), "{err}");
    let (code, _, err) = ops(&app.base, &["payments"]).await;
    assert_eq!(code, 2, "no tenant key: {err}");
    let (code, _, err) = ops(&app.base, &["tenant", "remove", id]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown command"), "{err}");
    let (code, out, _) = ops(&app.base, &["--help"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("exit codes: 0 done, 1 the API refused"), "{out}");
    let (code, out, err) = run_ops(&[]).await;
    assert_eq!(code, 2, "no command is a usage error: {out}");
    assert!(err.contains("usage: billing-ops"), "{err}");
    let down = format!("http://127.0.0.1:{}", billing_tests::process::free_port());
    let (code, _, err) = ops(&down, &["dead-letters", "list"]).await;
    assert_eq!(code, 3, "{err}");
}

#[tokio::test]
async fn an_operator_resends_a_receipt_the_provider_refused_and_it_registers_once() {
    let app = TestApp::with_worker().await;
    let t = app.fiscal_tenant("SMM-GPT", unused_refunds(), licence_fiscal()).await;
    app.plan_pro(&t).await;
    // ATOL refuses the first document (error 32): the receipt fails, its job is dead-lettered.
    app.atol.script(&[AtolScript::Reject32]);
    let (payment, _, _) = paid(&app, &t, "ops-receipt").await;
    app.settle().await;
    let failed = receipts(&app, &t, &payment).await.remove(0);
    assert_eq!((failed["status"].as_str(), failed["attempt"].as_i64()), (Some("failed"), Some(1)), "{failed}");
    let id = failed["id"].as_str().unwrap().to_owned();

    // Resent (ATOL takes the next document): pending at attempt 2, then registered.
    app.atol.script(&[AtolScript::Done]);
    let resend = ["receipts", "resend", &id, "--idempotency-key", "resend-ops-1"];
    let (code, out, err) = ops(&app.base, &resend).await;
    assert_eq!(code, 0, "{err}");
    let resent = json_of(&out);
    assert_eq!((resent["status"].as_str(), resent["attempt"].as_i64()), (Some("pending"), Some(2)), "{out}");
    assert_eq!(resent["external_id"], format!("{id}-2"));
    app.settle().await;
    let registered = receipts(&app, &t, &payment).await.remove(0);
    assert_eq!((registered["status"].as_str(), registered["attempt"].as_i64()), (Some("registered"), Some(2)));
    assert!(registered["fiscal"]["fiscal_document_number"].is_number(), "{registered}");
    let docs: Vec<_> = app.atol.documents().into_iter().filter(|d| d.external_id.starts_with(&id)).collect();
    let docs: Vec<_> = docs.iter().map(|d| (d.external_id.clone(), d.status.clone())).collect();
    assert_eq!(docs, [(format!("{id}-1"), "fail".to_owned()), (format!("{id}-2"), "done".to_owned())]);
    let events = app.event_types(&t).await;
    assert_eq!(events.iter().filter(|e| *e == "receipt.failed").count(), 1, "{events:?}");
    assert_eq!(events.iter().filter(|e| *e == "receipt.registered").count(), 1, "{events:?}");

    // A retry with the first call's key replays its answer; a new resend of a
    // registered receipt is refused. Neither sends anything to ATOL.
    let (code, again, err) = ops(&app.base, &resend).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_of(&again), resent);
    let (code, _, err) = ops(&app.base, &["receipts", "resend", &id]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("receipt_registered"), "{err}");
    assert_eq!(app.atol.documents().iter().filter(|d| d.external_id.starts_with(&id)).count(), 2);
}

/// A file of its own under the system temp directory, removed when dropped (also
/// when the test fails).
struct TempFile {
    path: String,
    handle: std::fs::File,
}

impl TempFile {
    fn new() -> TempFile {
        let path = std::env::temp_dir().join(format!("billing-ops-{}.json", uuid::Uuid::new_v4().simple()));
        let handle = std::fs::File::create(&path).unwrap();
        TempFile { path: path.to_string_lossy().into_owned(), handle }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
