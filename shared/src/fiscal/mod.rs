//! The fiscal registrar port: registering 54-FZ receipts with an online cash
//! register provider (SPEC §7), in provider-neutral terms, and one adapter folder
//! per provider (`atol/{mod.rs, wire.rs}`: ATOL Online v5).
//!
//! The receipt document is built by the domain (`domain::receipt`); a registrar
//! sends it under the attempt's `external_id` (re-sending the same one is
//! idempotent at the provider) and reports what became of it. Errors separate
//! three things: the **document** was refused (only corrected data helps), the
//! merchant's **configuration** was refused (credentials, group, endpoint: fix
//! the settings and replay), or the outcome is **not known yet** (try later).

pub mod atol;
pub mod traced;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::receipt::{FiscalAttributes, ReceiptDocument};
use crate::domain::states::ReceiptKind;
use crate::domain::tenant::FiscalSettings;

/// One registration attempt of a receipt.
#[derive(Debug, Clone, Copy)]
pub struct RegistrationRequest<'a> {
    /// `<receipt id>-<attempt>`: the same attempt is never registered twice.
    pub external_id: &'a str,
    /// When the document is sent (the provider's timestamp; real time).
    pub at: DateTime<Utc>,
    /// Where the provider may call back when the report is ready (only a hint).
    pub callback_url: Option<&'a str>,
    /// Income (приход) or income refund (возврат прихода).
    pub kind: ReceiptKind,
    pub document: &'a ReceiptDocument,
}

/// The provider took the attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// A new document, known to the provider as `provider_id`.
    New { provider_id: String },
    /// This `external_id` was registered before (a re-send); poll its report.
    AlreadyExists { provider_id: Option<String> },
}

/// A provider's error object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: i64,
    pub text: String,
    /// The provider's error type (`system`, `timeout`, ...), or `http`/`client`.
    pub kind: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "error {} ({}): {}", self.code, self.kind, self.text)
    }
}

/// What the provider's report says about an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportState {
    /// Not processed yet: ask again later.
    Pending,
    Registered(FiscalAttributes),
    /// The attempt failed. `document_refused`: the document itself is wrong, a
    /// new attempt would fail alike; otherwise a new attempt may be made.
    Failed {
        failure: Failure,
        document_refused: bool,
    },
}

/// A call that did not register or report.
#[derive(Debug, thiserror::Error)]
pub enum FiscalError {
    /// The document (or the request built from it) was refused.
    #[error("document refused: {0}")]
    DocumentRefused(Failure),
    /// The merchant's configuration was refused (credentials, group, protocol,
    /// endpoint): nothing was registered.
    #[error("configuration refused: {0}")]
    Configuration(String),
    /// Timeout, 5xx, unreadable answer: the same attempt is safe to re-send later.
    #[error("outcome unknown: {0}")]
    Retryable(String),
}

/// An online cash register provider bound to one merchant account.
#[async_trait]
pub trait FiscalRegistrar: Send + Sync {
    /// The provider's name (`atol`), for logs and metrics.
    fn provider(&self) -> &'static str;

    /// Sends an attempt (idempotent by its `external_id`).
    async fn register(&self, req: &RegistrationRequest<'_>) -> Result<Registered, FiscalError>;

    /// The report of a registered document.
    async fn report(&self, provider_id: &str) -> Result<ReportState, FiscalError>;
}

/// Builds a registrar bound to one merchant's fiscal settings.
pub trait RegistrarFactory: Send + Sync {
    fn build(&self, settings: &FiscalSettings) -> Box<dyn FiscalRegistrar>;
}

/// The fiscal registrars this process can talk to: ATOL Online (the only
/// provider a tenant's `fiscal.provider` names today), or a plugged factory.
#[derive(Clone)]
pub struct Registrars {
    atol: atol::Client,
    plugged: Option<Arc<dyn RegistrarFactory>>,
}

impl Registrars {
    /// Provider calls give up after `timeout` (then the outcome is unknown).
    pub fn new(timeout: Duration) -> Result<Self, FiscalError> {
        Ok(Registrars { atol: atol::Client::new(timeout)?, plugged: None })
    }

    /// Serves every tenant with `factory` instead (tests, another provider).
    pub fn plug(mut self, factory: Arc<dyn RegistrarFactory>) -> Self {
        self.plugged = Some(factory);
        self
    }

    /// The registrar for a tenant's fiscal settings, its calls traced.
    pub fn for_settings(&self, settings: &FiscalSettings) -> Box<dyn FiscalRegistrar> {
        let inner: Box<dyn FiscalRegistrar> = match &self.plugged {
            Some(factory) => factory.build(settings),
            None => Box::new(atol::Atol::new(self.atol.clone(), atol::AtolAccount::from_provider(&settings.provider))),
        };
        Box::new(traced::Traced(inner))
    }
}
