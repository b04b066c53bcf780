//! CloudPayments API calls (GATEWAYS.md §1.1, §1.3, §1.4): `payments/tokens/charge`
//! for renewals, `payments/find` for reconciliation, `payments/refund` and
//! `payments/get` (a refund's state). HTTP Basic auth with the public
//! id and API secret, JSON bodies, `X-Request-ID` for idempotency.
//!
//! Outcomes: a captured charge, a decline with its reason code, or an error. A
//! timeout, a 5xx or a broken connection is [`GatewayError::Unknown`]: the charge
//! may have happened, and the caller must reconcile with `find` before anything else.

use std::time::Duration;

use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::DEFAULT_API_URL;
use crate::domain::tenant::GatewayConfig;
use crate::gateways::GatewayError;

/// The merchant account a call is made for.
#[derive(Debug, Clone)]
pub struct Account {
    pub public_id: String,
    pub api_secret: String,
    pub base_url: String,
}

impl Account {
    pub fn from_config(cfg: &GatewayConfig) -> Option<Account> {
        match cfg {
            GatewayConfig::Cloudpayments { public_id, api_secret, api_url } => Some(Account {
                public_id: public_id.clone(),
                api_secret: api_secret.clone(),
                base_url: api_url.clone().unwrap_or_else(|| DEFAULT_API_URL.to_owned()),
            }),
            GatewayConfig::Yookassa { .. } => None,
        }
    }

    fn url(&self, method: &str) -> String {
        format!("{}/{method}", self.base_url.trim_end_matches('/'))
    }
}

/// A token (saved card) charge.
#[derive(Debug, Clone)]
pub struct TokenCharge<'a> {
    pub token: &'a str,
    pub account_id: &'a str,
    pub amount: Decimal,
    pub currency: &'a str,
    /// Our attempt id: CloudPayments' `InvoiceId`.
    pub invoice_id: &'a str,
    pub description: &'a str,
    pub email: Option<&'a str>,
    /// Sent as `X-Request-ID`: the same attempt always carries the same one.
    pub request_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TokenChargeBody<'a> {
    token: &'a str,
    account_id: &'a str,
    /// A JSON number written from the exact decimal, never through f64.
    amount: Box<RawValue>,
    currency: &'a str,
    invoice_id: &'a str,
    description: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    /// 0: merchant-initiated on stored credentials (MIT).
    tr_initiator_code: u8,
    /// 1: a scheduled (recurring) payment.
    payment_scheduled: u8,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct FindBody<'a> {
    invoice_id: &'a str,
}

/// A refund of a captured payment (GATEWAYS.md §1.4).
#[derive(Debug, Clone)]
pub struct RefundCall<'a> {
    /// The captured payment's transaction.
    pub transaction_id: &'a str,
    pub amount: Decimal,
    /// Our refund id, carried in `JsonData`: the Refund notification's `Data`
    /// names it, so the notification is matched even before the answer is stored.
    pub refund_id: &'a str,
    /// Sent as `X-Request-ID`: one execution try always carries the same one.
    pub request_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RefundBody<'a> {
    transaction_id: Box<RawValue>,
    amount: Box<RawValue>,
    json_data: RefundData<'a>,
}

#[derive(Serialize)]
struct RefundData<'a> {
    refund_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GetBody {
    transaction_id: Box<RawValue>,
}

/// What became of a refund request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundOutcome {
    /// The refund transaction exists; its Refund notification follows.
    Accepted { transaction_id: String },
    /// The provider refused to refund (e.g. more than is left of the payment).
    Refused { message: String },
}

/// A transaction's state as `payments/get` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactionState {
    NotFound,
    InProgress,
    Completed,
    Declined { reason: Option<String> },
}

/// Transaction ids are JSON numbers on the wire.
fn transaction_number(id: &str) -> Result<Box<RawValue>, GatewayError> {
    if id.is_empty() || id.len() > 19 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(GatewayError::Refused(format!("not a CloudPayments transaction id: {id:?}")));
    }
    RawValue::from_string(id.to_owned()).map_err(|e| GatewayError::Protocol(format!("transaction id: {e}")))
}

fn amount_number(amount: Decimal) -> Result<Box<RawValue>, GatewayError> {
    RawValue::from_string(format!("{amount:.2}")).map_err(|e| GatewayError::Protocol(format!("amount: {e}")))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Envelope {
    success: bool,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    model: Option<Model>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Model {
    #[serde(default)]
    transaction_id: Option<i64>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    reason_code: Option<i64>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    card_holder_message: Option<String>,
}

/// What became of a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    Captured { transaction_id: String },
    Declined { transaction_id: Option<String>, reason_code: Option<String>, reason: Option<String> },
}

/// What `payments/find` knows about an invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    NotFound,
    /// Still being processed (e.g. awaiting 3-D Secure): ask again later.
    InProgress,
    Done(ChargeOutcome),
}

#[derive(Clone)]
pub struct CloudPaymentsApi {
    http: reqwest::Client,
}

fn decline_from(model: &Model) -> ChargeOutcome {
    ChargeOutcome::Declined {
        transaction_id: model.transaction_id.map(|t| t.to_string()),
        reason_code: model.reason_code.map(|c| c.to_string()),
        reason: model.reason.clone().or_else(|| model.card_holder_message.clone()),
    }
}

impl CloudPaymentsApi {
    pub fn new(timeout: Duration) -> Result<Self, GatewayError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| GatewayError::Protocol(format!("http client: {e}")))?;
        Ok(CloudPaymentsApi { http })
    }

    async fn call<B: Serialize>(
        &self,
        account: &Account,
        method: &str,
        request_id: Option<&str>,
        body: &B,
    ) -> Result<Envelope, GatewayError> {
        let mut req =
            self.http.post(account.url(method)).basic_auth(&account.public_id, Some(&account.api_secret)).json(body);
        if let Some(id) = request_id {
            req = req.header("X-Request-ID", id);
        }
        let res = req.send().await.map_err(|e| GatewayError::Unknown(format!("{method}: {e}")))?;
        let status = res.status();
        // 408 and 429 say the request was not processed (yet): like a 5xx, the outcome
        // is settled by asking, never by assuming a refusal.
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT
        {
            return Err(GatewayError::Unknown(format!("{method}: HTTP {status}")));
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(GatewayError::Refused(format!("{method}: credentials refused (HTTP {status})")));
        }
        if !status.is_success() {
            return Err(GatewayError::Refused(format!("{method}: HTTP {status}")));
        }
        // A 200 we cannot read leaves the outcome unknown.
        let bytes = res.bytes().await.map_err(|e| GatewayError::Unknown(format!("{method}: reading answer: {e}")))?;
        serde_json::from_slice(&bytes).map_err(|e| GatewayError::Unknown(format!("{method}: unreadable answer: {e}")))
    }

    /// `payments/tokens/charge`, one-stage, merchant-initiated, scheduled.
    pub async fn charge_token(
        &self,
        account: &Account,
        charge: &TokenCharge<'_>,
    ) -> Result<ChargeOutcome, GatewayError> {
        let amount = amount_number(charge.amount)?;
        let body = TokenChargeBody {
            token: charge.token,
            account_id: charge.account_id,
            amount,
            currency: charge.currency,
            invoice_id: charge.invoice_id,
            description: charge.description,
            email: charge.email,
            tr_initiator_code: 0,
            payment_scheduled: 1,
        };
        let env = self.call(account, "payments/tokens/charge", Some(charge.request_id), &body).await?;
        match (env.success, env.model) {
            (true, Some(m)) => match m.transaction_id {
                Some(tx) => Ok(ChargeOutcome::Captured { transaction_id: tx.to_string() }),
                None => Err(GatewayError::Unknown("charge succeeded without a TransactionId".into())),
            },
            (false, Some(m)) => Ok(decline_from(&m)),
            (true, None) => Err(GatewayError::Unknown("charge answer without a model".into())),
            (false, None) => Err(GatewayError::Refused(env.message.unwrap_or_else(|| "request refused".into()))),
        }
    }

    /// `payments/find` by our InvoiceId.
    pub async fn find(&self, account: &Account, invoice_id: &str) -> Result<Found, GatewayError> {
        let env = self.call(account, "payments/find", None, &FindBody { invoice_id }).await?;
        let Some(m) = env.model.filter(|_| env.success) else {
            return Ok(Found::NotFound);
        };
        Ok(match m.status.as_deref() {
            Some("Completed") | Some("Authorized") => match m.transaction_id {
                Some(tx) => Found::Done(ChargeOutcome::Captured { transaction_id: tx.to_string() }),
                None => Found::InProgress,
            },
            Some("Declined") | Some("Cancelled") => Found::Done(decline_from(&m)),
            _ => Found::InProgress,
        })
    }

    /// `payments/refund` of (part of) a captured payment, idempotent by `X-Request-ID`.
    pub async fn refund(&self, account: &Account, call: &RefundCall<'_>) -> Result<RefundOutcome, GatewayError> {
        let body = RefundBody {
            transaction_id: transaction_number(call.transaction_id)?,
            amount: amount_number(call.amount)?,
            json_data: RefundData { refund_id: call.refund_id },
        };
        let env = self.call(account, "payments/refund", Some(call.request_id), &body).await?;
        match (env.success, env.model.and_then(|m| m.transaction_id)) {
            (true, Some(tx)) => Ok(RefundOutcome::Accepted { transaction_id: tx.to_string() }),
            (true, None) => Err(GatewayError::Unknown("refund accepted without a TransactionId".into())),
            (false, _) => {
                Ok(RefundOutcome::Refused { message: env.message.unwrap_or_else(|| "refund refused".into()) })
            }
        }
    }

    /// `payments/get` of one transaction (a refund's, to reconcile it).
    pub async fn transaction_state(
        &self,
        account: &Account,
        transaction_id: &str,
    ) -> Result<TransactionState, GatewayError> {
        let body = GetBody { transaction_id: transaction_number(transaction_id)? };
        let env = self.call(account, "payments/get", None, &body).await?;
        let Some(m) = env.model.filter(|_| env.success) else {
            return Ok(TransactionState::NotFound);
        };
        Ok(match m.status.as_deref() {
            Some("Completed") => TransactionState::Completed,
            Some("Declined") | Some("Cancelled") => {
                TransactionState::Declined { reason: m.reason.or(m.card_holder_message) }
            }
            _ => TransactionState::InProgress,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charge_body_matches_the_wire_format() {
        let body = TokenChargeBody {
            token: "tk_1",
            account_id: "acc",
            amount: RawValue::from_string(format!("{:.2}", Decimal::new(139000, 2))).unwrap(),
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
    fn answers_map_to_outcomes() {
        let decline: Envelope = serde_json::from_str(r#"{"Success":false,"Message":null,"Model":{"TransactionId":7,"ReasonCode":5051,"Reason":"InsufficientFunds","CardHolderMessage":"Недостаточно средств"}}"#).unwrap();
        assert_eq!(
            decline_from(decline.model.as_ref().unwrap()),
            ChargeOutcome::Declined {
                transaction_id: Some("7".into()),
                reason_code: Some("5051".into()),
                reason: Some("InsufficientFunds".into())
            }
        );
    }
}
