//! ATOL Online API v5 wire formats (GATEWAYS.md §4): the registration document
//! (the domain's receipt document inside ATOL's envelope), the answers of
//! `getToken`, `{sell|sell_refund}` and `report`, and how each answer reads: a new
//! or already-known registration (error 33), a report (wait, done, fail), or an
//! error that is the document's fault (`Rejected`), the merchant's setup's
//! (`Configuration`) or of unknown outcome (`Unknown`).

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use crate::domain::receipt::{FiscalAttributes, ReceiptDocument, int_opt};
use crate::domain::secret::Secret;

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
    pub receipt: ReceiptDocument,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub callback_url: String,
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
    Done(FiscalAttributes),
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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(super) struct WireError {
    #[serde(deserialize_with = "int_opt")]
    pub code: Option<i64>,
    pub text: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

impl WireError {
    pub(super) fn failure(&self) -> AtolFailure {
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
pub(super) struct Answer {
    pub uuid: Option<String>,
    pub status: Option<String>,
    pub error: Option<WireError>,
    pub token: Option<Secret>,
    pub payload: Option<FiscalAttributes>,
}

/// An error object that is not a document outcome.
pub(super) fn classify(what: &str, status: StatusCode, e: &WireError) -> AtolError {
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

pub(super) fn accepted(status: StatusCode, a: Answer) -> Result<Accepted, AtolError> {
    match &a.error {
        None => match a.uuid {
            Some(uuid) if status.is_success() && !uuid.is_empty() => Ok(Accepted::New { uuid }),
            _ => Err(AtolError::Unknown(format!("register: HTTP {status} without an error or a uuid"))),
        },
        Some(e) if e.code == Some(33) => Ok(Accepted::AlreadyExists { uuid: a.uuid.filter(|u| !u.is_empty()) }),
        Some(e) => Err(classify("register", status, e)),
    }
}

pub(super) fn report_from(uuid: &str, status: StatusCode, a: Answer) -> Result<Report, AtolError> {
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
pub(super) async fn read(what: &str, res: reqwest::Response) -> Result<(StatusCode, Answer), AtolError> {
    let status = res.status();
    outcome_known(what, status)?;
    let bytes = res.bytes().await.map_err(|e| AtolError::Unknown(format!("{what}: reading answer: {e}")))?;
    answer_of(what, status, &bytes)
}

/// A report answer as the client reads it, from its HTTP status and raw bytes: the
/// report of `uuid`, or why there is none (the parsing half of `Client::report`,
/// public for the fuzz harness).
pub fn report_of(uuid: &str, status: u16, bytes: &[u8]) -> Result<Report, AtolError> {
    let status = StatusCode::from_u16(status).map_err(|e| AtolError::Unknown(format!("report: {e}")))?;
    outcome_known("report", status)?;
    let (status, answer) = answer_of("report", status, bytes)?;
    report_from(uuid, status, answer)
}

/// 5xx, 408 and 429 leave the outcome unknown.
fn outcome_known(what: &str, status: StatusCode) -> Result<(), AtolError> {
    if crate::provider_http::outcome_unknown(status) {
        return Err(AtolError::Unknown(format!("{what}: HTTP {status}")));
    }
    Ok(())
}

fn answer_of(what: &str, status: StatusCode, bytes: &[u8]) -> Result<(StatusCode, Answer), AtolError> {
    match serde_json::from_slice::<Answer>(bytes) {
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
                String::from_utf8_lossy(bytes).chars().take(200).collect::<String>()
            ),
            kind: "http".into(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

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
    fn timestamps_are_moscow_time() {
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
}
