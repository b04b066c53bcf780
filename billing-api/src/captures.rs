//! Capture notifications applied in batches (`services::capture_batches`): each
//! HTTP worker keeps one queue of verified capture notifications and one task
//! that takes everything queued at once — up to [`MAX_BATCH`], waiting
//! `BILLING_CAPTURE_LINGER_MS` for more (default 1 ms; 0: not at all) — applies it in
//! one transaction, and answers each waiting request after the commit. The task
//! applies nothing else: a notification the batch leaves (not a plain capture,
//! a lone one, or all of them when the batch is rolled back, waits longer than
//! [`LOCK_WAIT_MS`] for a lock or panics) is handed back to its request, which
//! applies it one by one on its own connection (`services::notifications::apply`),
//! concurrently with the others, exactly as it would without the queue. Under
//! load a transaction, its statements and its commit serve many notifications; a
//! row held elsewhere delays only the notifications that need it (and, while they
//! wait, the connections they hold).

use std::cell::RefCell;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web::Bytes;
use billing_shared::clock::Clock;
use billing_shared::db::gateway_events::Received;
use billing_shared::db::{PgPool, PooledConn};
use billing_shared::error::{ServiceError, ServiceResult};
use billing_shared::gateways::{
    Notification, NotificationEvent, NotificationReply, PaymentGateway, RawNotification, header_in,
};
use billing_shared::services::capture_batches::{self, Queued};
use billing_shared::services::notifications;
use billing_shared::services::tenants::Tenant;
use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, warn};

/// The most notifications one batch applies.
pub const MAX_BATCH: usize = 64;

/// How long a batch's statements wait for a lock (`lock_timeout`, ms) before the
/// batch is rolled back and its notifications handed back: a row another
/// transaction holds then delays only the notification that needs it.
pub const LOCK_WAIT_MS: u32 = 200;

/// A verified capture notification with everything it is applied and stored
/// with.
struct Work {
    tenant: Arc<Tenant>,
    gateway: Box<dyn PaymentGateway>,
    path: String,
    headers: Vec<(String, String)>,
    body: Bytes,
    notification: Notification,
    /// The request's span: what the notification causes is traced under it.
    span: tracing::Span,
}

/// A notification in the queue and where its verdict goes.
struct Job {
    work: Work,
    verdict: oneshot::Sender<Verdict>,
}

/// What the queue's task did with a notification.
enum Verdict {
    /// Applied and committed in a batch: the provider's answer.
    Applied(Answer),
    /// Not applied: the request applies it itself.
    Yours(Box<Work>),
}

/// The provider's answer to a notification: HTTP status and JSON body
/// ([`PaymentGateway::reply`]).
pub type Answer = (u16, serde_json::Value);

/// One HTTP worker's queue (per worker: its task runs on the worker's thread,
/// with the worker's pool). The task starts with the first notification.
pub struct CaptureQueue {
    pool: PgPool,
    clock: Clock,
    linger: Duration,
    sender: mpsc::UnboundedSender<Job>,
    receiver: RefCell<Option<mpsc::UnboundedReceiver<Job>>>,
}

impl CaptureQueue {
    /// A queue over `pool` whose task waits `linger` after the first notification
    /// for others to join its batch (zero: it takes only what is already queued).
    pub fn new(pool: PgPool, clock: Clock, linger: Duration) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        CaptureQueue { pool, clock, linger, sender, receiver: RefCell::new(Some(receiver)) }
    }

    /// Whether a notification goes through the queue: captures do; Checks,
    /// declines, refunds are applied by the request itself.
    pub fn takes(notification: &Notification) -> bool {
        matches!(notification.event, NotificationEvent::Captured(_))
    }

    /// Queues a verified capture notification and returns the provider's answer
    /// once it is applied (and committed): in a batch, or by this call on a
    /// connection of its own when the batch leaves it. Errors are
    /// `notifications::apply`'s; `Unavailable` (503, the provider delivers again)
    /// when the queue's task dropped the notification.
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
            actix_web::rt::spawn(run(self.pool.clone(), self.clock, self.linger, receiver));
        }
        let span = tracing::Span::current();
        let work = Work { tenant, gateway, path: path.to_owned(), headers, body, notification, span };
        let (verdict, answer) = oneshot::channel();
        let work = match self.sender.send(Job { work, verdict }) {
            Err(mpsc::error::SendError(job)) => job.work,
            Ok(()) => match answer.await {
                Ok(Verdict::Applied(answer)) => return Ok(answer),
                Ok(Verdict::Yours(work)) => *work,
                Err(_) => return Err(ServiceError::Unavailable("the capture queue dropped the notification".into())),
            },
        };
        let Work { tenant, gateway, path, headers, body, notification, .. } = work;
        let raw = RawNotification { path: &path, headers, body: &body, source_ip: None };
        let mut conn = self.pool.get().await?;
        let reply = notifications::apply(&mut conn, self.clock, &tenant, &*gateway, &raw, notification).await?;
        Ok(gateway.reply(reply))
    }
}

/// The queue's task: a batch of whatever is queued, until the worker stops.
async fn run(pool: PgPool, clock: Clock, linger: Duration, mut receiver: mpsc::UnboundedReceiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        if !linger.is_zero() && jobs.len() < MAX_BATCH {
            tokio::time::sleep(linger).await;
            while jobs.len() < MAX_BATCH
                && let Ok(job) = receiver.try_recv()
            {
                jobs.push(job);
            }
        }
        let applied = if jobs.len() > 1 { apply_batch(&pool, clock, &jobs).await } else { Vec::new() };
        for (i, job) in jobs.drain(..).enumerate() {
            let verdict = if applied.get(i) == Some(&true) {
                Verdict::Applied(job.work.gateway.reply(NotificationReply::Accepted))
            } else {
                Verdict::Yours(Box::new(job.work))
            };
            // The request may have gone (the provider hung up): it delivers again.
            let _ = job.verdict.send(verdict);
        }
    }
}

/// The batch's transaction on a connection of the pool: which notifications it
/// applied (none when it was rolled back, could not start, or panicked — then
/// its connection is closed, which ends its transaction and releases its locks).
async fn apply_batch(pool: &PgPool, clock: Clock, jobs: &[Job]) -> Vec<bool> {
    let queued: Vec<Queued<'_>> = jobs
        .iter()
        .filter_map(|job| {
            let w = &job.work;
            let NotificationEvent::Captured(report) = &w.notification.event else { return None };
            Some(Queued {
                tenant: &w.tenant,
                report,
                received: Received {
                    tenant_id: w.tenant.id,
                    provider: w.gateway.provider(),
                    kind: &w.notification.kind,
                    key: &w.notification.dedup_key,
                    content_type: header_in(&w.headers, "content-type"),
                    raw_body: &w.body,
                },
                cause: billing_shared::trace::traceparent_of(&w.span),
            })
        })
        .collect();
    if queued.len() != jobs.len() {
        return Vec::new();
    }
    let mut conn = match pool.get().await {
        Ok(conn) => conn,
        Err(e) => {
            warn!(error = %e, notifications = jobs.len(), "no connection for a batch of notifications; each is applied alone");
            return Vec::new();
        }
    };
    let applied =
        AssertUnwindSafe(capture_batches::apply(&mut conn, clock, LOCK_WAIT_MS, &queued)).catch_unwind().await;
    match applied {
        Ok(Ok(applied)) => applied,
        Ok(Err(e)) => {
            warn!(error = %e, notifications = jobs.len(), "a batch of notifications was rolled back; each is applied alone");
            Vec::new()
        }
        Err(panic) => {
            // Not back to the pool with its transaction open: closed.
            drop(PooledConn::take(conn));
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned());
            error!(
                panic = what.as_deref().unwrap_or("?"),
                notifications = jobs.len(),
                "a batch of notifications panicked; each is applied alone"
            );
            Vec::new()
        }
    }
}
