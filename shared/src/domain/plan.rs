//! Plans (tariffs): period, renewal mode, quotas, and versioned prices.
//!
//! Price rules (SPEC §3): a price version takes effect at `effective_from`; an
//! increase must be announced at least the tenant's notice days (elapsed 24 h days)
//! before it; a decrease needs no notice. The price in effect at an instant is the
//! latest non-cancelled version whose `effective_from` is at or before it.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::money::{Money, UnitPrice};
use super::tenant::VatType;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuotaMode {
    /// No entitlement for the metric once the quota is used up.
    Block,
    /// Units above the quota are charged at `unit_price`.
    Overage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// Summed quantities (messages sent).
    #[default]
    Counter,
    /// Absolute levels (connected accounts); billed on the period's maximum.
    Gauge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuotaReset {
    #[default]
    PeriodStart,
    /// At 00:00 in the customer's time zone on the period's last day (WhatsMonster 7.7).
    LastDayLocalMidnight,
}

impl QuotaReset {
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaReset::PeriodStart => "period_start",
            QuotaReset::LastDayLocalMidnight => "last_day_local_midnight",
        }
    }
}

/// What happens to usage above a quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AboveQuota {
    /// No entitlement for the metric once the quota is used up (SMM-GPT).
    Block,
    /// Units above the quota are charged at this price (WhatsMonster 7.5, Alfa 5.8).
    Overage(UnitPrice),
}

/// Why a quota is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    #[error("limit must not be negative")]
    NegativeLimit,
    #[error("overage needs a unit_price")]
    MissingUnitPrice,
    #[error("unit_price only applies to overage")]
    UnexpectedUnitPrice,
}

/// One metric's quota on a plan. Only [`Quota::new`] makes one — the API's input
/// and the stored JSON (`{limit, mode, unit_price?, kind}`) both go through it — so
/// an overage quota always has its unit price: a stored quota that does not read
/// back is an error, never a quota that bills nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "QuotaRecord", into = "QuotaRecord")]
pub struct Quota {
    limit: i64,
    kind: MetricKind,
    above: AboveQuota,
}

/// The stored (and API) shape of a quota.
#[derive(Serialize, Deserialize)]
struct QuotaRecord {
    limit: i64,
    mode: QuotaMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unit_price: Option<UnitPrice>,
    #[serde(default)]
    kind: MetricKind,
}

impl TryFrom<QuotaRecord> for Quota {
    type Error = QuotaError;

    fn try_from(r: QuotaRecord) -> Result<Self, Self::Error> {
        Quota::new(r.limit, r.mode, r.unit_price, r.kind)
    }
}

impl From<Quota> for QuotaRecord {
    fn from(q: Quota) -> Self {
        QuotaRecord { limit: q.limit, mode: q.mode(), unit_price: q.unit_price(), kind: q.kind }
    }
}

impl Quota {
    /// A quota of `limit` units per period; `unit_price` is required for
    /// `overage` and refused for `block`.
    pub fn new(
        limit: i64,
        mode: QuotaMode,
        unit_price: Option<UnitPrice>,
        kind: MetricKind,
    ) -> Result<Quota, QuotaError> {
        if limit < 0 {
            return Err(QuotaError::NegativeLimit);
        }
        let above = match (mode, unit_price) {
            (QuotaMode::Overage, Some(p)) => AboveQuota::Overage(p),
            (QuotaMode::Overage, None) => return Err(QuotaError::MissingUnitPrice),
            (QuotaMode::Block, Some(_)) => return Err(QuotaError::UnexpectedUnitPrice),
            (QuotaMode::Block, None) => AboveQuota::Block,
        };
        Ok(Quota { limit, kind, above })
    }

    /// Units included per period.
    pub fn limit(&self) -> i64 {
        self.limit
    }

    pub fn kind(&self) -> MetricKind {
        self.kind
    }

    pub fn above(&self) -> AboveQuota {
        self.above
    }

    pub fn mode(&self) -> QuotaMode {
        match self.above {
            AboveQuota::Block => QuotaMode::Block,
            AboveQuota::Overage(_) => QuotaMode::Overage,
        }
    }

    /// The overage unit price (`None` exactly for `block` quotas).
    pub fn unit_price(&self) -> Option<UnitPrice> {
        match self.above {
            AboveQuota::Block => None,
            AboveQuota::Overage(p) => Some(p),
        }
    }
}

pub type Quotas = BTreeMap<String, Quota>;

/// Plan-level fiscal overrides (a licence plan on a services tenant, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanFiscal {
    /// The VAT of this plan's receipt lines instead of the tenant's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vat: Option<VatType>,
    /// The ATOL v5 payment object code (1..26) instead of the tenant's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 26)]
    pub payment_object: Option<u8>,
}

/// A price version as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceVersion {
    pub id: Uuid,
    pub price: Money,
    /// `None`: the plan's initial price, in effect from the beginning.
    pub effective_from: Option<DateTime<Utc>>,
    pub announced_at: DateTime<Utc>,
    pub canceled_at: Option<DateTime<Utc>>,
}

impl PriceVersion {
    fn starts_at_or_before(&self, at: DateTime<Utc>) -> bool {
        self.effective_from.is_none_or(|from| from <= at)
    }
}

/// The version in effect at `at`: the latest non-cancelled one already started.
/// Versions are ordered by `effective_from` (initial first), ties by announcement.
pub fn price_at(versions: &[PriceVersion], at: DateTime<Utc>) -> Option<&PriceVersion> {
    versions
        .iter()
        .filter(|v| v.canceled_at.is_none() && v.starts_at_or_before(at))
        .max_by_key(|v| (v.effective_from, v.announced_at))
}

/// Versions announced but not yet in effect at `at`, earliest first.
pub fn scheduled_after(versions: &[PriceVersion], at: DateTime<Utc>) -> Vec<&PriceVersion> {
    let mut v: Vec<&PriceVersion> =
        versions.iter().filter(|v| v.canceled_at.is_none() && !v.starts_at_or_before(at)).collect();
    v.sort_by_key(|v| (v.effective_from, v.announced_at));
    v
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriceChangeError {
    #[error("effective_from must not be in the past")]
    InThePast,
    #[error(
        "a price increase from {from} to {to} needs {notice_days} days' notice: effective_from must be at or after {earliest}"
    )]
    NoticeTooShort { from: String, to: String, notice_days: u32, earliest: DateTime<Utc> },
    #[error("the plan has no price in effect before {0}")]
    NoPreviousPrice(DateTime<Utc>),
    #[error("currency differs from the plan's price")]
    CurrencyMismatch,
}

impl PriceChangeError {
    pub fn code(&self) -> &'static str {
        match self {
            PriceChangeError::NoticeTooShort { .. } => "notice_period_too_short",
            PriceChangeError::CurrencyMismatch => "unsupported_currency",
            _ => "validation_failed",
        }
    }
}

/// Checks a new price version announced `now` against the notice rule.
/// Returns whether it is an increase over the price it replaces.
pub fn check_price_change(
    versions: &[PriceVersion],
    new_price: Money,
    effective_from: DateTime<Utc>,
    now: DateTime<Utc>,
    notice_days: u32,
) -> Result<bool, PriceChangeError> {
    if effective_from < now {
        return Err(PriceChangeError::InThePast);
    }
    // The price that would be in effect just before the new one starts.
    let before = effective_from - TimeDelta::microseconds(1);
    let previous = price_at(versions, before).ok_or(PriceChangeError::NoPreviousPrice(effective_from))?;
    if previous.price.currency() != new_price.currency() {
        return Err(PriceChangeError::CurrencyMismatch);
    }
    let increase = new_price.amount() > previous.price.amount();
    if increase {
        let earliest = now + TimeDelta::days(i64::from(notice_days));
        if effective_from < earliest {
            return Err(PriceChangeError::NoticeTooShort {
                from: previous.price.to_string(),
                to: new_price.to_string(),
                notice_days,
                earliest,
            });
        }
    }
    Ok(increase)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    proptest::proptest! {
        /// Every quota the API accepts is stored, read back and shown as itself.
        #[test]
        fn accepted_quotas_read_back_equal(
            limit in 0i64..10_000_000,
            overage in proptest::bool::ANY,
            gauge in proptest::bool::ANY,
            units in 0i64..1_000_000_000,
            scale in 0u32..=6,
        ) {
            let kind = if gauge { MetricKind::Gauge } else { MetricKind::Counter };
            let (mode, price) = if overage {
                let text = Decimal::new(units, scale).to_string();
                let text = if text.contains('.') { text } else { format!("{text}.00") };
                let input = serde_json::json!({"value": text, "currency": "RUB"});
                let price: crate::domain::money::MoneyInput = serde_json::from_value(input).unwrap();
                (QuotaMode::Overage, Some(price.unit_price().unwrap()))
            } else {
                (QuotaMode::Block, None)
            };
            let quota = Quota::new(limit, mode, price, kind).unwrap();
            let stored = serde_json::to_value(&quota).unwrap();
            let back: Quota = serde_json::from_value(stored.clone()).unwrap();
            proptest::prop_assert_eq!(&back, &quota);
            proptest::prop_assert_eq!(serde_json::to_value(&back).unwrap(), stored);
            if let Some(p) = back.unit_price() {
                let shown = p.view();
                let reparsed = UnitPrice::parse(&serde_json::json!(shown.value), &serde_json::json!(shown.currency));
                proptest::prop_assert_eq!(reparsed.unwrap().amount(), p.amount());
            }
        }
    }

    fn v(amount: i64, from: Option<&str>) -> PriceVersion {
        PriceVersion {
            id: Uuid::new_v4(),
            price: Money::rub(Decimal::new(amount * 100, 2)).unwrap(),
            effective_from: from.map(t),
            announced_at: t("2026-01-01T00:00:00Z"),
            canceled_at: None,
        }
    }

    #[test]
    fn picks_the_latest_started_version() {
        let versions =
            vec![v(1000, None), v(1200, Some("2026-03-01T00:00:00Z")), v(1500, Some("2026-06-01T00:00:00Z"))];
        let amount = |at: &str| price_at(&versions, t(at)).unwrap().price.amount();
        assert_eq!(amount("2026-02-28T23:59:59Z"), Decimal::new(100000, 2));
        assert_eq!(amount("2026-03-01T00:00:00Z"), Decimal::new(120000, 2));
        assert_eq!(amount("2026-07-01T00:00:00Z"), Decimal::new(150000, 2));
        assert_eq!(scheduled_after(&versions, t("2026-02-01T00:00:00Z")).len(), 2);
    }

    #[test]
    fn cancelled_versions_are_ignored() {
        let mut later = v(1200, Some("2026-03-01T00:00:00Z"));
        later.canceled_at = Some(t("2026-02-01T00:00:00Z"));
        let versions = vec![v(1000, None), later];
        assert_eq!(price_at(&versions, t("2026-04-01T00:00:00Z")).unwrap().price.amount(), Decimal::new(100000, 2));
    }

    #[test]
    fn increases_need_notice_decreases_do_not() {
        let versions = vec![v(1000, None)];
        let now = t("2026-01-10T12:00:00Z");
        let up = Money::rub(Decimal::new(120000, 2)).unwrap();
        let down = Money::rub(Decimal::new(90000, 2)).unwrap();
        // 14 days of notice: the earliest allowed instant is exactly now + 14 * 24 h
        assert!(check_price_change(&versions, up, t("2026-01-24T12:00:00Z"), now, 14).unwrap());
        let err = check_price_change(&versions, up, t("2026-01-24T11:59:59Z"), now, 14).unwrap_err();
        assert_eq!(err.code(), "notice_period_too_short");
        assert!(!check_price_change(&versions, down, now, now, 14).unwrap());
        assert_eq!(
            check_price_change(&versions, down, t("2026-01-01T00:00:00Z"), now, 14).unwrap_err(),
            PriceChangeError::InThePast
        );
    }
}
