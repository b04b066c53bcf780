//! The payment gateway port: what the billing core needs from a card acquirer,
//! in provider-neutral terms, and one adapter folder per provider
//! (`cloudpayments/{mod.rs, client.rs, wire.rs}`: the adapter, its HTTP calls, the
//! provider's own request/response/notification shapes).
//!
//! Three outcomes are never mixed (ARCHITECTURE.md "Ports"): the provider
//! **declined the customer's card** ([`ChargeOutcome::Declined`], soft or hard: the
//! only thing that moves a subscription through dunning), the provider **refused
//! our request** ([`GatewayError::Refused`]: credentials, a request it calls
//! malformed — an operational failure, retried and dead-lettered), and the outcome
//! is **unknown** ([`GatewayError::Unknown`]: reconcile before anything else).
//!
//! Notifications are verified by the adapter (fail closed: a missing secret or
//! signature is a refusal) and turned into a [`NotificationEvent`]; the HTTP route
//! passes only the raw bytes and headers.

pub mod cloudpayments;
pub mod registry;
pub mod traced;
pub mod yookassa;

use async_trait::async_trait;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::money::Money;

/// A call to a payment provider that did not give a usable answer.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The request may or may not have reached the provider (timeout, 5xx, broken
    /// connection): the outcome is unknown and must be reconciled, never retried blindly.
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// The provider refused the merchant's request itself — credentials refused
    /// (HTTP 401/403), a request it calls malformed, an unknown account. Nothing
    /// was charged or refunded: an operational failure to retry and show an
    /// operator, never a verdict on the customer's card.
    #[error("request refused: {0}")]
    Refused(String),
    /// The provider answered with something we cannot read.
    #[error("unreadable answer: {0}")]
    Protocol(String),
    /// No adapter serves the tenant's gateway kind (yet).
    #[error("{0}")]
    Unsupported(String),
}

/// Whether retrying the same card can help (SPEC §4: hard declines stop retries
/// and revoke the saved card).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclineClass {
    Soft,
    Hard,
}

/// The provider's verdict against the customer's card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decline {
    /// The declined transaction, when the provider made one.
    pub transaction_id: Option<String>,
    /// The provider's reason code (CloudPayments `ReasonCode`, e.g. `5051`).
    pub code: Option<String>,
    pub reason: Option<String>,
    pub class: DeclineClass,
}

/// What became of a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    Captured { transaction_id: String },
    Declined(Decline),
}

/// What the provider knows about one of our attempts (reconciliation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptLookup {
    /// Never seen: the same attempt may be sent (again).
    NotFound,
    /// The provider cannot look an attempt up by our id (YooKassa): sending the
    /// same request again under the same idempotency key is the lookup — it
    /// answers the first request's result, or carries it out if it never arrived.
    ResendToKnow,
    /// Still being processed (e.g. awaiting 3-D Secure): ask again later.
    InProgress,
    Done(ChargeOutcome),
}

/// A merchant-initiated charge of a saved payment method.
#[derive(Debug, Clone)]
pub struct ChargeRequest<'a> {
    /// Our attempt id: the provider's idempotency key and invoice id, so one
    /// attempt is never known to the provider under two ids.
    pub attempt_id: &'a str,
    /// The saved method (CloudPayments card token).
    pub method_token: &'a str,
    /// Our customer id (the provider's account id).
    pub customer_id: &'a str,
    pub amount: Money,
    pub description: &'a str,
    pub email: Option<&'a str>,
}

/// A refund of a captured payment, one execution try.
#[derive(Debug, Clone)]
pub struct RefundRequest<'a> {
    /// Our refund id (echoed back by the provider where it can carry it).
    pub refund_id: &'a str,
    /// The try's idempotency key `<refund id>-<try>`: re-sending it never refunds twice.
    pub idempotency_key: &'a str,
    /// The captured payment's transaction at the provider.
    pub payment_transaction_id: &'a str,
    pub amount: Money,
}

/// What became of a refund request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundOutcome {
    /// The refund transaction exists; its notification (or a lookup) closes it.
    Accepted { transaction_id: String },
    /// The provider refused to refund (e.g. more than is left of the payment).
    Refused { message: String },
}

/// A refund transaction's state at the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundLookup {
    NotFound,
    InProgress,
    Completed,
    Declined { reason: Option<String> },
}

/// How the product sends the customer to pay a pending payment
/// (`payment.confirmation` in API.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Confirmation {
    /// Parameters for the CloudPayments checkout widget (`cp.CloudPayments().pay`).
    /// The widget's own `recurrent` option is never passed: our scheduler renews.
    CloudpaymentsWidget {
        public_id: String,
        /// Our attempt id: CloudPayments echoes it as `InvoiceId`.
        invoice_id: String,
        /// Our customer id: echoed as `AccountId`.
        account_id: String,
        /// Decimal string with two decimals.
        amount: String,
        currency: String,
        description: String,
        email: String,
    },
    /// The token for YooKassa's embedded checkout widget
    /// (`new YooMoneyCheckoutWidget({confirmation_token, return_url})`): the
    /// payment is already created at YooKassa under our attempt id.
    YookassaWidget {
        confirmation_token: String,
        /// YooKassa's payment id.
        payment_id: String,
    },
}

/// A customer-present payment to start at the provider.
#[derive(Debug, Clone)]
pub struct CheckoutRequest<'a> {
    /// Our attempt id (the invoice id the provider echoes back).
    pub attempt_id: &'a str,
    pub customer_id: &'a str,
    pub amount: Money,
    pub description: &'a str,
    pub email: &'a str,
}

/// A provider callback as it arrived: the path segments after the tenant, every
/// header (names in lower case), the raw body, and the peer address.
#[derive(Debug, Clone)]
pub struct RawNotification<'a> {
    pub path: &'a str,
    pub headers: Vec<(String, String)>,
    pub body: &'a [u8],
    /// The peer address, for providers that authenticate callbacks by their
    /// published IP ranges (YooKassa, GATEWAYS.md §2) rather than a signature.
    pub source_ip: Option<std::net::IpAddr>,
}

/// The value of header `name` (case-insensitive) among `headers` (name, value).
pub fn header_in<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

impl RawNotification<'_> {
    /// A header's value by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }

    /// The `Content-Type` header, if sent.
    pub fn content_type(&self) -> Option<&str> {
        self.header("content-type")
    }
}

/// Why a notification was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum NotificationError {
    /// Not from the provider (missing or wrong signature, unknown source): 401.
    #[error("{0}")]
    Unauthenticated(String),
    /// No such notification kind at this path: 404.
    #[error("{0}")]
    UnknownKind(String),
    /// Signed but unreadable: 422.
    #[error("{0}")]
    Malformed(String),
    /// Authentic-looking, but the provider does not know the object it names
    /// (YooKassa's re-fetch answered 404): stored under `key` for the operator
    /// and refused with 422.
    #[error("{detail}")]
    UnknownObject {
        /// What the refusal is stored under (`<event>:<object id>`).
        key: String,
        /// Why, for the operator and the answer.
        detail: String,
    },
    /// The provider could not be asked to confirm it: 503, so it is delivered again.
    #[error("{0}")]
    Unavailable(String),
}

/// Card details reported with a capture.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CardDetails {
    /// The saved method to charge later.
    pub token: Option<String>,
    pub first_six: Option<String>,
    pub last_four: Option<String>,
    pub card_type: Option<String>,
    pub exp: Option<String>,
}

/// A payment transaction as a notification reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentReport {
    pub transaction_id: String,
    /// Our attempt id, when the provider echoes it.
    pub invoice_id: Option<String>,
    /// Our customer id, when echoed.
    pub account_id: Option<String>,
    pub amount: Option<Decimal>,
    pub currency: Option<String>,
    pub card: CardDetails,
}

/// A refund transaction as a notification reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundReport {
    pub transaction_id: String,
    /// The refunded payment's transaction.
    pub payment_transaction_id: Option<String>,
    pub amount: Option<Decimal>,
    /// Our refund id, when the provider carried it back.
    pub refund_id: Option<Uuid>,
}

/// What a verified notification says, provider-neutrally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationEvent {
    /// The provider asks whether it may accept this payment (CloudPayments Check).
    Check(PaymentReport),
    /// Money was captured.
    Captured(PaymentReport),
    /// The customer's card was declined.
    Declined(PaymentReport, Decline),
    /// A refund was made (by us or in the provider's dashboard).
    Refunded(RefundReport),
    /// Stored and acknowledged, nothing else (recurrent-plan updates, ...).
    Recorded,
}

/// A verified notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// What the provider calls it (`pay`, `fail`, ...), stored with the raw body.
    pub kind: String,
    /// The key a provider's retries share: the same key twice changes nothing.
    pub dedup_key: String,
    pub event: NotificationEvent,
}

/// The merchant's verdict on a Check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckVerdict {
    Accept,
    WrongInvoice,
    WrongAccount,
    WrongAmount,
    NotAcceptable,
    Expired,
}

impl CheckVerdict {
    /// A stable name for logs and stored outcomes.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckVerdict::Accept => "accept",
            CheckVerdict::WrongInvoice => "wrong_invoice",
            CheckVerdict::WrongAccount => "wrong_account",
            CheckVerdict::WrongAmount => "wrong_amount",
            CheckVerdict::NotAcceptable => "not_acceptable",
            CheckVerdict::Expired => "expired",
        }
    }
}

/// What the service answers a notification with, before the provider's encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationReply {
    Accepted,
    Check(CheckVerdict),
}

/// A card acquirer bound to one merchant account (a tenant's gateway settings).
///
/// Errors: [`GatewayError::Unknown`] when the outcome may have happened,
/// [`GatewayError::Refused`] when the provider refused our own request,
/// [`GatewayError::Protocol`] for an unreadable answer.
#[async_trait]
pub trait PaymentGateway: Send + Sync {
    /// The provider's name (`cloudpayments`), stored with payments and notifications.
    fn provider(&self) -> &'static str;

    /// Charges a saved method, idempotently by `req.attempt_id`.
    async fn charge(&self, req: &ChargeRequest<'_>) -> Result<ChargeOutcome, GatewayError>;

    /// What the provider knows about attempt `attempt_id` (reconciliation).
    async fn find_attempt(&self, attempt_id: &str) -> Result<AttemptLookup, GatewayError>;

    /// Refunds (part of) a capture, idempotently by `req.idempotency_key`.
    async fn refund(&self, req: &RefundRequest<'_>) -> Result<RefundOutcome, GatewayError>;

    /// The state of refund transaction `transaction_id` (reconciliation).
    async fn find_refund(&self, transaction_id: &str) -> Result<RefundLookup, GatewayError>;

    /// How the customer pays a new card payment (the checkout widget's parameters).
    async fn checkout(&self, req: &CheckoutRequest<'_>) -> Result<Confirmation, GatewayError>;

    /// Verifies a callback (fail closed) and reads it.
    async fn notification(&self, raw: &RawNotification<'_>) -> Result<Notification, NotificationError>;

    /// Carries out the merchant's verdict on a [`NotificationEvent::Check`] after
    /// it is committed, for providers where the verdict is a call rather than the
    /// reply (YooKassa: capture a `waiting_for_capture` payment, or cancel it).
    /// Providers that take the verdict in the reply (CloudPayments) do nothing.
    async fn settle_check(&self, _report: &PaymentReport, _verdict: CheckVerdict) -> Result<(), GatewayError> {
        Ok(())
    }

    /// The provider's expected answer to a notification: HTTP status and JSON body.
    fn reply(&self, reply: NotificationReply) -> (u16, serde_json::Value);
}
