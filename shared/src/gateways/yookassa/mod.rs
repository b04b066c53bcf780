//! YooKassa adapter of the gateway port (GATEWAYS.md §2, API v3).
//!
//! * **Checkout**: `POST /v3/payments` with `capture: true`,
//!   `save_payment_method: true`, an embedded confirmation and our attempt and
//!   customer ids in `metadata`, under `Idempotence-Key` = our attempt id — asking
//!   again for the same attempt answers the same payment and confirmation token.
//! * **Autopayments**: the same call with `payment_method_id`. A `pending` answer is
//!   followed by `GET /v3/payments/{id}`; a payment still being processed, a 202,
//!   a 5xx or a timeout is an unknown outcome, settled by re-sending the same
//!   request under the same key (YooKassa keeps a key's result; its lifetime,
//!   commonly said to be 24 h, is UNCONFIRMED — reconciliation runs within minutes).
//!   [`PaymentGateway::find_attempt`] therefore answers `NotFound`: YooKassa cannot
//!   look a payment up by our id, and re-sending under the key is the lookup.
//! * **Declines**: `cancellation_details.reason` `permission_revoked`,
//!   `card_expired`, `invalid_card_number` and `payment_method_restricted` are hard
//!   (SPEC §4: stop retrying, revoke the method); others are soft. A cancellation by
//!   `party: merchant` (e.g. `canceled_by_merchant`) is the merchant's side failing,
//!   never a decline ([`GatewayError::Refused`]).
//! * **Two-stage payments** (`waiting_for_capture`) are never left hanging: our
//!   own charges are captured at once; a notified one becomes a Check whose verdict
//!   [`PaymentGateway::settle_check`] carries out (capture, or cancel).
//! * **Notifications** are not signed: the peer address must be in the shop's
//!   allowlist (default: YooKassa's published ranges), and the object named is
//!   re-fetched with the shop's credentials; only what that answers is acted on.
//!   An object YooKassa does not know is refused ([`NotificationError::UnknownObject`]),
//!   and when YooKassa cannot be asked the notification is refused with 503 so it is
//!   delivered again. Accepted notifications are answered HTTP 200 `{}`.

pub mod client;
pub mod wire;

use async_trait::async_trait;
use ipnet::IpNet;
use serde_json::json;

use self::client::{Account, Client};
use self::wire::{
    CancellationDetails, ConfirmationRequest, CreatePayment, CreateRefund, Metadata, NotificationBody, ObjectKind,
    Party, Payment, PaymentStatus, RefundStatus,
};
use super::{
    AttemptLookup, CardDetails, ChargeOutcome, ChargeRequest, CheckVerdict, CheckoutRequest, Confirmation, Decline,
    DeclineClass, GatewayError, Notification, NotificationError, NotificationEvent, NotificationReply, PaymentGateway,
    PaymentReport, RawNotification, RefundLookup, RefundOutcome, RefundReport, RefundRequest,
};
use crate::domain::tenant::parse_ip_range;

/// Production API base; a tenant's `api_url` overrides it.
pub const DEFAULT_API_URL: &str = "https://api.yookassa.ru/v3/";

/// The provider's name, stored with its payments and notifications.
pub const PROVIDER: &str = "yookassa";

/// Where YooKassa sends notifications from (`yookassa-sdk-php`
/// `SecurityHelper::isIPTrusted`, GATEWAYS.md §2).
pub const PUBLISHED_RANGES: [&str; 7] = [
    "185.71.76.0/27",
    "185.71.77.0/27",
    "77.75.153.0/25",
    "77.75.154.128/25",
    "77.75.156.11/32",
    "77.75.156.35/32",
    "2a02:5180::/32",
];

/// Cancellation reasons after which charging the method again is pointless (SPEC §4).
const HARD_DECLINES: [&str; 4] =
    ["permission_revoked", "card_expired", "invalid_card_number", "payment_method_restricted"];

/// How long after an attempt was made a re-send under its key is trusted to be
/// de-duplicated by YooKassa. Its key lifetime is commonly said to be 24 h
/// (UNCONFIRMED, GATEWAYS.md §6); past this margin a charge is not sent again but
/// refused for an operator, who checks the payment (`metadata.attempt_id`) in the
/// YooKassa dashboard — a second charge is never risked.
pub const KEY_TRUSTED_FOR: std::time::Duration = std::time::Duration::from_secs(20 * 3600);

/// Refuses to send attempt `attempt_id` (a UUIDv7: its creation time is in it)
/// once its key may have expired at YooKassa. Ids without a timestamp pass.
fn key_still_kept(attempt_id: &str, now: std::time::SystemTime) -> Result<(), GatewayError> {
    let Some(made) = uuid::Uuid::parse_str(attempt_id).ok().and_then(|id| id.get_timestamp()) else {
        return Ok(());
    };
    let (secs, nanos) = made.to_unix();
    let made = std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos);
    match now.duration_since(made) {
        Ok(age) if age > KEY_TRUSTED_FOR => Err(GatewayError::Refused(format!(
            "attempt {attempt_id} was made {} h ago, longer than YooKassa is trusted to keep its Idempotence-Key: \
             check the payment with this metadata.attempt_id in the YooKassa dashboard before charging again",
            age.as_secs() / 3600
        ))),
        _ => Ok(()),
    }
}

/// A decline's class by its cancellation reason.
pub fn decline_class(reason: &str) -> DeclineClass {
    if HARD_DECLINES.contains(&reason) { DeclineClass::Hard } else { DeclineClass::Soft }
}

/// The adapter: one shop over a shared HTTP client.
pub struct YooKassa {
    client: Client,
    account: Account,
    notification_ips: Vec<IpNet>,
}

impl YooKassa {
    /// The adapter for one shop; `notification_ips` (CIDRs) replaces the published
    /// ranges. Errors: a range that does not parse (tenant settings are validated
    /// when saved, so this is a corrupt setting).
    pub fn new(client: Client, account: Account, notification_ips: Option<&[String]>) -> Result<Self, GatewayError> {
        let ranges: Vec<&str> = match notification_ips {
            Some(ips) => ips.iter().map(String::as_str).collect(),
            None => PUBLISHED_RANGES.to_vec(),
        };
        let notification_ips = ranges
            .into_iter()
            .map(|r| parse_ip_range(r).map_err(|e| GatewayError::Protocol(format!("notification_ips: {e}"))))
            .collect::<Result<_, _>>()?;
        Ok(YooKassa { client, account, notification_ips })
    }

    fn trusted(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        self.notification_ips.iter().any(|net| net.contains(&ip))
    }

    /// What a payment object says about one of our charges; a payment awaiting
    /// capture is captured first, one still pending is an unknown outcome.
    async fn outcome(&self, p: Payment) -> Result<ChargeOutcome, GatewayError> {
        let p = match p.status {
            PaymentStatus::WaitingForCapture => self.client.capture(&self.account, &p.id, p.amount.clone()).await?,
            _ => p,
        };
        match p.status {
            PaymentStatus::Succeeded => Ok(ChargeOutcome::Captured { transaction_id: p.id }),
            PaymentStatus::Canceled => Ok(ChargeOutcome::Declined(declined(&p)?)),
            PaymentStatus::Pending | PaymentStatus::WaitingForCapture => {
                Err(GatewayError::Unknown(format!("payment {} is still {}", p.id, p.status.as_str())))
            }
        }
    }

    async fn payment_notification(&self, n: &NotificationBody) -> Result<Notification, NotificationError> {
        let p = self
            .client
            .payment(&self.account, &n.object.id)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| unknown_object(n))?;
        let kind = format!("payment.{}", p.status.as_str());
        let event = match p.status {
            PaymentStatus::Succeeded => NotificationEvent::Captured(report(&p)),
            PaymentStatus::WaitingForCapture => NotificationEvent::Check(report(&p)),
            PaymentStatus::Canceled => match declined(&p) {
                Ok(decline) => NotificationEvent::Declined(report(&p), decline),
                // The merchant's own cancellation (ours, after a Check refused it).
                Err(_) => NotificationEvent::Recorded,
            },
            PaymentStatus::Pending => NotificationEvent::Recorded,
        };
        Ok(Notification { kind, dedup_key: p.id, event })
    }

    async fn refund_notification(&self, n: &NotificationBody) -> Result<Notification, NotificationError> {
        let r = self
            .client
            .refund(&self.account, &n.object.id)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| unknown_object(n))?;
        let event = match r.status {
            RefundStatus::Succeeded => NotificationEvent::Refunded(RefundReport {
                transaction_id: r.id.clone(),
                payment_transaction_id: Some(r.payment_id.clone()),
                amount: Some(r.amount.value),
                refund_id: wire::refund_id_of(r.description.as_deref()),
            }),
            RefundStatus::Pending | RefundStatus::Canceled => NotificationEvent::Recorded,
        };
        Ok(Notification { kind: format!("refund.{}", r.status.as_str()), dedup_key: r.id, event })
    }
}

fn unavailable(e: GatewayError) -> NotificationError {
    NotificationError::Unavailable(format!("could not fetch the notified object from YooKassa: {e}"))
}

fn unknown_object(n: &NotificationBody) -> NotificationError {
    NotificationError::UnknownObject {
        key: format!("{}:{}", n.event, n.object.id),
        detail: format!("YooKassa does not know the object {:?} this {} notification names", n.object.id, n.event),
    }
}

/// A canceled payment's decline; the merchant's own cancellation is a refusal.
fn declined(p: &Payment) -> Result<Decline, GatewayError> {
    let Some(CancellationDetails { party, reason }) = &p.cancellation_details else {
        return Ok(Decline { transaction_id: Some(p.id.clone()), code: None, reason: None, class: DeclineClass::Soft });
    };
    if *party == Party::Merchant {
        return Err(GatewayError::Refused(format!("payment {} canceled on the merchant's side: {reason}", p.id)));
    }
    Ok(Decline {
        transaction_id: Some(p.id.clone()),
        code: Some(reason.clone()),
        reason: Some(reason.replace('_', " ")),
        class: decline_class(reason),
    })
}

/// A payment object as a provider-neutral report; the method is reported as a
/// card to keep only when YooKassa saved it.
fn report(p: &Payment) -> PaymentReport {
    let method = p.payment_method.as_ref();
    let card = method.and_then(|m| m.card.clone()).unwrap_or_default();
    PaymentReport {
        transaction_id: p.id.clone(),
        invoice_id: p.meta("attempt_id"),
        account_id: p.meta("customer_id"),
        amount: Some(p.amount.value),
        currency: Some(p.amount.currency.clone()),
        card: CardDetails {
            token: method.filter(|m| m.saved).map(|m| m.id.clone()),
            first_six: card.first6,
            last_four: card.last4,
            card_type: card.card_type,
            exp: match (card.expiry_month, card.expiry_year) {
                (Some(m), Some(y)) => Some(format!("{m}/{}", y.get(y.len().saturating_sub(2)..).unwrap_or(&y))),
                _ => None,
            },
        },
    }
}

fn metadata(attempt_id: &str, customer_id: &str) -> Metadata {
    Metadata { attempt_id: attempt_id.to_owned(), customer_id: customer_id.to_owned() }
}

#[async_trait]
impl PaymentGateway for YooKassa {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    async fn charge(&self, req: &ChargeRequest<'_>) -> Result<ChargeOutcome, GatewayError> {
        key_still_kept(req.attempt_id, std::time::SystemTime::now())?;
        let body = CreatePayment {
            amount: req.amount.into(),
            capture: true,
            description: wire::description(req.description),
            metadata: metadata(req.attempt_id, req.customer_id),
            confirmation: None,
            save_payment_method: None,
            payment_method_id: Some(req.method_token),
        };
        let created = self.client.create_payment(&self.account, req.attempt_id, &body).await?;
        // A repeated key answers the first result: ask for the payment's state now.
        let current = match created.status {
            PaymentStatus::Pending | PaymentStatus::WaitingForCapture => {
                self.client.payment(&self.account, &created.id).await?.unwrap_or(created)
            }
            _ => created,
        };
        self.outcome(current).await
    }

    async fn find_attempt(&self, _attempt_id: &str) -> Result<AttemptLookup, GatewayError> {
        // No lookup by our id: re-sending under the same Idempotence-Key is the lookup.
        Ok(AttemptLookup::ResendToKnow)
    }

    async fn refund(&self, req: &RefundRequest<'_>) -> Result<RefundOutcome, GatewayError> {
        let body = CreateRefund {
            payment_id: req.payment_transaction_id,
            amount: req.amount.into(),
            description: wire::refund_description(req.refund_id),
        };
        let r = self.client.create_refund(&self.account, req.idempotency_key, &body).await?;
        Ok(match r.status {
            RefundStatus::Canceled => RefundOutcome::Refused {
                message: r.cancellation_details.map_or_else(|| "refund canceled".into(), |d| d.reason),
            },
            RefundStatus::Pending | RefundStatus::Succeeded => RefundOutcome::Accepted { transaction_id: r.id },
        })
    }

    async fn find_refund(&self, transaction_id: &str) -> Result<RefundLookup, GatewayError> {
        Ok(match self.client.refund(&self.account, transaction_id).await? {
            None => RefundLookup::NotFound,
            Some(r) => match r.status {
                RefundStatus::Pending => RefundLookup::InProgress,
                RefundStatus::Succeeded => RefundLookup::Completed,
                RefundStatus::Canceled => RefundLookup::Declined { reason: r.cancellation_details.map(|d| d.reason) },
            },
        })
    }

    async fn checkout(&self, req: &CheckoutRequest<'_>) -> Result<Confirmation, GatewayError> {
        let body = CreatePayment {
            amount: req.amount.into(),
            capture: true,
            description: wire::description(req.description),
            metadata: metadata(req.attempt_id, req.customer_id),
            confirmation: Some(ConfirmationRequest { kind: "embedded" }),
            save_payment_method: Some(true),
            payment_method_id: None,
        };
        let p = self.client.create_payment(&self.account, req.attempt_id, &body).await?;
        let token = p.confirmation.and_then(|c| c.confirmation_token).ok_or_else(|| {
            GatewayError::Protocol(format!("payment {} was answered without a confirmation_token", p.id))
        })?;
        Ok(Confirmation::YookassaWidget { confirmation_token: token, payment_id: p.id })
    }

    async fn notification(&self, raw: &RawNotification<'_>) -> Result<Notification, NotificationError> {
        if !raw.path.is_empty() {
            return Err(NotificationError::UnknownKind(format!("unknown notification path {:?}", raw.path)));
        }
        match raw.source_ip {
            Some(ip) if self.trusted(ip) => {}
            other => {
                return Err(NotificationError::Unauthenticated(format!(
                    "notification from {other:?}, outside the shop's notification_ips"
                )));
            }
        }
        let (n, object) = NotificationBody::parse(raw.body).map_err(NotificationError::Malformed)?;
        match object {
            Some(ObjectKind::Payment) => self.payment_notification(&n).await,
            Some(ObjectKind::Refund) => self.refund_notification(&n).await,
            None => {
                Ok(Notification { kind: n.event.clone(), dedup_key: n.object.id, event: NotificationEvent::Recorded })
            }
        }
    }

    async fn settle_check(&self, report: &PaymentReport, verdict: CheckVerdict) -> Result<(), GatewayError> {
        let id = &report.transaction_id;
        let p = match verdict {
            CheckVerdict::Accept => {
                let (Some(value), Some(currency)) = (report.amount, report.currency.clone()) else {
                    return Err(GatewayError::Protocol(format!("payment {id} has no amount to capture")));
                };
                self.client.capture(&self.account, id, wire::Amount { value, currency }).await?
            }
            _ => self.client.cancel(&self.account, id).await?,
        };
        match p.status {
            PaymentStatus::Succeeded | PaymentStatus::Canceled => Ok(()),
            _ => Err(GatewayError::Unknown(format!("payment {id} is still {} after our verdict", p.status.as_str()))),
        }
    }

    fn reply(&self, _reply: NotificationReply) -> (u16, serde_json::Value) {
        (200, json!({}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn adapter(ips: Option<&[String]>) -> YooKassa {
        crate::telemetry::install_crypto_provider();
        let client = Client::new(crate::provider_http::client(std::time::Duration::from_secs(1)).unwrap());
        let account =
            Account { shop_id: "1".into(), api_secret: Secret::new("s"), base_url: "http://127.0.0.1:9".into() };
        YooKassa::new(client, account, ips).unwrap()
    }

    #[test]
    fn notifications_are_trusted_only_from_the_allowlist() {
        let published = adapter(None);
        for ok in ["185.71.76.5", "77.75.156.11", "2a02:5180::1", "::ffff:185.71.77.1"] {
            assert!(published.trusted(ok.parse().unwrap()), "{ok}");
        }
        for bad in ["127.0.0.1", "77.75.156.12", "185.71.76.32", "2a03::1"] {
            assert!(!published.trusted(bad.parse().unwrap()), "{bad}");
        }
        let local = adapter(Some(&["127.0.0.0/8".to_owned()]));
        assert!(local.trusted("127.0.0.1".parse().unwrap()));
        assert!(!local.trusted("185.71.76.5".parse().unwrap()));
    }

    #[tokio::test]
    async fn an_untrusted_source_is_refused_before_anything_is_read() {
        let body = br#"{"type":"notification","event":"payment.succeeded","object":{"id":"p-1"}}"#;
        let raw = |ip: Option<&str>| RawNotification {
            path: "",
            headers: vec![],
            body,
            source_ip: ip.map(|i| i.parse().unwrap()),
        };
        for ip in [None, Some("10.0.0.1")] {
            let refused = adapter(None).notification(&raw(ip)).await;
            assert!(matches!(refused, Err(NotificationError::Unauthenticated(_))), "{refused:?}");
        }
        // Trusted, but YooKassa cannot be asked (nothing listens): 503, delivered again.
        let unavailable = adapter(Some(&["10.0.0.0/8".to_owned()])).notification(&raw(Some("10.0.0.1"))).await;
        assert!(matches!(unavailable, Err(NotificationError::Unavailable(_))), "{unavailable:?}");
    }

    #[test]
    fn old_attempts_are_not_sent_again_under_a_key_that_may_have_expired() {
        let now = std::time::SystemTime::now();
        let secs = now.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let made = |hours_ago: u64| {
            let ts = uuid::Timestamp::from_unix(uuid::NoContext, secs - hours_ago * 3600, 0);
            uuid::Uuid::new_v7(ts).to_string()
        };
        assert!(key_still_kept(&made(0), now).is_ok());
        assert!(key_still_kept(&made(19), now).is_ok());
        assert!(matches!(key_still_kept(&made(21), now), Err(GatewayError::Refused(_))));
        assert!(key_still_kept(&uuid::Uuid::new_v4().to_string(), now).is_ok(), "no timestamp: cannot tell");
        assert!(key_still_kept("not-a-uuid", now).is_ok());
    }

    #[test]
    fn declines_follow_the_cancellation_party_and_reason() {
        let canceled = |party: &str, reason: &str| -> Payment {
            serde_json::from_value(
                json!({"id": "p", "status": "canceled", "amount": {"value": "1.00", "currency": "RUB"},
                "cancellation_details": {"party": party, "reason": reason}}),
            )
            .unwrap()
        };
        assert_eq!(declined(&canceled("payment_network", "permission_revoked")).unwrap().class, DeclineClass::Hard);
        assert_eq!(declined(&canceled("yoo_kassa", "card_expired")).unwrap().class, DeclineClass::Hard);
        let soft = declined(&canceled("payment_network", "insufficient_funds")).unwrap();
        assert_eq!((soft.class, soft.code.as_deref()), (DeclineClass::Soft, Some("insufficient_funds")));
        assert!(matches!(declined(&canceled("merchant", "canceled_by_merchant")), Err(GatewayError::Refused(_))));
    }
}
