//! Capture notifications applied in batches (`services::capture_batches`): each
//! HTTP worker keeps one queue of verified capture notifications and one task
//! that takes everything queued at once — up to [`MAX_BATCH`], without waiting
//! for more — applies it in one transaction, and answers each waiting request
//! after the commit. Notifications the batch leaves (not plain captures, or all
//! of them when the batch is rolled back) are applied one by one by the same
//! task, exactly as a lone notification is (`services::notifications::apply`).
//! Under load a transaction, its statements and its commit serve many
//! notifications; a lone notification is applied as soon as it arrives.

use std::cell::RefCell;
use std::sync::Arc;

use actix_web::web::Bytes;
use billing_shared::clock::Clock;
use billing_shared::db::PgPool;
use billing_shared::db::gateway_events::Received;
use billing_shared::error::{ServiceError, ServiceResult};
use billing_shared::gateways::{Notification, NotificationEvent, NotificationReply, PaymentGateway, RawNotification};
use billing_shared::services::capture_batches::{self, Queued};
use billing_shared::services::notifications;
use billing_shared::services::tenants::Tenant;
use tokio::sync::{mpsc, oneshot};
use tracing::{Instrument, warn};

/// The most notifications one batch applies.
pub const MAX_BATCH: usize = 64;

/// A verified notification waiting for its batch, with everything it is applied
/// and stored with, and where its answer goes.
struct Job {
    tenant: Arc<Tenant>,
    gateway: Box<dyn PaymentGateway>,
    path: String,
    headers: Vec<(String, String)>,
    body: Bytes,
    notification: Notification,
    /// The request's span: what the notification causes is traced under it.
    span: tracing::Span,
    reply: Option<oneshot::Sender<ServiceResult<Answer>>>,
}

/// The provider's answer to a notification: HTTP status and JSON body
/// ([`PaymentGateway::reply`]).
pub type Answer = (u16, serde_json::Value);

impl Job {
    fn raw(&self) -> RawNotification<'_> {
        RawNotification { path: &self.path, headers: self.headers.clone(), body: &self.body, source_ip: None }
    }

    fn answer(&mut self, result: ServiceResult<NotificationReply>) {
        if let Some(reply) = self.reply.take() {
            // The request may have gone (the provider hung up): it delivers again.
            let _ = reply.send(result.map(|r| self.gateway.reply(r)));
        }
    }
}

/// One HTTP worker's queue (per worker: its task runs on the worker's thread,
/// with the worker's pool). The task starts with the first notification.
pub struct CaptureQueue {
    pool: PgPool,
    clock: Clock,
    sender: mpsc::UnboundedSender<Job>,
    receiver: RefCell<Option<mpsc::UnboundedReceiver<Job>>>,
}

impl CaptureQueue {
    pub fn new(pool: PgPool, clock: Clock) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        CaptureQueue { pool, clock, sender, receiver: RefCell::new(Some(receiver)) }
    }

    /// Whether a notification goes through the queue: captures do; Checks,
    /// declines, refunds are applied by the request itself.
    pub fn takes(notification: &Notification) -> bool {
        matches!(notification.event, NotificationEvent::Captured(_))
    }

    /// Queues a verified capture notification and waits for its answer: the
    /// provider's reply once it is applied (and committed), or why it was not
    /// (`Unavailable`, 503, when the queue's task is gone: the provider delivers
    /// again).
    #[allow(clippy::too_many_arguments)]
    pub async fn apply(
        &self,
        tenant: Arc<Tenant>,
        gateway: Box<dyn PaymentGateway>,
        path: &str,
        headers: Vec<(String, String)>,
        body: Bytes,
        notification: Notification,
    ) -> ServiceResult<Answer> {
        if let Some(receiver) = self.receiver.borrow_mut().take() {
            actix_web::rt::spawn(run(self.pool.clone(), self.clock, receiver));
        }
        let (reply, answer) = oneshot::channel();
        let span = tracing::Span::current();
        let job = Job { tenant, gateway, path: path.to_owned(), headers, body, notification, span, reply: Some(reply) };
        let gone = || ServiceError::Unavailable("the capture queue is not running".into());
        self.sender.send(job).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// The queue's task: a batch of whatever is queued, until the worker stops.
async fn run(pool: PgPool, clock: Clock, mut receiver: mpsc::UnboundedReceiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        apply_batch(&pool, clock, &mut jobs).await;
        jobs.clear();
    }
}

/// Applies `jobs` as one batch, then those it left one by one; answers each.
async fn apply_batch(pool: &PgPool, clock: Clock, jobs: &mut [Job]) {
    let mut conn = match pool.get().await {
        Ok(conn) => conn,
        Err(e) => {
            let e = ServiceError::from(e);
            for job in jobs.iter_mut() {
                job.answer(Err(ServiceError::Unavailable(e.to_string())));
            }
            return;
        }
    };
    let applied = if jobs.len() > 1 { batch(&mut conn, clock, jobs).await } else { Vec::new() };
    for (i, job) in jobs.iter_mut().enumerate() {
        let result = if applied.get(i) == Some(&true) {
            Ok(NotificationReply::Accepted)
        } else {
            let raw = job.raw();
            let n = job.notification.clone();
            let applied = notifications::apply(&mut conn, clock, &job.tenant, &*job.gateway, &raw, n);
            applied.instrument(job.span.clone()).await
        };
        job.answer(result);
    }
}

/// The batch's transaction: which notifications it applied (none when it was
/// rolled back).
async fn batch(conn: &mut diesel_async::AsyncPgConnection, clock: Clock, jobs: &[Job]) -> Vec<bool> {
    let raws: Vec<RawNotification<'_>> = jobs.iter().map(Job::raw).collect();
    let queued: Vec<Queued<'_>> = jobs
        .iter()
        .zip(&raws)
        .filter_map(|(job, raw)| {
            let NotificationEvent::Captured(report) = &job.notification.event else { return None };
            Some(Queued {
                tenant: &job.tenant,
                report,
                received: Received {
                    tenant_id: job.tenant.id,
                    provider: job.gateway.provider(),
                    kind: &job.notification.kind,
                    key: &job.notification.dedup_key,
                    content_type: raw.content_type(),
                    raw_body: raw.body,
                },
                cause: billing_shared::trace::traceparent_of(&job.span),
            })
        })
        .collect();
    if queued.len() != jobs.len() {
        return vec![false; jobs.len()];
    }
    match capture_batches::apply(conn, clock, &queued).await {
        Ok(applied) => applied,
        Err(e) => {
            warn!(error = %e, notifications = jobs.len(), "a batch of notifications was rolled back; applying them one by one");
            vec![false; jobs.len()]
        }
    }
}
