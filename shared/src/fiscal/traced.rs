//! Every fiscal registrar call in a span of its own (`fiscal.register`,
//! `fiscal.report`): a decorator `Registrars` puts around each adapter
//! (`crate::trace`).

use async_trait::async_trait;

use super::{FiscalError, FiscalRegistrar, Registered, RegistrationRequest, ReportState};
use crate::trace::provider_call as traced;

/// `inner` with its calls traced.
pub struct Traced(pub Box<dyn FiscalRegistrar>);

#[async_trait]
impl FiscalRegistrar for Traced {
    fn provider(&self) -> &'static str {
        self.0.provider()
    }

    async fn register(&self, req: &RegistrationRequest<'_>) -> Result<Registered, FiscalError> {
        traced(self.provider(), "fiscal.register", self.0.register(req)).await
    }

    async fn report(&self, provider_id: &str) -> Result<ReportState, FiscalError> {
        traced(self.provider(), "fiscal.report", self.0.report(provider_id)).await
    }
}
