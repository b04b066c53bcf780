//! The API binary migrates an empty database, serves, and stops cleanly on SIGTERM;
//! `billing-api migrate` migrates (and seals tenants' secrets, so it needs the key)
//! and exits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use billing_tests::process::{Proc, binary, free_port, wait_http_ok};
use billing_tests::testdb::TestDb;

#[tokio::test]
async fn migrates_serves_and_stops_cleanly_on_sigterm() {
    let db = TestDb::empty().await;
    let port = free_port();
    let mut api = Proc::spawn(
        &binary("billing-api"),
        &[],
        &[
            ("DATABASE_URL", db.url.clone()),
            ("BILLING_API_ADDR", format!("127.0.0.1:{port}")),
            ("BILLING_SECRETS_KEY", "cHJvY2Vzcy10ZXN0LXNlY3JldHMta2V5LTMyYnl0ZXM=".into()),
        ],
    );
    assert!(
        wait_http_ok(&format!("http://127.0.0.1:{port}/healthz"), Duration::from_secs(60)).await,
        "api did not come up"
    );
    assert!(wait_http_ok(&format!("http://127.0.0.1:{port}/readyz"), Duration::from_secs(10)).await, "api not ready");
    assert!(db.check("SELECT to_regclass('public.subscriptions') IS NOT NULL AS ready").await);
    let status = api.terminate(Duration::from_secs(40)).expect("api did not stop on SIGTERM");
    assert!(status.success(), "api exited with {status}");
}

#[tokio::test]
async fn migrate_subcommand_migrates_and_exits() {
    let db = TestDb::empty().await;
    let mut migrate = Proc::spawn(
        &binary("billing-api"),
        &["migrate"],
        &[
            ("DATABASE_URL", db.url.clone()),
            ("BILLING_API_ADDR", "127.0.0.1:1".into()),
            ("BILLING_SECRETS_KEY", "cHJvY2Vzcy10ZXN0LXNlY3JldHMta2V5LTMyYnl0ZXM=".into()),
        ],
    );
    let status = migrate.wait_exit(Duration::from_secs(60)).expect("migrate did not finish");
    assert!(status.success());
    assert!(db.check("SELECT to_regclass('public.outbox_events') IS NOT NULL AS ready").await);
    // Without the key it cannot seal: it says so and fails.
    let out = std::process::Command::new(binary("billing-api"))
        .arg("migrate")
        .env("DATABASE_URL", &db.url)
        .env_remove("BILLING_SECRETS_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("BILLING_SECRETS_KEY is not set"));
}
