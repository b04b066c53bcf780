//! `billing-ops`, the operator's command line over a running API: a tenant created
//! from a file works with the key it prints, keys rotate (options before or after the
//! id), dead letters list and replay, a tenant's payments are looked up, a receipt
//! the provider refused is resent and registers once; refusals, bad usage (no
//! command, an id that is not a UUID) and an API that is down each have their exit
//! code.

use std::io::Write;

use serde_json::{Value, json};

use billing_shared::services::receipt_registration::MAX_ATTEMPTS;
use billing_tests::atol::AtolScript;

use crate::receipts::{licence_fiscal, paid, receipts, unused_refunds};
use crate::renewals::{bought_monthly, orbita_on};
use crate::support::app::ADMIN_TOKEN;
use crate::support::{Gw, Tenant, TestApp};

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
    let (code, _, err) = ops(&app.base, &["receipts", "resend"]).await;
    assert_eq!(code, 2, "no receipt id: {err}");
    let any = uuid::Uuid::new_v4().to_string();
    let (code, _, err) = ops(&app.base, &["receipts", "--payment", &any, "resend", &any]).await;
    assert_eq!(code, 2, "a listing option on a resend: {err}");
    assert!(err.contains("unknown option --payment"), "{err}");
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

/// Waits until `payment`'s receipt is `status`; returns it.
async fn receipt_when(app: &TestApp, t: &Tenant, payment: &str, status: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..600 {
        last = receipts(app, t, payment).await.remove(0);
        if last["status"] == status {
            return last;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the receipt of {payment} never became {status}: {last}");
}

/// The documents ATOL holds for receipt `id`: (external_id, status).
fn documents_of(app: &TestApp, id: &str) -> Vec<(String, String)> {
    app.atol.documents_of(id).into_iter().map(|d| (d.external_id, d.status)).collect()
}

#[tokio::test]
async fn an_operator_resends_failed_receipts_and_each_registers_once() {
    let mut app = TestApp::spawn().await;
    // The receipt queue's ~two-day ladder compressed to a couple of seconds.
    app.start_worker_with(&[("BILLING_RETRY_DELAY_DIVISOR", "100000")]);
    let t = app.fiscal_tenant("SMM-GPT", unused_refunds(), licence_fiscal()).await;
    app.plan_pro(&t).await;

    // 1. ATOL reports every attempt failed (queue timeouts): the receipt fails at
    //    attempt 5, and a resend is a new document, registered once.
    app.atol.script(&[AtolScript::FailTimeout; 5]);
    let (payment, _, _) = paid(&app, &t, "ops-receipt-1").await;
    let failed = receipt_when(&app, &t, &payment, "failed").await;
    assert_eq!(failed["attempt"], MAX_ATTEMPTS, "five attempts, the last one failed too: {failed}");
    let id = failed["id"].as_str().unwrap().to_owned();
    app.atol.script(&[AtolScript::Done]);
    let resend = ["receipts", "resend", &id, "--idempotency-key", "resend-ops-1"];
    let (code, out, err) = ops(&app.base, &resend).await;
    assert_eq!(code, 0, "{err}");
    let resent = json_of(&out);
    assert_eq!((resent["status"].as_str(), resent["attempt"].as_i64()), (Some("pending"), Some(6)), "{out}");
    assert_eq!(resent["external_id"], format!("{id}-6"));
    let registered = receipt_when(&app, &t, &payment, "registered").await;
    assert_eq!(registered["attempt"], 6);
    assert!(registered["fiscal"]["fiscal_document_number"].is_number(), "{registered}");
    let docs = documents_of(&app, &id);
    assert_eq!(docs.iter().filter(|d| d.1 == "fail").count(), 5, "{docs:?}");
    assert_eq!(docs.iter().filter(|d| d.1 == "done").collect::<Vec<_>>(), [&(format!("{id}-6"), "done".to_owned())]);
    let events = app.event_types(&t).await;
    for (ty, n) in [("receipt.failed", 1), ("receipt.resent", 1), ("receipt.registered", 1)] {
        assert_eq!(events.iter().filter(|e| *e == ty).count(), n, "{ty}: {events:?}");
    }
    // A retry with the first call's key replays its answer; a new resend of a
    // registered receipt is refused. Neither sends anything to ATOL.
    let (code, again, err) = ops(&app.base, &resend).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_of(&again), resent);
    let (code, _, err) = ops(&app.base, &["receipts", "resend", &id]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("receipt_registered"), "{err}");
    assert_eq!(documents_of(&app, &id).len(), 6);

    // 2. ATOL holds the document past the job's retries: the receipt fails while
    //    its document is alive there. A resend resumes that attempt (no second
    //    document), and it registers once ATOL completes it.
    app.atol.script(&[AtolScript::NeverProcess]);
    let (payment, _, _) = paid(&app, &t, "ops-receipt-2").await;
    let failed = receipt_when(&app, &t, &payment, "failed").await;
    assert!(failed["failure_reason"].as_str().unwrap().contains("not registered after all retries"), "{failed}");
    let id = failed["id"].as_str().unwrap().to_owned();
    let (code, out, err) = ops(&app.base, &["receipts", "resend", &id]).await;
    assert_eq!(code, 0, "{err}");
    let resent = json_of(&out);
    assert_eq!((resent["status"].as_str(), resent["attempt"].as_i64()), (Some("pending"), Some(1)), "{out}");
    // Its job is at work now: another resend is refused.
    let (code, _, err) = ops(&app.base, &["receipts", "resend", &id]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("receipt_in_progress"), "{err}");
    app.atol.release_all();
    let registered = receipt_when(&app, &t, &payment, "registered").await;
    assert_eq!(registered["attempt"], 1, "{registered}");
    assert_eq!(documents_of(&app, &id), [(format!("{id}-1"), "done".to_owned())]);
    app.assert_ledger_balanced().await;
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
