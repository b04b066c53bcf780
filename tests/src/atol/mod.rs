//! ATOL Online API v5 simulator (GATEWAYS.md §4).
//!
//! * `POST /possystem/v5/getToken` issues tokens for registered accounts.
//! * `POST /possystem/v5/{group_code}/{sell|sell_refund}` (header `Token`) validates
//!   the document strictly (amounts read exactly from the JSON text), refuses a
//!   repeated `external_id` of a live document with error 33 and its uuid, and
//!   processes accepted documents after `processing_ms`: `done` with fiscal
//!   attributes, then a POST of the report to `service.callback_url`.
//! * `GET /possystem/v5/{group_code}/report/{uuid}` answers the report.
//! * Scripting per accepted document ([`AtolScript`]), token expiry, release of held
//!   documents; HTTP control under `/sim/atol/...` for the demo.

mod api;
mod control;
mod validate;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, MutexGuard};

use actix_web::http::StatusCode;
use actix_web::web::{self, Data};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// What happens to the next accepted document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AtolScript {
    Done,
    /// Ends `fail` with error `{code: 1, type: "timeout"}`.
    FailTimeout,
    /// The operation call answers 400 with error 32 (recorded as failed).
    Reject32,
    /// The operation call answers HTTP 500; nothing is recorded.
    ServerError,
    /// Recorded and processed, but the answer comes after `slow_ms`.
    Slow,
    /// Stays `wait` until [`AtolSim::release_all`].
    NeverProcess,
}

/// An ATOL `error` object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AtolSimError {
    pub error_id: String,
    pub code: i64,
    pub text: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// The fiscal attributes of a done document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AtolPayload {
    #[serde(serialize_with = "money")]
    pub total: Decimal,
    pub fns_site: String,
    pub fn_number: String,
    pub shift_number: i64,
    pub receipt_datetime: String,
    pub fiscal_receipt_number: i64,
    pub fiscal_document_number: i64,
    pub ecr_registration_number: String,
    pub fiscal_document_attribute: i64,
    pub ofd_inn: String,
    pub ofd_receipt_url: String,
}

/// A document as the simulator keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct AtolDocument {
    pub uuid: String,
    pub group_code: String,
    pub op: String,
    pub external_id: String,
    /// `wait`, `done` or `fail`.
    pub status: String,
    /// The request body (numbers as f64: read amounts exactly from `total` etc.).
    pub request: Value,
    /// The request body as sent, byte for byte (amounts exactly as written).
    pub raw: String,
    pub total: Option<Decimal>,
    pub payload: Option<AtolPayload>,
    pub error: Option<AtolSimError>,
    pub callback_url: Option<String>,
    pub timestamp: String,
}

struct Account {
    password: String,
    group_code: String,
}

#[derive(Default)]
struct State {
    accounts: HashMap<String, Account>,
    /// token -> group code.
    tokens: HashMap<String, String>,
    expired: HashSet<String>,
    /// Every document, in the order received.
    docs: Vec<AtolDocument>,
    /// Index into `docs` by uuid.
    by_uuid: HashMap<String, usize>,
    /// Index into `docs` of the latest document of each (group code, external_id):
    /// the only one that may be live (a live one refuses a repeat before it is stored).
    by_external_id: HashMap<(String, String), usize>,
    scripts: VecDeque<AtolScript>,
    held: Vec<String>,
    processing_ms: u64,
    slow_ms: u64,
    token_requests: u64,
    operation_requests: u64,
    report_requests: u64,
    callbacks: Vec<(String, u16)>,
    fiscal_counter: i64,
}

impl State {
    /// Stores a received document (indexed: a run registers 100 000 of them).
    fn push_doc(&mut self, doc: AtolDocument) {
        let at = self.docs.len();
        self.by_uuid.insert(doc.uuid.clone(), at);
        self.by_external_id.insert((doc.group_code.clone(), doc.external_id.clone()), at);
        self.docs.push(doc);
    }

    fn doc(&self, uuid: &str) -> Option<&AtolDocument> {
        self.by_uuid.get(uuid).and_then(|at| self.docs.get(*at))
    }

    /// The live (not failed) document of `external_id` in `group`, if any.
    fn live_doc(&self, group: &str, external_id: &str) -> Option<&AtolDocument> {
        let at = self.by_external_id.get(&(group.to_owned(), external_id.to_owned()))?;
        self.docs.get(*at).filter(|d| d.status != "fail")
    }
}

/// A running simulator.
#[derive(Clone)]
pub struct AtolSim {
    /// `http://127.0.0.1:PORT/possystem/v5/`
    pub base_url: String,
    state: Arc<Mutex<State>>,
    http: reqwest::Client,
}

fn money<S: Serializer>(v: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    let text = format!("{:.2}", v.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero));
    RawValue::from_string(text).map_err(serde::ser::Error::custom)?.serialize(s)
}

/// Now in Moscow, `dd.mm.yyyy HH:MM:SS`.
fn now() -> String {
    (chrono::Utc::now() + chrono::TimeDelta::hours(3)).format("%d.%m.%Y %H:%M:%S").to_string()
}

fn error(code: i64, text: &str, kind: &str) -> AtolSimError {
    AtolSimError { error_id: uuid::Uuid::new_v4().to_string(), code, text: text.into(), kind: kind.into() }
}

fn refuse(status: StatusCode, code: i64, text: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({"error": error(code, text, "system"), "timestamp": now()}))
}

#[derive(Serialize)]
struct ReportBody<'a> {
    uuid: &'a str,
    status: &'a str,
    error: &'a Option<AtolSimError>,
    payload: &'a Option<AtolPayload>,
    group_code: &'a str,
    daemon_code: &'static str,
    device_code: &'static str,
    external_id: &'a str,
    callback_url: &'a str,
    timestamp: &'a str,
}

/// The report (and callback) body of a document.
fn report_json(d: &AtolDocument) -> String {
    let body = ReportBody {
        uuid: &d.uuid,
        status: &d.status,
        error: &d.error,
        payload: &d.payload,
        group_code: &d.group_code,
        daemon_code: "prod-agent-1",
        device_code: "KSR13.11-3-1",
        external_id: &d.external_id,
        callback_url: d.callback_url.as_deref().unwrap_or(""),
        timestamp: &d.timestamp,
    };
    serde_json::to_string(&body).unwrap_or_default()
}

impl AtolSim {
    /// Starts the simulator's HTTP server on `addr` (`127.0.0.1:0` for any port).
    pub fn start(addr: &str) -> std::io::Result<AtolSim> {
        let listener = TcpListener::bind(addr)?;
        let port = listener.local_addr()?.port();
        let sim = AtolSim {
            base_url: format!("http://127.0.0.1:{port}/possystem/v5/"),
            state: Arc::new(Mutex::new(State { processing_ms: 20, slow_ms: 3000, ..State::default() })),
            http: reqwest::Client::builder().no_proxy().build().map_err(std::io::Error::other)?,
        };
        let data = Data::new(sim.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/possystem/v5/getToken", web::post().to(api::http_token))
                .route("/possystem/v5/{group}/report/{uuid}", web::get().to(api::http_report))
                .route("/possystem/v5/{group}/{op}", web::post().to(api::http_operation))
                .route("/sim/atol/accounts", web::post().to(control::http_add_account))
                .route("/sim/atol/script", web::post().to(control::http_script))
                .route("/sim/atol/settings", web::post().to(control::http_settings))
                .route("/sim/atol/expire_tokens", web::post().to(control::http_expire))
                .route("/sim/atol/release", web::post().to(control::http_release))
                .route("/sim/atol/documents", web::get().to(control::http_documents))
        })
        .workers(1)
        .listen(listener)?
        .run();
        tokio::spawn(server);
        Ok(sim)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn add_account(&self, login: &str, password: &str, group_code: &str) {
        let account = Account { password: password.into(), group_code: group_code.into() };
        self.state().accounts.insert(login.into(), account);
    }

    /// Outcomes for the next accepted documents, in order (later ones: `Done`).
    pub fn script(&self, outcomes: &[AtolScript]) {
        self.state().scripts.extend(outcomes.iter().copied());
    }

    /// Every token issued so far now answers error 11.
    pub fn expire_tokens(&self) {
        let mut st = self.state();
        let issued: Vec<String> = st.tokens.keys().cloned().collect();
        st.expired.extend(issued);
    }

    pub fn set_processing_ms(&self, ms: u64) {
        self.state().processing_ms = ms;
    }

    pub fn set_slow_ms(&self, ms: u64) {
        self.state().slow_ms = ms;
    }

    /// Processes the documents held by `NeverProcess` (they become `done`).
    pub fn release_all(&self) {
        let held = std::mem::take(&mut self.state().held);
        for uuid in held {
            self.complete(&uuid, false);
        }
    }

    pub fn documents(&self) -> Vec<AtolDocument> {
        self.state().docs.clone()
    }

    /// The documents of one receipt (external_id `<receipt id>-<attempt>`), in the
    /// order received.
    pub fn documents_of(&self, receipt_id: &str) -> Vec<AtolDocument> {
        self.state().docs.iter().filter(|d| d.external_id.starts_with(receipt_id)).cloned().collect()
    }

    pub fn document(&self, uuid: &str) -> Option<AtolDocument> {
        self.state().doc(uuid).cloned()
    }

    /// Done documents whose `external_id` starts with `prefix`.
    pub fn done_for_prefix(&self, prefix: &str) -> usize {
        self.state().docs.iter().filter(|d| d.status == "done" && d.external_id.starts_with(prefix)).count()
    }

    pub fn token_requests(&self) -> u64 {
        self.state().token_requests
    }

    /// Operation (sell, sell_refund, ...) requests received, refused ones included.
    pub fn operation_requests(&self) -> u64 {
        self.state().operation_requests
    }

    /// Report reads received (`GET .../report/{uuid}`).
    pub fn report_requests(&self) -> u64 {
        self.state().report_requests
    }

    /// Callbacks sent: URL and the HTTP status answered (0: no answer).
    pub fn callbacks(&self) -> Vec<(String, u16)> {
        self.state().callbacks.clone()
    }

    /// Posts the current report to the document's callback URL again (a duplicate).
    pub async fn resend_callback(&self, uuid: &str) -> anyhow::Result<u16> {
        let doc = self.document(uuid).ok_or_else(|| anyhow::anyhow!("unknown uuid {uuid}"))?;
        let url = doc.callback_url.clone().ok_or_else(|| anyhow::anyhow!("document {uuid} has no callback_url"))?;
        Ok(self.callback(&url, report_json(&doc)).await)
    }

    async fn callback(&self, url: &str, body: String) -> u16 {
        let res = self.http.post(url).header("Content-Type", "application/json; charset=utf-8").body(body).send().await;
        let status = res.map_or(0, |r| r.status().as_u16());
        self.state().callbacks.push((url.to_owned(), status));
        status
    }

    /// Ends a waiting document (`done`, or `fail` with a queue timeout) and sends its callback.
    fn complete(&self, uuid: &str, timeout: bool) {
        let callback = {
            let mut guard = self.state();
            let st = &mut *guard;
            let at = st.by_uuid.get(uuid).copied();
            let Some(d) = at.and_then(|i| st.docs.get_mut(i)).filter(|d| d.status == "wait") else {
                return;
            };
            d.timestamp = now();
            if timeout {
                d.status = "fail".into();
                d.error = Some(error(1, "Таймаут обработки документа в очереди", "timeout"));
            } else {
                let fpd = uuid::Uuid::parse_str(uuid).map_or(0, |u| u.as_u128() % 3_294_967_295) as i64 + 1_000_000_000;
                st.fiscal_counter += 1;
                let n = st.fiscal_counter;
                d.status = "done".into();
                d.payload = Some(AtolPayload {
                    total: d.total.unwrap_or_default(),
                    fns_site: "www.nalog.gov.ru".into(),
                    fn_number: "9999078900004312".into(),
                    shift_number: 23,
                    receipt_datetime: d.timestamp.clone(),
                    fiscal_receipt_number: n,
                    fiscal_document_number: 1000 + n,
                    ecr_registration_number: "0000000001002292".into(),
                    fiscal_document_attribute: fpd,
                    ofd_inn: "7704211201".into(),
                    ofd_receipt_url: format!(
                        "https://consumer.1-ofd.ru/v1?fn=9999078900004312&i={}&fp={fpd}",
                        1000 + n
                    ),
                });
            }
            d.callback_url.clone().filter(|u| !u.is_empty()).map(|url| (url, report_json(d)))
        };
        if let (Some((url, body)), Ok(rt)) = (callback, tokio::runtime::Handle::try_current()) {
            let sim = self.clone();
            rt.spawn(async move { sim.callback(&url, body).await });
        }
    }

    /// The refusal of a request without a valid `Token` for `group`, if any.
    fn refuse_token(&self, req: &HttpRequest, group: &str) -> Option<HttpResponse> {
        let token = req.headers().get("Token").and_then(|v| v.to_str().ok()).unwrap_or("");
        let st = self.state();
        let (code, text) = match st.tokens.get(token) {
            _ if token.is_empty() => (10, "Не передан токен авторизации"),
            Some(_) if st.expired.contains(token) => (11, "Срок действия токена истек"),
            None => (11, "Передан некорректный токен"),
            Some(g) if g != group => (20, "Код группы не соответствует токену"),
            Some(_) => return None,
        };
        Some(refuse(StatusCode::UNAUTHORIZED, code, text))
    }
}
