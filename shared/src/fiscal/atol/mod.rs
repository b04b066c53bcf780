//! ATOL Online v5 adapter of the fiscal registrar port (GATEWAYS.md §4):
//! `getToken`, `{group_code}/{sell|sell_refund}` and `{group_code}/report/{uuid}`.
//!
//! The token is cached per (base URL, login, group) and fetched again once when a call
//! answers error 10 or 11. Registration is idempotent by `external_id` (a re-send
//! is answered 33 and polled). Report errors 13 and 32 are the document's fault
//! (a new attempt would fail alike); other failures allow a new attempt.

pub mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;

use self::wire::{
    Accepted, Answer, AtolError, AtolFailure, Document, Operation, Report, ReportStatus, Service, accepted, classify,
    format_timestamp, read, report_from,
};
use super::{Failure, FiscalError, FiscalRegistrar, Registered, RegistrationRequest, ReportState};
use crate::domain::secret::Secret;
use crate::domain::states::ReceiptKind;
use crate::domain::tenant::FiscalProvider;

/// ATOL Online v5 production base; a tenant's `fiscal.provider.api_url` overrides it.
pub const DEFAULT_API_URL: &str = "https://online.atol.ru/possystem/v5/";
const JSON_UTF8: &str = "application/json; charset=utf-8";
/// Report errors that say the document itself is wrong: a new attempt would fail alike.
const DOCUMENT_ERRORS: [i64; 2] = [13, 32];

/// The ATOL account (cash register group) a call is made for.
#[derive(Debug, Clone)]
pub struct AtolAccount {
    pub login: String,
    pub password: Secret,
    pub group_code: String,
    pub base_url: String,
}

impl AtolAccount {
    /// The account of a tenant's `fiscal.provider` settings.
    pub fn from_provider(p: &FiscalProvider) -> AtolAccount {
        AtolAccount {
            login: p.login.clone(),
            password: p.password.clone(),
            group_code: p.group_code.clone(),
            base_url: p.api_url.clone().unwrap_or_else(|| DEFAULT_API_URL.to_owned()),
        }
    }

    fn base(&self) -> &str {
        self.base_url.trim_end_matches('/')
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base())
    }
}

/// What a token is cached by: (base URL, login, group code).
type TokenKey = (String, String, String);

/// The ATOL Online HTTP client; clones share the connection pool and the token
/// cache (per base URL and login).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    tokens: Arc<Mutex<HashMap<TokenKey, Secret>>>,
}

impl Client {
    /// An HTTP client whose calls give up after `timeout`; errors only when TLS
    /// cannot be set up.
    pub fn new(timeout: Duration) -> Result<Client, FiscalError> {
        let http =
            crate::provider_http::client(timeout).map_err(|e| FiscalError::Retryable(format!("http client: {e}")))?;
        Ok(Client { http, tokens: Arc::new(Mutex::new(HashMap::new())) })
    }

    fn cache(&self) -> MutexGuard<'_, HashMap<TokenKey, Secret>> {
        self.tokens.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Tokens are cached per endpoint, login and group: ATOL refuses a token for a
    /// group its login does not serve (error 20).
    fn key(account: &AtolAccount) -> TokenKey {
        (account.base().to_owned(), account.login.clone(), account.group_code.clone())
    }

    async fn token(&self, account: &AtolAccount) -> Result<Secret, AtolError> {
        if let Some(token) = self.cache().get(&Self::key(account)) {
            return Ok(token.clone());
        }
        let body = serde_json::json!({"login": account.login, "pass": account.password.expose()}).to_string();
        let res = self
            .http
            .post(account.url("getToken"))
            .header(CONTENT_TYPE, JSON_UTF8)
            .body(body)
            .send()
            .await
            .map_err(|e| AtolError::Unknown(format!("getToken: {e}")))?;
        let (status, a) = read("getToken", res).await?;
        match (a.error, a.token) {
            (None, Some(token)) if status.is_success() && !token.is_blank() => {
                self.cache().insert(Self::key(account), token.clone());
                Ok(token)
            }
            (Some(e), _) => Err(match classify("getToken", status, &e) {
                AtolError::Rejected(f) => AtolError::Configuration(format!("getToken: error {}: {}", f.code, f.text)),
                other => other,
            }),
            _ => Err(AtolError::Unknown(format!("getToken: HTTP {status} without a token"))),
        }
    }

    /// Sends a call with the cached token; on errors 10/11 gets a new token and
    /// repeats the call once.
    async fn authorized<F>(
        &self,
        account: &AtolAccount,
        what: &str,
        build: F,
    ) -> Result<(StatusCode, Answer), AtolError>
    where
        F: Fn(&str) -> reqwest::RequestBuilder,
    {
        let mut renewed = false;
        loop {
            let token = self.token(account).await?;
            let res = build(token.expose()).send().await.map_err(|e| AtolError::Unknown(format!("{what}: {e}")))?;
            let (status, a) = read(what, res).await?;
            if !matches!(a.error.as_ref().and_then(|e| e.code), Some(10 | 11)) {
                return Ok((status, a));
            }
            {
                let mut cache = self.cache();
                if cache.get(&Self::key(account)) == Some(&token) {
                    cache.remove(&Self::key(account));
                }
            }
            if renewed {
                return Err(classify(what, status, &a.error.unwrap_or_default()));
            }
            renewed = true;
        }
    }

    /// `POST {base}/{group_code}/{sell|sell_refund}`.
    pub async fn register(&self, account: &AtolAccount, op: Operation, doc: &Document) -> Result<Accepted, AtolError> {
        let body = serde_json::to_vec(doc).map_err(|e| {
            AtolError::Rejected(AtolFailure { code: -1, text: format!("serializing: {e}"), kind: "client".into() })
        })?;
        let url = account.url(&format!("{}/{}", account.group_code, op.as_str()));
        let (status, a) = self
            .authorized(account, "register", |token| {
                self.http.post(&url).header("Token", token).header(CONTENT_TYPE, JSON_UTF8).body(body.clone())
            })
            .await?;
        accepted(status, a)
    }

    /// `GET {base}/{group_code}/report/{uuid}`; error 34 (not processed yet) is `Wait`.
    pub async fn report(&self, account: &AtolAccount, uuid: &str) -> Result<Report, AtolError> {
        let url = account.url(&format!("{}/report/{uuid}", account.group_code));
        let (status, a) =
            self.authorized(account, "report", |token| self.http.get(&url).header("Token", token)).await?;
        report_from(uuid, status, a)
    }
}

/// The adapter: one ATOL account over the shared client.
pub struct Atol {
    client: Client,
    account: AtolAccount,
}

impl Atol {
    /// The registrar for one ATOL account, over a shared client.
    pub fn new(client: Client, account: AtolAccount) -> Self {
        Atol { client, account }
    }
}

fn failure(f: AtolFailure) -> Failure {
    Failure { code: f.code, text: f.text, kind: f.kind }
}

impl From<AtolError> for FiscalError {
    fn from(e: AtolError) -> Self {
        match e {
            AtolError::Unknown(why) => FiscalError::Retryable(why),
            AtolError::Rejected(f) => FiscalError::DocumentRefused(failure(f)),
            AtolError::Configuration(why) => FiscalError::Configuration(why),
        }
    }
}

#[async_trait]
impl FiscalRegistrar for Atol {
    fn provider(&self) -> &'static str {
        "atol"
    }

    async fn register(&self, req: &RegistrationRequest<'_>) -> Result<Registered, FiscalError> {
        let op = match req.kind {
            ReceiptKind::Income => Operation::Sell,
            ReceiptKind::IncomeRefund => Operation::SellRefund,
        };
        let doc = Document {
            external_id: req.external_id.to_owned(),
            timestamp: format_timestamp(req.at),
            service: req.callback_url.map(|u| Service { callback_url: u.to_owned() }),
            receipt: req.document.clone(),
        };
        Ok(match self.client.register(&self.account, op, &doc).await? {
            Accepted::New { uuid } => Registered::New { provider_id: uuid },
            Accepted::AlreadyExists { uuid } => Registered::AlreadyExists { provider_id: uuid },
        })
    }

    async fn report(&self, provider_id: &str) -> Result<ReportState, FiscalError> {
        Ok(match self.client.report(&self.account, provider_id).await?.status {
            ReportStatus::Wait => ReportState::Pending,
            ReportStatus::Done(attributes) => ReportState::Registered(attributes),
            ReportStatus::Fail(f) => {
                let document_refused = DOCUMENT_ERRORS.contains(&f.code);
                ReportState::Failed { failure: failure(f), document_refused }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_join_urls_with_or_without_a_slash() {
        let p = FiscalProvider { login: "l".into(), password: Secret::new("p"), group_code: "g".into(), api_url: None };
        let a = AtolAccount::from_provider(&p);
        assert_eq!(a.url("getToken"), "https://online.atol.ru/possystem/v5/getToken");
        let b = AtolAccount { base_url: "http://sim/possystem/v5".into(), ..a };
        assert_eq!(b.url("g/sell"), "http://sim/possystem/v5/g/sell");
    }
}
