//! Every payment gateway call in a span of its own (`gateway.<operation>`, with
//! the provider and, on failure, the error), and at most a set number of calls to
//! the provider in flight per process: a decorator the registry puts around each
//! adapter, so a trace shows what was asked of the provider and how long it took
//! (`crate::trace`), and a wave of charges holds no more open requests (their
//! connections and buffers) than the bound, whatever the consumers' prefetch.

use std::sync::Arc;

use crate::trace::provider_call;
use async_trait::async_trait;
use tokio::sync::Semaphore;

use super::{
    AttemptLookup, ChargeOutcome, ChargeRequest, CheckVerdict, CheckoutRequest, Confirmation, GatewayError,
    Notification, NotificationError, NotificationReply, PaymentGateway, PaymentReport, RawNotification, RefundLookup,
    RefundOutcome, RefundRequest,
};

/// `inner` with its calls traced, each call to the provider holding one of
/// `calls`' permits while it runs. Reading a notification takes none: it answers a
/// provider waiting on us (CloudPayments' is a local signature check), and must not
/// queue behind slow checkouts.
pub(crate) struct Traced {
    /// The adapter itself.
    pub(crate) inner: Box<dyn PaymentGateway>,
    /// The registry's permits, shared by every adapter of the process.
    pub(crate) calls: Arc<Semaphore>,
}

impl Traced {
    /// Runs `call` once a permit is free, in its span (the wait is not in the
    /// span: it shows the provider's time). The registry never closes the
    /// semaphore; were it closed, the call would run unbounded rather than fail.
    async fn traced<T, E: std::fmt::Display>(
        &self,
        name: &'static str,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let _permit = self.calls.acquire().await.ok();
        provider_call(self.provider(), name, call).await
    }
}

#[async_trait]
impl PaymentGateway for Traced {
    fn provider(&self) -> &'static str {
        self.inner.provider()
    }

    async fn charge(&self, req: &ChargeRequest<'_>) -> Result<ChargeOutcome, GatewayError> {
        self.traced("gateway.charge", self.inner.charge(req)).await
    }

    async fn find_attempt(&self, attempt_id: &str) -> Result<AttemptLookup, GatewayError> {
        self.traced("gateway.find_attempt", self.inner.find_attempt(attempt_id)).await
    }

    async fn refund(&self, req: &RefundRequest<'_>) -> Result<RefundOutcome, GatewayError> {
        self.traced("gateway.refund", self.inner.refund(req)).await
    }

    async fn find_refund(&self, transaction_id: &str) -> Result<RefundLookup, GatewayError> {
        self.traced("gateway.find_refund", self.inner.find_refund(transaction_id)).await
    }

    async fn checkout(&self, req: &CheckoutRequest<'_>) -> Result<Confirmation, GatewayError> {
        self.traced("gateway.checkout", self.inner.checkout(req)).await
    }

    async fn notification(&self, raw: &RawNotification<'_>) -> Result<Notification, NotificationError> {
        provider_call(self.provider(), "gateway.notification", self.inner.notification(raw)).await
    }

    async fn settle_check(&self, report: &PaymentReport, verdict: CheckVerdict) -> Result<(), GatewayError> {
        self.traced("gateway.settle_check", self.inner.settle_check(report, verdict)).await
    }

    fn reply(&self, reply: NotificationReply) -> (u16, serde_json::Value) {
        self.inner.reply(reply)
    }
}
