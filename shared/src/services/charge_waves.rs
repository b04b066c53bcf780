//! Charging a wave of renewals in one job. The scheduler starts a tick's plain
//! renewals in bulk and queues one [`Job::ChargeAttempts`] per tenant for all their
//! first attempts ([`super::renewals::start_in_bulk`]) instead of one
//! `ChargeAttempt` per renewal: one message to publish, deliver and acknowledge per
//! wave rather than per renewal.
//!
//! [`process_wave`] runs the wave in chunks through the batch path of
//! [`super::charge_attempts::process_attempts`] (one statement claims a chunk, the calls
//! run concurrently, the captures are recorded set-based; declines and unknown
//! outcomes are applied one by one as always). An attempt the wave does not settle
//! (a request the provider refused, a reconciliation to ask again, an error) is
//! handed to its own `ChargeAttempt` job, delivered after the renewals queue's first
//! retry step, so it is retried, dead-lettered and replayed one by one like any
//! other charge. A wave delivered again (a worker killed mid-wave) skips its settled
//! attempts (one statement) and reconciles those in flight through the provider
//! before anything is re-sent: one attempt never produces two charges.

use tokio::sync::Semaphore;
use tracing::warn;
use uuid::Uuid;

use super::JobResult;
use super::charge_attempts::process_attempts;
use crate::clock::Clock;
use crate::db::PgPool;
use crate::db::attempts::{self as attempts_db, AttemptRow};
use crate::db::outbox::{self, NewEvent};
use crate::error::{ServiceError, ServiceResult};
use crate::gateways::registry::Gateways;
use crate::queue::jobs::Job;

/// Waves this process charges at once: with [`CHUNK`], bounds the renewals in
/// flight (claimed, called, recorded) to 512, however many wave jobs the consumer
/// has taken and however large a scheduler batch is.
static WAVES: Semaphore = Semaphore::const_new(4);

/// Attempts of a wave claimed, charged and recorded together; a wave runs its
/// chunks one after another. (Chunks of a whole 500-renewal tick, four waves at
/// once, held 2 000 renewals' documents in memory: the worker's peak RSS rose
/// from 52 to 86 MB at 10 000 due; bench/README.)
const CHUNK: usize = 128;

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
    let open: Vec<&AttemptRow> = rows.iter().filter(|a| !a.status.is_final()).collect();
    if last {
        return hand_over(pool, clock, &open, false).await;
    }
    let ids: Vec<Uuid> = open.iter().map(|a| a.id).collect();
    let mut results = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        results.extend(process_attempts(pool, clock, gateways, chunk).await);
    }
    let unsettled: Vec<&AttemptRow> = open
        .into_iter()
        .zip(results)
        .filter_map(|(attempt, result)| match result {
            Ok(JobResult::Done) => None,
            Ok(JobResult::RetryLater(why) | JobResult::DeadLetter(why)) => {
                tracing::info!(attempt = %attempt.id, %why, "an attempt of a charge wave goes on in its own job");
                Some(attempt)
            }
            Err(e) => {
                warn!(attempt = %attempt.id, error = %e, "an attempt of a charge wave failed; it goes on in its own job");
                Some(attempt)
            }
        })
        .collect();
    hand_over(pool, clock, &unsettled, true).await
}

/// Queues one `ChargeAttempt` job per attempt, in one statement: after the renewals
/// queue's first retry step when the wave has just tried it (`tried`), at once
/// otherwise.
async fn hand_over(pool: &PgPool, clock: Clock, attempts: &[&AttemptRow], tried: bool) -> ServiceResult<JobResult> {
    if attempts.is_empty() {
        return Ok(JobResult::Done);
    }
    let jobs = attempts
        .iter()
        .map(|a| {
            let job = NewEvent::job(a.tenant_id, a.id, Job::ChargeAttempt { attempt_id: a.id });
            if tried { job.delayed(0) } else { job }
        })
        .collect();
    let mut conn = pool.get().await?;
    let now = clock.now(&mut conn).await?;
    outbox::emit_many(&conn, now, jobs).await?;
    Ok(JobResult::Done)
}
