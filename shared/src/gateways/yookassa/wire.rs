//! YooKassa API v3 wire formats (GATEWAYS.md §2): the request bodies we send, the
//! payment, refund and error objects it answers, and the notification envelope.
//!
//! Amounts travel as decimal strings (`{"value": "990.00", "currency": "RUB"}`) and
//! are read straight into `Decimal`, never through `f64`. A status we do not know
//! is a parse error, not a guess.

use std::collections::HashMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::domain::money::Money;

/// An amount as YooKassa writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amount {
    /// Decimal string with at most two decimals (`"990.00"`), not negative; a JSON
    /// number or anything else is refused.
    #[serde(deserialize_with = "amount_value")]
    pub value: Decimal,
    /// ISO 4217 (`RUB`).
    pub currency: String,
}

fn amount_value<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    let text = String::deserialize(d)?;
    text.parse::<Decimal>()
        .ok()
        .filter(|v| !v.is_sign_negative() && v.scale() <= 2)
        .ok_or_else(|| serde::de::Error::custom(format!("amount value {text:?} is not a decimal string in kopecks")))
}

impl From<Money> for Amount {
    fn from(m: Money) -> Self {
        let mut value = m.amount();
        value.rescale(2);
        Amount { value, currency: m.currency().code().to_owned() }
    }
}

/// Our ids carried in `metadata` and echoed in every payment object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Our attempt id (also the `Idempotence-Key`).
    pub attempt_id: String,
    /// Our customer id.
    pub customer_id: String,
}

/// `confirmation` of a payment request: the embedded checkout widget, which needs no
/// `return_url` from us (the product's page gives the widget its own).
#[derive(Debug, Clone, Serialize)]
pub struct ConfirmationRequest {
    /// The object's `type`.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// `POST /v3/payments`: a customer-present payment that saves the card
/// (`confirmation` + `save_payment_method`) or an autopayment of a saved method
/// (`payment_method_id`). Always one-stage (`capture: true`).
#[derive(Debug, Clone, Serialize)]
pub struct CreatePayment<'a> {
    /// The amount.
    pub amount: Amount,
    /// `true`: one-stage (captured at once).
    pub capture: bool,
    /// At most 128 characters (YooKassa refuses longer).
    pub description: String,
    /// Our ids, echoed in every payment object.
    pub metadata: Metadata,
    /// How the customer confirms the payment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirmation: Option<ConfirmationRequest>,
    /// Save the card for autopayments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub save_payment_method: Option<bool>,
    /// The saved method to charge (autopayments).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_method_id: Option<&'a str>,
}

/// `POST /v3/payments/{id}/capture` of the whole authorised amount.
#[derive(Debug, Clone, Serialize)]
pub struct CapturePayment {
    /// The amount.
    pub amount: Amount,
}

/// `POST /v3/refunds`.
#[derive(Debug, Clone, Serialize)]
pub struct CreateRefund<'a> {
    /// The refunded payment.
    pub payment_id: &'a str,
    /// The amount.
    pub amount: Amount,
    /// `refund <our refund id>`: refunds carry no metadata, the description
    /// brings our id back in the refund object.
    pub description: String,
}

/// A payment's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Created, not yet paid or confirmed.
    Pending,
    /// Authorised, held for the merchant's capture or cancel.
    WaitingForCapture,
    /// Paid.
    Succeeded,
    /// Canceled (`cancellation_details` says why).
    Canceled,
}

impl PaymentStatus {
    /// The wire name (`waiting_for_capture`, ...), as stored with notifications.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "pending",
            PaymentStatus::WaitingForCapture => "waiting_for_capture",
            PaymentStatus::Succeeded => "succeeded",
            PaymentStatus::Canceled => "canceled",
        }
    }
}

/// A refund's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    /// Being processed.
    Pending,
    /// Refunded.
    Succeeded,
    /// Refused.
    Canceled,
}

impl RefundStatus {
    /// The wire name, as stored with notifications.
    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Pending => "pending",
            RefundStatus::Succeeded => "succeeded",
            RefundStatus::Canceled => "canceled",
        }
    }
}

/// Who canceled a payment or refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Party {
    /// The shop (us, or its dashboard).
    Merchant,
    /// YooKassa itself (its current documentation also says `yoo_money`).
    #[serde(alias = "yoo_money")]
    YooKassa,
    /// The card network or issuer.
    PaymentNetwork,
    /// A party this adapter does not know (kept, treated as the network's).
    #[serde(other)]
    Other,
}

/// `cancellation_details`: who canceled and why (`permission_revoked`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancellationDetails {
    /// Who canceled.
    pub party: Party,
    /// Why (`permission_revoked`, `insufficient_funds`, ...).
    pub reason: String,
}

/// `payment_method.card`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Card {
    /// The card number's first six digits.
    #[serde(default)]
    pub first6: Option<String>,
    /// The card number's last four digits.
    #[serde(default)]
    pub last4: Option<String>,
    /// `MM`.
    #[serde(default)]
    pub expiry_month: Option<String>,
    /// `YYYY`.
    #[serde(default)]
    pub expiry_year: Option<String>,
    /// `MasterCard`, `Visa`, `Mir`, ...
    #[serde(default)]
    pub card_type: Option<String>,
}

/// `payment_method`: `id` is what autopayments use once `saved` is true.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentMethod {
    /// The object's `type`.
    #[serde(rename = "type")]
    pub kind: String,
    /// YooKassa's id of the object.
    pub id: String,
    /// Whether autopayments may use it.
    #[serde(default)]
    pub saved: bool,
    /// Card details, for cards.
    #[serde(default)]
    pub card: Option<Card>,
}

/// `confirmation` of a payment object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// The object's `type`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The embedded widget's token.
    #[serde(default)]
    pub confirmation_token: Option<String>,
    /// The redirect page.
    #[serde(default)]
    pub confirmation_url: Option<String>,
}

/// The payment object (answers and notifications).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// YooKassa's id of the object.
    pub id: String,
    /// The object's status.
    pub status: PaymentStatus,
    /// The amount.
    pub amount: Amount,
    /// Our ids, echoed in every payment object.
    #[serde(default)]
    pub metadata: Option<HashMap<String, String>>,
    /// What paid.
    #[serde(default)]
    pub payment_method: Option<PaymentMethod>,
    /// How the customer confirms the payment.
    #[serde(default)]
    pub confirmation: Option<Confirmation>,
    /// Why it was canceled.
    #[serde(default)]
    pub cancellation_details: Option<CancellationDetails>,
}

impl Payment {
    /// A `metadata` value we sent.
    pub fn meta(&self, key: &str) -> Option<String> {
        self.metadata.as_ref().and_then(|m| m.get(key).cloned())
    }
}

/// The refund object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    /// YooKassa's id of the object.
    pub id: String,
    /// The refunded payment.
    pub payment_id: String,
    /// The object's status.
    pub status: RefundStatus,
    /// The amount.
    pub amount: Amount,
    /// Free text (at most 128 characters for payments).
    #[serde(default)]
    pub description: Option<String>,
    /// Why it was canceled.
    #[serde(default)]
    pub cancellation_details: Option<CancellationDetails>,
}

/// An error answer (`{"type": "error", "code": "invalid_credentials", ...}`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorBody {
    /// The error code (`invalid_credentials`, `invalid_request`, ...).
    #[serde(default)]
    pub code: Option<String>,
    /// Free text (at most 128 characters for payments).
    #[serde(default)]
    pub description: Option<String>,
}

impl ErrorBody {
    /// `code: description` for logs and refusals.
    pub fn summary(&self) -> String {
        match (&self.code, &self.description) {
            (Some(c), Some(d)) => format!("{c}: {d}"),
            (Some(c), None) => c.clone(),
            (None, Some(d)) => d.clone(),
            (None, None) => "no details".into(),
        }
    }
}

/// The object a notification names (only its id is trusted: it is re-fetched).
#[derive(Debug, Clone, Deserialize)]
pub struct NotifiedObject {
    /// YooKassa's id of the object.
    pub id: String,
}

/// `{"type": "notification", "event": "payment.succeeded", "object": {...}}`.
#[derive(Debug, Clone, Deserialize)]
pub struct NotificationBody {
    /// The object's `type`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `payment.succeeded`, `refund.succeeded`, ...
    pub event: String,
    /// The object the event is about (only its id is trusted).
    pub object: NotifiedObject,
}

/// What a notification's event names, to re-fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// `payment.*` events: fetched with `GET /v3/payments/{id}`.
    Payment,
    /// `refund.*` events: fetched with `GET /v3/refunds/{id}`.
    Refund,
}

impl NotificationBody {
    /// Reads a notification; events other than payments' and refunds' are `None`
    /// (stored and acknowledged).
    pub fn parse(body: &[u8]) -> Result<(NotificationBody, Option<ObjectKind>), String> {
        let n: NotificationBody = serde_json::from_slice(body).map_err(|e| format!("notification: {e}"))?;
        if n.kind != "notification" {
            return Err(format!("notification: type {:?} is not \"notification\"", n.kind));
        }
        if n.object.id.is_empty() || n.object.id.len() > 64 {
            return Err("notification: object.id must be 1..64 characters".into());
        }
        let kind = match n.event.split_once('.') {
            Some(("payment", _)) => Some(ObjectKind::Payment),
            Some(("refund", _)) => Some(ObjectKind::Refund),
            _ => None,
        };
        Ok((n, kind))
    }
}

/// Truncates to YooKassa's 128-character description limit (on a char boundary).
pub fn description(text: &str) -> String {
    text.chars().take(128).collect()
}

/// The description of a refund we make, naming our refund id.
pub fn refund_description(refund_id: &str) -> String {
    format!("refund {refund_id}")
}

/// Our refund id from a refund's description, when we made it.
pub fn refund_id_of(description: Option<&str>) -> Option<uuid::Uuid> {
    description?.strip_prefix("refund ").and_then(|id| uuid::Uuid::parse_str(id.trim()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_objects_parse_exactly() {
        let p: Payment = serde_json::from_str(
            r#"{"id":"2d1f-0001","status":"canceled","paid":false,"amount":{"value":"990.00","currency":"RUB"},
               "metadata":{"attempt_id":"a1","customer_id":"c1"},
               "payment_method":{"type":"bank_card","id":"2d1f-0001","saved":false,"card":{"first6":"555555","last4":"4444","expiry_month":"12","expiry_year":"2029","card_type":"MasterCard"}},
               "cancellation_details":{"party":"payment_network","reason":"permission_revoked"}}"#,
        )
        .unwrap();
        assert_eq!(p.amount.value, Decimal::new(99000, 2));
        assert_eq!(p.meta("attempt_id").as_deref(), Some("a1"));
        assert_eq!(p.cancellation_details.unwrap().party, Party::PaymentNetwork);
        let unknown = serde_json::from_str::<Payment>(
            r#"{"id":"x","status":"refunded","amount":{"value":"1.00","currency":"RUB"}}"#,
        );
        assert!(unknown.is_err(), "an unknown status is an error, not a guess");
        for status in [PaymentStatus::Pending, PaymentStatus::WaitingForCapture, PaymentStatus::Succeeded] {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str(), "as_str is the wire name");
        }
        for status in [RefundStatus::Pending, RefundStatus::Succeeded, RefundStatus::Canceled] {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        for bad in [r#"990.5"#, r#""990.001""#, r#""-1.00""#, r#""abc""#] {
            let json = format!(r#"{{"value":{bad},"currency":"RUB"}}"#);
            assert!(serde_json::from_str::<Amount>(&json).is_err(), "{bad}");
        }
    }

    #[test]
    fn requests_carry_amounts_as_strings() {
        let body = CreatePayment {
            amount: Amount { value: Decimal::new(99000, 2), currency: "RUB".into() },
            capture: true,
            description: description("Подписка Pro"),
            metadata: Metadata { attempt_id: "a1".into(), customer_id: "c1".into() },
            confirmation: Some(ConfirmationRequest { kind: "embedded" }),
            save_payment_method: Some(true),
            payment_method_id: None,
        };
        let v = serde_json::to_value(&body).unwrap();
        assert_eq!(v["amount"], serde_json::json!({"value": "990.00", "currency": "RUB"}));
        assert_eq!(v["confirmation"]["type"], "embedded");
        assert!(v.get("payment_method_id").is_none());
    }

    #[test]
    fn notifications_name_the_object_to_fetch() {
        let (n, kind) =
            NotificationBody::parse(br#"{"type":"notification","event":"refund.succeeded","object":{"id":"r-1"}}"#)
                .unwrap();
        assert_eq!((n.object.id.as_str(), kind), ("r-1", Some(ObjectKind::Refund)));
        let (_, kind) =
            NotificationBody::parse(br#"{"type":"notification","event":"payout.succeeded","object":{"id":"p"}}"#)
                .unwrap();
        assert_eq!(kind, None);
        assert!(NotificationBody::parse(br#"{"type":"x","event":"payment.succeeded","object":{"id":"p"}}"#).is_err());
        assert!(NotificationBody::parse(b"not json").is_err());
        assert_eq!(description(&"я".repeat(200)).chars().count(), 128);
        let id = uuid::Uuid::now_v7();
        assert_eq!(refund_id_of(Some(&refund_description(&id.to_string()))), Some(id));
        assert_eq!(refund_id_of(Some("Не подошел цвет")), None);
    }
}
