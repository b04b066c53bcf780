//! Message handlers per queue: decode, call a service, report the outcome.

use std::time::Duration;

use billing_shared::clock::Clock;
use billing_shared::db::PgPool;
use billing_shared::error::{ServiceError, ServiceResult};
use billing_shared::gateways::atol::AtolApi;
use billing_shared::gateways::cloudpayments::api::CloudPaymentsApi;
use billing_shared::queue::topology::{GATEWAY_FOLLOWUPS, RECEIPTS, REFUNDS, RENEWALS, WEBHOOKS, WorkQueue};
use billing_shared::services::receipts::{self, Registrar};
use billing_shared::services::{JobResult, charging, dead_letters, refund_execution, webhooks};
use serde::Deserialize;
use uuid::Uuid;

pub struct Handlers {
    pub pool: PgPool,
    pub clock: Clock,
    pub gateway: CloudPaymentsApi,
    pub fiscal: AtolApi,
    /// Our public base URL, for the fiscal provider's callbacks.
    pub public_url: Option<String>,
    pub webhook_http: reqwest::Client,
}

#[derive(Deserialize)]
struct Job {
    #[serde(rename = "type")]
    kind: String,
    data: JobRef,
}

/// What a job is about (one of these per job type).
#[derive(Deserialize)]
struct JobRef {
    attempt_id: Option<Uuid>,
    refund_id: Option<Uuid>,
    receipt_id: Option<Uuid>,
}

fn invalid(msg: String) -> ServiceError {
    ServiceError::invalid("invalid_job", msg)
}

impl Handlers {
    pub fn new(
        pool: PgPool,
        clock: Clock,
        gateway_timeout: Duration,
        webhook_timeout: Duration,
        public_url: Option<String>,
    ) -> ServiceResult<Self> {
        Ok(Handlers {
            pool,
            clock,
            gateway: CloudPaymentsApi::new(gateway_timeout)?,
            fiscal: AtolApi::new(gateway_timeout)?,
            public_url,
            webhook_http: webhooks::client(webhook_timeout)?,
        })
    }

    /// Handles one message of `queue` (try number `attempt`, `last` before
    /// dead-lettering).
    pub async fn handle(&self, queue: WorkQueue, body: &[u8], attempt: u32, last: bool) -> ServiceResult<JobResult> {
        if queue.name == WEBHOOKS.name {
            return webhooks::deliver(&self.pool, &self.webhook_http, body, attempt, last).await;
        }
        if ![RENEWALS.name, GATEWAY_FOLLOWUPS.name, REFUNDS.name, RECEIPTS.name].contains(&queue.name) {
            return Err(invalid(format!("no handler for queue {}", queue.name)));
        }
        let job: Job = serde_json::from_slice(body).map_err(|e| invalid(format!("undecodable job: {e}")))?;
        let missing = |what: &str| invalid(format!("job {} without {what}", job.kind));
        match job.kind.as_str() {
            "charge_attempt" | "reconcile_attempt" => {
                let id = job.data.attempt_id.ok_or_else(|| missing("attempt_id"))?;
                charging::process_attempt(&self.pool, self.clock, &self.gateway, id).await
            }
            refund_execution::EXECUTE | refund_execution::RECONCILE => {
                let id = job.data.refund_id.ok_or_else(|| missing("refund_id"))?;
                refund_execution::process(&self.pool, self.clock, &self.gateway, id).await
            }
            "register_receipt" => {
                let id = job.data.receipt_id.ok_or_else(|| missing("receipt_id"))?;
                let to = Registrar { api: &self.fiscal, public_url: self.public_url.as_deref() };
                receipts::process(&self.pool, self.clock, &to, id, last).await
            }
            other => Err(invalid(format!("unknown job type {other}"))),
        }
    }

    /// A batch of `billing.renewals` messages: charge jobs are processed together,
    /// anything else one by one. One result per message, in order.
    pub async fn handle_charges(&self, bodies: &[&[u8]]) -> Vec<ServiceResult<JobResult>> {
        let jobs: Vec<Option<Uuid>> = bodies
            .iter()
            .map(|b| {
                serde_json::from_slice::<Job>(b)
                    .ok()
                    .filter(|j| j.kind == "charge_attempt")
                    .and_then(|j| j.data.attempt_id)
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
