//! The period ends and something follows (the scheduler's steps): an autopay
//! renewal's payment and first charge attempt (the price in effect at the renewal
//! instant, SPEC §3; the ending period's overage as lines), a free plan renewing
//! for nothing, a queued paid extension taking over. Plain renewals of a wave are
//! started in bulk.

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use super::charge_waves;
use super::collection::{self, charge_job, supersede_pending};
use super::payments::{self as payments_svc, Line};
use super::plans::{self, Plan};
use super::subscriptions::{self, unexpected};
use super::tenants::Tenant;
use super::usage;
use crate::db::attempts::{self as attempts_db, AttemptRow};
use crate::db::outbox::{self, NewEvent};
use crate::db::payments::{self as payments_db, PaymentRow};
use crate::db::subscriptions as subs_db;
use crate::domain::ids::{PaymentId, SubscriptionId};
use crate::domain::period::period_end;
use crate::domain::plan::QuotaMode;
use crate::domain::states::{AttemptChannel, LineKind, PaymentKind};
use crate::domain::subscription::renewal::QueuedExtension;
use crate::domain::subscription::{PlanRef, Subscription, SubscriptionStatus};
use crate::error::ServiceResult;
use crate::queue::jobs::Job;

/// The renewal payment for the period starting at the charge time, priced at that
/// instant (the price in effect at the renewal, SPEC §3) of `plan` (the one that
/// takes over); `None` for a free price.
pub(crate) fn renewal_payment(
    now: DateTime<Utc>,
    tenant: &Tenant,
    plan: &Plan,
    sub: &Subscription,
) -> ServiceResult<Option<PaymentRow>> {
    let (Some(end), Some(anchor)) = (sub.current_period_end, sub.anchor_at) else { return Ok(None) };
    let due = sub.next_charge_at.unwrap_or(end);
    let version = plan.price_at(due)?;
    if version.price.is_zero() {
        return Ok(None);
    }
    let mut payment = payments_svc::tariff_payment(tenant, sub, PaymentKind::Renewal, plan, version, now);
    payment.period_start = Some(end);
    payment.period_end = Some(period_end(end, anchor, plan.period, tenant.tz));
    Ok(Some(payment))
}

/// Starts a renewal: the payment (its tariff at the renewal's price, the ending
/// period's overage as lines) and its first scheduled attempt; a free price renews
/// at once. The unique (subscription, period) index makes a second payment impossible.
pub(crate) async fn start(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    plan: &Plan,
    sub: &mut Subscription,
) -> ServiceResult<()> {
    // An upgrade not paid by now is quoted for a period that is ending: it lapses.
    supersede_pending(conn, sub.id, &[PaymentKind::Upgrade]).await?;
    let renewal_plan = match sub.scheduled_plan_id {
        Some(id) if id != plan.id => plans::load(conn, id).await?,
        _ => plan.clone(),
    };
    // The ending period's usage: its overage is a line of the renewal charge.
    let overage = match sub.current_period_start {
        Some(start) => usage::close_period(conn, now, tenant, sub, plan, start).await?,
        None => Vec::new(),
    };
    let Some(mut payment) = renewal_payment(now, tenant, &renewal_plan, sub)? else {
        usage::charge_lines(conn, now, tenant, sub, overage).await?;
        return renew_free(conn, now, tenant, plan, &renewal_plan, sub).await;
    };
    if !overage.is_empty() {
        let mut lines =
            vec![Line::new(LineKind::Tariff, payment.description.clone(), payments_svc::money_of(&payment)?)];
        lines.extend(overage);
        payments_svc::set_lines(&mut payment, &lines)?;
    }
    payments_db::insert(conn, &payment).await?;
    sub.start_renewal(payment.id);
    subs_db::save(conn, sub).await?;
    collection::start_attempt(conn, now, tenant, &payment, AttemptChannel::Scheduled).await?;
    Ok(())
}

/// A free plan renews without a charge: the next period starts at once.
async fn renew_free(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    plan: &Plan,
    renewal_plan: &Plan,
    sub: &mut Subscription,
) -> ServiceResult<()> {
    let Some(end) = sub.current_period_end else { return Ok(()) };
    let version = renewal_plan.price_at(end)?;
    let to = PlanRef { id: renewal_plan.id, code: &renewal_plan.code, period: renewal_plan.period };
    let change = sub.renew_free(now, to, &plan.code, version.id, version.price, tenant.tz).map_err(unexpected)?;
    subscriptions::record(conn, now, tenant, sub, &renewal_plan.code, change).await?;
    subs_db::save(conn, sub).await?;
    Ok(())
}

/// The current period ended and a paid extension is queued: the next period starts
/// (on the extension's plan: a scheduled downgrade takes over with it); the ended
/// period's overage is charged.
pub(crate) async fn roll_extension(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    plan: &Plan,
    sub: &mut Subscription,
) -> ServiceResult<()> {
    let Some(end) = sub.current_period_end else { return Ok(()) };
    usage::bill_ended_period(conn, now, tenant, sub, plan).await?;
    let extension = payments_db::extension_starting_at(conn, sub.id, end).await?;
    let extension_plan = match extension.as_ref().and_then(|p| p.plan_id).filter(|id| *id != plan.id) {
        Some(id) => Some(plans::load(conn, id).await?),
        None => None,
    };
    let queued = match &extension {
        Some(p) => Some(QueuedExtension {
            payment_id: p.id,
            period_end: p.period_end,
            tariff: payments_svc::tariff_amount(p)?,
            price_id: p.price_id,
            plan: extension_plan.as_ref().map(|e| PlanRef { id: e.id, code: &e.code, period: e.period }),
        }),
        None => None,
    };
    let current = PlanRef { id: plan.id, code: &plan.code, period: plan.period };
    let change = sub.roll_extension(now, queued, current, tenant.tz).map_err(unexpected)?;
    let code = extension_plan.as_ref().map_or(plan.code.as_str(), |p| p.code.as_str());
    subscriptions::record(conn, now, tenant, sub, code, change).await
}

/// True when the only thing due for `sub` is its plain renewal charge (no notice
/// pending, no extension queued, no plan change, no overage to bill): such
/// renewals are started in bulk.
pub(crate) fn plain(now: DateTime<Utc>, tenant: &Tenant, plan: &Plan, sub: &Subscription) -> bool {
    let Some(end) = sub.current_period_end else { return false };
    let charge_at = sub.next_charge_at.unwrap_or(end);
    let notice_sent = sub.renewal_notice_for == Some(end);
    sub.status == SubscriptionStatus::Active
        && sub.auto_renew
        && sub.renewal_payment_id.is_none()
        && sub.scheduled_plan_id.is_none()
        && !plan.quotas.values().any(|q| q.mode() == QuotaMode::Overage)
        && sub.paid_through.is_none_or(|p| p <= end)
        && charge_at <= now
        && (tenant.policy.renewal_notice_days == 0 || notice_sent)
}

/// Starts plain renewals in a handful of statements: the payments, their first
/// attempts, their charge jobs (`waves`: one `charge_attempts` job per tenant and
/// [`charge_waves::CHUNK`] attempts, [`crate::services::charge_waves`]; otherwise
/// one `charge_attempt` each), and the subscriptions' link to their renewal.
pub(crate) async fn start_in_bulk(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    items: Vec<(Subscription, PaymentRow, Uuid)>,
    waves: bool,
) -> ServiceResult<()> {
    if items.is_empty() {
        return Ok(());
    }
    let payments: Vec<PaymentRow> = items.iter().map(|(_, p, _)| p.clone()).collect();
    let attempts: Vec<AttemptRow> = items
        .iter()
        .map(|(_, p, method)| AttemptRow::new(p.tenant_id, p.id, 1, AttemptChannel::Scheduled, Some(*method), now))
        .collect();
    payments_db::insert_many(conn, &payments).await?;
    attempts_db::insert_attempts(conn, &attempts).await?;
    let jobs = if waves {
        let ids = attempts.iter().map(|a| (a.tenant_id, a.id));
        NewEvent::waves(ids, charge_waves::CHUNK, |attempt_ids| Job::ChargeAttempts { attempt_ids })
    } else {
        payments.iter().zip(&attempts).map(|(p, a)| charge_job(p, a.id)).collect()
    };
    outbox::emit_many(conn, now, jobs).await?;
    let started: Vec<(SubscriptionId, PaymentId)> = items.iter().map(|(s, p, _)| (s.id, p.id)).collect();
    crate::db::subscription_batches::start_renewals(conn, &started).await?;
    metrics::counter!("billing_renewals_started_total").increment(items.len() as u64);
    Ok(())
}
