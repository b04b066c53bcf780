//! Charging a wave of renewals in one job. The scheduler starts a tick's plain
//! renewals in bulk and queues one [`Job::ChargeAttempts`] per tenant and
//! [`CHUNK`] first attempts ([`super::renewals::start_in_bulk`]) instead of one
//! `ChargeAttempt` per renewal: one message to publish, deliver and acknowledge per
//! chunk rather than per renewal (`BILLING_CHARGE_WAVES=0` turns it off while
//! workers of an older release, which cannot read these jobs, still run). Waves
//! have their own queue, `billing.renewal-waves`, so a peak's backlog of them never
//! delays a one-attempt charge on `billing.renewals`.
//!
//! [`process_wave`] charges the wave's `pending` attempts through the batch path of
//! [`super::charge_attempts::process_attempts`] (one statement claims them, the
//! calls run concurrently, the captures are recorded set-based; declines and
//! unknown outcomes are applied one by one as always). Every other attempt still
//! open is handed to its own `ChargeAttempt` job, delivered after the renewals
//! queue's first retry step, and is retried, dead-lettered and replayed one by one
//! like any other charge: one the wave did not settle (a request the provider
//! refused, a reconciliation to ask again, an error), and one an earlier delivery
//! of the wave left `sent`, `unknown` or `refused` (a worker killed mid-wave). The
//! wave never calls for those: their own jobs ask the provider about an attempt
//! that may have been sent before anything is re-sent, and the provider knows a
//! re-sent attempt by its id. A wave delivered again after it finished costs one
//! read (its attempts are settled) and, at worst, a second job for an attempt
//! already handed over, which finds it settled or claims it atomically.

use tokio::sync::Semaphore;
use tracing::warn;
use uuid::Uuid;

use super::JobResult;
use super::charge_attempts::process_attempts;
use crate::clock::Clock;
use crate::db::PgPool;
use crate::db::attempts::{self as attempts_db, AttemptRow};
use crate::db::outbox::{self, NewEvent};
use crate::domain::states::AttemptStatus;
use crate::error::{ServiceError, ServiceResult};
use crate::gateways::registry::Gateways;
use crate::queue::jobs::Job;

/// Waves this process charges at once: with [`CHUNK`], bounds the renewals the
/// waves have in flight (claimed, called, recorded) to 512, however many wave jobs
/// the consumer has taken.
static WAVES: Semaphore = Semaphore::const_new(2);

/// Attempts in one wave job, claimed, charged and recorded together. (Chunks of a
/// whole 500-renewal tick, four at once, held 2 000 renewals' documents in memory:
/// the worker's peak RSS rose from 52 to 86 MB at 10 000 due. Two waves of 256
/// hold as many renewals as four of 128 did, in half the statements: about 6 % less
/// CPU per fiscal renewal; bench/README, "Waves of 256".)
pub const CHUNK: usize = 256;

/// Charges the attempts `attempt_ids` of a wave (see the module docs). `last`: the
/// wave's own retries are exhausted (handing its attempts over kept failing):
/// every attempt not settled yet is handed to its own job without a call.
/// Errors: reading the wave or writing the hand-over jobs failed (the message is
/// tried again; every step is idempotent).
pub async fn process_wave(
    pool: &PgPool,
    clock: Clock,
    gateways: &Gateways,
    attempt_ids: &[Uuid],
    last: bool,
) -> ServiceResult<JobResult> {
    let _turn = WAVES.acquire().await.map_err(|e| ServiceError::Internal(format!("charge waves: {e}")))?;
    let rows = {
        let mut conn = pool.get().await?;
        attempts_db::find_attempts(&mut conn, attempt_ids).await?
    };
    if rows.len() < attempt_ids.len() {
        warn!(missing = attempt_ids.len() - rows.len(), "a charge wave names unknown attempts; skipped");
    }
    // Only attempts never sent are charged here; one an earlier delivery of the
    // wave left open goes to its own job.
    let (fresh, mut unsettled): (Vec<&AttemptRow>, Vec<&AttemptRow>) =
        rows.iter().filter(|a| !a.status.is_final()).partition(|a| a.status == AttemptStatus::Pending && !last);
    for chunk in fresh.chunks(CHUNK) {
        let ids: Vec<Uuid> = chunk.iter().map(|a| a.id).collect();
        let results = process_attempts(pool, clock, gateways, &ids).await;
        for (attempt, result) in chunk.iter().zip(results) {
            match result {
                Ok(JobResult::Done) => {}
                Ok(JobResult::RetryLater(why) | JobResult::DeadLetter(why)) => {
                    tracing::info!(attempt = %attempt.id, %why, "an attempt of a charge wave goes on in its own job");
                    unsettled.push(attempt);
                }
                Err(e) => {
                    warn!(attempt = %attempt.id, error = %e, "an attempt of a charge wave failed; it goes on in its own job");
                    unsettled.push(attempt);
                }
            }
        }
    }
    hand_over(pool, clock, &unsettled).await
}

/// Queues one `ChargeAttempt` job per attempt, in one statement, delivered after
/// the renewals queue's first retry step.
async fn hand_over(pool: &PgPool, clock: Clock, attempts: &[&AttemptRow]) -> ServiceResult<JobResult> {
    if attempts.is_empty() {
        return Ok(JobResult::Done);
    }
    let jobs = attempts
        .iter()
        .map(|a| NewEvent::job(a.tenant_id, a.id, Job::ChargeAttempt { attempt_id: a.id }).delayed(0))
        .collect();
    let conn = pool.get().await?;
    let now = clock.now(&conn).await?;
    outbox::emit_many(&conn, now, jobs).await?;
    Ok(JobResult::Done)
}
