//! Catalog: plans with their periods, quotas and price versions (SPEC §3);
//! announcing and cancelling prices is [`super::prices`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::tenants::Tenant;
use super::{Page, PageRequest, corrupt};
use crate::cache::Expiring;
use crate::db::plans::{self as db, PlanRow, PriceRow};
use crate::domain::money::{Currency, Money, MoneyInput, MoneyView};
use crate::domain::period::{Period, PeriodUnit};
use crate::domain::plan::{
    MetricKind, PlanFiscal, PriceVersion, Quota, QuotaMode, QuotaReset, Quotas, price_at, scheduled_after,
};
use crate::error::{ServiceError, ServiceResult};

/// A plan with its price versions, parsed.
#[derive(Debug, Clone)]
pub struct Plan {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    pub period: Period,
    pub auto_renew: bool,
    pub trial_days: Option<u32>,
    pub once_per_customer: bool,
    pub quotas: Quotas,
    pub quota_reset: QuotaReset,
    pub cashback_rate: Option<Decimal>,
    pub fiscal: Option<PlanFiscal>,
    pub archived_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub prices: Vec<PriceVersion>,
}

impl Plan {
    fn from_rows(row: PlanRow, prices: Vec<PriceRow>) -> ServiceResult<Plan> {
        let unit = PeriodUnit::parse(&row.period_unit).ok_or_else(|| corrupt("plan period", &row.period_unit))?;
        let quota_reset = match row.quota_reset.as_str() {
            "period_start" => QuotaReset::PeriodStart,
            "last_day_local_midnight" => QuotaReset::LastDayLocalMidnight,
            other => return Err(corrupt("plan quota_reset", other)),
        };
        let prices = prices
            .into_iter()
            .map(|p| {
                let currency = Currency::parse(&p.currency).map_err(|e| corrupt("price currency", e))?;
                Ok(PriceVersion {
                    id: p.id,
                    price: Money::new(p.amount, currency).map_err(|e| corrupt("price", e))?,
                    effective_from: p.effective_from,
                    announced_at: p.announced_at,
                    canceled_at: p.canceled_at,
                })
            })
            .collect::<ServiceResult<Vec<_>>>()?;
        Ok(Plan {
            id: row.id,
            period: Period { unit, count: u32::try_from(row.period_count).map_err(|e| corrupt("plan period", e))? },
            quotas: serde_json::from_value(row.quotas).map_err(|e| corrupt("plan quotas", e))?,
            fiscal: row.fiscal.map(serde_json::from_value).transpose().map_err(|e| corrupt("plan fiscal", e))?,
            trial_days: row.trial_days.map(u32::try_from).transpose().map_err(|e| corrupt("plan trial_days", e))?,
            code: row.code,
            name: row.name,
            auto_renew: row.auto_renew,
            once_per_customer: row.once_per_customer,
            quota_reset,
            cashback_rate: row.cashback_rate,
            archived_at: row.archived_at,
            created_at: row.created_at,
            prices,
        })
    }

    /// The price version in effect at `at`.
    pub fn price_at(&self, at: DateTime<Utc>) -> ServiceResult<&PriceVersion> {
        price_at(&self.prices, at)
            .ok_or_else(|| ServiceError::Internal(format!("plan {} has no price at {at}", self.code)))
    }

    pub fn is_free(&self, at: DateTime<Utc>) -> ServiceResult<bool> {
        Ok(self.price_at(at)?.price.is_zero())
    }
}

/// Loads a plan of the tenant by code.
pub async fn load_by_code(conn: &mut AsyncPgConnection, tenant: &Tenant, code: &str) -> ServiceResult<Plan> {
    load_by_code_held(conn, tenant, code, false).await
}

/// [`load_by_code`] for a sale (a purchase, a change to the plan): the plan row is
/// held against a concurrent price announcement before its prices are read
/// ([`db::hold`]), so its subscriber gets that announcement's notice either from
/// the announcement or from the sale. 404 `plan_not_found`.
pub async fn load_to_sell(conn: &mut AsyncPgConnection, tenant: &Tenant, code: &str) -> ServiceResult<Plan> {
    load_by_code_held(conn, tenant, code, true).await
}

async fn load_by_code_held(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    code: &str,
    hold: bool,
) -> ServiceResult<Plan> {
    let row = db::find_by_code(conn, tenant.id, code)
        .await?
        .ok_or_else(|| ServiceError::not_found("plan_not_found", format!("no plan with code {code:?}")))?;
    if hold {
        db::hold(conn, row.id).await?;
    }
    let prices = db::prices_of(conn, &[row.id]).await?;
    Plan::from_rows(row, prices)
}

static CACHE: std::sync::LazyLock<Expiring<Uuid, Plan>> = std::sync::LazyLock::new(Expiring::new);

/// A plan read at most [`crate::cache::TTL`] ago, for paths that need its code,
/// period and quotas (none of which ever change) but never price it (prices are
/// always read fresh where they are charged).
pub async fn load_cached(conn: &AsyncPgConnection, id: Uuid) -> ServiceResult<Plan> {
    if let Some(plan) = CACHE.get(&id) {
        return Ok(plan);
    }
    let plan = load(conn, id).await?;
    CACHE.put(id, plan.clone());
    Ok(plan)
}

/// A plan's code.
pub async fn code_of(conn: &mut AsyncPgConnection, id: Uuid) -> ServiceResult<String> {
    Ok(db::code_of(conn, id).await?)
}

/// Loads a plan by id (the caller knows it belongs to the tenant).
pub async fn load(conn: &AsyncPgConnection, id: Uuid) -> ServiceResult<Plan> {
    let row = db::find(conn, id).await?.ok_or_else(|| ServiceError::Internal(format!("plan {id} vanished")))?;
    let prices = db::prices_of(conn, &[row.id]).await?;
    Plan::from_rows(row, prices)
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaInput {
    pub limit: i64,
    pub mode: QuotaMode,
    /// Required for `overage`: money whose value may carry up to 6 decimals.
    #[serde(default)]
    pub unit_price: Option<MoneyInput>,
    #[serde(default)]
    pub kind: MetricKind,
}

/// `POST /v1/plans` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"code": "PRO", "name": "PRO", "price": {"value": "1390.00", "currency": "RUB"}, "period": {"unit": "month", "count": 1}, "auto_renew": true, "quotas": {"messages": {"limit": 100000, "mode": "overage", "unit_price": {"value": "0.05", "currency": "RUB"}}}})))]
pub struct PlanSpec {
    /// 1..64 letters, digits, `_`, `-` or `.`; unique per tenant.
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,64}$")]
    pub code: String,
    /// 1..200 characters, not only spaces.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: String,
    pub price: MoneyInput,
    pub period: Period,
    /// Renew automatically by charging the saved card (default true). WhatsMonster-style
    /// plans set false: customers extend by hand.
    #[serde(default = "yes")]
    pub auto_renew: bool,
    /// Free days before the first charge, 1..366.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 366)]
    pub trial_days: Option<u32>,
    #[serde(default)]
    pub once_per_customer: bool,
    #[serde(default)]
    #[schema(schema_with = quotas_schema)]
    pub quotas: BTreeMap<String, QuotaInput>,
    #[serde(default)]
    pub quota_reset: QuotaReset,
    /// Decimal string in 0..1 with at most 6 decimals, e.g. `"0.05"`.
    #[serde(default)]
    #[schema(pattern = r"^(0(\.[0-9]{1,6})?|1(\.0{1,6})?)$")]
    pub cashback_rate: Option<String>,
    #[serde(default)]
    pub fiscal: Option<PlanFiscal>,
}

fn yes() -> bool {
    true
}

/// A rate written as the schema's pattern `^(0(\.[0-9]{1,6})?|1(\.0{1,6})?)$`
/// says: 0 to 1, at most 6 decimals, no sign, exponent or leading zeros.
fn parse_rate(r: &str) -> Option<Decimal> {
    let (int, frac) = r.split_once('.').map_or((r, None), |(i, f)| (i, Some(f)));
    let frac_ok = frac.is_none_or(|f| (1..=6).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()));
    let shaped = match int {
        "0" => frac_ok,
        "1" => frac_ok && frac.is_none_or(|f| f.bytes().all(|b| b == b'0')),
        _ => false,
    };
    if shaped { r.parse().ok() } else { None }
}

/// The pattern plan codes and quota metric names follow ([`valid_name`]); the
/// `#[schema(pattern)]` attribute takes only a literal, which repeats it.
const NAME_PATTERN: &str = "^[A-Za-z0-9_.-]{1,64}$";

/// A plan code or quota metric name: 1 to 64 of ASCII letters, digits, `_ - .`
/// ([`NAME_PATTERN`]).
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

/// The `quotas` map's schema: metric names as [`valid_name`] takes them, each
/// a `QuotaInput`.
fn quotas_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::{ObjectBuilder, Ref, RefOr, Type};
    ObjectBuilder::new()
        .property_names(Some(ObjectBuilder::new().schema_type(Type::String).pattern(Some(NAME_PATTERN))))
        .additional_properties(Some(RefOr::Ref(Ref::from_schema_name("QuotaInput"))))
        .build()
}

fn parse_quotas(input: &BTreeMap<String, QuotaInput>) -> ServiceResult<Quotas> {
    let mut quotas = Quotas::new();
    for (metric, q) in input {
        if !valid_name(metric) {
            return Err(ServiceError::validation(format!("quota metric {metric:?}: use letters, digits, _ - .")));
        }
        let unit_price = q.unit_price.as_ref().map(MoneyInput::unit_price).transpose()?;
        let quota = Quota::new(q.limit, q.mode, unit_price, q.kind)
            .map_err(|e| ServiceError::validation(format!("quotas.{metric}: {e}")))?;
        quotas.insert(metric.clone(), quota);
    }
    Ok(quotas)
}

/// A price version as shown in a plan.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PriceView {
    pub id: Uuid,
    pub price: MoneyView,
    /// `null` for the plan's initial price.
    pub effective_from: Option<DateTime<Utc>>,
    pub announced_at: DateTime<Utc>,
    pub canceled_at: Option<DateTime<Utc>>,
    /// `current`, `scheduled`, `superseded` or `canceled` at the time of the answer.
    pub status: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QuotaView {
    pub limit: i64,
    pub mode: QuotaMode,
    /// `overage` only: the price per unit, its value with two to six decimals
    /// (`"20.00"`, `"0.05"`, `"0.123456"`).
    pub unit_price: Option<MoneyView>,
    pub kind: MetricKind,
}

/// A plan with its current and scheduled prices.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlanView {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    /// The price in effect now.
    pub price: MoneyView,
    pub period: Period,
    pub auto_renew: bool,
    pub trial_days: Option<u32>,
    pub once_per_customer: bool,
    pub quotas: BTreeMap<String, QuotaView>,
    pub quota_reset: QuotaReset,
    pub cashback_rate: Option<String>,
    pub fiscal: Option<PlanFiscal>,
    pub archived: bool,
    pub created_at: DateTime<Utc>,
    /// Announced prices not yet in effect, earliest first.
    pub scheduled_prices: Vec<PriceView>,
    /// Every version, initial first.
    pub prices: Vec<PriceView>,
}

pub(crate) fn price_view(p: &PriceVersion, status: &str) -> PriceView {
    PriceView {
        id: p.id,
        price: p.price.into(),
        effective_from: p.effective_from,
        announced_at: p.announced_at,
        canceled_at: p.canceled_at,
        status: status.to_owned(),
    }
}

impl Plan {
    pub fn view(&self, now: DateTime<Utc>) -> ServiceResult<PlanView> {
        let current = self.price_at(now)?;
        let scheduled: Vec<&PriceVersion> = scheduled_after(&self.prices, now);
        let status = |p: &PriceVersion| {
            if p.canceled_at.is_some() {
                "canceled"
            } else if p.id == current.id {
                "current"
            } else if scheduled.iter().any(|s| s.id == p.id) {
                "scheduled"
            } else {
                "superseded"
            }
        };
        Ok(PlanView {
            id: self.id,
            code: self.code.clone(),
            name: self.name.clone(),
            price: current.price.into(),
            period: self.period,
            auto_renew: self.auto_renew,
            trial_days: self.trial_days,
            once_per_customer: self.once_per_customer,
            quotas: self
                .quotas
                .iter()
                .map(|(k, q)| {
                    let unit_price = q.unit_price().map(|p| p.view());
                    (k.clone(), QuotaView { limit: q.limit(), mode: q.mode(), unit_price, kind: q.kind() })
                })
                .collect(),
            quota_reset: self.quota_reset,
            cashback_rate: self.cashback_rate.map(|r| r.normalize().to_string()),
            fiscal: self.fiscal,
            archived: self.archived_at.is_some(),
            created_at: self.created_at,
            scheduled_prices: scheduled.iter().map(|p| price_view(p, "scheduled")).collect(),
            prices: self.prices.iter().map(|p| price_view(p, status(p))).collect(),
        })
    }
}

pub async fn create(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    spec: PlanSpec,
) -> ServiceResult<PlanView> {
    if !valid_name(&spec.code) {
        return Err(ServiceError::validation("code must be 1..64 letters, digits, _ - ."));
    }
    if !crate::domain::is_filled_within(&spec.name, 200) {
        return Err(ServiceError::validation("name must be 1..200 characters"));
    }
    let price = spec.price.money()?;
    if !spec.period.is_reasonable() {
        return Err(ServiceError::validation("period.count must be 1..3660 days, 1..120 months or 1..10 years"));
    }
    if spec.trial_days.is_some_and(|d| d == 0 || d > 366) {
        return Err(ServiceError::validation("trial_days must be 1..366"));
    }
    let quotas = parse_quotas(&spec.quotas)?;
    let cashback_rate = spec
        .cashback_rate
        .as_deref()
        .map(|r| {
            parse_rate(r)
                .ok_or_else(|| ServiceError::validation("cashback_rate must be a decimal string between 0 and 1"))
        })
        .transpose()?;
    if let Some(f) = spec.fiscal
        && f.payment_object.is_some_and(|o| !(1..=26).contains(&o))
    {
        return Err(ServiceError::validation("fiscal.payment_object must be an ATOL v5 code 1..26"));
    }
    let row = PlanRow {
        id: Uuid::now_v7(),
        tenant_id: tenant.id,
        code: spec.code.clone(),
        name: spec.name.trim().to_owned(),
        period_unit: spec.period.unit.as_str().to_owned(),
        period_count: i32::try_from(spec.period.count)
            .map_err(|_| ServiceError::validation("period.count too large"))?,
        auto_renew: spec.auto_renew,
        trial_days: spec
            .trial_days
            .map(i32::try_from)
            .transpose()
            .map_err(|_| ServiceError::validation("trial_days too large"))?,
        once_per_customer: spec.once_per_customer,
        quotas: serde_json::to_value(&quotas).map_err(|e| ServiceError::Internal(e.to_string()))?,
        quota_reset: spec.quota_reset.as_str().to_owned(),
        cashback_rate,
        fiscal: spec.fiscal.map(serde_json::to_value).transpose().map_err(|e| ServiceError::Internal(e.to_string()))?,
        archived_at: None,
        created_at: now,
    };
    db::insert(conn, &row).await.map_err(|e| {
        let e = ServiceError::from(e);
        if e.is_unique_violation() {
            ServiceError::conflict("plan_exists", format!("a plan with code {:?} exists", row.code))
        } else {
            e
        }
    })?;
    let price_row = PriceRow {
        id: Uuid::now_v7(),
        plan_id: row.id,
        amount: price.amount(),
        currency: price.currency().code().to_owned(),
        effective_from: None,
        announced_at: now,
        canceled_at: None,
    };
    db::insert_price(conn, &price_row).await?;
    Plan::from_rows(row, vec![price_row])?.view(now)
}

pub async fn get(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    code: &str,
) -> ServiceResult<PlanView> {
    load_by_code(conn, tenant, code).await?.view(now)
}

pub async fn list(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    page: PageRequest,
) -> ServiceResult<Page<PlanView>> {
    let rows = db::list(conn, tenant.id, page.starting_after, page.fetch()).await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let mut prices = db::prices_of(conn, &ids).await?;
    let mut plans = Vec::with_capacity(rows.len());
    for row in rows {
        let (mine, rest): (Vec<PriceRow>, Vec<PriceRow>) = prices.into_iter().partition(|p| p.plan_id == row.id);
        prices = rest;
        plans.push(Plan::from_rows(row, mine)?.view(now)?);
    }
    Ok(Page::from_rows(plans, page, |p| p))
}

/// Archives a plan: no new purchases; existing subscriptions continue.
pub async fn archive(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    code: &str,
) -> ServiceResult<PlanView> {
    let plan = load_by_code(conn, tenant, code).await?;
    db::archive(conn, plan.id, now).await?;
    load_by_code(conn, tenant, code).await?.view(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_read_exactly_as_their_pattern_says() {
        for (ok, value) in [("0", "0"), ("0.05", "0.05"), ("0.123456", "0.123456"), ("1", "1"), ("1.000000", "1")] {
            assert_eq!(parse_rate(ok).map(|d| d.normalize().to_string()).as_deref(), Some(value), "{ok}");
        }
        for bad in ["", ".5", "00.5", "+0.5", "-0", "0.", "0.1234567", "1.5", "1.01", "2", "5e-2", " 0.5", "0,5"] {
            assert_eq!(parse_rate(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn codes_and_metrics_share_one_rule() {
        assert!(valid_name("START") && valid_name("api.calls-v2_x") && valid_name(&"a".repeat(64)));
        for bad in ["", "a b", "ключ", "a/b", &"a".repeat(65)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
