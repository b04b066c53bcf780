//! Tenant configuration: payment gateway account, fiscal settings and policy.
//!
//! Everything an offer says about money and time is configuration here, not code:
//! notice days, upgrade mode, dunning, grace, refund rules, holidays, commission.
//! Stored as JSON on the tenant row and parsed strictly (unknown fields refused).

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::secret::Secret;

pub use super::fiscal_settings::{FiscalProvider, FiscalSettings, SettlementSign, TaxationSystem, VatType};

/// Payment gateway account of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum GatewayConfig {
    Cloudpayments {
        #[schema(pattern = r"\S")]
        public_id: String,
        #[schema(pattern = r"\S")]
        api_secret: Secret,
        /// Overrides `https://api.cloudpayments.ru/` (sandboxes, simulators).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(pattern = r"^https?://[^/\s]+\S*$")]
        api_url: Option<String>,
    },
    /// YooKassa API v3 (GATEWAYS.md §2): `shop_id` and secret key for Basic auth.
    Yookassa {
        #[schema(pattern = r"\S")]
        shop_id: String,
        #[schema(pattern = r"\S")]
        api_secret: Secret,
        /// Overrides `https://api.yookassa.ru/v3/` (simulators).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(pattern = r"^https?://[^/\s]+\S*$")]
        api_url: Option<String>,
        /// CIDRs (or single addresses) notifications may come from; absent means
        /// YooKassa's published ranges. A simulator lists its own (`127.0.0.0/8`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        notification_ips: Option<Vec<String>>,
    },
}

impl GatewayConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            GatewayConfig::Cloudpayments { .. } => "cloudpayments",
            GatewayConfig::Yookassa { .. } => "yookassa",
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let (id, secret, url) = match self {
            GatewayConfig::Cloudpayments { public_id, api_secret, api_url } => (public_id, api_secret, api_url),
            GatewayConfig::Yookassa { shop_id, api_secret, api_url, notification_ips } => {
                if notification_ips.as_ref().is_some_and(Vec::is_empty) {
                    return Err("gateway.notification_ips: list at least one range, or leave it out for \
                                YooKassa's published ranges"
                        .into());
                }
                for ip in notification_ips.iter().flatten() {
                    parse_ip_range(ip).map_err(|e| format!("gateway.notification_ips: {e}"))?;
                }
                (shop_id, api_secret, api_url)
            }
        };
        if id.trim().is_empty() || secret.is_blank() {
            return Err("gateway account id and api_secret must not be empty".into());
        }
        if let Some(u) = url {
            validate_http_url(u).map_err(|e| format!("gateway.api_url: {e}"))?;
        }
        Ok(())
    }

    /// The configuration without its secret, for responses.
    pub fn public_view(&self) -> serde_json::Value {
        match self {
            GatewayConfig::Cloudpayments { public_id, api_url, .. } => {
                serde_json::json!({"kind": "cloudpayments", "public_id": public_id, "api_url": api_url})
            }
            GatewayConfig::Yookassa { shop_id, api_url, notification_ips, .. } => serde_json::json!({
                "kind": "yookassa", "shop_id": shop_id, "api_url": api_url, "notification_ips": notification_ips
            }),
        }
    }
}

/// An IP range as written in settings: a CIDR (`185.71.76.0/27`, `2a02:5180::/32`)
/// or a single address (`77.75.156.11`, read as a /32 or /128).
pub fn parse_ip_range(raw: &str) -> Result<ipnet::IpNet, String> {
    let raw = raw.trim();
    raw.parse::<ipnet::IpNet>()
        .or_else(|_| raw.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{raw:?} is not an IP address or CIDR range"))
}

/// Checks a settings URL (webhook, gateway or ATOL API override): written as
/// `http://` or `https://` (lower case) and a host, no whitespace anywhere — the
/// schema's pattern `^https?://[^/\s]+\S*$` — and parsable as a URL.
///
/// Errors: the reason, naming the value.
pub fn validate_http_url(raw: &str) -> Result<(), String> {
    let shaped = (raw.starts_with("http://") || raw.starts_with("https://")) && !raw.chars().any(char::is_whitespace);
    if !shaped {
        return Err(format!("{raw:?} must start with http:// or https:// and hold no spaces"));
    }
    let url = url::Url::parse(raw).map_err(|e| format!("{raw:?} is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("{raw:?} must be an http(s) URL with a host"));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpgradeMode {
    #[default]
    Prorate,
    RestartWithCredit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AfterLastRetry {
    #[default]
    Expire,
    StaySuspended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefundReason {
    Unused,
    Outage,
    DoubleCharge,
    ProviderTermination,
    Goodwill,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WindowUnit {
    Hours,
    Days,
    BusinessDays,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WindowFrom {
    #[default]
    Payment,
    Access,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundWindow {
    pub count: u32,
    pub unit: WindowUnit,
    #[serde(default)]
    pub from: WindowFrom,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefundDecision {
    Approve,
    Review,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefundAmountRule {
    Full,
    Prorata,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRule {
    pub reasons: Vec<RefundReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<RefundWindow>,
    #[serde(default)]
    pub requires_no_usage: bool,
    pub decision: RefundDecision,
    pub amount: RefundAmountRule,
}

fn default_renewal_notice_days() -> u32 {
    3
}

fn default_review_deadline() -> u32 {
    10
}

/// A tenant's policy (API.md "Tenant policy"); absent fields take the documented
/// defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub price_change_notice_days: u32,
    #[serde(default)]
    pub upgrade_mode: UpgradeMode,
    #[serde(default)]
    pub grace_period_hours: u32,
    #[serde(default)]
    pub dunning_retry_days: Vec<u32>,
    #[serde(default)]
    pub after_last_retry: AfterLastRetry,
    #[serde(default = "default_renewal_notice_days")]
    pub renewal_notice_days: u32,
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub holidays: Vec<NaiveDate>,
    #[serde(default = "default_review_deadline")]
    pub review_deadline_business_days: u32,
    #[serde(default)]
    pub refund_rules: Vec<RefundRule>,
    #[serde(default, with = "rust_decimal::serde::str_option")]
    #[schema(value_type = Option<String>)]
    pub partner_commission_rate: Option<Decimal>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            price_change_notice_days: 0,
            upgrade_mode: UpgradeMode::Prorate,
            grace_period_hours: 0,
            dunning_retry_days: Vec::new(),
            after_last_retry: AfterLastRetry::Expire,
            renewal_notice_days: default_renewal_notice_days(),
            holidays: Vec::new(),
            review_deadline_business_days: default_review_deadline(),
            refund_rules: Vec::new(),
            partner_commission_rate: None,
        }
    }
}

impl Policy {
    pub fn validate(&self) -> Result<(), String> {
        if self.price_change_notice_days > 365 {
            return Err("policy.price_change_notice_days must be at most 365".into());
        }
        if self.grace_period_hours > 24 * 90 {
            return Err("policy.grace_period_hours must be at most 2160 (90 days)".into());
        }
        if self.dunning_retry_days.len() > 20 {
            return Err("policy.dunning_retry_days: at most 20 retries".into());
        }
        let mut last = 0;
        for d in &self.dunning_retry_days {
            if *d == 0 || *d <= last || *d > 90 {
                return Err("policy.dunning_retry_days must be increasing day offsets in 1..90".into());
            }
            last = *d;
        }
        if self.renewal_notice_days > 60 {
            return Err("policy.renewal_notice_days must be at most 60".into());
        }
        if self.review_deadline_business_days == 0 || self.review_deadline_business_days > 120 {
            return Err("policy.review_deadline_business_days must be in 1..120".into());
        }
        for (i, rule) in self.refund_rules.iter().enumerate() {
            if rule.reasons.is_empty() {
                return Err(format!("policy.refund_rules[{i}].reasons must not be empty"));
            }
            if let Some(w) = rule.window
                && (w.count == 0 || w.count > 3660)
            {
                return Err(format!("policy.refund_rules[{i}].window.count must be in 1..3660"));
            }
        }
        if let Some(rate) = self.partner_commission_rate
            && (rate.is_sign_negative() || rate > Decimal::ONE)
        {
            return Err("policy.partner_commission_rate must be between 0 and 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn settings_urls_follow_their_pattern() {
        for ok in ["https://orbita.example.ru/hooks?x=1", "http://127.0.0.1:8080"] {
            assert_eq!(validate_http_url(ok), Ok(()), "{ok}");
        }
        for bad in ["HTTPS://a.ru", " https://a.ru", "https://a b.ru", "http:a.ru", "ftp://a.ru", "https://", "a.ru"] {
            assert!(validate_http_url(bad).is_err(), "{bad:?}");
        }
    }

    fn arb_rule() -> impl Strategy<Value = RefundRule> {
        let reasons = proptest::sample::subsequence(
            vec![
                RefundReason::Unused,
                RefundReason::Outage,
                RefundReason::DoubleCharge,
                RefundReason::ProviderTermination,
                RefundReason::Goodwill,
            ],
            1..=5,
        );
        let unit = prop_oneof![Just(WindowUnit::Hours), Just(WindowUnit::Days), Just(WindowUnit::BusinessDays)];
        let from = prop_oneof![Just(WindowFrom::Payment), Just(WindowFrom::Access)];
        let window = proptest::option::of((1u32..=3660, unit, from).prop_map(|(count, unit, from)| RefundWindow {
            count,
            unit,
            from,
        }));
        let decision = prop_oneof![Just(RefundDecision::Approve), Just(RefundDecision::Review)];
        let amount = prop_oneof![Just(RefundAmountRule::Full), Just(RefundAmountRule::Prorata)];
        (reasons, window, any::<bool>(), decision, amount).prop_map(
            |(reasons, window, requires_no_usage, decision, amount)| RefundRule {
                reasons,
                window,
                requires_no_usage,
                decision,
                amount,
            },
        )
    }

    fn arb_policy() -> impl Strategy<Value = Policy> {
        let retries = proptest::collection::btree_set(1u32..=90, 0..=20).prop_map(|s| s.into_iter().collect());
        let holidays = proptest::collection::vec((2026i32..2030, 1u32..=365), 0..5)
            .prop_map(|days| days.into_iter().filter_map(|(y, d)| NaiveDate::from_yo_opt(y, d)).collect::<Vec<_>>());
        let upgrade = prop_oneof![Just(UpgradeMode::Prorate), Just(UpgradeMode::RestartWithCredit)];
        let after = prop_oneof![Just(AfterLastRetry::Expire), Just(AfterLastRetry::StaySuspended)];
        let rate = proptest::option::of((0i64..=10_000).prop_map(|bp| Decimal::new(bp, 4)));
        (
            (0u32..=365, upgrade, 0u32..=2160, retries, after, 0u32..=60),
            (holidays, 1u32..=120, proptest::collection::vec(arb_rule(), 0..4), rate),
        )
            .prop_map(
                |((notice, upgrade_mode, grace, retry_days, after, renewal), (holidays, review, rules, rate))| Policy {
                    price_change_notice_days: notice,
                    upgrade_mode,
                    grace_period_hours: grace,
                    dunning_retry_days: retry_days,
                    after_last_retry: after,
                    renewal_notice_days: renewal,
                    holidays,
                    review_deadline_business_days: review,
                    refund_rules: rules,
                    partner_commission_rate: rate,
                },
            )
    }

    proptest! {
        /// Every policy the API accepts is stored and read back as itself.
        #[test]
        fn accepted_policies_read_back_equal(policy in arb_policy()) {
            prop_assert!(policy.validate().is_ok(), "{:?}", policy.validate());
            let stored = serde_json::to_value(&policy).unwrap();
            let back: Policy = serde_json::from_value(stored.clone()).unwrap();
            prop_assert_eq!(&back, &policy);
            prop_assert_eq!(serde_json::to_value(&back).unwrap(), stored);
        }
    }

    #[test]
    fn empty_policy_takes_documented_defaults() {
        let p: Policy = serde_json::from_str("{}").unwrap();
        assert_eq!(p, Policy::default());
        assert_eq!(p.renewal_notice_days, 3);
        assert_eq!(p.review_deadline_business_days, 10);
        assert_eq!(p.upgrade_mode, UpgradeMode::Prorate);
        assert_eq!(p.after_last_retry, AfterLastRetry::Expire);
    }

    #[test]
    fn api_md_example_policy_parses() {
        let p: Policy = serde_json::from_value(serde_json::json!({
            "price_change_notice_days": 14, "upgrade_mode": "prorate", "grace_period_hours": 0,
            "dunning_retry_days": [1, 3, 5], "after_last_retry": "expire", "renewal_notice_days": 3,
            "holidays": ["2026-12-30"], "review_deadline_business_days": 10,
            "refund_rules": [
              {"reasons": ["unused"], "window": {"count": 5, "unit": "business_days", "from": "access"},
               "requires_no_usage": true, "decision": "approve", "amount": "full"},
              {"reasons": ["outage", "double_charge"], "decision": "review", "amount": "full"}],
            "partner_commission_rate": "0.20"
        }))
        .unwrap();
        p.validate().unwrap();
        assert_eq!(p.refund_rules[1].window, None);
        assert_eq!(p.partner_commission_rate, Some(Decimal::new(20, 2)));
    }

    #[test]
    fn strict_about_unknown_fields_and_ranges() {
        assert!(serde_json::from_str::<Policy>(r#"{"grace_hours": 3}"#).is_err());
        let p: Policy = serde_json::from_str(r#"{"dunning_retry_days": [3, 1]}"#).unwrap();
        assert!(p.validate().is_err());
        let p: Policy = serde_json::from_str(r#"{"partner_commission_rate": "1.5"}"#).unwrap();
        assert!(p.validate().is_err());
    }
}
