//! Message handlers per queue: decode, call a service, report the outcome.

use std::time::Duration;

use billing_shared::clock::Clock;
use billing_shared::db::PgPool;
use billing_shared::error::{ServiceError, ServiceResult};
use billing_shared::ports::Ports;
use billing_shared::queue::jobs::Job;
use billing_shared::queue::topology::{RENEWALS, WEBHOOKS, WorkQueue};
use billing_shared::services::receipt_registration::{self, Registration};
use billing_shared::services::{JobResult, charge_attempts, dead_letters, refund_execution, webhook_delivery};
use uuid::Uuid;

pub struct Handlers {
    pub pool: PgPool,
    pub clock: Clock,
    /// The adapters behind the payment gateway and fiscal registrar ports.
    pub ports: Ports,
    /// Our public base URL, for the fiscal provider's callbacks.
    pub public_url: Option<String>,
    pub webhook_http: reqwest::Client,
}

fn invalid(msg: String) -> ServiceError {
    ServiceError::invalid("invalid_job", msg)
}

impl Handlers {
    pub fn new(
        pool: PgPool,
        clock: Clock,
        ports: Ports,
        webhook_timeout: Duration,
        public_url: Option<String>,
    ) -> ServiceResult<Self> {
        Ok(Handlers { pool, clock, ports, public_url, webhook_http: webhook_delivery::client(webhook_timeout)? })
    }

    /// Handles one message of `queue` (try number `attempt`, `last` before
    /// dead-lettering): a webhook delivery, or a [`Job`] of that queue.
    pub async fn handle(&self, queue: WorkQueue, body: &[u8], attempt: u32, last: bool) -> ServiceResult<JobResult> {
        if queue.name == WEBHOOKS.name {
            return webhook_delivery::deliver(&self.pool, &self.webhook_http, body, attempt, last).await;
        }
        let job = Job::decode(body).map_err(|e| invalid(format!("undecodable job: {e}")))?;
        if job.queue().name != queue.name {
            return Err(invalid(format!("job {} does not belong on {}", job.type_name(), queue.name)));
        }
        let gateways = &self.ports.gateways;
        match job {
            Job::ChargeAttempt { attempt_id } | Job::ReconcileAttempt { attempt_id } => {
                charge_attempts::process_attempt(&self.pool, self.clock, gateways, attempt_id).await
            }
            Job::ExecuteRefund { refund_id } | Job::ReconcileRefund { refund_id } => {
                refund_execution::process(&self.pool, self.clock, gateways, refund_id).await
            }
            Job::RegisterReceipt { receipt_id } => {
                let to = Registration { registrars: &self.ports.registrars, public_url: self.public_url.as_deref() };
                receipt_registration::process(&self.pool, self.clock, &to, receipt_id, last).await
            }
        }
    }

    /// A batch of `billing.renewals` messages: charge jobs are processed together,
    /// anything else one by one. One result per message, in order.
    pub async fn handle_charges(&self, bodies: &[&[u8]]) -> Vec<ServiceResult<JobResult>> {
        let jobs: Vec<Option<Uuid>> = bodies
            .iter()
            .map(|b| match Job::decode(b) {
                Ok(Job::ChargeAttempt { attempt_id }) => Some(attempt_id),
                _ => None,
            })
            .collect();
        let ids: Vec<Uuid> = jobs.iter().flatten().copied().collect();
        let mut batched =
            charge_attempts::process_attempts(&self.pool, self.clock, &self.ports.gateways, &ids).await.into_iter();
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
