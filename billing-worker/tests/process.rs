//! The worker binary starts, migrates, connects, serves /healthz and /metrics, and
//! stops cleanly on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use billing_tests::process::{Proc, binary, free_port, wait_http_ok};
use billing_tests::testdb::TestDb;

#[tokio::test]
async fn starts_connects_and_stops_cleanly_on_sigterm() {
    let db = TestDb::empty().await;
    let port = free_port();
    let mut worker = Proc::spawn(
        &binary("billing-worker"),
        &[],
        &[
            ("DATABASE_URL", db.url.clone()),
            ("BILLING_WORKER_METRICS_ADDR", format!("127.0.0.1:{port}")),
            ("BILLING_SECRETS_KEY", "cHJvY2Vzcy10ZXN0LXNlY3JldHMta2V5LTMyYnl0ZXM=".into()),
        ],
    );
    assert!(
        wait_http_ok(&format!("http://127.0.0.1:{port}/healthz"), Duration::from_secs(60)).await,
        "worker did not come up"
    );
    assert!(
        db.check("SELECT to_regclass('public.ledger_entries') IS NOT NULL AS ready").await,
        "migrations applied at start"
    );
    let status = worker.terminate(Duration::from_secs(20)).expect("worker did not stop on SIGTERM");
    assert!(status.success(), "worker exited with {status}");
}
