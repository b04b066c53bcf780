//! Registering receipts in waves. A renewal wave creates its receipts in one
//! transaction and one [`Job::RegisterReceipts`] per tenant for all of them
//! ([`process_wave`]); the worker also takes the one-receipt jobs waiting in
//! `billing.receipts` in batches ([`process_many`]). Either way the provider calls
//! of a wave run concurrently and their two common outcomes are written set-based:
//! attempts accepted (their provider document ids, one statement) and receipts
//! registered (one transaction: the receipts and their `receipt.registered`
//! events). Everything else follows the one-by-one rules of
//! [`super::receipt_registration`]: a write applies only while the receipt is
//! `pending` at the attempt the call was made for, and a re-sent attempt is
//! answered "already exists" by the provider, so no receipt is registered twice.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use diesel_async::AsyncPgConnection;
use futures_util::StreamExt;
use futures_util::future::join_all;
use tokio::sync::Semaphore;
use tracing::warn;
use uuid::Uuid;

use super::JobResult;
use super::receipt_registration::{
    AWAITING_REPORT, Learned, Registration, Retry, conclude, count_registered, learn, process, step,
};
use super::receipts::{event_of, ordering, registration_job};
use super::tenants::{self, Tenant};
use crate::clock::Clock;
use crate::db::outbox::{self, NewEvent};
use crate::db::payments as payments_db;
use crate::db::receipts::{self as db, ReceiptRow};
use crate::db::{PgPool, in_transaction};
use crate::domain::ids::PaymentId;
use crate::domain::receipt::FiscalAttributes;
use crate::domain::states::{ReceiptKind, ReceiptStatus};
use crate::error::{ServiceError, ServiceResult};
use crate::fiscal::FiscalRegistrar;
use crate::queue::jobs::Job;
use crate::queue::topology::RECEIPT_WAVES;

/// Provider calls one wave has in flight at once.
const CALLS_PER_WAVE: usize = 32;

/// Waves this process registers at once ([`process_wave`]; each holds up to a
/// renewal wave's receipts, [`super::charge_waves::CHUNK`]): bounds the documents
/// held in memory and the calls in flight to the provider however many wave jobs
/// the consumer has taken.
static WAVES: Semaphore = Semaphore::const_new(2);

/// One `RegisterReceipt` job of a batch; `last`: its retries are exhausted.
#[derive(Debug, Clone, Copy)]
pub struct ReceiptJob {
    pub receipt_id: Uuid,
    pub last: bool,
}

/// Runs round `round` of a wave: registers (or polls) every receipt still
/// `pending`. The receipts awaiting their reports go on in one wave job of the
/// next round, delivered after `billing.receipt-waves` retry step `round`; after the
/// last step, and for any other outcome, a receipt is handed to its own
/// `RegisterReceipt` job, which decides it by the one-by-one rules (its own retries,
/// failure, dead letter). An accepted document id or a registration that the
/// set-based writes could not record is recorded one by one first, so nothing the
/// provider answered is lost. The follow-up jobs are written in one statement; an
/// error before that leaves the message to be tried again (every step is
/// idempotent: a crash between that statement and the acknowledgement runs the
/// round again, and its receipts are then followed twice, never registered twice).
/// `last`: the message's own retries are exhausted (the wave kept failing): every
/// receipt still `pending` is handed to its own job instead of dead-lettering them
/// all in one message.
pub async fn process_wave(
    pool: &PgPool,
    clock: Clock,
    to: &Registration<'_>,
    receipt_ids: &[Uuid],
    round: u16,
    last: bool,
) -> ServiceResult<JobResult> {
    let _turn = WAVES.acquire().await.map_err(|e| ServiceError::Internal(format!("receipt waves: {e}")))?;
    let jobs: Vec<ReceiptJob> = receipt_ids.iter().map(|id| ReceiptJob { receipt_id: *id, last }).collect();
    let places = gather(pool, to, &jobs).await?;
    let wave: Vec<&InWave> = places.iter().filter_map(Place::in_wave).collect();
    let fates = advance(pool, clock, to, &wave).await;
    let mut apart: Vec<&ReceiptRow> =
        places.iter().filter_map(|p| if let Place::Alone(row) = p { Some(row) } else { None }).collect();
    let mut awaiting = Vec::new();
    for (w, fate) in wave.iter().zip(fates) {
        match fate {
            Fate::Done => {}
            Fate::Later(_) => awaiting.push(&w.row),
            // What the provider answered, recorded one by one.
            Fate::Apart(Ok(learned @ (Learned::Accepted(_) | Learned::Registered(_)))) => {
                match learn(pool, clock, w.row.id, w.row.attempt, learned).await {
                    Ok(JobResult::Done) => {}
                    Ok(JobResult::RetryLater(_)) => awaiting.push(&w.row),
                    Ok(JobResult::DeadLetter(_)) => apart.push(&w.row),
                    Err(e) => {
                        warn!(receipt = %w.row.id, error = %e, "recording a provider's answer failed; handing the receipt over");
                        apart.push(&w.row);
                    }
                }
            }
            Fate::Apart(_) => apart.push(&w.row),
        }
    }
    let next_step = usize::from(round);
    if next_step >= RECEIPT_WAVES.retry_delays_ms.len() {
        apart.append(&mut awaiting);
    }
    let mut messages = Vec::new();
    if let (Some(first), Ok(step)) = (awaiting.first(), i16::try_from(next_step)) {
        let ids = awaiting.iter().map(|r| r.id).collect();
        let next = Job::RegisterReceipts { receipt_ids: ids, round: round.saturating_add(1) };
        messages.push(NewEvent::job(first.tenant_id, first.id, next).delayed(step));
    }
    let mut conn = pool.get().await?;
    messages.extend(hand_over(&mut conn, &apart).await?);
    let now = clock.now(&conn).await?;
    outbox::emit_many(&conn, now, messages).await?;
    Ok(JobResult::Done)
}

/// The one-receipt jobs of `rows`, each ordered with its payment's messages.
async fn hand_over(conn: &mut AsyncPgConnection, rows: &[&ReceiptRow]) -> ServiceResult<Vec<NewEvent>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let payments: Vec<PaymentId> = rows.iter().map(|r| r.payment_id).collect();
    let payers = payments_db::payers_of(conn, &payments).await?;
    rows.iter()
        .map(|r| {
            let payer = payers.get(&r.payment_id).copied().ok_or_else(|| lost_payment(r))?;
            Ok(registration_job(r.tenant_id, ordering(payer), r.id))
        })
        .collect()
}

fn lost_payment(r: &ReceiptRow) -> ServiceError {
    ServiceError::Internal(format!("receipt {} names no payment {}", r.id, r.payment_id))
}

/// Runs a batch of one-receipt jobs; one result per job, in order (each as
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
    let places = match gather(pool, to, jobs).await {
        Ok(places) => places,
        Err(e) => {
            warn!(error = %e, "reading a batch of receipts failed; registering one by one");
            return join_all(jobs.iter().map(one_by_one)).await;
        }
    };
    let wave: Vec<&InWave> = places.iter().filter_map(Place::in_wave).collect();
    let fates = advance(pool, clock, to, &wave).await.into_iter();
    let mut decided = wave.iter().zip(fates);
    let results = places.iter().zip(jobs).map(|(place, job)| {
        let fate = if place.in_wave().is_some() { decided.next() } else { None };
        async move {
            match (place, fate) {
                (Place::Finished, _) => Ok(JobResult::Done),
                (_, Some((_, Fate::Done))) => Ok(JobResult::Done),
                (_, Some((_, Fate::Later(reason)))) => Ok(JobResult::RetryLater(reason)),
                (_, Some((w, Fate::Apart(outcome)))) => {
                    conclude(pool, clock, (&w.row, w.registrar.provider()), outcome, false).await
                }
                _ => one_by_one(job).await,
            }
        }
    });
    join_all(results).await
}

/// Where a job of a batch goes.
enum Place {
    /// A `pending` receipt of a tenant with fiscal settings, first in the batch,
    /// not its job's last try.
    Wave(InWave),
    /// The receipt is no longer `pending`: nothing to do.
    Finished,
    /// Any other `pending` receipt: of a tenant without fiscal settings, a second
    /// job of the same receipt, a last try.
    Alone(ReceiptRow),
    /// No such receipt (one by one: `receipt_not_found`; a wave skips it).
    Missing,
}

impl Place {
    fn in_wave(&self) -> Option<&InWave> {
        if let Place::Wave(w) = self { Some(w) } else { None }
    }
}

struct InWave {
    row: ReceiptRow,
    tenant: Arc<Tenant>,
    registrar: Box<dyn FiscalRegistrar>,
}

async fn gather(pool: &PgPool, to: &Registration<'_>, jobs: &[ReceiptJob]) -> ServiceResult<Vec<Place>> {
    let mut conn = pool.get().await?;
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.receipt_id).collect();
    let rows: HashMap<Uuid, ReceiptRow> =
        db::find_many(&mut conn, &ids).await?.into_iter().map(|r| (r.id, r)).collect();
    let mut seen = HashSet::new();
    let mut places = Vec::with_capacity(jobs.len());
    for job in jobs {
        let Some(row) = rows.get(&job.receipt_id).cloned() else {
            places.push(Place::Missing);
            continue;
        };
        if row.status != ReceiptStatus::Pending {
            places.push(Place::Finished);
            continue;
        }
        let tenant = tenants::load_cached(&mut conn, row.tenant_id).await?;
        let registrar = tenant.fiscal.as_ref().map(|f| to.registrars.for_settings(f));
        places.push(match registrar {
            Some(registrar) if !job.last && seen.insert(row.id) => Place::Wave(InWave { row, tenant, registrar }),
            _ => Place::Alone(row),
        });
    }
    Ok(places)
}

/// What became of a receipt after its step with the provider.
enum Fate {
    /// Registered now.
    Done,
    /// To be asked about again later: accepted now (its report comes next), still
    /// processing, or the provider could not answer (the reason).
    Later(String),
    /// Anything else: decided by the one-by-one rules from the step's outcome.
    Apart(Result<Learned, Retry>),
}

/// One step with the provider for each receipt of `wave` (concurrently), the
/// accepted and registered ones written set-based; one fate per receipt, in order.
async fn advance(pool: &PgPool, clock: Clock, to: &Registration<'_>, wave: &[&InWave]) -> Vec<Fate> {
    let mut calls = Vec::with_capacity(wave.len());
    for w in wave {
        calls.push(step(to, &w.tenant, &*w.registrar, &w.row));
    }
    let steps: Vec<_> = futures_util::stream::iter(calls).buffered(CALLS_PER_WAVE).collect().await;
    let accepted: Vec<(Uuid, i32, &str)> = wave
        .iter()
        .zip(&steps)
        .filter_map(|(w, s)| match s {
            Ok(Learned::Accepted(uuid)) => Some((w.row.id, w.row.attempt, uuid.as_str())),
            _ => None,
        })
        .collect();
    let written = record_accepted(pool, &accepted).await;
    let recorded = {
        let registered: Vec<(&ReceiptRow, &FiscalAttributes)> = wave
            .iter()
            .zip(&steps)
            .filter_map(|(w, s)| match s {
                Ok(Learned::Registered(attributes)) => Some((&w.row, &**attributes)),
                _ => None,
            })
            .collect();
        match record_registered(pool, clock, &registered).await {
            Ok(()) => true,
            Err(e) => {
                warn!(error = %e, "recording a wave of registered receipts failed; recording one by one");
                false
            }
        }
    };
    wave.iter()
        .zip(steps)
        .map(|(w, outcome)| match outcome {
            Ok(Learned::Accepted(_)) if written.contains(&w.row.id) => Fate::Later(AWAITING_REPORT.into()),
            Ok(Learned::Registered(_)) if recorded => Fate::Done,
            Err(Retry::Later(reason)) => Fate::Later(reason),
            other => Fate::Apart(other),
        })
        .collect()
}

/// Records the accepted attempts' document ids `(receipt, attempt, provider uuid)`
/// in one statement; returns the receipts written (none if it failed: each is then
/// recorded one by one).
async fn record_accepted(pool: &PgPool, accepted: &[(Uuid, i32, &str)]) -> HashSet<Uuid> {
    if accepted.is_empty() {
        return HashSet::new();
    }
    let written = match pool.get().await {
        Ok(mut conn) => db::accept_many(&mut conn, accepted).await.map_err(ServiceError::from),
        Err(e) => Err(e.into()),
    };
    written
        .unwrap_or_else(|e| {
            warn!(error = %e, "recording a wave of accepted receipts failed; recording one by one");
            Vec::new()
        })
        .into_iter()
        .collect()
}

/// Marks the registered receipts and emits their `receipt.registered` events in
/// one transaction. A receipt no longer `pending` at the attempt reported is left
/// as it is (one by one, its job would be done too).
async fn record_registered(
    pool: &PgPool,
    clock: Clock,
    registered: &[(&ReceiptRow, &FiscalAttributes)],
) -> ServiceResult<()> {
    if registered.is_empty() {
        return Ok(());
    }
    let mut rows = Vec::with_capacity(registered.len());
    for (row, attributes) in registered {
        let text = serde_json::to_string(attributes).map_err(|e| super::corrupt("fiscal payload", e))?;
        rows.push((row.id, row.attempt, text));
    }
    let mut conn = pool.get().await?;
    let marked = in_transaction(&mut conn, async |c| {
        let now = clock.now(c).await?;
        let marked = db::register_many(c, now, &rows).await?;
        let payments: Vec<PaymentId> = marked.iter().map(|r| r.payment_id).collect();
        let payers = payments_db::payers_of(c, &payments).await?;
        let events = marked
            .iter()
            .map(|r| {
                let payer = payers.get(&r.payment_id).copied().ok_or_else(|| lost_payment(r))?;
                event_of(r, payer, "receipt.registered")
            })
            .collect::<ServiceResult<Vec<_>>>()?;
        outbox::emit_many(c, now, events).await?;
        Ok::<_, ServiceError>(marked)
    })
    .await?;
    for kind in ReceiptKind::ALL {
        let n = marked.iter().filter(|r| r.kind == *kind).count();
        if n > 0 {
            count_registered(*kind, n);
        }
    }
    Ok(())
}
