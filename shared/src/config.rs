//! Typed settings from the environment, validated at start-up.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `DATABASE_URL` | PostgreSQL | `postgres://postgres@127.0.0.1:5432/billing` |
//! | `AMQP_URL` | RabbitMQ | `amqp://guest:guest@127.0.0.1:5672/%2f` |
//! | `BILLING_API_ADDR` | API listen address | `127.0.0.1:8080` |
//! | `BILLING_ADMIN_TOKEN` | operator bearer token | none: operator endpoints disabled |
//! | `BILLING_TEST_CLOCK` | `1` enables the shared test clock | off |
//! | `BILLING_DB_POOL_SIZE` | connections per process (the API: split between its HTTP workers, one pool each, no more workers than connections); the sum over all processes two to four per PostgreSQL core | `10` |
//! | `BILLING_HTTP_WORKERS` | the API's HTTP worker threads (no more than `BILLING_DB_POOL_SIZE`) | one per core |
//! | `BILLING_USAGE_CONCURRENCY` | full usage batches (`POST /v1/usage`, 10 000 events) the API writes at once (1 to 1 024), a smaller one taking its events' share of a turn; more wait, parsed already | one per core |
//! | `BILLING_WORKER_METRICS_ADDR` | worker `/metrics` and `/healthz` | `127.0.0.1:9090` |
//! | `BILLING_LOG_FORMAT` | `json` or `text` | `json` |
//! | `BILLING_WORKER_PREFETCH` | messages in flight per worker queue | `512` |
//! | `BILLING_SCHEDULER_INTERVAL_MS` | pause between scheduler ticks when idle | `1000` |
//! | `BILLING_SCHEDULER_BATCH` | subscriptions claimed per tick | `500` |
//! | `BILLING_SCHEDULER_CONCURRENCY` | scheduler loops per worker | `2` |
//! | `BILLING_CHARGE_WAVES` | `1`: a tick's plain renewals go out as `charge_attempts` jobs of up to 256 attempts; `0`: one `charge_attempt` job per renewal, as releases before 2026-12-03 did (set it while workers of such a release still run beside this one: they cannot read the wave jobs) | `1` |
//! | `BILLING_RELAY_INTERVAL_MS` | pause of the outbox relay when idle | `100` |
//! | `BILLING_RETRY_DELAY_DIVISOR` | divides retry-queue delays (tests) | `1` |
//! | `BILLING_GATEWAY_TIMEOUT_MS` | payment provider call timeout | `30000` |
//! | `BILLING_GATEWAY_CONCURRENCY` | payment-gateway calls in flight per process (more wait for a turn) | `64` |
//! | `BILLING_WEBHOOK_TIMEOUT_MS` | outgoing webhook timeout | `10000` |
//! | `BILLING_SECRETS_KEY` | 32 bytes, base64: seals tenants' secrets at rest (`sealing`) | none: the API and worker refuse to start |
//! | `BILLING_SECRETS_KEY_PREVIOUS` | a second key, for opening only, during a rotation | none |
//! | `BILLING_USAGE_RETENTION_DAYS` | days usage events are kept (whole daily partitions dropped after; totals archived) | `400` |
//! | `BILLING_CAPTURE_LINGER_MS` | how long the API's capture queue waits after a capture notification for more to apply in the same batch (0: it takes only what is queued already; 1 ms took a Pay notification's CPU from about 1.0 to 0.7 ms under load, bench/README "Captures wait a millisecond for company") | `1` |
//! | `BILLING_PUBLIC_URL` | the API's public base URL, for providers' callbacks (ATOL `callback_url`) | none: no callbacks, reports are polled |

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use crate::domain::secret::Secret;
use crate::sealing::Keyring;

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: Secret,
    pub amqp_url: Secret,
    pub api_addr: SocketAddr,
    pub admin_token: Option<Secret>,
    pub test_clock: bool,
    pub db_pool_size: usize,
    /// The API's HTTP worker threads; `None`: one per core. Never more than
    /// `db_pool_size` (each worker has a pool of its own).
    pub http_workers: Option<usize>,
    pub worker_metrics_addr: SocketAddr,
    pub log_format: LogFormat,
    pub worker_prefetch: u16,
    pub scheduler_interval: Duration,
    pub scheduler_batch: i64,
    pub scheduler_concurrency: usize,
    /// Whether a tick's plain renewals go out as wave jobs (`BILLING_CHARGE_WAVES`).
    pub charge_waves: bool,
    /// Days usage events are kept before their daily partition is dropped.
    pub usage_retention_days: u32,
    pub relay_interval: Duration,
    pub retry_delay_divisor: u64,
    pub gateway_timeout: Duration,
    /// Payment-gateway calls (charges, refunds, look-ups, checkouts) one process
    /// makes at once; more wait for a turn. Bounds what a wave of charges holds
    /// open (requests, connections, buffers) whatever the consumers' prefetch.
    pub gateway_concurrency: usize,
    pub webhook_timeout: Duration,
    pub public_url: Option<String>,
    /// Requests per second each API key (bearer token) may make; 0 turns the limit
    /// off. Beyond it: 429 with `Retry-After`.
    pub rate_limit_per_second: u32,
    /// How many requests a key may make at once above its rate.
    pub rate_limit_burst: u32,
    /// How long the API's capture queue waits after a capture notification for
    /// others to join its batch (zero: it takes only what is queued already).
    pub capture_linger: Duration,
    /// Full usage batches (`POST /v1/usage`, 10 000 events) an API process writes
    /// at once, smaller ones taking a share by their events; `None`: one per core.
    /// More wait for a turn, already parsed (bench/README, "Usage batches in
    /// turns").
    pub usage_concurrency: Option<usize>,
    /// The keyring of `BILLING_SECRETS_KEY` and `BILLING_SECRETS_KEY_PREVIOUS`.
    secrets_keys: Option<Arc<Keyring>>,
}

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/billing";
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads settings through `get` (the environment, or a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let database_url = var("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        if !(database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")) {
            return Err(ConfigError("DATABASE_URL must be a postgres:// URL".into()));
        }
        let amqp_url = var("AMQP_URL").unwrap_or_else(|| DEFAULT_AMQP_URL.to_owned());
        if !(amqp_url.starts_with("amqp://") || amqp_url.starts_with("amqps://")) {
            return Err(ConfigError("AMQP_URL must be an amqp:// or amqps:// URL".into()));
        }
        let addr = |k: &str, default: &str| -> Result<SocketAddr, ConfigError> {
            let raw = var(k).unwrap_or_else(|| default.to_owned());
            raw.parse().map_err(|_| ConfigError(format!("{k}={raw:?} is not a host:port socket address")))
        };
        let admin_token = var("BILLING_ADMIN_TOKEN").map(Secret::new);
        if let Some(t) = &admin_token
            && t.expose().len() < 16
        {
            return Err(ConfigError("BILLING_ADMIN_TOKEN must be at least 16 characters".into()));
        }
        let secrets_keys = match (var("BILLING_SECRETS_KEY"), var("BILLING_SECRETS_KEY_PREVIOUS")) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(ConfigError("BILLING_SECRETS_KEY_PREVIOUS needs BILLING_SECRETS_KEY".into()));
            }
            (Some(k), prev) => {
                Some(Arc::new(Keyring::from_base64(&k, prev.as_deref()).map_err(|e| ConfigError(e.to_string()))?))
            }
        };
        let public_url = var("BILLING_PUBLIC_URL");
        if let Some(u) = &public_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return Err(ConfigError(format!("BILLING_PUBLIC_URL={u:?}: use an http(s) URL")));
        }
        let switch = |name: &str, default: bool| match var(name).as_deref() {
            None => Ok(default),
            Some("0") | Some("false") => Ok(false),
            Some("1") | Some("true") => Ok(true),
            Some(other) => Err(ConfigError(format!("{name}={other:?}: use 1 or 0"))),
        };
        let test_clock = switch("BILLING_TEST_CLOCK", false)?;
        let charge_waves = switch("BILLING_CHARGE_WAVES", true)?;
        let db_pool_size = match var("BILLING_DB_POOL_SIZE") {
            None => 10,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=200).contains(n))
                .ok_or_else(|| ConfigError(format!("BILLING_DB_POOL_SIZE={v:?}: use 1..200")))?,
        };
        let log_format = match var("BILLING_LOG_FORMAT").as_deref() {
            None | Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            Some(other) => return Err(ConfigError(format!("BILLING_LOG_FORMAT={other:?}: use json or text"))),
        };
        let number = |k: &str, default: u64, range: std::ops::RangeInclusive<u64>| -> Result<u64, ConfigError> {
            match var(k) {
                None => Ok(default),
                Some(v) => v.parse::<u64>().ok().filter(|n| range.contains(n)).ok_or_else(|| {
                    ConfigError(format!("{k}={v:?}: use a number in {}..={}", range.start(), range.end()))
                }),
            }
        };
        let millis = |k: &str, default: u64| number(k, default, 1..=3_600_000).map(Duration::from_millis);
        // A count whose default is derived elsewhere (the cores): `None` when unset.
        let count = |k: &str, range: std::ops::RangeInclusive<u64>| -> Result<Option<usize>, ConfigError> {
            match var(k) {
                None => Ok(None),
                Some(_) => Ok(Some(usize::try_from(number(k, 1, range)?).unwrap_or(1))),
            }
        };
        Ok(Config {
            worker_prefetch: u16::try_from(number("BILLING_WORKER_PREFETCH", 512, 1..=1000)?).unwrap_or(512),
            scheduler_interval: millis("BILLING_SCHEDULER_INTERVAL_MS", 1000)?,
            scheduler_batch: i64::try_from(number("BILLING_SCHEDULER_BATCH", 500, 1..=10_000)?).unwrap_or(500),
            scheduler_concurrency: usize::try_from(number("BILLING_SCHEDULER_CONCURRENCY", 2, 1..=32)?).unwrap_or(2),
            usage_retention_days: u32::try_from(number("BILLING_USAGE_RETENTION_DAYS", 400, 1..=36_500)?)
                .unwrap_or(400),
            relay_interval: millis("BILLING_RELAY_INTERVAL_MS", 100)?,
            retry_delay_divisor: number("BILLING_RETRY_DELAY_DIVISOR", 1, 1..=1_000_000)?,
            gateway_timeout: millis("BILLING_GATEWAY_TIMEOUT_MS", 30_000)?,
            gateway_concurrency: usize::try_from(number("BILLING_GATEWAY_CONCURRENCY", 64, 1..=1000)?).unwrap_or(64),
            webhook_timeout: millis("BILLING_WEBHOOK_TIMEOUT_MS", 10_000)?,
            database_url: Secret::new(database_url),
            amqp_url: Secret::new(amqp_url),
            api_addr: addr("BILLING_API_ADDR", "127.0.0.1:8080")?,
            admin_token,
            test_clock,
            charge_waves,
            db_pool_size,
            worker_metrics_addr: addr("BILLING_WORKER_METRICS_ADDR", "127.0.0.1:9090")?,
            log_format,
            public_url,
            rate_limit_per_second: u32::try_from(number("BILLING_RATE_LIMIT_PER_SECOND", 1000, 0..=1_000_000)?)
                .unwrap_or(1000),
            rate_limit_burst: u32::try_from(number("BILLING_RATE_LIMIT_BURST", 2000, 1..=10_000_000)?).unwrap_or(2000),
            http_workers: count("BILLING_HTTP_WORKERS", 1..=256)?,
            capture_linger: Duration::from_millis(number("BILLING_CAPTURE_LINGER_MS", 1, 0..=10_000)?),
            usage_concurrency: count("BILLING_USAGE_CONCURRENCY", 1..=1024)?,
            secrets_keys,
        })
    }

    /// The keyring sealing tenants' secrets at rest.
    ///
    /// Errors: `BILLING_SECRETS_KEY` is not set (the API and worker need it; the
    /// `migrate` and `audit` commands do not).
    pub fn keyring(&self) -> Result<Arc<Keyring>, ConfigError> {
        self.secrets_keys.clone().ok_or_else(|| {
            ConfigError(
                "BILLING_SECRETS_KEY is not set: it seals tenants' secrets at rest \
                 (make one with `openssl rand -base64 32`)"
                    .into(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_follow_the_deployment_contract() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.database_url.expose(), DEFAULT_DATABASE_URL);
        assert_eq!(c.amqp_url.expose(), DEFAULT_AMQP_URL);
        assert_eq!(c.api_addr.to_string(), "127.0.0.1:8080");
        assert!(c.admin_token.is_none());
        assert!(!c.test_clock);
        assert_eq!(c.usage_concurrency, None);
    }

    #[test]
    fn rejects_bad_values_with_a_clear_message() {
        let err = cfg(&[("BILLING_API_ADDR", "localhost")]).unwrap_err().to_string();
        assert!(err.contains("BILLING_API_ADDR"), "{err}");
        assert!(cfg(&[("BILLING_TEST_CLOCK", "yes")]).is_err());
        assert!(cfg(&[("DATABASE_URL", "mysql://x")]).is_err());
        assert!(cfg(&[("BILLING_ADMIN_TOKEN", "short")]).is_err());
        assert!(cfg(&[("BILLING_TEST_CLOCK", "1")]).unwrap().test_clock);
        let err = cfg(&[("BILLING_USAGE_CONCURRENCY", "0")]).unwrap_err().to_string();
        assert!(err.contains("BILLING_USAGE_CONCURRENCY"), "{err}");
        assert_eq!(cfg(&[("BILLING_USAGE_CONCURRENCY", "3")]).unwrap().usage_concurrency, Some(3));
        assert!(cfg(&[("BILLING_HTTP_WORKERS", "257")]).is_err());
        assert_eq!(cfg(&[("BILLING_HTTP_WORKERS", "2")]).unwrap().http_workers, Some(2));
    }

    #[test]
    fn secrets_key_is_validated_and_needed_to_serve() {
        let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let err = cfg(&[]).unwrap().keyring().unwrap_err().to_string();
        assert!(err.contains("BILLING_SECRETS_KEY is not set"), "{err}");
        let err = cfg(&[("BILLING_SECRETS_KEY", "c2hvcnQ=")]).unwrap_err().to_string();
        assert!(err.contains("32 bytes"), "{err}");
        assert!(cfg(&[("BILLING_SECRETS_KEY_PREVIOUS", key)]).is_err());
        let c = cfg(&[("BILLING_SECRETS_KEY", key)]).unwrap();
        assert_eq!(c.keyring().unwrap().current_id().len(), 8);
        assert!(!format!("{c:?}").contains(key));
    }

    #[test]
    fn secrets_never_print() {
        let c = cfg(&[("BILLING_ADMIN_TOKEN", "super-secret-admin-token")]).unwrap();
        assert!(!format!("{c:?}").contains("super-secret"));
    }
}
