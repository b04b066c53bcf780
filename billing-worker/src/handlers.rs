//! Message handlers per queue: decode, call a service, report the outcome.

use std::time::Duration;

use billing_shared::clock::Clock;
use billing_shared::db::PgPool;
use billing_shared::error::{ServiceError, ServiceResult};
use billing_shared::gateways::cloudpayments::api::CloudPaymentsApi;
use billing_shared::queue::topology::{GATEWAY_FOLLOWUPS, RENEWALS, WEBHOOKS, WorkQueue};
use billing_shared::services::{JobResult, charging, dead_letters, webhooks};
use serde::Deserialize;
use uuid::Uuid;

pub struct Handlers {
    pub pool: PgPool,
    pub clock: Clock,
    pub gateway: CloudPaymentsApi,
    pub webhook_http: reqwest::Client,
}

#[derive(Deserialize)]
struct Job {
    #[serde(rename = "type")]
    kind: String,
    data: AttemptRef,
}

#[derive(Deserialize)]
struct AttemptRef {
    attempt_id: Uuid,
}

impl Handlers {
    pub fn new(
        pool: PgPool,
        clock: Clock,
        gateway_timeout: Duration,
        webhook_timeout: Duration,
    ) -> ServiceResult<Self> {
        Ok(Handlers {
            pool,
            clock,
            gateway: CloudPaymentsApi::new(gateway_timeout)?,
            webhook_http: webhooks::client(webhook_timeout)?,
        })
    }

    /// Handles one message of `queue` (try number `attempt`, `last` before
    /// dead-lettering).
    pub async fn handle(&self, queue: WorkQueue, body: &[u8], attempt: u32, last: bool) -> ServiceResult<JobResult> {
        if queue.name == WEBHOOKS.name {
            return webhooks::deliver(&self.pool, &self.webhook_http, body, attempt, last).await;
        }
        if queue.name == RENEWALS.name || queue.name == GATEWAY_FOLLOWUPS.name {
            let job: Job = serde_json::from_slice(body)
                .map_err(|e| ServiceError::invalid("invalid_job", format!("undecodable job: {e}")))?;
            return match job.kind.as_str() {
                "charge_attempt" | "reconcile_attempt" => {
                    charging::process_attempt(&self.pool, self.clock, &self.gateway, job.data.attempt_id).await
                }
                other => Err(ServiceError::invalid("invalid_job", format!("unknown job type {other}"))),
            };
        }
        Err(ServiceError::invalid("invalid_job", format!("no handler for queue {}", queue.name)))
    }

    /// A batch of `billing.renewals` messages: charge jobs are processed together,
    /// anything else one by one. One result per message, in order.
    pub async fn handle_charges(&self, bodies: &[&[u8]]) -> Vec<ServiceResult<JobResult>> {
        let jobs: Vec<Option<Uuid>> = bodies
            .iter()
            .map(|b| {
                serde_json::from_slice::<Job>(b).ok().filter(|j| j.kind == "charge_attempt").map(|j| j.data.attempt_id)
            })
            .collect();
        let ids: Vec<Uuid> = jobs.iter().flatten().copied().collect();
        let mut batched = charging::process_attempts(&self.pool, self.clock, &self.gateway, &ids).await.into_iter();
        let mut results = Vec::with_capacity(bodies.len());
        for (body, job) in bodies.iter().zip(&jobs) {
            results.push(match job {
                Some(_) => batched.next().unwrap_or_else(|| Err(ServiceError::Internal("batch result missing".into()))),
                None => self.handle(RENEWALS, body, 1, false).await,
            });
        }
        results
    }

    pub async fn record_dead_letter(
        &self,
        id: Uuid,
        queue: WorkQueue,
        reason: &str,
        attempts: u32,
        payload: Option<serde_json::Value>,
    ) -> ServiceResult<()> {
        let mut conn = self.pool.get().await?;
        dead_letters::record(&mut conn, id, queue.name, reason, i32::try_from(attempts).unwrap_or(i32::MAX), payload)
            .await
    }
}
