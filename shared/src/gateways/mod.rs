//! Payment gateway adapters. Each provider lives in its own folder with a `wire`
//! module holding the provider's own request/response/notification shapes and their
//! conversion to domain outcomes. Webhook verification never passes by default: a
//! missing secret or signature is a refusal.

pub mod atol;
pub mod cloudpayments;

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
}
