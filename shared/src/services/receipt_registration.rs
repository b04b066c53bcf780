//! Registering receipts with the tenant's fiscal provider (the worker's side of
//! SPEC §7), through the fiscal registrar port.
//!
//! Exactly once: registration attempt N of a receipt is sent with external_id
//! `<receipt id>-<N>`, so re-sending it (a lost answer, a worker killed mid-call) is
//! answered "already exists" by the provider and creates nothing. The outcome is
//! confirmed by polling the report (the provider's callback only hints that it is
//! ready); a new attempt is made only after the provider reported the last one
//! failed. A receipt that cannot be registered (the document is refused, attempts
//! run out) becomes `failed` with `receipt.failed` and its job is dead-lettered
//! with the reason. A refused configuration is not the document's fault: the
//! receipt stays `pending` and its job is dead-lettered for replay.

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use tracing::info;
use uuid::Uuid;

use super::receipts::{self, ReceiptView, external_id};
use super::tenants::Tenant;
use super::{JobResult, corrupt, dead_letters};
use crate::clock::{Clock, real_now};
use crate::db::receipts::{self as db, ReceiptRow};
use crate::db::{PgPool, in_transaction};
use crate::domain::ids::TenantId;
use crate::domain::receipt::{FiscalAttributes, ReceiptDocument};
use crate::domain::states::{ReceiptKind, ReceiptStatus};
use crate::error::{ServiceError, ServiceResult};
use crate::fiscal::{FiscalError, FiscalRegistrar, Registered, Registrars, RegistrationRequest, ReportState};
use crate::queue::topology::RECEIPTS;

/// Registration attempts (each after the provider reported the previous one failed).
pub const MAX_ATTEMPTS: i32 = 5;

/// What a job answers once the provider accepted its attempt: its report is
/// polled on the next try.
pub(super) const AWAITING_REPORT: &str = "registration accepted; waiting for the report";

/// What the worker learned; applied only while the receipt is still at `attempt`.
pub(super) enum Learned {
    Accepted(String),
    Registered(Box<FiscalAttributes>),
    /// The attempt failed at ATOL: the next attempt may be made.
    AttemptFailed(String),
    /// Nothing more can be done: the receipt fails.
    Failed(String),
    /// The job has run out of retries: the receipt fails at whatever attempt it is.
    GaveUp(String),
}

/// Applies what the worker learned about attempt `attempt` of a receipt.
pub(super) async fn learn(
    pool: &PgPool,
    clock: Clock,
    id: Uuid,
    attempt: i32,
    learned: Learned,
) -> ServiceResult<JobResult> {
    let mut conn = pool.get().await?;
    let mut registered = None;
    let result = in_transaction(&mut conn, async |c| {
        let now = clock.now(c).await?;
        let Some(mut row) = db::find_for_update(c, id).await? else { return Ok(JobResult::Done) };
        let stale = row.attempt != attempt && !matches!(learned, Learned::GaveUp(_));
        if row.status != ReceiptStatus::Pending || stale {
            return Ok(JobResult::Done);
        }
        match learned {
            Learned::Accepted(uuid) => {
                if row.provider_uuid.is_none() {
                    row.provider_uuid = Some(uuid);
                    db::save(c, &row).await?;
                }
                Ok(JobResult::RetryLater(AWAITING_REPORT.into()))
            }
            Learned::Registered(payload) => {
                row.status = ReceiptStatus::Registered;
                row.fiscal = Some(serde_json::to_string(&*payload).map_err(|e| corrupt("fiscal payload", e))?);
                row.registered_at = Some(now);
                db::save(c, &row).await?;
                receipts::emit(c, now, &row, "receipt.registered").await?;
                registered = Some(row.kind);
                Ok(JobResult::Done)
            }
            Learned::AttemptFailed(reason) if attempt < MAX_ATTEMPTS => {
                row.attempt += 1;
                row.provider_uuid = None;
                row.failure_reason = Some(reason.clone());
                db::save(c, &row).await?;
                Ok(JobResult::RetryLater(format!("attempt {attempt} failed ({reason}); the next one follows")))
            }
            // Only the provider's own word says the attempt is dead there.
            Learned::AttemptFailed(reason) | Learned::Failed(reason) => fail(c, now, row, reason, true).await,
            Learned::GaveUp(reason) => fail(c, now, row, reason, false).await,
        }
    })
    .await;
    if result.is_ok()
        && let Some(kind) = registered
    {
        count_registered(kind, 1);
    }
    result
}

/// Counts receipts of `kind` registered (committed): `billing_receipts_registered_total{kind}`.
pub(super) fn count_registered(kind: ReceiptKind, n: usize) {
    metrics::counter!("billing_receipts_registered_total", "kind" => kind.as_str()).increment(n as u64);
}

/// The receipt fails (`receipt.failed`) and its job is dead-lettered with the
/// reason; `attempt_failed`: the provider reported the attempt failed.
async fn fail(
    c: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    mut row: ReceiptRow,
    reason: String,
    attempt_failed: bool,
) -> ServiceResult<JobResult> {
    row.status = ReceiptStatus::Failed;
    row.failure_reason = Some(reason.clone());
    row.attempt_failed = attempt_failed;
    db::save(c, &row).await?;
    receipts::emit(c, now, &row, "receipt.failed").await?;
    Ok(JobResult::DeadLetter(format!("receipt {}: {reason}", row.id)))
}

/// An operator's resend of a receipt (`POST /v1/admin/receipts/{id}/resend`,
/// `billing-ops receipts resend`, the console's Receipts page), in the caller's
/// transaction. Never a second registration of one receipt:
/// - `failed` after the provider reported its attempt failed (`attempt_failed`:
///   a `fail` report, or the document refused at registration): back to `pending`
///   at the next attempt, a new document `<id>-<attempt + 1>` (GATEWAYS.md §4: after
///   a `fail`, retry with a new external_id);
/// - `failed` because its job gave up (the attempt may still be alive at the
///   provider: processing, an answer lost): back to `pending` at the same attempt,
///   its provider uuid kept, so the worker polls that document's report, or
///   re-registers the same external_id (answered "already exists", error 33);
/// - `pending` whose job is in the dead letters of `billing.receipts` (e.g. the
///   tenant's ATOL login was refused, since fixed): another job for the same
///   attempt;
/// - `pending` with a job at work: 409 `receipt_in_progress` (also a receipt of a
///   wave job whose every try failed, which hands its receipts to their own jobs on
///   its last try unless the database is down then too: replaying that dead letter
///   of `billing.receipts` moves them again);
/// - `registered`: 409 `receipt_registered`.
///
/// The document is sent as it was built when the payment was captured (a refusal
/// of its content, ATOL error 32, comes back the same). The receipt's dead letters
/// are marked replayed (the new job replaces them), and `receipt.resent` tells the
/// tenant that a receipt it saw fail is being registered again. `tenant` scopes the
/// lookup (the console acts in one tenant's pages); 404 `receipt_not_found` for an
/// unknown id or another tenant's.
pub async fn resend(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    id: Uuid,
    tenant: Option<TenantId>,
) -> ServiceResult<ReceiptView> {
    let row = db::find_for_update(conn, id).await?.filter(|r| tenant.is_none_or(|t| r.tenant_id == t));
    let Some(mut row) = row else {
        return Err(ServiceError::not_found("receipt_not_found", format!("no receipt {id}")));
    };
    let dead = dead_letters::settle_job(conn, RECEIPTS.name, "receipt_id", id).await?;
    let was = (row.status, row.attempt);
    match row.status {
        ReceiptStatus::Registered => {
            return Err(ServiceError::conflict(
                "receipt_registered",
                format!("receipt {id} is registered; there is nothing to resend"),
            ));
        }
        ReceiptStatus::Pending if dead == 0 => {
            return Err(ServiceError::conflict(
                "receipt_in_progress",
                format!("receipt {id} is being registered by the worker; resend it once it failed or its job is dead"),
            ));
        }
        ReceiptStatus::Pending => {}
        ReceiptStatus::Failed => {
            row.status = ReceiptStatus::Pending;
            if row.attempt_failed {
                row.attempt += 1;
                row.provider_uuid = None;
                row.attempt_failed = false;
            }
            db::save(conn, &row).await?;
            receipts::emit(conn, now, &row, "receipt.resent").await?;
        }
    }
    receipts::enqueue_again(conn, now, row.tenant_id, row.payment_id, id).await?;
    info!(tenant = %row.tenant_id, receipt = %id, status = %was.0, attempt = was.1, resent_attempt = row.attempt,
        "receipt resent by an operator");
    receipts::view(&row)
}

/// Where the worker registers receipts.
pub struct Registration<'a> {
    pub registrars: &'a Registrars,
    /// Our public base URL, for the provider's callback (`/v1/webhooks/atol/{tenant}`).
    pub public_url: Option<&'a str>,
}

/// Runs one receipt job: registers the current attempt (idempotent by its
/// external_id) and polls its report. `last`: the job's retries are exhausted,
/// so a receipt still not registered fails now.
pub async fn process(
    pool: &PgPool,
    clock: Clock,
    to: &Registration<'_>,
    id: Uuid,
    last: bool,
) -> ServiceResult<JobResult> {
    let mut conn = pool.get().await?;
    let Some(row) = db::find(&mut conn, id).await? else {
        return Err(ServiceError::not_found("receipt_not_found", format!("no receipt {id}")));
    };
    if row.status != ReceiptStatus::Pending {
        return Ok(JobResult::Done);
    }
    let tenant = super::tenants::load_cached(&mut conn, row.tenant_id).await?;
    drop(conn);
    let attempt = row.attempt;
    let Some(fiscal) = &tenant.fiscal else {
        return learn(pool, clock, id, attempt, Learned::GaveUp("the tenant has no fiscal settings".into())).await;
    };
    let registrar = to.registrars.for_settings(fiscal);
    let outcome = step(to, &tenant, &*registrar, &row).await;
    conclude(pool, clock, (&row, registrar.provider()), outcome, last).await
}

/// What a job makes of its step with the provider for receipt `row` (of the
/// tenant's registrar `provider`): what it learned is applied ([`learn`]); `last`:
/// the job's retries are exhausted, so a receipt still not registered fails now.
pub(super) async fn conclude(
    pool: &PgPool,
    clock: Clock,
    (row, provider): (&ReceiptRow, &'static str),
    outcome: Result<Learned, Retry>,
    last: bool,
) -> ServiceResult<JobResult> {
    let (id, attempt) = (row.id, row.attempt);
    let give_up = async |reason: String| learn(pool, clock, id, attempt, Learned::GaveUp(reason)).await;
    let result = match outcome {
        Ok(learned) => learn(pool, clock, id, attempt, learned).await?,
        Err(Retry::Later(reason)) => JobResult::RetryLater(reason),
        // The merchant's fiscal settings are refused: the receipt stays pending (it
        // is not the document's fault), and once the retries run out its job is
        // dead-lettered to be replayed after the settings are fixed.
        Err(Retry::Configuration(operation, reason)) => {
            return Ok(match super::merchant_side_failure(row.tenant_id, provider, operation, &reason) {
                JobResult::RetryLater(reason) if last => JobResult::DeadLetter(reason),
                other => other,
            });
        }
    };
    match result {
        JobResult::RetryLater(reason) if last => give_up(format!("not registered after all retries: {reason}")).await,
        other => Ok(other),
    }
}

/// Why a step with the provider has to be tried again later.
pub(super) enum Retry {
    /// Not known yet (timeout, still processing): the next try asks again.
    Later(String),
    /// The merchant's configuration was refused during the named operation.
    Configuration(&'static str, String),
}

/// One step with the provider: register the attempt if it has no document there
/// yet, else read its report. `Err` is why to try again later.
pub(super) async fn step(
    to: &Registration<'_>,
    tenant: &Tenant,
    registrar: &dyn FiscalRegistrar,
    row: &ReceiptRow,
) -> Result<Learned, Retry> {
    let Some(provider_id) = &row.provider_uuid else {
        let document: ReceiptDocument =
            serde_json::from_str(&row.document).map_err(|e| Retry::Later(format!("stored receipt: {e}")))?;
        let callback =
            to.public_url.map(|base| format!("{}/v1/webhooks/atol/{}", base.trim_end_matches('/'), tenant.id));
        let external_id = external_id(row);
        let req = RegistrationRequest {
            external_id: &external_id,
            at: real_now(),
            callback_url: callback.as_deref(),
            kind: row.kind,
            document: &document,
        };
        return match registrar.register(&req).await {
            Ok(Registered::New { provider_id }) | Ok(Registered::AlreadyExists { provider_id: Some(provider_id) }) => {
                Ok(Learned::Accepted(provider_id))
            }
            Ok(Registered::AlreadyExists { provider_id: None }) => {
                Err(Retry::Later("the provider already has this attempt but named no document id".into()))
            }
            Err(FiscalError::DocumentRefused(f)) => Ok(Learned::Failed(f.to_string())),
            Err(FiscalError::Configuration(reason)) => Err(Retry::Configuration("register", reason)),
            Err(FiscalError::Retryable(reason)) => Err(Retry::Later(reason)),
        };
    };
    match registrar.report(provider_id).await {
        Ok(ReportState::Registered(attributes)) => Ok(Learned::Registered(Box::new(attributes))),
        Ok(ReportState::Pending) => Err(Retry::Later("the provider is still processing the receipt".into())),
        Ok(ReportState::Failed { failure, document_refused: true }) => Ok(Learned::Failed(failure.to_string())),
        Ok(ReportState::Failed { failure, document_refused: false }) => Ok(Learned::AttemptFailed(failure.to_string())),
        Err(FiscalError::Configuration(reason)) => Err(Retry::Configuration("report", reason)),
        // An error answering the report request says nothing about the document:
        // only a report that says so fails it.
        Err(FiscalError::DocumentRefused(f)) => Err(Retry::Later(format!("report refused: {f}"))),
        Err(FiscalError::Retryable(reason)) => Err(Retry::Later(reason)),
    }
}
