//! CloudPayments wire formats (GATEWAYS.md §1): notification fields exactly as sent
//! (form-urlencoded by default, JSON when so configured) and their answers, and the
//! API's request bodies and response envelope (§1.1, §1.3, §1.4).
//!
//! Amounts are read from the raw text of the field (a form string or the literal
//! JSON number) straight into `Decimal`, and written as JSON numbers from the exact
//! decimal: never through `f64`.

use std::collections::HashMap;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

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

/// `payments/tokens/charge` body: one-stage, merchant-initiated, scheduled.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct TokenChargeBody<'a> {
    pub token: &'a str,
    pub account_id: &'a str,
    /// A JSON number written from the exact decimal, never through f64.
    pub amount: Box<RawValue>,
    pub currency: &'a str,
    pub invoice_id: &'a str,
    pub description: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<&'a str>,
    /// 0: merchant-initiated on stored credentials (MIT).
    pub tr_initiator_code: u8,
    /// 1: a scheduled (recurring) payment.
    pub payment_scheduled: u8,
}

/// `payments/find` body.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct FindBody<'a> {
    pub invoice_id: &'a str,
}

/// `payments/refund` body; `JsonData` carries our refund id back in the Refund
/// notification's `Data`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct RefundBody<'a> {
    pub transaction_id: Box<RawValue>,
    pub amount: Box<RawValue>,
    pub json_data: RefundData<'a>,
}

#[derive(Serialize)]
pub(super) struct RefundData<'a> {
    pub refund_id: &'a str,
}

/// `payments/get` body.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct GetBody {
    pub transaction_id: Box<RawValue>,
}

/// Every API answer: `{"Success", "Message", "Model"}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Envelope {
    pub success: bool,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub model: Option<Model>,
}

/// The transaction in an answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Model {
    #[serde(default)]
    pub transaction_id: Option<i64>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub reason_code: Option<i64>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub card_holder_message: Option<String>,
}

/// Transaction ids are JSON numbers on the wire.
pub(super) fn transaction_number(id: &str) -> Result<Box<RawValue>, String> {
    if id.is_empty() || id.len() > 19 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("not a CloudPayments transaction id: {id:?}"));
    }
    RawValue::from_string(id.to_owned()).map_err(|e| format!("transaction id: {e}"))
}

/// An amount as the JSON number CloudPayments reads, from the exact decimal.
pub(super) fn amount_number(amount: Decimal) -> Result<Box<RawValue>, String> {
    RawValue::from_string(format!("{amount:.2}")).map_err(|e| format!("amount: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charge_body_matches_the_wire_format() {
        let body = TokenChargeBody {
            token: "tk_1",
            account_id: "acc",
            amount: amount_number(Decimal::new(139000, 2)).unwrap(),
            currency: "RUB",
            invoice_id: "inv",
            description: "Подписка",
            email: None,
            tr_initiator_code: 0,
            payment_scheduled: 1,
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"Token":"tk_1","AccountId":"acc","Amount":1390.00,"Currency":"RUB","InvoiceId":"inv","Description":"Подписка","TrInitiatorCode":0,"PaymentScheduled":1}"#
        );
    }

    #[test]
    fn refund_body_matches_the_wire_format() {
        let body = RefundBody {
            transaction_id: transaction_number("100123").unwrap(),
            amount: amount_number(Decimal::new(49500, 2)).unwrap(),
            json_data: RefundData { refund_id: "r-1" },
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"TransactionId":100123,"Amount":495.00,"JsonData":{"refund_id":"r-1"}}"#
        );
        assert!(transaction_number("12a").is_err());
        assert!(transaction_number("").is_err());
    }

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
