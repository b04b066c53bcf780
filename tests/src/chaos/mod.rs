//! The fault-injection run (issue 14, part 2; `bench/chaos.sh`): two API and two
//! worker replicas on one database and vhost serve a mixed wave ([`wave`]) while
//! [`faults`] kills them and restarts the broker and the database; then the work
//! settles and [`checks`] and `billing-api audit` prove nothing was lost or done
//! twice. Seeded: the same seed makes the same wave and the same fault schedule
//! (the instants they land on depend on the machine). Not a test: it prints a table.

pub mod checks;
pub mod client;
pub mod cluster;
pub mod faults;
pub mod tap;
pub mod wave;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::Method;
use serde_json::json;
use tokio::sync::Mutex;

use crate::atol::AtolSim;
use crate::cloudpayments::{CloudPaymentsSim, Site};
use crate::process::{free_port, wait_http_ok};
use client::{Client, Db};
use cluster::Cluster;

/// What to run.
pub struct Settings {
    pub seed: u64,
    pub customers: usize,
    /// Where `billing-api` and `billing-worker` are (release builds).
    pub bin_dir: PathBuf,
    pub log_dir: PathBuf,
    pub database_url: String,
    pub amqp_url: String,
    /// `BILLING_SECRETS_KEY` of every process (the one `billing-api migrate` used).
    pub secrets_key: String,
    pub min_worker_kills: u32,
    pub min_api_kills: u32,
}

/// The run's outcome, printed as a table.
pub struct Report {
    pub seed: u64,
    pub seconds: f64,
    pub injections: Vec<(&'static str, u32)>,
    pub operations: Vec<(&'static str, i64)>,
    pub audit: (i32, String),
    pub checks: Vec<checks::Check>,
}

impl Report {
    /// Breaches over every check and the audit.
    pub fn breaches(&self) -> usize {
        self.checks.iter().map(|c| c.breaches.len()).sum::<usize>() + usize::from(self.audit.0 != 0)
    }

    /// The Markdown tables README shows.
    pub fn table(&self) -> String {
        let mut out =
            format!("Fault-injection run, seed {}, {:.0} s, 2 API + 2 worker replicas\n\n", self.seed, self.seconds);
        out.push_str("| injection | count |\n|---|---|\n");
        for (k, n) in &self.injections {
            let _ = writeln!(out, "| {k} | {n} |");
        }
        out.push_str("\n| operation | count |\n|---|---|\n");
        for (k, n) in &self.operations {
            let _ = writeln!(out, "| {k} | {n} |");
        }
        out.push_str("\n| check | looked at | breaches |\n|---|---|---|\n");
        let audit_line = self.audit.1.lines().last().unwrap_or("no output");
        let _ = writeln!(
            out,
            "| `billing-api audit` (exit {}) | {audit_line} | {} |",
            self.audit.0,
            usize::from(self.audit.0 != 0)
        );
        for c in &self.checks {
            let _ = writeln!(out, "| {} | {} | {} |", c.name, c.looked_at, c.breaches.len());
        }
        let _ = writeln!(out, "\nbreaches: {}", self.breaches());
        for c in &self.checks {
            for b in c.breaches.iter().take(20) {
                let _ = writeln!(out, "  {}: {b}", c.name);
            }
        }
        if self.audit.0 != 0 {
            out.push_str(&self.audit.1);
        }
        out
    }
}

const ADMIN_TOKEN: &str = "chaos-operator-token-0123456789";

fn process_env(s: &Settings) -> Vec<(String, String)> {
    [
        ("DATABASE_URL", s.database_url.as_str()),
        ("AMQP_URL", s.amqp_url.as_str()),
        ("BILLING_ADMIN_TOKEN", ADMIN_TOKEN),
        ("BILLING_SECRETS_KEY", s.secrets_key.as_str()),
        ("BILLING_TEST_CLOCK", "1"),
        ("BILLING_LOG_FORMAT", "text"),
        ("RUST_LOG", "warn"),
        ("BILLING_RATE_LIMIT_PER_SECOND", "0"),
        ("BILLING_GATEWAY_TIMEOUT_MS", "2000"),
        ("BILLING_RETRY_DELAY_DIVISOR", "1000"),
        ("BILLING_SCHEDULER_INTERVAL_MS", "50"),
        ("BILLING_RELAY_INTERVAL_MS", "20"),
        ("BILLING_DB_POOL_SIZE", "6"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

/// Creates the tenant (CloudPayments + ATOL, refunds approved) and its plan;
/// returns (tenant id, API key).
async fn tenant(client: &Client, cp: &CloudPaymentsSim, atol: &AtolSim, api: &str) -> anyhow::Result<(String, String)> {
    atol.add_account("chaos", "chaos-atol-pass", "chaos-group");
    let created = client
        .expect(201, Method::POST, "/v1/admin/tenants", ADMIN_TOKEN, Some(&json!({
            "name": "Orbita (chaos)", "time_zone": "Europe/Moscow",
            "gateway": {"kind": "cloudpayments", "public_id": "pk_chaos", "api_secret": "chaos-secret", "api_url": cp.base_url},
            "fiscal": {"inn": "7704211201", "sno": "osn", "vat": "vat22", "settlement_sign": "full_payment",
                       "payment_object": 4, "payment_address": "https://orbita.example.ru", "email": "b@orbita.example.ru",
                       "provider": {"login": "chaos", "password": "chaos-atol-pass", "group_code": "chaos-group", "api_url": atol.base_url}},
            "policy": {"dunning_retry_days": [1, 3], "refund_rules": [{"reasons": ["unused"], "decision": "approve", "amount": "full"}]}
        })), Some("chaos-tenant"))
        .await?;
    let id = created["id"].as_str().context("tenant id")?.to_owned();
    let key = created["api_key"].as_str().context("api key")?.to_owned();
    cp.register_site(Site {
        public_id: "pk_chaos".into(),
        api_secret: "chaos-secret".into(),
        notify_base: format!("{api}/v1/webhooks/cloudpayments/{id}"),
        format: Default::default(),
    });
    client
        .expect(
            201,
            Method::POST,
            "/v1/plans",
            &key,
            Some(&json!({
                "code": "CHAOS", "name": "CHAOS", "price": {"value": "990.00", "currency": "RUB"},
                "period": {"unit": "month", "count": 1}, "auto_renew": true,
                "quotas": {"messages": {"limit": 1000000, "mode": "block"}}
            })),
            Some("chaos-plan"),
        )
        .await?;
    Ok((id, key))
}

/// Counts of what the wave made happen, read from the database.
async fn operations(db: &Db, ops: &wave::Operations) -> anyhow::Result<Vec<(&'static str, i64)>> {
    let n = |sql: &'static str| async move { db.number(sql).await };
    Ok(vec![
        ("purchases paid through the widget", i64::try_from(ops.purchases_paid.load(Ordering::SeqCst))?),
        ("usage events accepted", i64::try_from(ops.usage_events_sent.load(Ordering::SeqCst))?),
        ("usage events rejected (access suspended)", i64::try_from(ops.usage_events_rejected.load(Ordering::SeqCst))?),
        (
            "renewal charges scripted to decline or lose their answer",
            i64::try_from(ops.renewal_scripts.load(Ordering::SeqCst))?,
        ),
        (
            "renewals captured",
            n("SELECT count(*) FROM payments WHERE kind = 'renewal' AND captured_at IS NOT NULL").await?,
        ),
        (
            "renewal attempts declined",
            n("SELECT count(*) FROM payment_attempts WHERE channel = 'token' AND status = 'failed'").await?,
        ),
        ("refunds requested", i64::try_from(ops.refunds_requested.load(Ordering::SeqCst))?),
        ("refunds succeeded", n("SELECT count(*) FROM refunds WHERE status = 'succeeded'").await?),
        (
            "receipts registered (income + refund)",
            n("SELECT count(*) FROM receipts WHERE status = 'registered'").await?,
        ),
        ("receipts failed (dead-lettered)", n("SELECT count(*) FROM receipts WHERE status = 'failed'").await?),
        (
            "events published",
            db.number(&format!("SELECT count(*) FROM outbox_events o WHERE {}", checks::PUBLISHED)).await?,
        ),
        ("dead letters", n("SELECT count(*) FROM dead_letters").await?),
    ])
}

fn supervisor_stopped(r: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Error {
    match r {
        Ok(Err(e)) => e.context("the supervisor could not restart a replica"),
        Ok(Ok(())) => anyhow::anyhow!("the supervisor stopped before the run was over"),
        Err(e) => anyhow::Error::from(e).context("the supervisor panicked"),
    }
}

/// Runs the wave under faults, settles, checks. Errors: a process or the wave
/// failing outright (a breach is a finding in the report, not an error).
pub async fn run(s: &Settings) -> anyhow::Result<Report> {
    let started = Instant::now();
    let cp = CloudPaymentsSim::start("127.0.0.1:0")?;
    cp.set_notification_retries(400);
    let atol = AtolSim::start("127.0.0.1:0")?;
    atol.set_slow_ms(3000);
    let (apis, workers) = ([free_port(), free_port()], [free_port(), free_port()]);
    let cluster = Cluster::new(&s.bin_dir, process_env(s), &apis, &workers, &s.log_dir);
    cluster.restart_exited()?;
    for url in cluster.api_urls() {
        anyhow::ensure!(wait_http_ok(&format!("{url}/healthz"), Duration::from_secs(60)).await, "{url} did not start");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut supervisor = {
        let (cluster, stop) = (cluster.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                cluster.restart_exited()?;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            anyhow::Ok(())
        })
    };
    tap::declare(&s.amqp_url).await?;
    let client = Client::new(cluster.api_urls(), s.seed)?;
    let db = Db { url: s.database_url.clone() };
    let (_, api_key) = tenant(&client, &cp, &atol, &cluster.api_urls()[0]).await?;
    let (wave_done, injected, tokens) =
        (Arc::new(AtomicBool::new(false)), Default::default(), Arc::new(Mutex::new(Vec::new())));
    let injector = tokio::spawn(
        faults::Injector {
            cluster: cluster.clone(),
            cp: cp.clone(),
            atol: atol.clone(),
            seed: s.seed,
            min_worker_kills: s.min_worker_kills,
            min_api_kills: s.min_api_kills,
            wave_done: wave_done.clone(),
            injected: Arc::clone(&injected),
            tokens: tokens.clone(),
        }
        .run(),
    );
    let ops = Arc::new(wave::Operations::default());
    let wave = Arc::new(wave::Wave {
        client,
        db: db.clone(),
        cp: cp.clone(),
        admin_token: ADMIN_TOKEN.to_owned(),
        api_key,
        seed: s.seed,
        customers: s.customers,
        ops: ops.clone(),
        tokens,
    });
    // A supervisor that cannot restart a replica ends the run at once.
    let wave_result = tokio::select! {
        r = wave.run() => r,
        r = &mut supervisor => return Err(supervisor_stopped(r)),
    };
    wave_done.store(true, Ordering::SeqCst);
    let injector_result = injector.await?;
    cluster.restart_exited()?;
    wave_result?;
    injector_result?;
    let unresolved = tokio::select! {
        r = checks::settle(&db, Duration::from_secs(240)) => r?,
        r = &mut supervisor => return Err(supervisor_stopped(r)),
    };
    stop.store(true, Ordering::SeqCst);
    supervisor.await??;
    let audit = cluster.api_command(&["audit"]).map(|(code, out, err)| (code, format!("{out}{err}")))?;
    let delivered = tap::drain(&s.amqp_url).await?;
    let seen = checks::Observed {
        usage_sent: ops.usage_events_sent.load(Ordering::SeqCst),
        refunds_requested: ops.refunds_requested.load(Ordering::SeqCst),
        delivered: &delivered,
        unresolved: &unresolved,
    };
    let mut checks = checks::run_all(&db, &cp, &atol, &seen).await?;
    checks.push(cluster.health_check()?);
    let operations = operations(&db, &ops).await?;
    cluster.stop_all();
    let injections = injected.lock().await.iter().map(|(k, v)| (*k, *v)).collect();
    Ok(Report { seed: s.seed, seconds: started.elapsed().as_secs_f64(), injections, operations, audit, checks })
}
