//! CloudPayments API calls (GATEWAYS.md §1.1, §1.3, §1.4): `payments/tokens/charge`
//! for saved cards, `payments/find` for reconciliation, `payments/refund` and
//! `payments/get` (a refund's state). HTTP Basic auth with the public id and API
//! secret, JSON bodies, `X-Request-ID` for idempotency.
//!
//! A timeout, a 5xx, 408 or 429, a broken connection or an unreadable 200 is
//! [`GatewayError::Unknown`]: the call may have happened, and the caller reconciles.
//! HTTP 401/403, any other 4xx, and `Success: false` without a transaction are the
//! provider refusing our request ([`GatewayError::Refused`]); `Success: false` with
//! a transaction is a decline of the card.

use reqwest::StatusCode;
use serde::Serialize;

use super::wire::{
    Envelope, FindBody, GetBody, Model, RefundBody, RefundData, TokenChargeBody, amount_number, transaction_number,
};
use super::{Account, decline_class};
use crate::gateways::{
    AttemptLookup, ChargeOutcome, ChargeRequest, Decline, GatewayError, RefundLookup, RefundOutcome, RefundRequest,
};
use crate::provider_http::outcome_unknown;

/// The HTTP side of the adapter; clones share the connection pool.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
}

fn decline_from(model: &Model) -> Decline {
    let code = model.reason_code.map(|c| c.to_string());
    Decline {
        transaction_id: model.transaction_id.map(|t| t.to_string()),
        class: decline_class(code.as_deref()),
        code,
        reason: model.reason.clone().or_else(|| model.card_holder_message.clone()),
    }
}

impl Client {
    /// The adapter's calls over `http` (a [`crate::provider_http::client`], whose
    /// timeout makes an outcome unknown).
    pub fn new(http: reqwest::Client) -> Self {
        Client { http }
    }

    async fn call<B: Serialize>(
        &self,
        account: &Account,
        method: &str,
        request_id: Option<&str>,
        body: &B,
    ) -> Result<Envelope, GatewayError> {
        let mut req = self
            .http
            .post(account.url(method))
            .basic_auth(&account.public_id, Some(account.api_secret.expose()))
            .json(body);
        if let Some(id) = request_id {
            req = req.header("X-Request-ID", id);
        }
        let res = req.send().await.map_err(|e| GatewayError::Unknown(format!("{method}: {e}")))?;
        let status = res.status();
        if outcome_unknown(status) {
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

    /// `payments/tokens/charge`: one-stage, merchant-initiated (`TrInitiatorCode=0`),
    /// scheduled (`PaymentScheduled=1`); `InvoiceId` and `X-Request-ID` are the attempt id.
    pub async fn charge_token(
        &self,
        account: &Account,
        req: &ChargeRequest<'_>,
    ) -> Result<ChargeOutcome, GatewayError> {
        let body = TokenChargeBody {
            token: req.method_token,
            account_id: req.customer_id,
            amount: amount_number(req.amount.amount()).map_err(GatewayError::Protocol)?,
            currency: req.amount.currency().code(),
            invoice_id: req.attempt_id,
            description: req.description,
            email: req.email,
            tr_initiator_code: 0,
            payment_scheduled: 1,
        };
        let env = self.call(account, "payments/tokens/charge", Some(req.attempt_id), &body).await?;
        match (env.success, env.model) {
            (true, Some(m)) => match m.transaction_id {
                Some(tx) => Ok(ChargeOutcome::Captured { transaction_id: tx.to_string() }),
                None => Err(GatewayError::Unknown("charge succeeded without a TransactionId".into())),
            },
            (false, Some(m)) => Ok(ChargeOutcome::Declined(decline_from(&m))),
            (true, None) => Err(GatewayError::Unknown("charge answer without a model".into())),
            (false, None) => Err(GatewayError::Refused(env.message.unwrap_or_else(|| "request refused".into()))),
        }
    }

    /// `payments/find` by our InvoiceId.
    pub async fn find(&self, account: &Account, invoice_id: &str) -> Result<AttemptLookup, GatewayError> {
        let env = self.call(account, "payments/find", None, &FindBody { invoice_id }).await?;
        let Some(m) = env.model.filter(|_| env.success) else {
            return Ok(AttemptLookup::NotFound);
        };
        Ok(match m.status.as_deref() {
            Some("Completed") | Some("Authorized") => match m.transaction_id {
                Some(tx) => AttemptLookup::Done(ChargeOutcome::Captured { transaction_id: tx.to_string() }),
                None => AttemptLookup::InProgress,
            },
            Some("Declined") | Some("Cancelled") => AttemptLookup::Done(ChargeOutcome::Declined(decline_from(&m))),
            // Anything else (awaiting 3-D Secure, an unknown status): ask again later.
            _ => AttemptLookup::InProgress,
        })
    }

    /// `payments/refund` of (part of) a captured payment, idempotent by `X-Request-ID`.
    pub async fn refund(&self, account: &Account, req: &RefundRequest<'_>) -> Result<RefundOutcome, GatewayError> {
        let body = RefundBody {
            transaction_id: transaction_number(req.payment_transaction_id).map_err(GatewayError::Refused)?,
            amount: amount_number(req.amount.amount()).map_err(GatewayError::Protocol)?,
            json_data: RefundData { refund_id: req.refund_id },
        };
        let env = self.call(account, "payments/refund", Some(req.idempotency_key), &body).await?;
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
    ) -> Result<RefundLookup, GatewayError> {
        let body = GetBody { transaction_id: transaction_number(transaction_id).map_err(GatewayError::Refused)? };
        let env = self.call(account, "payments/get", None, &body).await?;
        let Some(m) = env.model.filter(|_| env.success) else {
            return Ok(RefundLookup::NotFound);
        };
        Ok(match m.status.as_deref() {
            Some("Completed") => RefundLookup::Completed,
            Some("Declined") | Some("Cancelled") => {
                RefundLookup::Declined { reason: m.reason.or(m.card_holder_message) }
            }
            _ => RefundLookup::InProgress,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateways::DeclineClass;

    #[test]
    fn answers_map_to_outcomes() {
        let decline: Envelope = serde_json::from_str(r#"{"Success":false,"Message":null,"Model":{"TransactionId":7,"ReasonCode":5051,"Reason":"InsufficientFunds","CardHolderMessage":"Недостаточно средств"}}"#).unwrap();
        assert_eq!(
            decline_from(decline.model.as_ref().unwrap()),
            Decline {
                transaction_id: Some("7".into()),
                code: Some("5051".into()),
                reason: Some("InsufficientFunds".into()),
                class: DeclineClass::Soft,
            }
        );
        let expired: Envelope =
            serde_json::from_str(r#"{"Success":false,"Model":{"TransactionId":8,"ReasonCode":5054}}"#).unwrap();
        assert_eq!(decline_from(expired.model.as_ref().unwrap()).class, DeclineClass::Hard);
    }
}
