//! Message handlers per queue: decode, call a service, report the outcome.

use std::time::Duration;

use billing_shared::clock::Clock;
use billing_shared::db::PgPool;
use billing_shared::error::{ServiceError, ServiceResult};
use billing_shared::ports::Ports;
use billing_shared::queue::jobs::Job;
use billing_shared::queue::topology::{RECEIPTS, RENEWALS, WEBHOOKS, WorkQueue};
use billing_shared::services::receipt_registration::{self, Registration};
use billing_shared::services::receipt_waves::{self, ReceiptJob};
use billing_shared::services::{
    JobResult, charge_attempts, charge_waves, dead_letters, refund_execution, webhook_delivery,
};
use futures_util::future::join_all;
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

/// One delivery of a batch: its body, try number, and whether it is the last try
/// before dead-lettering.
pub struct Message<'a> {
    pub body: &'a [u8],
    pub attempt: u32,
    pub last: bool,
}

/// Whether the consumer of `queue` takes what is waiting in batches
/// ([`Handlers::handle_batch`]): charge jobs (their captured renewals are recorded
/// set-based) and receipt registrations (registered together).
pub fn batched(queue: WorkQueue) -> bool {
    queue.name == RENEWALS.name || queue.name == RECEIPTS.name
}

/// Where a message of a batch goes: handled with the others of its kind (a
/// one-attempt charge, a one-receipt registration), or on its own by
/// [`Handlers::handle`] (anything else: a wave published here before waves had
/// queues of their own, or a message that does not decode as this queue's job).
enum Route {
    Charge(Uuid),
    Receipt(ReceiptJob),
    Alone,
}

impl Route {
    fn of(queue: WorkQueue, m: &Message<'_>) -> Self {
        match Job::decode(m.body) {
            Ok(Job::ChargeAttempt { attempt_id }) if queue.name == RENEWALS.name => Route::Charge(attempt_id),
            Ok(Job::RegisterReceipt { receipt_id }) if queue.name == RECEIPTS.name => {
                Route::Receipt(ReceiptJob { receipt_id, last: m.last })
            }
            _ => Route::Alone,
        }
    }
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

    /// Where receipts are registered: the fiscal registrars, our public URL for callbacks.
    fn registration(&self) -> Registration<'_> {
        Registration { registrars: &self.ports.registrars, public_url: self.public_url.as_deref() }
    }

    /// Handles one message of `queue` (try number `attempt`, `last` before
    /// dead-lettering): a webhook delivery, or a [`Job`] of that queue.
    pub async fn handle(&self, queue: WorkQueue, body: &[u8], attempt: u32, last: bool) -> ServiceResult<JobResult> {
        if queue.name == WEBHOOKS.name {
            return webhook_delivery::deliver(&self.pool, &self.webhook_http, body, attempt, last).await;
        }
        let job = Job::decode(body).map_err(|e| invalid(format!("undecodable job: {e}")))?;
        if !job.runs_on(queue) {
            return Err(invalid(format!("job {} does not belong on {}", job.type_name(), queue.name)));
        }
        let gateways = &self.ports.gateways;
        match job {
            Job::ChargeAttempt { attempt_id } | Job::ReconcileAttempt { attempt_id } => {
                charge_attempts::process_attempt(&self.pool, self.clock, gateways, attempt_id).await
            }
            Job::ChargeAttempts { attempt_ids } => {
                charge_waves::process_wave(&self.pool, self.clock, gateways, &attempt_ids, last).await
            }
            Job::ExecuteRefund { refund_id } | Job::ReconcileRefund { refund_id } => {
                refund_execution::process(&self.pool, self.clock, gateways, refund_id).await
            }
            Job::RegisterReceipt { receipt_id } => {
                receipt_registration::process(&self.pool, self.clock, &self.registration(), receipt_id, last).await
            }
            Job::RegisterReceipts { receipt_ids, round } => {
                let to = self.registration();
                receipt_waves::process_wave(&self.pool, self.clock, &to, &receipt_ids, round, last).await
            }
        }
    }

    /// A batch of messages of a batched queue ([`batched`]), handled together: the
    /// one-attempt charge jobs of `billing.renewals`, the one-receipt registration
    /// jobs of `billing.receipts`; any other message on its own, concurrently.
    /// One result per message, in order.
    pub async fn handle_batch(&self, queue: WorkQueue, messages: &[Message<'_>]) -> Vec<ServiceResult<JobResult>> {
        let routes: Vec<Route> = messages.iter().map(|m| Route::of(queue, m)).collect();
        let mut charges = Vec::new();
        let mut receipts = Vec::new();
        for route in &routes {
            match route {
                Route::Charge(attempt_id) => charges.push(*attempt_id),
                Route::Receipt(job) => receipts.push(*job),
                Route::Alone => {}
            }
        }
        let to = self.registration();
        let charging = async {
            if charges.is_empty() {
                return Vec::new();
            }
            charge_attempts::process_attempts(&self.pool, self.clock, &self.ports.gateways, &charges).await
        };
        // Any other message on its own, concurrently.
        let alone = join_all(
            routes
                .iter()
                .zip(messages)
                .filter(|(route, _)| matches!(route, Route::Alone))
                .map(|(_, m)| self.handle(queue, m.body, m.attempt, m.last)),
        );
        let (charged, registered, alone) =
            tokio::join!(charging, receipt_waves::process_many(&self.pool, self.clock, &to, &receipts), alone);
        let (mut charged, mut registered, mut alone) = (charged.into_iter(), registered.into_iter(), alone.into_iter());
        routes
            .iter()
            .map(|route| {
                let result = match route {
                    Route::Charge(_) => charged.next(),
                    Route::Receipt(_) => registered.next(),
                    Route::Alone => alone.next(),
                };
                result.unwrap_or_else(|| Err(ServiceError::Internal("batch result missing".into())))
            })
            .collect()
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
