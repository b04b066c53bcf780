//! A tenant's 54-FZ settings: taxation system, VAT, settlement sign, payment
//! object and the fiscal provider (ATOL Online) account (GATEWAYS.md §4). Stored
//! as JSON on the tenant row (the password sealed, `services::tenant_secrets`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::secret::Secret;
use super::tenant::validate_http_url;

/// Taxation system (ATOL `sno`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaxationSystem {
    Osn,
    UsnIncome,
    UsnIncomeOutcome,
    Envd,
    Esn,
    Patent,
}

/// VAT type of a receipt item (ATOL v5 `vat.type`); `none` is "без НДС" (art. 149).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VatType {
    None,
    Vat0,
    Vat5,
    Vat7,
    Vat10,
    Vat20,
    Vat22,
    Vat105,
    Vat107,
    Vat110,
    Vat120,
    Vat122,
}

/// Settlement sign (tag 1214, ATOL `payment_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SettlementSign {
    FullPrepayment,
    Prepayment,
    Advance,
    FullPayment,
    PartialPayment,
    Credit,
    CreditPayment,
}

/// Fiscal provider (ATOL Online) credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FiscalProvider {
    #[schema(min_length = 1)]
    pub login: String,
    #[schema(pattern = r"\S")]
    pub password: Secret,
    #[schema(min_length = 1)]
    pub group_code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^https?://[^/\s]+\S*$")]
    pub api_url: Option<String>,
}

/// 54-FZ settings of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FiscalSettings {
    #[schema(pattern = "^([0-9]{10}|[0-9]{12})$")]
    pub inn: String,
    pub sno: TaxationSystem,
    pub vat: VatType,
    pub settlement_sign: SettlementSign,
    /// ATOL v5 payment object: 4 = service, 9 = licence (intellectual activity), ...
    #[schema(minimum = 1, maximum = 26)]
    pub payment_object: u8,
    #[schema(pattern = r"\S")]
    pub payment_address: String,
    #[schema(max_length = 254, pattern = r"^[^@\s]+@[^@\s.][^@\s]*\.[^@\s]*[^@\s.]$")]
    pub email: String,
    pub provider: FiscalProvider,
}

impl FiscalSettings {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.inn.len() == 10 || self.inn.len() == 12) || !self.inn.bytes().all(|b| b.is_ascii_digit()) {
            return Err("fiscal.inn must be 10 or 12 digits".into());
        }
        if !(1..=26).contains(&self.payment_object) {
            return Err("fiscal.payment_object must be an ATOL v5 code 1..26".into());
        }
        if self.payment_address.trim().is_empty() {
            return Err("fiscal.payment_address must not be empty".into());
        }
        if !crate::domain::is_plausible_email(&self.email) {
            return Err("fiscal.email must be an e-mail address".into());
        }
        if self.provider.login.is_empty() || self.provider.password.is_blank() || self.provider.group_code.is_empty() {
            return Err("fiscal.provider needs login, password and group_code".into());
        }
        if let Some(u) = &self.provider.api_url {
            validate_http_url(u).map_err(|e| format!("fiscal.provider.api_url: {e}"))?;
        }
        Ok(())
    }

    /// The settings without the provider password, for responses.
    pub fn public_view(&self) -> serde_json::Value {
        serde_json::json!({
            "inn": self.inn,
            "sno": self.sno,
            "vat": self.vat,
            "settlement_sign": self.settlement_sign,
            "payment_object": self.payment_object,
            "payment_address": self.payment_address,
            "email": self.email,
            "provider": match &self.provider.api_url {
                Some(url) => serde_json::json!({"login": self.provider.login, "group_code": self.provider.group_code, "api_url": url}),
                None => serde_json::json!({"login": self.provider.login, "group_code": self.provider.group_code}),
            },
        })
    }
}
