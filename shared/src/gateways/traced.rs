//! Every payment gateway call in a span of its own (`gateway.<operation>`, with
//! the provider and, on failure, the error): a decorator the registry puts around
//! each adapter, so a trace shows what was asked of the provider and how long it
//! took (`crate::trace`).

use crate::trace::provider_call as traced;
use async_trait::async_trait;

use super::{
    AttemptLookup, ChargeOutcome, ChargeRequest, CheckVerdict, CheckoutRequest, Confirmation, GatewayError,
    Notification, NotificationError, NotificationReply, PaymentGateway, PaymentReport, RawNotification, RefundLookup,
    RefundOutcome, RefundRequest,
};

/// `inner` with its calls traced.
pub struct Traced(pub Box<dyn PaymentGateway>);

#[async_trait]
impl PaymentGateway for Traced {
    fn provider(&self) -> &'static str {
        self.0.provider()
    }

    async fn charge(&self, req: &ChargeRequest<'_>) -> Result<ChargeOutcome, GatewayError> {
        traced(self.provider(), "gateway.charge", self.0.charge(req)).await
    }

    async fn find_attempt(&self, attempt_id: &str) -> Result<AttemptLookup, GatewayError> {
        traced(self.provider(), "gateway.find_attempt", self.0.find_attempt(attempt_id)).await
    }

    async fn refund(&self, req: &RefundRequest<'_>) -> Result<RefundOutcome, GatewayError> {
        traced(self.provider(), "gateway.refund", self.0.refund(req)).await
    }

    async fn find_refund(&self, transaction_id: &str) -> Result<RefundLookup, GatewayError> {
        traced(self.provider(), "gateway.find_refund", self.0.find_refund(transaction_id)).await
    }

    async fn checkout(&self, req: &CheckoutRequest<'_>) -> Result<Confirmation, GatewayError> {
        traced(self.provider(), "gateway.checkout", self.0.checkout(req)).await
    }

    async fn notification(&self, raw: &RawNotification<'_>) -> Result<Notification, NotificationError> {
        traced(self.provider(), "gateway.notification", self.0.notification(raw)).await
    }

    async fn settle_check(&self, report: &PaymentReport, verdict: CheckVerdict) -> Result<(), GatewayError> {
        traced(self.provider(), "gateway.settle_check", self.0.settle_check(report, verdict)).await
    }

    fn reply(&self, reply: NotificationReply) -> (u16, serde_json::Value) {
        self.0.reply(reply)
    }
}
