//! CloudPayments wire formats (GATEWAYS.md §1): notification fields exactly as sent
//! (form-urlencoded by default, JSON when so configured), answers, and the widget
//! parameters a product passes to the CloudPayments checkout widget.
//!
//! Amounts are read from the raw text of the field (a form string or the literal
//! JSON number) straight into `Decimal`: never through `f64`.

use std::collections::HashMap;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

/// Check answer codes (GATEWAYS.md §1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckCode {
    Ok = 0,
    WrongInvoice = 10,
    WrongAccount = 11,
    WrongAmount = 12,
    NotAcceptable = 13,
    Expired = 20,
}

/// The JSON answer to every notification: HTTP 200 `{"code": N}`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
pub struct NotificationAnswer {
    pub code: i32,
}

impl From<CheckCode> for NotificationAnswer {
    fn from(c: CheckCode) -> Self {
        NotificationAnswer { code: c as i32 }
    }
}

/// Notification kinds, as the last path segment of our webhook URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationKind {
    Check,
    Pay,
    Fail,
    Refund,
    Recurrent,
    Cancel,
}

impl NotificationKind {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "check" => NotificationKind::Check,
            "pay" => NotificationKind::Pay,
            "fail" => NotificationKind::Fail,
            "refund" => NotificationKind::Refund,
            "recurrent" => NotificationKind::Recurrent,
            "cancel" => NotificationKind::Cancel,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Check => "check",
            NotificationKind::Pay => "pay",
            NotificationKind::Fail => "fail",
            NotificationKind::Refund => "refund",
            NotificationKind::Recurrent => "recurrent",
            NotificationKind::Cancel => "cancel",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("body is not valid {0}")]
    Malformed(&'static str),
    #[error("field {0} is missing")]
    Missing(&'static str),
    #[error("field {0} has an invalid value {1:?}")]
    Invalid(&'static str, String),
}

/// The fields of a notification, as text.
#[derive(Debug, Clone, Default)]
pub struct Fields(HashMap<String, String>);

impl Fields {
    /// Parses a form-urlencoded or JSON body into field texts.
    pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Fields, WireError> {
        let is_json = content_type.is_some_and(|ct| ct.to_ascii_lowercase().contains("json"));
        let mut map = HashMap::new();
        if is_json {
            let raw: HashMap<String, Box<RawValue>> =
                serde_json::from_slice(body).map_err(|_| WireError::Malformed("JSON"))?;
            for (k, v) in raw {
                let text = v.get();
                if text == "null" {
                    continue;
                }
                let value = if text.starts_with('"') {
                    serde_json::from_str::<String>(text).map_err(|_| WireError::Malformed("JSON"))?
                } else {
                    text.to_owned()
                };
                map.insert(k, value);
            }
        } else {
            let pairs: Vec<(String, String)> =
                serde_urlencoded::from_bytes(body).map_err(|_| WireError::Malformed("form-urlencoded"))?;
            for (k, v) in pairs {
                map.insert(k, v);
            }
        }
        Ok(Fields(map))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    fn require(&self, name: &'static str) -> Result<&str, WireError> {
        self.get(name).ok_or(WireError::Missing(name))
    }

    fn decimal(&self, name: &'static str) -> Result<Option<Decimal>, WireError> {
        self.get(name)
            .map(|v| {
                Decimal::from_str(v.trim())
                    .ok()
                    .filter(|d| !d.is_sign_negative())
                    .ok_or_else(|| WireError::Invalid(name, v.to_owned()))
            })
            .transpose()
    }

    fn text(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_owned)
    }
}

/// A payment notification (Check, Pay, Fail, Confirm, Refund, Cancel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentNotification {
    pub transaction_id: String,
    pub amount: Option<Decimal>,
    pub currency: Option<String>,
    pub invoice_id: Option<String>,
    pub account_id: Option<String>,
    pub token: Option<String>,
    pub status: Option<String>,
    pub operation_type: Option<String>,
    pub reason: Option<String>,
    pub reason_code: Option<String>,
    pub card_first_six: Option<String>,
    pub card_last_four: Option<String>,
    pub card_type: Option<String>,
    pub card_exp_date: Option<String>,
    pub email: Option<String>,
    /// Refund notifications: the original payment's transaction.
    pub payment_transaction_id: Option<String>,
    pub test_mode: bool,
}

impl PaymentNotification {
    pub fn from_fields(f: &Fields) -> Result<Self, WireError> {
        Ok(PaymentNotification {
            transaction_id: f.require("TransactionId")?.to_owned(),
            amount: f.decimal("Amount")?,
            currency: f.text("Currency"),
            invoice_id: f.text("InvoiceId"),
            account_id: f.text("AccountId"),
            token: f.text("Token"),
            status: f.text("Status"),
            operation_type: f.text("OperationType"),
            reason: f.text("Reason"),
            reason_code: f.text("ReasonCode"),
            card_first_six: f.text("CardFirstSix"),
            card_last_four: f.text("CardLastFour"),
            card_type: f.text("CardType"),
            card_exp_date: f.text("CardExpDate"),
            email: f.text("Email"),
            payment_transaction_id: f.text("PaymentTransactionId"),
            test_mode: matches!(f.get("TestMode"), Some("1") | Some("true") | Some("True")),
        })
    }
}

/// The key a notification is deduplicated by: the transaction, or for Recurrent
/// notifications (which have none) the subscription id with its status and counters.
pub fn dedup_key(kind: NotificationKind, f: &Fields) -> Option<String> {
    match kind {
        NotificationKind::Recurrent => {
            let id = f.get("Id")?;
            Some(format!(
                "{id}:{}:{}:{}",
                f.get("Status").unwrap_or(""),
                f.get("SuccessfulTransactionsNumber").unwrap_or(""),
                f.get("FailedTransactionsNumber").unwrap_or("")
            ))
        }
        _ => f.get("TransactionId").map(str::to_owned),
    }
}

/// Parameters for the CloudPayments checkout widget (`cp.CloudPayments().pay(...)`).
/// We never pass the widget's own `recurrent` option: our scheduler charges renewals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WidgetParams {
    /// Always `cloudpayments_widget`.
    #[serde(rename = "type")]
    pub kind: String,
    pub public_id: String,
    /// Our payment id: CloudPayments echoes it as `InvoiceId`.
    pub invoice_id: String,
    /// Our customer id: echoed as `AccountId`.
    pub account_id: String,
    /// Decimal string with two decimals.
    pub amount: String,
    pub currency: String,
    pub description: String,
    pub email: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_with_cyrillic() {
        let body = "TransactionId=1001&Amount=1390.00&Currency=RUB&InvoiceId=inv-1&Description=%D0%A2%D0%B0%D1%80%D0%B8%D1%84+PRO&TestMode=1";
        let f = Fields::parse(Some("application/x-www-form-urlencoded"), body.as_bytes()).unwrap();
        assert_eq!(f.get("Description"), Some("Тариф PRO"));
        let n = PaymentNotification::from_fields(&f).unwrap();
        assert_eq!(n.transaction_id, "1001");
        assert_eq!(n.amount, Some(Decimal::new(139000, 2)));
        assert!(n.test_mode);
    }

    #[test]
    fn json_numbers_keep_their_exact_text() {
        let body = br#"{"TransactionId": 1002, "Amount": 0.30, "Currency": "RUB", "InvoiceId": "x", "Token": null, "TestMode": true}"#;
        let f = Fields::parse(Some("application/json; charset=utf-8"), body).unwrap();
        let n = PaymentNotification::from_fields(&f).unwrap();
        assert_eq!(n.transaction_id, "1002");
        assert_eq!(n.amount.unwrap().to_string(), "0.30");
        assert_eq!(n.token, None);
        assert!(n.test_mode);
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        assert!(Fields::parse(Some("application/json"), b"{not json").is_err());
        assert!(Fields::parse(Some("application/json"), b"[1,2]").is_err());
        let f = Fields::parse(None, b"Amount=12.00").unwrap();
        assert_eq!(PaymentNotification::from_fields(&f).unwrap_err(), WireError::Missing("TransactionId"));
        let f = Fields::parse(None, b"TransactionId=1&Amount=abc").unwrap();
        assert!(PaymentNotification::from_fields(&f).is_err());
        let f = Fields::parse(None, b"TransactionId=1&Amount=-5").unwrap();
        assert!(PaymentNotification::from_fields(&f).is_err());
    }
}
