//! The wave's HTTP client: every call goes to a random API replica and is retried
//! on the other one (same `Idempotency-Key`) while replicas are being killed;
//! plus `psql` for the database reads of the settle and check phases.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::Rng;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use reqwest::Method;
use serde_json::Value;
use tokio::sync::Mutex;

/// How long one call may keep retrying across replica restarts.
const CALL_DEADLINE: Duration = Duration::from_secs(120);

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    urls: Vec<String>,
    rng: Arc<Mutex<SmallRng>>,
}

impl Client {
    pub fn new(urls: Vec<String>, seed: u64) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(20)).build()?;
        Ok(Client { http, urls, rng: Arc::new(Mutex::new(SmallRng::seed_from_u64(seed))) })
    }

    /// `method path` with bearer `token` and an optional JSON body and
    /// `Idempotency-Key`: the first answer below 500 (status, body). Connection
    /// errors, 5xx and 429 are retried on a random replica until [`CALL_DEADLINE`].
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<(u16, Value)> {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < CALL_DEADLINE {
            let url = {
                let i = self.rng.lock().await.random_range(0..self.urls.len());
                format!("{}{path}", self.urls[i])
            };
            let mut req = self.http.request(method.clone(), &url).bearer_auth(token);
            if let Some(b) = body {
                req = req.json(b);
            }
            if let Some(k) = idempotency_key {
                req = req.header("Idempotency-Key", k);
            }
            match req.send().await {
                Ok(res) if res.status().as_u16() < 500 && res.status().as_u16() != 429 => {
                    let status = res.status().as_u16();
                    let text = res.text().await.unwrap_or_default();
                    return Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)));
                }
                Ok(res) => last = format!("HTTP {}", res.status()),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("{method} {path}: no answer below 500 within {CALL_DEADLINE:?} (last: {last})")
    }

    /// Like [`Client::call`], insisting on `expect`.
    pub async fn expect(
        &self,
        expect: u16,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<Value> {
        let (status, answer) = self.call(method.clone(), path, token, body, idempotency_key).await?;
        if status != expect {
            bail!("{method} {path}: {status} (expected {expect}): {answer}");
        }
        Ok(answer)
    }
}

/// The database the run uses, read with `psql` (retried across a PostgreSQL restart).
#[derive(Clone)]
pub struct Db {
    pub url: String,
}

impl Db {
    /// The rows of `sql`, each a `|`-separated line.
    pub async fn rows(&self, sql: &str) -> anyhow::Result<Vec<String>> {
        let (url, sql) = (self.url.clone(), sql.to_owned());
        tokio::task::spawn_blocking(move || {
            let mut last = String::new();
            for _ in 0..60 {
                let out =
                    Command::new("psql").args([url.as_str(), "-qAt", "-v", "ON_ERROR_STOP=1", "-c", &sql]).output()?;
                if out.status.success() {
                    return Ok(String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect());
                }
                last = String::from_utf8_lossy(&out.stderr).into_owned();
                std::thread::sleep(Duration::from_millis(500));
            }
            bail!("psql {sql}: {last}")
        })
        .await?
    }

    /// The one number `sql` selects.
    pub async fn number(&self, sql: &str) -> anyhow::Result<i64> {
        let rows = self.rows(sql).await?;
        let first = rows.first().with_context(|| format!("{sql}: no row"))?;
        first.trim().parse().with_context(|| format!("{sql}: {first:?} is not a number"))
    }
}
