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

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes, Data, Json};
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
    docs: Vec<AtolDocument>,
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

/// A running simulator.
#[derive(Clone)]
pub struct AtolSim {
    /// `http://127.0.0.1:PORT/possystem/v5/`
    pub base_url: String,
    state: Arc<Mutex<State>>,
    http: reqwest::Client,
}

const SNO: &[&str] = &["osn", "usn_income", "usn_income_outcome", "envd", "esn", "patent"];
const METHODS: &[&str] =
    &["full_prepayment", "prepayment", "advance", "full_payment", "partial_payment", "credit", "credit_payment"];
const VATS: &[&str] =
    &["none", "vat0", "vat10", "vat110", "vat20", "vat120", "vat5", "vat7", "vat105", "vat107", "vat22", "vat122"];

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
                .route("/possystem/v5/getToken", web::post().to(http_token))
                .route("/possystem/v5/{group}/report/{uuid}", web::get().to(http_report))
                .route("/possystem/v5/{group}/{op}", web::post().to(http_operation))
                .route("/sim/atol/accounts", web::post().to(http_add_account))
                .route("/sim/atol/script", web::post().to(http_script))
                .route("/sim/atol/settings", web::post().to(http_settings))
                .route("/sim/atol/expire_tokens", web::post().to(http_expire))
                .route("/sim/atol/release", web::post().to(http_release))
                .route("/sim/atol/documents", web::get().to(http_documents))
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

    pub fn document(&self, uuid: &str) -> Option<AtolDocument> {
        self.state().docs.iter().find(|d| d.uuid == uuid).cloned()
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
            let Some(d) = st.docs.iter_mut().find(|d| d.uuid == uuid && d.status == "wait") else {
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

#[derive(Deserialize)]
struct InDoc {
    external_id: Option<String>,
    timestamp: Option<String>,
    service: Option<InService>,
    receipt: Option<InReceipt>,
}

#[derive(Deserialize)]
struct InService {
    callback_url: Option<String>,
}

#[derive(Deserialize)]
struct InReceipt {
    client: Option<InClient>,
    company: Option<InCompany>,
    #[serde(default)]
    items: Vec<InItem>,
    #[serde(default)]
    payments: Vec<InPayment>,
    total: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct InClient {
    email: Option<String>,
    phone: Option<String>,
}

#[derive(Deserialize)]
struct InCompany {
    email: Option<String>,
    sno: Option<String>,
    inn: Option<String>,
    payment_address: Option<String>,
}

#[derive(Deserialize)]
struct InItem {
    name: Option<String>,
    price: Option<Box<RawValue>>,
    quantity: Option<Box<RawValue>>,
    measure: Option<Box<RawValue>>,
    sum: Option<Box<RawValue>>,
    payment_method: Option<String>,
    payment_object: Option<Box<RawValue>>,
    vat: Option<InVat>,
}

#[derive(Deserialize)]
struct InVat {
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct InPayment {
    #[serde(rename = "type")]
    kind: Option<Box<RawValue>>,
    sum: Option<Box<RawValue>>,
}

/// A non-negative JSON number (never a string), with at most `scale` decimals.
fn decimal(raw: &Option<Box<RawValue>>, what: &str, scale: u32) -> Result<Decimal, String> {
    let text = raw.as_ref().map(|r| r.get()).ok_or_else(|| format!("{what}: обязательное поле"))?;
    let d: Decimal = text.parse().map_err(|_| format!("{what}: ожидается число, получено {text}"))?;
    if d.is_sign_negative() || d.normalize().scale() > scale {
        return Err(format!("{what}: недопустимое значение {text}"));
    }
    Ok(d)
}

/// A JSON integer within `range`.
fn integer(raw: &Option<Box<RawValue>>, what: &str, range: std::ops::RangeInclusive<i64>) -> Result<i64, String> {
    let text = raw.as_ref().map(|r| r.get()).ok_or_else(|| format!("{what}: обязательное поле"))?;
    text.parse::<i64>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| format!("{what}: недопустимое значение {text}"))
}

fn present<'a>(v: &'a Option<String>, what: &str) -> Result<&'a str, String> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty()).ok_or_else(|| format!("{what}: обязательное поле"))
}

/// GATEWAYS.md §4 field rules; the receipt total on success.
fn validate(doc: &InDoc) -> Result<Decimal, String> {
    present(&doc.external_id, "external_id")?;
    if let Some(service) = &doc.service {
        let url = present(&service.callback_url, "service.callback_url")?;
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(format!("service.callback_url: ожидается URL, получено {url}"));
        }
    }
    let ts = present(&doc.timestamp, "timestamp")?;
    if ts.len() != 19 || chrono::NaiveDateTime::parse_from_str(ts, "%d.%m.%Y %H:%M:%S").is_err() {
        return Err(format!("timestamp: ожидается формат dd.mm.yyyy HH:MM:SS, получено {ts}"));
    }
    let r = doc.receipt.as_ref().ok_or("receipt: обязательное поле")?;
    let client = r.client.as_ref().ok_or("receipt.client: обязательное поле")?;
    let email = client.email.as_deref().filter(|e| !e.is_empty());
    let phone = client.phone.as_deref().filter(|p| !p.is_empty());
    match (email, phone) {
        (None, None) => return Err("receipt.client: требуется email или phone".into()),
        (Some(e), _) if !e.contains('@') => return Err(format!("receipt.client.email: некорректный адрес {e}")),
        (_, Some(p)) if !(p.starts_with('+') && p.len() > 5 && p[1..].bytes().all(|b| b.is_ascii_digit())) => {
            return Err(format!("receipt.client.phone: ожидается формат +7…, получено {p}"));
        }
        _ => {}
    }
    let company = r.company.as_ref().ok_or("receipt.company: обязательное поле")?;
    present(&company.email, "receipt.company.email")?;
    present(&company.payment_address, "receipt.company.payment_address")?;
    let sno = present(&company.sno, "receipt.company.sno")?;
    if !SNO.contains(&sno) {
        return Err(format!("receipt.company.sno: недопустимое значение {sno}"));
    }
    let inn = present(&company.inn, "receipt.company.inn")?;
    if !(inn.len() == 10 || inn.len() == 12) || !inn.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("receipt.company.inn: ожидается 10 или 12 цифр, получено {inn}"));
    }
    if r.items.is_empty() || r.items.len() > 100 {
        return Err(format!("receipt.items: допускается от 1 до 100 позиций, получено {}", r.items.len()));
    }
    let mut items_sum = Decimal::ZERO;
    for (i, item) in r.items.iter().enumerate() {
        let at = |f: &str| format!("receipt.items[{i}].{f}");
        let name = present(&item.name, &at("name"))?;
        if name.chars().count() > 128 {
            return Err(format!("{}: не более 128 символов", at("name")));
        }
        let price = decimal(&item.price, &at("price"), 2)?;
        let quantity = decimal(&item.quantity, &at("quantity"), 6)?;
        let sum = decimal(&item.sum, &at("sum"), 2)?;
        integer(&item.measure, &at("measure"), 0..=255)?;
        let expected = (price * quantity).round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
        if quantity.is_zero() || sum != expected {
            return Err(format!("{}: {sum} не равна price × quantity = {expected}", at("sum")));
        }
        let method = present(&item.payment_method, &at("payment_method"))?;
        if !METHODS.contains(&method) {
            return Err(format!("{}: недопустимое значение {method}", at("payment_method")));
        }
        integer(&item.payment_object, &at("payment_object"), 1..=26)?;
        let vat = item.vat.as_ref().and_then(|v| v.kind.clone());
        let vat = present(&vat, &at("vat.type"))?;
        if !VATS.contains(&vat) {
            return Err(format!("{}: недопустимое значение {vat}", at("vat.type")));
        }
        items_sum += sum;
    }
    if r.payments.is_empty() || r.payments.len() > 10 {
        return Err(format!("receipt.payments: допускается от 1 до 10 оплат, получено {}", r.payments.len()));
    }
    let mut paid = Decimal::ZERO;
    for (i, p) in r.payments.iter().enumerate() {
        integer(&p.kind, &format!("receipt.payments[{i}].type"), 0..=9)?;
        paid += decimal(&p.sum, &format!("receipt.payments[{i}].sum"), 2)?;
    }
    let total = decimal(&r.total, "receipt.total", 2)?;
    if total != items_sum || total != paid {
        return Err(format!("receipt.total: {total} не равен сумме позиций {items_sum} и сумме оплат {paid}"));
    }
    Ok(total)
}

#[derive(Deserialize)]
struct TokenRequest {
    login: String,
    pass: String,
}

async fn http_token(sim: Data<AtolSim>, body: Bytes) -> HttpResponse {
    let mut st = sim.state();
    st.token_requests += 1;
    let req = serde_json::from_slice::<TokenRequest>(&body).ok();
    let group =
        req.and_then(|r| st.accounts.get(&r.login).filter(|a| a.password == r.pass).map(|a| a.group_code.clone()));
    let Some(group) = group else {
        let body =
            json!({"error": error(12, "Неверный логин или пароль", "system"), "token": null, "timestamp": now()});
        return HttpResponse::Unauthorized().json(body);
    };
    let token = uuid::Uuid::new_v4().simple().to_string();
    st.tokens.insert(token.clone(), group);
    HttpResponse::Ok().json(json!({"error": null, "token": token, "timestamp": now()}))
}

fn new_doc(
    group: &str,
    op: &str,
    external_id: &str,
    request: Value,
    raw: &[u8],
    callback_url: Option<String>,
) -> AtolDocument {
    AtolDocument {
        uuid: uuid::Uuid::new_v4().to_string(),
        group_code: group.into(),
        op: op.into(),
        external_id: external_id.into(),
        status: "wait".into(),
        request,
        raw: String::from_utf8_lossy(raw).into_owned(),
        total: None,
        payload: None,
        error: None,
        callback_url,
        timestamp: now(),
    }
}

fn operation_answer(status: StatusCode, d: &AtolDocument, err: Option<AtolSimError>) -> HttpResponse {
    let body = json!({"uuid": d.uuid, "status": d.status, "error": err, "timestamp": now()});
    HttpResponse::build(status).json(body)
}

async fn http_operation(
    sim: Data<AtolSim>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: Bytes,
) -> HttpResponse {
    let (group, op) = path.into_inner();
    sim.state().operation_requests += 1;
    if let Some(refusal) = sim.refuse_token(&req, &group) {
        return refusal;
    }
    if op != "sell" && op != "sell_refund" {
        return refuse(StatusCode::BAD_REQUEST, 31, &format!("Операция {op} не поддерживается"));
    }
    let content_type = req.headers().get("Content-Type").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.to_ascii_lowercase().starts_with("application/json") {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            41,
            "Ожидается Content-Type: application/json; charset=utf-8",
        );
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, 40, "Некорректный JSON");
    };
    let external_id = request.get("external_id").and_then(Value::as_str).unwrap_or("").to_owned();
    let callback_url = request.pointer("/service/callback_url").and_then(Value::as_str).map(str::to_owned);
    let mut doc = new_doc(&group, &op, &external_id, request, &body, callback_url);
    let checked = serde_json::from_slice::<InDoc>(&body).map_err(|e| format!("Некорректная структура: {e}"));
    let (script, processing, slow) = {
        let mut st = sim.state();
        // A failed document's external_id may be sent again; a live one answers 33.
        let live = st.docs.iter().find(|d| d.group_code == group && d.external_id == external_id && d.status != "fail");
        if let Some(existing) = live.filter(|_| !external_id.is_empty()) {
            let err = error(33, &format!("Документ с external_id {external_id} уже существует"), "system");
            return operation_answer(StatusCode::BAD_REQUEST, existing, Some(err));
        }
        match checked.and_then(|d| validate(&d)) {
            Err(text) => {
                doc.status = "fail".into();
                doc.error = Some(error(32, &text, "system"));
                st.docs.push(doc.clone());
                return operation_answer(StatusCode::BAD_REQUEST, &doc, doc.error.clone());
            }
            Ok(total) => doc.total = Some(total),
        }
        let script = st.scripts.pop_front().unwrap_or(AtolScript::Done);
        match script {
            AtolScript::ServerError => {
                return refuse(StatusCode::INTERNAL_SERVER_ERROR, 50, "Внутренняя ошибка сервера");
            }
            AtolScript::Reject32 => {
                doc.status = "fail".into();
                doc.error = Some(error(32, "Ошибка валидации входящего документа (сценарий)", "system"));
                st.docs.push(doc.clone());
                return operation_answer(StatusCode::BAD_REQUEST, &doc, doc.error.clone());
            }
            AtolScript::NeverProcess => st.held.push(doc.uuid.clone()),
            _ => {}
        }
        st.docs.push(doc.clone());
        (script, st.processing_ms, st.slow_ms)
    };
    if script != AtolScript::NeverProcess {
        let (sim, uuid) = (sim.get_ref().clone(), doc.uuid.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(processing)).await;
            sim.complete(&uuid, script == AtolScript::FailTimeout);
        });
    }
    if script == AtolScript::Slow {
        tokio::time::sleep(Duration::from_millis(slow)).await;
    }
    operation_answer(StatusCode::OK, &doc, None)
}

async fn http_report(sim: Data<AtolSim>, req: HttpRequest, path: web::Path<(String, String)>) -> HttpResponse {
    let (group, uuid) = path.into_inner();
    sim.state().report_requests += 1;
    if let Some(refusal) = sim.refuse_token(&req, &group) {
        return refusal;
    }
    match sim.document(&uuid).filter(|d| d.group_code == group) {
        Some(doc) => HttpResponse::Ok().content_type("application/json; charset=utf-8").body(report_json(&doc)),
        None => {
            let err = error(30, &format!("Не найден документ с uuid {uuid}"), "system");
            HttpResponse::BadRequest().json(json!({"uuid": uuid, "status": "fail", "error": err, "timestamp": now()}))
        }
    }
}

#[derive(Deserialize)]
struct AccountRequest {
    login: String,
    password: String,
    group_code: String,
}

async fn http_add_account(sim: Data<AtolSim>, req: Json<AccountRequest>) -> HttpResponse {
    sim.add_account(&req.login, &req.password, &req.group_code);
    HttpResponse::NoContent().finish()
}

async fn http_script(sim: Data<AtolSim>, req: Json<Vec<AtolScript>>) -> HttpResponse {
    sim.script(&req);
    HttpResponse::NoContent().finish()
}

#[derive(Deserialize)]
struct Settings {
    processing_ms: Option<u64>,
    slow_ms: Option<u64>,
}

async fn http_settings(sim: Data<AtolSim>, req: Json<Settings>) -> HttpResponse {
    if let Some(ms) = req.processing_ms {
        sim.set_processing_ms(ms);
    }
    if let Some(ms) = req.slow_ms {
        sim.set_slow_ms(ms);
    }
    HttpResponse::NoContent().finish()
}

async fn http_expire(sim: Data<AtolSim>) -> HttpResponse {
    sim.expire_tokens();
    HttpResponse::NoContent().finish()
}

async fn http_release(sim: Data<AtolSim>) -> HttpResponse {
    sim.release_all();
    HttpResponse::NoContent().finish()
}

async fn http_documents(sim: Data<AtolSim>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"documents": sim.documents(), "callbacks": sim.callbacks()}))
}
