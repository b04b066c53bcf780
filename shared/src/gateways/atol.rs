//! ATOL Online API v5 (GATEWAYS.md §4): `getToken`, `{group_code}/{sell|sell_refund}`
//! and `{group_code}/report/{uuid}`. The token is cached per (base URL, login) and
//! fetched again once when a call answers error 10 or 11. Errors: `Unknown` (timeout,
//! 5xx, unreadable: re-send the same `external_id` later, ATOL answers 33 instead of
//! a second receipt), `Rejected` (only corrected data helps), `Configuration` (the
//! merchant's account or our request: credentials, group, protocol, URL).
//! Money is written as JSON numbers from the exact decimals, never through f64.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::domain::tenant::FiscalProvider;
use crate::gateways::GatewayError;

pub const DEFAULT_API_URL: &str = "https://online.atol.ru/possystem/v5/";
const JSON_UTF8: &str = "application/json; charset=utf-8";

/// The ATOL account (cash register group) a call is made for.
#[derive(Debug, Clone)]
pub struct AtolAccount {
    pub login: String,
    pub password: String,
    pub group_code: String,
    pub base_url: String,
}

impl AtolAccount {
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

/// The receipt operation: `sell` (приход) or `sell_refund` (возврат прихода).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Sell,
    SellRefund,
}

impl Operation {
    /// The URL path segment.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Sell => "sell",
            Operation::SellRefund => "sell_refund",
        }
    }
}

/// `dd.mm.yyyy HH:MM:SS` in Moscow time, the `timestamp` format of a [`Document`].
pub fn format_timestamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.with_timezone(&chrono_tz::Europe::Moscow).format("%d.%m.%Y %H:%M:%S").to_string()
}

/// A receipt registration, serialized exactly as ATOL v5 wants it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub external_id: String,
    /// `dd.mm.yyyy HH:MM:SS` (see [`format_timestamp`]).
    pub timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub service: Option<Service>,
    pub receipt: Receipt,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub callback_url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    pub client: Client,
    pub company: Company,
    pub items: Vec<Item>,
    pub payments: Vec<Payment>,
    #[serde(serialize_with = "money", deserialize_with = "exact")]
    pub total: Decimal,
}

/// The buyer's contact: email or phone (`+7…`), at least one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Client {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub phone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Company {
    pub email: String,
    pub sno: String,
    pub inn: String,
    pub payment_address: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub name: String,
    #[serde(serialize_with = "money", deserialize_with = "exact")]
    pub price: Decimal,
    #[serde(serialize_with = "number", deserialize_with = "exact")]
    pub quantity: Decimal,
    /// 0 = pieces.
    pub measure: u8,
    #[serde(serialize_with = "money", deserialize_with = "exact")]
    pub sum: Decimal,
    pub payment_method: String,
    pub payment_object: u8,
    pub vat: Vat,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vat {
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    /// 1 = cashless, 2 = prepayment offset, ...
    #[serde(rename = "type")]
    pub kind: u8,
    #[serde(serialize_with = "money", deserialize_with = "exact")]
    pub sum: Decimal,
}

/// The fiscal attributes of a registered receipt (`payload` of a done report);
/// numbers and strings are read tolerantly.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FiscalPayload {
    #[serde(serialize_with = "money_opt", deserialize_with = "exact_opt")]
    pub total: Option<Decimal>,
    pub fns_site: Option<String>,
    #[serde(deserialize_with = "text_opt")]
    pub fn_number: Option<String>,
    #[serde(deserialize_with = "int_opt")]
    pub shift_number: Option<i64>,
    pub receipt_datetime: Option<String>,
    #[serde(deserialize_with = "int_opt")]
    pub fiscal_receipt_number: Option<i64>,
    #[serde(deserialize_with = "int_opt")]
    pub fiscal_document_number: Option<i64>,
    #[serde(deserialize_with = "text_opt")]
    pub ecr_registration_number: Option<String>,
    #[serde(deserialize_with = "int_opt")]
    pub fiscal_document_attribute: Option<i64>,
    pub ofd_inn: Option<String>,
    pub ofd_receipt_url: Option<String>,
}

/// An ATOL `error` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtolFailure {
    /// ATOL's code; for a 4xx answer without a readable body, the HTTP status.
    pub code: i64,
    pub text: String,
    /// `error.type`: `system`, `timeout`, `agent`, ...; `http` or `client` when the
    /// failure did not come from an ATOL error object.
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportStatus {
    Wait,
    Done(FiscalPayload),
    Fail(AtolFailure),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub uuid: String,
    pub status: ReportStatus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    New {
        uuid: String,
    },
    /// Error 33: this `external_id` is already known; poll its report.
    AlreadyExists {
        uuid: Option<String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum AtolError {
    /// Timeout, connection error, 5xx, 429, unreadable 200: retry later (the same
    /// `external_id` is safe to resend).
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// The document or request itself was refused: only corrected data helps.
    #[error("refused: {0:?}")]
    Rejected(AtolFailure),
    /// Login, password, group, protocol or endpoint refused: the merchant's
    /// configuration (or our request) is wrong, not the document. Nothing was
    /// registered; retry once the settings are fixed.
    #[error("configuration refused: {0}")]
    Configuration(String),
}

fn money<S: Serializer>(v: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    let text = format!("{:.2}", v.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero));
    RawValue::from_string(text).map_err(serde::ser::Error::custom)?.serialize(s)
}

fn money_opt<S: Serializer>(v: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => money(v, s),
        None => s.serialize_none(),
    }
}

fn number<S: Serializer>(v: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    RawValue::from_string(v.to_string()).map_err(serde::ser::Error::custom)?.serialize(s)
}

/// The raw JSON text of a number (or of a string holding one), without quotes.
fn unquote(raw: &RawValue) -> Result<String, serde_json::Error> {
    let text = raw.get().trim();
    if text.starts_with('"') { serde_json::from_str(text) } else { Ok(text.to_owned()) }
}

fn parse_exact(raw: &RawValue) -> Result<Decimal, String> {
    let text = unquote(raw).map_err(|e| e.to_string())?;
    text.parse::<Decimal>().or_else(|_| Decimal::from_scientific(&text)).map_err(|e| format!("{text}: {e}"))
}

fn exact<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    parse_exact(&Box::<RawValue>::deserialize(d)?).map_err(serde::de::Error::custom)
}

fn exact_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    let raw = Option::<Box<RawValue>>::deserialize(d)?;
    raw.map(|r| parse_exact(&r)).transpose().map_err(serde::de::Error::custom)
}

/// Tolerant: a string or a bare number.
fn text_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let raw = Option::<Box<RawValue>>::deserialize(d)?;
    raw.map(|r| unquote(&r)).transpose().map_err(serde::de::Error::custom)
}

/// Tolerant: a number or a string holding one; an empty string is none.
fn int_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let Some(text) = text_opt(d)?.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    text.parse().map(Some).map_err(|e| serde::de::Error::custom(format!("{text}: {e}")))
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct WireError {
    #[serde(deserialize_with = "int_opt")]
    code: Option<i64>,
    text: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

impl WireError {
    fn failure(&self) -> AtolFailure {
        AtolFailure {
            code: self.code.unwrap_or(0),
            text: self.text.clone().unwrap_or_default(),
            kind: self.kind.clone().unwrap_or_default(),
        }
    }
}

/// Any ATOL answer: token, operation or report.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Answer {
    uuid: Option<String>,
    status: Option<String>,
    error: Option<WireError>,
    token: Option<String>,
    payload: Option<FiscalPayload>,
}

/// An error object that is not a document outcome.
fn classify(what: &str, status: StatusCode, e: &WireError) -> AtolError {
    let f = e.failure();
    match f.code {
        // Credentials, group, protocol; an unsupported operation, a request ATOL
        // calls malformed, a wrong content type: the setup is wrong, not the receipt.
        10 | 11 | 12 | 14 | 20 | 21 | 31 | 40 | 41 => {
            AtolError::Configuration(format!("{what}: error {} ({}): {}", f.code, status, f.text))
        }
        0 | 50 => AtolError::Unknown(format!("{what}: error {} ({}): {}", f.code, status, f.text)),
        _ if status.is_server_error() => AtolError::Unknown(format!("{what}: error {}: {}", f.code, f.text)),
        _ => AtolError::Rejected(f),
    }
}

fn accepted(status: StatusCode, a: Answer) -> Result<Accepted, AtolError> {
    match &a.error {
        None => match a.uuid {
            Some(uuid) if status.is_success() && !uuid.is_empty() => Ok(Accepted::New { uuid }),
            _ => Err(AtolError::Unknown(format!("register: HTTP {status} without an error or a uuid"))),
        },
        Some(e) if e.code == Some(33) => Ok(Accepted::AlreadyExists { uuid: a.uuid.filter(|u| !u.is_empty()) }),
        Some(e) => Err(classify("register", status, e)),
    }
}

fn report_from(uuid: &str, status: StatusCode, a: Answer) -> Result<Report, AtolError> {
    let uuid = a.uuid.clone().filter(|u| !u.is_empty()).unwrap_or_else(|| uuid.to_owned());
    let state = match (a.status.as_deref(), &a.error) {
        (_, Some(e)) if e.code == Some(34) => ReportStatus::Wait,
        (Some("fail"), Some(e)) if status.is_success() => ReportStatus::Fail(e.failure()),
        (_, Some(e)) => return Err(classify("report", status, e)),
        // A registered receipt without its fiscal attributes is not a registration we can record.
        (Some("done"), None) => match a.payload {
            Some(payload) => ReportStatus::Done(payload),
            None => return Err(AtolError::Unknown(format!("report: HTTP {status}, done without a payload"))),
        },
        (Some("wait"), None) => ReportStatus::Wait,
        (s, None) => return Err(AtolError::Unknown(format!("report: HTTP {status}, status {s:?}"))),
    };
    Ok(Report { uuid, status: state })
}

/// Reads an answer: 5xx, 408 and 429 leave the outcome unknown; an unreadable 401
/// counts as an expired token (error 11).
async fn read(what: &str, res: reqwest::Response) -> Result<(StatusCode, Answer), AtolError> {
    let status = res.status();
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT {
        return Err(AtolError::Unknown(format!("{what}: HTTP {status}")));
    }
    let bytes = res.bytes().await.map_err(|e| AtolError::Unknown(format!("{what}: reading answer: {e}")))?;
    match serde_json::from_slice::<Answer>(&bytes) {
        Ok(a) => Ok((status, a)),
        Err(e) if status.is_success() => Err(AtolError::Unknown(format!("{what}: unreadable answer: {e}"))),
        Err(_) if status == StatusCode::UNAUTHORIZED => {
            let error = WireError { code: Some(11), text: Some("HTTP 401".into()), kind: None };
            Ok((status, Answer { error: Some(error), ..Answer::default() }))
        }
        // A refused login or an endpoint that is not ATOL's (a wrong api_url or group).
        Err(_) if matches!(status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED) => {
            Err(AtolError::Configuration(format!("{what}: HTTP {status}")))
        }
        Err(_) => Err(AtolError::Rejected(AtolFailure {
            code: i64::from(status.as_u16()),
            text: format!(
                "{what}: HTTP {status}: {}",
                String::from_utf8_lossy(&bytes).chars().take(200).collect::<String>()
            ),
            kind: "http".into(),
        })),
    }
}

/// The ATOL Online client; clones share the token cache.
#[derive(Clone)]
pub struct AtolApi {
    http: reqwest::Client,
    tokens: Arc<Mutex<HashMap<(String, String), String>>>,
}

impl AtolApi {
    pub fn new(timeout: Duration) -> Result<AtolApi, GatewayError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| GatewayError::Protocol(format!("http client: {e}")))?;
        Ok(AtolApi { http, tokens: Arc::new(Mutex::new(HashMap::new())) })
    }

    fn cache(&self) -> MutexGuard<'_, HashMap<(String, String), String>> {
        self.tokens.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn key(account: &AtolAccount) -> (String, String) {
        (account.base().to_owned(), account.login.clone())
    }

    async fn token(&self, account: &AtolAccount) -> Result<String, AtolError> {
        if let Some(token) = self.cache().get(&Self::key(account)) {
            return Ok(token.clone());
        }
        let body = serde_json::json!({"login": account.login, "pass": account.password}).to_string();
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
            (None, Some(token)) if status.is_success() && !token.is_empty() => {
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
            let res = build(&token).send().await.map_err(|e| AtolError::Unknown(format!("{what}: {e}")))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{"external_id":"rcpt-inv-1-sell","timestamp":"01.03.2026 12:00:00","service":{"callback_url":"https://billing/atol/cb"},"receipt":{"client":{"email":"a@b.ru"},"company":{"email":"billing@seller.ru","sno":"usn_income","inn":"7700000000","payment_address":"https://seller.ru"},"items":[{"name":"Подписка Pro, 1 мес","price":990.00,"quantity":1,"measure":0,"sum":990.00,"payment_method":"full_prepayment","payment_object":4,"vat":{"type":"none"}}],"payments":[{"type":1,"sum":990.00}],"total":990.00}}"#;

    fn answer(json: &str) -> Answer {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_document_serializes_like_the_v5_example() {
        let mut doc: Document = serde_json::from_str(EXAMPLE).unwrap();
        let rub = Decimal::new(990, 0);
        assert_eq!((doc.receipt.total, doc.receipt.items[0].quantity), (rub, Decimal::ONE));
        assert_eq!(doc.service, Some(Service { callback_url: "https://billing/atol/cb".into() }));
        (doc.receipt.total, doc.receipt.items[0].price, doc.receipt.payments[0].sum) = (rub, rub, rub);
        assert_eq!(serde_json::to_string(&doc).unwrap(), EXAMPLE);
        let value: serde_json::Value = serde_json::from_str(EXAMPLE).unwrap();
        assert_eq!(serde_json::from_value::<Document>(value).unwrap(), doc);
    }

    #[test]
    fn amounts_are_exact_numbers() {
        let mut item = serde_json::from_str::<Document>(EXAMPLE).unwrap().receipt.items.remove(0);
        item.price = Decimal::new(1234567, 3);
        item.quantity = Decimal::new(1500, 3);
        item.sum = Decimal::new(10, 1);
        let json = serde_json::to_string(&item).unwrap();
        assert!(json.contains(r#""price":1234.57,"quantity":1.500,"measure":0,"sum":1.00,"#), "{json}");
        let back: Item = serde_json::from_str(&json.replace("1234.57", "0.10000000000000001")).unwrap();
        assert_eq!(back.price.to_string(), "0.10000000000000001");
        let quoted: Payment = serde_json::from_str(r#"{"type":2,"sum":"990.50"}"#).unwrap();
        assert_eq!(quoted.sum, Decimal::new(99050, 2));
        assert_eq!(format_timestamp("2026-03-01T09:00:00Z".parse().unwrap()), "01.03.2026 12:00:00");
    }

    #[test]
    fn operation_answers_map_to_outcomes() {
        let ok = answer(r#"{"uuid":"u-1","status":"wait","error":null,"timestamp":"01.03.2026 12:00:01"}"#);
        assert_eq!(accepted(StatusCode::OK, ok).unwrap(), Accepted::New { uuid: "u-1".into() });
        let dup = answer(
            r#"{"uuid":"u-0","status":"wait","error":{"error_id":"e","code":33,"text":"exists","type":"system"}}"#,
        );
        assert_eq!(
            accepted(StatusCode::BAD_REQUEST, dup).unwrap(),
            Accepted::AlreadyExists { uuid: Some("u-0".into()) }
        );
        let dup = answer(r#"{"error":{"code":33,"text":"exists","type":"system"}}"#);
        assert_eq!(accepted(StatusCode::BAD_REQUEST, dup).unwrap(), Accepted::AlreadyExists { uuid: None });
        let bad = answer(r#"{"uuid":"u-2","status":"fail","error":{"code":32,"text":"sum","type":"system"}}"#);
        match accepted(StatusCode::BAD_REQUEST, bad) {
            Err(AtolError::Rejected(f)) => assert_eq!((f.code, f.kind.as_str()), (32, "system")),
            other => panic!("{other:?}"),
        }
        let auth = answer(r#"{"error":{"code":20,"text":"group","type":"system"}}"#);
        assert!(matches!(accepted(StatusCode::UNAUTHORIZED, auth), Err(AtolError::Configuration(_))));
        let unknown = answer(r#"{"error":{"code":0,"text":"?","type":"system"}}"#);
        assert!(matches!(accepted(StatusCode::BAD_REQUEST, unknown), Err(AtolError::Unknown(_))));
        assert!(matches!(accepted(StatusCode::OK, answer("{}")), Err(AtolError::Unknown(_))));
    }

    #[test]
    fn report_answers_map_to_statuses() {
        let done = answer(
            r#"{"uuid":"u-1","status":"done","error":null,"payload":{"total":990.00,"fns_site":"www.nalog.gov.ru",
            "fn_number":"9999078900004312","shift_number":23,"receipt_datetime":"01.03.2026 12:00:02",
            "fiscal_receipt_number":5,"fiscal_document_number":131,"ecr_registration_number":"0000000001002292",
            "fiscal_document_attribute":3026455760,"ofd_inn":"7704211201","ofd_receipt_url":"https://ofd/r"},
            "group_code":"g","external_id":"x","timestamp":"01.03.2026 12:00:02"}"#,
        );
        let Ok(Report { uuid, status: ReportStatus::Done(p) }) = report_from("u-1", StatusCode::OK, done) else {
            panic!("not done");
        };
        assert_eq!(uuid, "u-1");
        assert_eq!((p.total, p.fiscal_document_attribute), (Some(Decimal::new(990, 0)), Some(3026455760)));
        assert_eq!(p.fn_number.as_deref(), Some("9999078900004312"));
        let wait = answer(r#"{"uuid":"u-1","status":"wait","error":null,"payload":null}"#);
        assert_eq!(report_from("u-1", StatusCode::OK, wait).unwrap().status, ReportStatus::Wait);
        let not_yet = answer(r#"{"error":{"code":34,"text":"not found","type":"system"}}"#);
        assert_eq!(report_from("u-1", StatusCode::OK, not_yet).unwrap().status, ReportStatus::Wait);
        let failed = answer(r#"{"uuid":"u-1","status":"fail","error":{"code":1,"text":"queue","type":"timeout"}}"#);
        let expected = AtolFailure { code: 1, text: "queue".into(), kind: "timeout".into() };
        assert_eq!(report_from("u-1", StatusCode::OK, failed).unwrap().status, ReportStatus::Fail(expected));
        let missing = answer(r#"{"status":"fail","error":{"code":30,"text":"no uuid","type":"system"}}"#);
        assert!(
            matches!(report_from("u-9", StatusCode::BAD_REQUEST, missing), Err(AtolError::Rejected(f)) if f.code == 30)
        );
    }

    #[test]
    fn accounts_join_urls_with_or_without_a_slash() {
        let p = FiscalProvider { login: "l".into(), password: "p".into(), group_code: "g".into(), api_url: None };
        let a = AtolAccount::from_provider(&p);
        assert_eq!(a.url("getToken"), "https://online.atol.ru/possystem/v5/getToken");
        let b = AtolAccount { base_url: "http://sim/possystem/v5".into(), ..a };
        assert_eq!(b.url("g/sell"), "http://sim/possystem/v5/g/sell");
    }
}
