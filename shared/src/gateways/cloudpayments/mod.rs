//! CloudPayments adapter of the gateway port (GATEWAYS.md §1).
//!
//! * Charges of saved cards, reconciliation, refunds and refund lookups go through
//!   [`client::Client`] with the tenant's public id and API secret.
//! * Notifications are signed with `Content-HMAC` / `X-Content-HMAC`: base64 of
//!   HMAC-SHA256 over the raw request body with the tenant's API secret. The raw
//!   bytes are verified before anything is parsed, either header is accepted, the
//!   comparison is constant-time, and a missing header or secret is a refusal.
//! * Declines 5041 (lost), 5043 (stolen), 5054 (expired card) and 5057 (not
//!   permitted) are hard (SPEC §4): retrying the card is pointless.
//! * Every notification is answered HTTP 200 `{"code": N}`; a Check's code tells
//!   CloudPayments whether to accept the payment (0, or 10/11/12/13/20).

pub mod client;
pub mod wire;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use uuid::Uuid;

use self::client::Client;
use self::wire::{CheckCode, Fields, NotificationKind, PaymentNotification, WireError, dedup_key};
use super::{
    AttemptLookup, CardDetails, ChargeOutcome, ChargeRequest, CheckVerdict, CheckoutRequest, Confirmation, Decline,
    DeclineClass, GatewayError, Notification, NotificationError, NotificationEvent, NotificationReply, PaymentGateway,
    PaymentReport, RawNotification, RefundLookup, RefundOutcome, RefundReport, RefundRequest,
};
use crate::config::Secret;
use crate::signing::verify_hmac_sha256;

/// Production API base; a tenant's `api_url` overrides it.
pub const DEFAULT_API_URL: &str = "https://api.cloudpayments.ru/";

/// The provider's name, stored with its payments and notifications.
pub const PROVIDER: &str = "cloudpayments";

/// Reason codes after which retrying the card is pointless (SPEC §4).
const HARD_DECLINES: [&str; 4] = ["5041", "5043", "5054", "5057"];

/// A decline's class by its reason code.
pub fn decline_class(code: Option<&str>) -> DeclineClass {
    if code.is_some_and(|c| HARD_DECLINES.contains(&c)) { DeclineClass::Hard } else { DeclineClass::Soft }
}

/// The merchant account a call is made for.
#[derive(Debug, Clone)]
pub struct Account {
    pub public_id: String,
    pub api_secret: Secret,
    pub base_url: String,
}

impl Account {
    fn url(&self, method: &str) -> String {
        format!("{}/{method}", self.base_url.trim_end_matches('/'))
    }
}

/// True when one of the signature headers is a valid HMAC of `raw_body`.
pub fn verify_notification(api_secret: &str, raw_body: &[u8], signatures: &[Option<&str>]) -> bool {
    if api_secret.is_empty() {
        return false;
    }
    signatures.iter().flatten().any(|sig| {
        STANDARD.decode(sig.trim()).is_ok_and(|tag| verify_hmac_sha256(api_secret.as_bytes(), raw_body, &tag))
    })
}

/// The adapter: one merchant account over a shared HTTP client.
pub struct CloudPayments {
    client: Client,
    account: Account,
}

impl CloudPayments {
    /// The adapter for one merchant account (site), over a shared client.
    pub fn new(client: Client, account: Account) -> Self {
        CloudPayments { client, account }
    }
}

fn malformed(e: WireError) -> NotificationError {
    NotificationError::Malformed(e.to_string())
}

fn payment_report(n: PaymentNotification) -> PaymentReport {
    PaymentReport {
        transaction_id: n.transaction_id,
        invoice_id: n.invoice_id,
        account_id: n.account_id,
        amount: n.amount,
        currency: n.currency,
        card: CardDetails {
            token: n.token,
            first_six: n.card_first_six,
            last_four: n.card_last_four,
            card_type: n.card_type,
            exp: n.card_exp_date,
        },
    }
}

/// Reads a verified notification of `kind`.
fn interpret(kind: NotificationKind, fields: &Fields) -> Result<NotificationEvent, WireError> {
    Ok(match kind {
        NotificationKind::Check => NotificationEvent::Check(payment_report(PaymentNotification::from_fields(fields)?)),
        NotificationKind::Pay => NotificationEvent::Captured(payment_report(PaymentNotification::from_fields(fields)?)),
        NotificationKind::Fail => {
            let n = PaymentNotification::from_fields(fields)?;
            let decline = Decline {
                transaction_id: Some(n.transaction_id.clone()),
                class: decline_class(n.reason_code.as_deref()),
                code: n.reason_code.clone(),
                reason: n.reason.clone(),
            };
            NotificationEvent::Declined(payment_report(n), decline)
        }
        NotificationKind::Refund => {
            let n = PaymentNotification::from_fields(fields)?;
            // `Data` echoes the JsonData of our refund call; a dashboard refund's is
            // the merchant's free text. Not naming our refund is not an error: the
            // refund is then matched by its transaction or amount.
            let refund_id = fields
                .get("Data")
                .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
                .and_then(|d| d.get("refund_id").and_then(|v| v.as_str()).and_then(|v| Uuid::parse_str(v).ok()));
            NotificationEvent::Refunded(RefundReport {
                transaction_id: n.transaction_id,
                payment_transaction_id: n.payment_transaction_id,
                amount: n.amount,
                refund_id,
            })
        }
        NotificationKind::Recurrent | NotificationKind::Cancel => NotificationEvent::Recorded,
    })
}

#[async_trait]
impl PaymentGateway for CloudPayments {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    async fn charge(&self, req: &ChargeRequest<'_>) -> Result<ChargeOutcome, GatewayError> {
        self.client.charge_token(&self.account, req).await
    }

    async fn find_attempt(&self, attempt_id: &str) -> Result<AttemptLookup, GatewayError> {
        self.client.find(&self.account, attempt_id).await
    }

    async fn refund(&self, req: &RefundRequest<'_>) -> Result<RefundOutcome, GatewayError> {
        self.client.refund(&self.account, req).await
    }

    async fn find_refund(&self, transaction_id: &str) -> Result<RefundLookup, GatewayError> {
        self.client.transaction_state(&self.account, transaction_id).await
    }

    async fn checkout(&self, req: &CheckoutRequest<'_>) -> Result<Confirmation, GatewayError> {
        Ok(Confirmation::CloudpaymentsWidget {
            public_id: self.account.public_id.clone(),
            invoice_id: req.attempt_id.to_owned(),
            account_id: req.customer_id.to_owned(),
            amount: req.amount.value_string(),
            currency: req.amount.currency().code().to_owned(),
            description: req.description.to_owned(),
            email: req.email.to_owned(),
        })
    }

    async fn notification(&self, raw: &RawNotification<'_>) -> Result<Notification, NotificationError> {
        let kind = NotificationKind::parse(raw.path)
            .ok_or_else(|| NotificationError::UnknownKind(format!("unknown notification kind {:?}", raw.path)))?;
        let signatures = [raw.header("content-hmac"), raw.header("x-content-hmac")];
        if !verify_notification(self.account.api_secret.expose(), raw.body, &signatures) {
            return Err(NotificationError::Unauthenticated("missing or wrong Content-HMAC signature".into()));
        }
        let fields = Fields::parse(raw.content_type(), raw.body).map_err(malformed)?;
        let dedup_key = dedup_key(kind, &fields).ok_or_else(|| malformed(WireError::Missing("TransactionId")))?;
        let event = interpret(kind, &fields).map_err(malformed)?;
        Ok(Notification { kind: kind.as_str().to_owned(), dedup_key, event })
    }

    fn reply(&self, reply: NotificationReply) -> (u16, serde_json::Value) {
        let code = match reply {
            NotificationReply::Accepted => CheckCode::Ok,
            NotificationReply::Check(v) => CheckCode::from(v),
        };
        (200, json!({"code": code as i32}))
    }
}

impl From<CheckVerdict> for CheckCode {
    fn from(v: CheckVerdict) -> Self {
        match v {
            CheckVerdict::Accept => CheckCode::Ok,
            CheckVerdict::WrongInvoice => CheckCode::WrongInvoice,
            CheckVerdict::WrongAccount => CheckCode::WrongAccount,
            CheckVerdict::WrongAmount => CheckCode::WrongAmount,
            CheckVerdict::NotAcceptable => CheckCode::NotAcceptable,
            CheckVerdict::Expired => CheckCode::Expired,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] =
        b"TransactionId=1001&Amount=1390.00&Currency=RUB&InvoiceId=inv-1&Description=%D0%A2%D0%B0%D1%80%D0%B8%D1%84+PRO";
    // python3: base64(hmac.new(b'secret-123', BODY, sha256).digest())
    const SIG: &str = "OBf9jSw7889/gR3M3L2TOSq3Iw/9QajbbvUKMJFBF/I=";

    #[test]
    fn accepts_either_header_and_fails_closed() {
        assert!(verify_notification("secret-123", BODY, &[Some(SIG), None]));
        assert!(verify_notification("secret-123", BODY, &[None, Some(SIG)]));
        assert!(verify_notification("secret-123", BODY, &[Some("garbage"), Some(SIG)]));
        assert!(!verify_notification("secret-124", BODY, &[Some(SIG), None]));
        assert!(!verify_notification("secret-123", b"TransactionId=1001&Amount=1.00", &[Some(SIG), None]));
        assert!(!verify_notification("secret-123", BODY, &[None, None]));
        assert!(!verify_notification("", BODY, &[Some(SIG)]));
        assert!(!verify_notification("secret-123", BODY, &[Some("")]));
    }

    fn adapter(secret: &str) -> CloudPayments {
        crate::telemetry::install_crypto_provider();
        let client = Client::new(crate::provider_http::client(std::time::Duration::from_secs(1)).unwrap());
        let account = Account { public_id: "pk".into(), api_secret: Secret::new(secret), base_url: "http://x".into() };
        CloudPayments::new(client, account)
    }

    fn raw<'a>(path: &'a str, body: &'a [u8], sig: Option<&str>) -> RawNotification<'a> {
        let mut headers = vec![("content-type".to_owned(), "application/x-www-form-urlencoded".to_owned())];
        if let Some(s) = sig {
            headers.push(("content-hmac".to_owned(), s.to_owned()));
        }
        RawNotification { path, headers, body, source_ip: None }
    }

    #[tokio::test]
    async fn notifications_become_provider_neutral_events() {
        let pay = adapter("secret-123").notification(&raw("pay", BODY, Some(SIG))).await.unwrap();
        assert_eq!((pay.kind.as_str(), pay.dedup_key.as_str()), ("pay", "1001"));
        let NotificationEvent::Captured(report) = pay.event else { panic!("{:?}", pay.event) };
        assert_eq!(report.invoice_id.as_deref(), Some("inv-1"));
        assert_eq!(report.amount, Some(rust_decimal::Decimal::new(139000, 2)));
        assert!(matches!(
            adapter("secret-123").notification(&raw("pay", BODY, None)).await,
            Err(NotificationError::Unauthenticated(_))
        ));
        assert!(matches!(
            adapter("").notification(&raw("pay", BODY, Some(SIG))).await,
            Err(NotificationError::Unauthenticated(_))
        ));
        assert!(matches!(
            adapter("secret-123").notification(&raw("refundz", BODY, Some(SIG))).await,
            Err(NotificationError::UnknownKind(_))
        ));
    }

    #[test]
    fn hard_declines_are_the_documented_codes() {
        for code in HARD_DECLINES {
            assert_eq!(decline_class(Some(code)), DeclineClass::Hard);
        }
        assert_eq!(decline_class(Some("5051")), DeclineClass::Soft);
        assert_eq!(decline_class(None), DeclineClass::Soft);
    }

    #[test]
    fn check_verdicts_are_cloudpayments_codes() {
        let reply = |v| adapter("s").reply(NotificationReply::Check(v)).1["code"].as_i64().unwrap();
        assert_eq!(reply(CheckVerdict::Accept), 0);
        assert_eq!(reply(CheckVerdict::WrongInvoice), 10);
        assert_eq!(reply(CheckVerdict::Expired), 20);
        assert_eq!(adapter("s").reply(NotificationReply::Accepted), (200, json!({"code": 0})));
    }
}
