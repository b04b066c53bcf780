//! The fault injector: at seeded random instants it SIGKILLs worker and API
//! replicas (the supervisor restarts them), restarts the RabbitMQ node and
//! PostgreSQL once each, and scripts provider faults (a charge timing out or
//! failing before or after the money moved, a refund answer lost, ATOL errors).
//! It runs until the wave is over and at least the required kills were made.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Mutex;

use super::cluster::{self, Cluster, Role};
use crate::atol::{AtolScript, AtolSim};
use crate::cloudpayments::RefundScript;
use crate::cloudpayments::{CloudPaymentsSim, TokenScript};

/// What was injected, by kind (the table's first part).
pub type Injections = Arc<Mutex<BTreeMap<&'static str, u32>>>;

pub const WORKER_KILL: &str = "worker SIGKILL (restarted)";
pub const API_KILL: &str = "API SIGKILL (restarted)";
pub const RABBITMQ_RESTART: &str = "RabbitMQ node restart";
pub const POSTGRES_RESTART: &str = "PostgreSQL restart";
pub const GATEWAY_FAULT: &str = "CloudPayments charge: timeout / 500 / 408, before or after charging";
pub const REFUND_LOST: &str = "CloudPayments refund answered 500 after refunding";
pub const ATOL_ERROR: &str = "ATOL answers 500 / slow / fails a document";

/// What the injector needs.
pub struct Injector {
    pub cluster: Cluster,
    pub cp: CloudPaymentsSim,
    pub atol: AtolSim,
    pub seed: u64,
    pub min_worker_kills: u32,
    pub min_api_kills: u32,
    /// Set when the wave is over: the injector stops once its minimums are met.
    pub wave_done: Arc<AtomicBool>,
    pub injected: Injections,
    /// Saved-card tokens of the wave's customers (charge faults land on them).
    pub tokens: Arc<Mutex<Vec<String>>>,
}

impl Injector {
    async fn count(&self, kind: &'static str) -> u32 {
        let mut map = self.injected.lock().await;
        let n = map.entry(kind).or_insert(0);
        *n += 1;
        *n
    }

    async fn kills(&self) -> (u32, u32) {
        let map = self.injected.lock().await;
        (map.get(WORKER_KILL).copied().unwrap_or(0), map.get(API_KILL).copied().unwrap_or(0))
    }

    /// Runs until the wave is over and the minimum kills were made.
    pub async fn run(self) -> anyhow::Result<()> {
        let mut rng = SmallRng::seed_from_u64(self.seed ^ 0x5eed_fa17);
        // The broker and the database restart once each, at seeded steps early
        // enough to fall inside the wave.
        let rabbit_at = rng.random_range(6..14u32);
        let postgres_at = rng.random_range(16..26u32);
        let mut step = 0u32;
        loop {
            let (workers, apis) = self.kills().await;
            let done = self.wave_done.load(Ordering::SeqCst);
            if done && workers >= self.min_worker_kills && apis >= self.min_api_kills && step > postgres_at {
                return Ok(());
            }
            step += 1;
            tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
            if step == rabbit_at {
                tokio::task::spawn_blocking(cluster::restart_rabbitmq).await??;
                self.count(RABBITMQ_RESTART).await;
                continue;
            }
            if step == postgres_at {
                tokio::task::spawn_blocking(cluster::restart_postgres).await??;
                self.count(POSTGRES_RESTART).await;
                continue;
            }
            match rng.random_range(0..100u32) {
                0..45 => {
                    if self.cluster.kill(Role::Worker, rng.random_range(0..2))?.is_some() {
                        self.count(WORKER_KILL).await;
                    }
                }
                45..70 => {
                    if self.cluster.kill(Role::Api, rng.random_range(0..2))?.is_some() {
                        self.count(API_KILL).await;
                    }
                }
                70..80 => {
                    let token = {
                        let tokens = self.tokens.lock().await;
                        if tokens.is_empty() {
                            continue;
                        }
                        tokens[rng.random_range(0..tokens.len())].clone()
                    };
                    let fault = match rng.random_range(0..4u32) {
                        0 => TokenScript::TimeoutAfterCharge,
                        1 => TokenScript::ErrorAfterCharge,
                        2 => TokenScript::ErrorBeforeCharge,
                        _ => TokenScript::BusyBeforeCharge,
                    };
                    self.cp.script_token(&token, &[fault]);
                    self.count(GATEWAY_FAULT).await;
                }
                80..88 => {
                    self.cp.script_refunds(&[RefundScript::ErrorAfterRefund]);
                    self.count(REFUND_LOST).await;
                }
                _ => {
                    let script = match rng.random_range(0..3u32) {
                        0 => AtolScript::ServerError,
                        1 => AtolScript::Slow,
                        _ => AtolScript::FailTimeout,
                    };
                    self.atol.script(&[script]);
                    self.count(ATOL_ERROR).await;
                }
            }
        }
    }
}
