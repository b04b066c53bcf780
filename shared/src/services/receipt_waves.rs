//! Registering a wave of receipts together: the worker takes up to a batch of
//! `billing.receipts` jobs at once (a wave of renewals creates a receipt each).
//! The wave's provider calls run concurrently, and their two common outcomes are
//! written set-based — attempts accepted (their provider document ids, one
//! statement) and receipts registered (one transaction: the receipts and their
//! `receipt.registered` events). Every other job (a receipt not found or no
//! longer pending, a tenant without fiscal settings, a job's last try, a second
//! job of the same receipt in the wave) and every other outcome takes the
//! one-by-one path of [`super::receipt_registration`], whose rules are the same:
//! a write applies only while the receipt is `pending` at the attempt the call
//! was made for.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::future::join_all;
use tracing::warn;
use uuid::Uuid;

use super::JobResult;
use super::receipt_registration::{AWAITING_REPORT, Learned, Registration, conclude, learn, process, step};
use super::receipts::event_of;
use super::tenants::{self, Tenant};
use crate::clock::Clock;
use crate::db::outbox;
use crate::db::payments as payments_db;
use crate::db::receipts::{self as db, ReceiptRow};
use crate::db::{PgPool, in_transaction};
use crate::domain::ids::PaymentId;
use crate::domain::states::ReceiptStatus;
use crate::error::{ServiceError, ServiceResult};
use crate::fiscal::FiscalRegistrar;

/// One `RegisterReceipt` job of a wave; `last`: its retries are exhausted.
#[derive(Debug, Clone, Copy)]
pub struct ReceiptJob {
    pub receipt_id: Uuid,
    pub last: bool,
}

/// Runs a wave of receipt jobs; one result per job, in order (each as
/// [`process`] would give it).
pub async fn process_many(
    pool: &PgPool,
    clock: Clock,
    to: &Registration<'_>,
    jobs: &[ReceiptJob],
) -> Vec<ServiceResult<JobResult>> {
    if jobs.is_empty() {
        return Vec::new();
    }
    let one_by_one = async |job: &ReceiptJob| process(pool, clock, to, job.receipt_id, job.last).await;
    let wave = match gather(pool, to, jobs).await {
        Ok(wave) => wave,
        Err(e) => {
            warn!(error = %e, "reading a wave of receipts failed; registering one by one");
            return join_all(jobs.iter().map(one_by_one)).await;
        }
    };
    let steps = join_all(wave.iter().map(|w| step(to, &w.tenant, &*w.registrar, &w.row)));
    let in_wave: HashSet<usize> = wave.iter().map(|w| w.index).collect();
    let rest: Vec<usize> = (0..jobs.len()).filter(|i| !in_wave.contains(i)).collect();
    let (steps, others) = tokio::join!(steps, join_all(rest.iter().map(|i| one_by_one(&jobs[*i]))));
    let mut results: HashMap<usize, ServiceResult<JobResult>> = rest.into_iter().zip(others).collect();

    let (mut accepted, mut registered, mut concluded) = (Vec::new(), Vec::new(), Vec::new());
    for (w, outcome) in wave.iter().zip(steps) {
        let (i, row) = (w.index, &w.row);
        match outcome {
            Ok(Learned::Accepted(uuid)) => accepted.push((i, row, uuid)),
            Ok(Learned::Registered(attributes)) => registered.push((i, row, attributes)),
            other => {
                let provider = w.registrar.provider();
                concluded.push(async move { (i, conclude(pool, clock, (row, provider), other, false).await) });
            }
        }
    }
    let (concluded, from_accepted, from_registered) = tokio::join!(
        join_all(concluded),
        record_accepted(pool, clock, accepted),
        record_registered(pool, clock, registered)
    );
    results.extend(concluded.into_iter().chain(from_accepted).chain(from_registered));
    (0..jobs.len())
        .map(|i| {
            results.remove(&i).unwrap_or_else(|| Err(ServiceError::Internal("receipt wave result missing".into())))
        })
        .collect()
}

/// A job the wave handles itself: the first job in the wave of a `pending`
/// receipt of a tenant with fiscal settings, not its last try.
struct InWave {
    /// Its place among the wave's jobs.
    index: usize,
    row: ReceiptRow,
    tenant: Arc<Tenant>,
    registrar: Box<dyn FiscalRegistrar>,
}

async fn gather(pool: &PgPool, to: &Registration<'_>, jobs: &[ReceiptJob]) -> ServiceResult<Vec<InWave>> {
    let mut conn = pool.get().await?;
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.receipt_id).collect();
    let mut rows: HashMap<Uuid, ReceiptRow> =
        db::find_many(&mut conn, &ids).await?.into_iter().map(|r| (r.id, r)).collect();
    let mut wave = Vec::with_capacity(rows.len());
    for (index, job) in jobs.iter().enumerate() {
        let Some(row) = rows.remove(&job.receipt_id).filter(|r| !job.last && r.status == ReceiptStatus::Pending) else {
            continue;
        };
        let tenant = tenants::load_cached(&mut conn, row.tenant_id).await?;
        let Some(fiscal) = &tenant.fiscal else { continue };
        let registrar = to.registrars.for_settings(fiscal);
        wave.push(InWave { index, row, tenant, registrar });
    }
    Ok(wave)
}

/// Records the accepted attempts' document ids in one statement; each job then
/// waits for its report. A receipt the statement did not write (it moved on, or
/// already had its id) is decided one by one.
async fn record_accepted(
    pool: &PgPool,
    clock: Clock,
    accepted: Vec<(usize, &ReceiptRow, String)>,
) -> Vec<(usize, ServiceResult<JobResult>)> {
    if accepted.is_empty() {
        return Vec::new();
    }
    let rows: Vec<(Uuid, i32, String)> = accepted.iter().map(|(_, r, uuid)| (r.id, r.attempt, uuid.clone())).collect();
    let written: HashSet<Uuid> = match pool.get().await {
        Ok(mut conn) => db::accept_many(&mut conn, &rows).await.unwrap_or_else(|e| {
            warn!(error = %e, "recording a wave of accepted receipts failed; recording one by one");
            Vec::new()
        }),
        Err(e) => {
            warn!(error = %e, "recording a wave of accepted receipts failed; recording one by one");
            Vec::new()
        }
    }
    .into_iter()
    .collect();
    join_all(accepted.into_iter().map(|(i, row, uuid)| {
        let wrote = written.contains(&row.id);
        async move {
            if wrote {
                return (i, Ok(JobResult::RetryLater(AWAITING_REPORT.into())));
            }
            (i, learn(pool, clock, row.id, row.attempt, Learned::Accepted(uuid)).await)
        }
    }))
    .await
}

/// Marks the registered receipts and emits their `receipt.registered` events in
/// one transaction. A receipt no longer `pending` at the attempt reported is left
/// as it is (its job is done, as one by one); if the transaction fails, each is
/// recorded one by one.
async fn record_registered(
    pool: &PgPool,
    clock: Clock,
    registered: Vec<(usize, &ReceiptRow, Box<crate::domain::receipt::FiscalAttributes>)>,
) -> Vec<(usize, ServiceResult<JobResult>)> {
    if registered.is_empty() {
        return Vec::new();
    }
    let written = async {
        let mut rows = Vec::with_capacity(registered.len());
        for (_, row, attributes) in &registered {
            let text = serde_json::to_string(&**attributes).map_err(|e| super::corrupt("fiscal payload", e))?;
            rows.push((row.id, row.attempt, text));
        }
        let mut conn = pool.get().await?;
        in_transaction(&mut conn, async |c| {
            let now = clock.now(c).await?;
            let marked = db::register_many(c, now, &rows).await?;
            let payments: Vec<PaymentId> = marked.iter().map(|r| r.payment_id).collect();
            let payers = payments_db::payers_of(c, &payments).await?;
            let events = marked
                .iter()
                .map(|r| {
                    let payer = payers.get(&r.payment_id).copied().ok_or_else(|| {
                        ServiceError::Internal(format!("receipt {} names no payment {}", r.id, r.payment_id))
                    })?;
                    event_of(r, payer, "receipt.registered")
                })
                .collect::<ServiceResult<Vec<_>>>()?;
            outbox::emit_many(c, now, events).await?;
            Ok::<_, ServiceError>(())
        })
        .await
    }
    .await;
    if let Err(e) = written {
        warn!(error = %e, "recording a wave of registered receipts failed; recording one by one");
        return join_all(registered.into_iter().map(|(i, row, attributes)| async move {
            (i, learn(pool, clock, row.id, row.attempt, Learned::Registered(attributes)).await)
        }))
        .await;
    }
    registered.into_iter().map(|(i, _, _)| (i, Ok(JobResult::Done))).collect()
}
