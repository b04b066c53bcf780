//! The checkout widget (GATEWAYS.md §1.2): Check, then Pay or Fail notifications,
//! signed with `Content-HMAC`/`X-Content-HMAC` over the exact body bytes, form- or
//! JSON-encoded as the site chose.

use actix_web::HttpResponse;
use actix_web::web::{Data, Json};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{CARD_OK, CardBehaviour, CloudPaymentsSim, Format, Site, Transaction, hmac_sha256, reason_name};

/// Widget parameters as the billing service returns them in `payment.confirmation`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WidgetParams {
    pub public_id: String,
    pub invoice_id: String,
    pub account_id: String,
    pub amount: String,
    pub currency: String,
    pub description: String,
    pub email: String,
}

/// One notification the simulator sent, with the merchant's answer.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub kind: String,
    pub http_status: u16,
    /// The `code` of the merchant's JSON answer, when it gave one.
    pub code: Option<i64>,
}

/// Result of a widget payment.
#[derive(Debug, Clone, Serialize)]
pub struct WidgetOutcome {
    pub transaction_id: i64,
    /// `Completed`, `Declined`, or `Rejected` (the merchant's Check refused it).
    pub status: String,
    pub check_code: Option<i64>,
    pub deliveries: Vec<Delivery>,
    /// The fields of the last notification sent, to replay it as a provider retry.
    pub fields: Vec<(String, String)>,
}

impl CloudPaymentsSim {
    /// Runs the checkout widget: Check, then Pay or Fail, like the real widget.
    pub async fn pay_widget(&self, params: &WidgetParams, card: &str) -> anyhow::Result<WidgetOutcome> {
        let (site, behaviour) = {
            let st = self.state();
            let site = st
                .sites
                .get(&params.public_id)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("unknown public id {}", params.public_id))?;
            (site, st.cards.get(card).copied().unwrap_or(CardBehaviour::Approve))
        };
        let amount: Decimal = params.amount.parse()?;
        let tx_id = self.next_transaction_id();
        let mut fields = base_fields(tx_id, params, amount, card);
        let mut deliveries = Vec::new();

        let check_code = if self.state().no_check.contains(&site.public_id) {
            Some(0)
        } else {
            let check = self.notify(&site, "check", &fields).await?;
            let code = check.code;
            deliveries.push(check);
            code
        };
        if check_code != Some(0) {
            return Ok(WidgetOutcome {
                transaction_id: tx_id,
                status: "Rejected".into(),
                check_code,
                deliveries,
                fields,
            });
        }
        let (reason_code, token) = match behaviour {
            CardBehaviour::Approve => {
                let token = Self::token_for(card);
                fields.push(("Token".into(), token.clone()));
                fields.push(("TotalFee".into(), "0".into()));
                (None, Some(token))
            }
            CardBehaviour::Decline { reason_code } => (Some(reason_code), None),
        };
        let (kind, status) = push_outcome(&mut fields, reason_code);
        self.state().transactions.push(Transaction {
            id: tx_id,
            public_id: site.public_id.clone(),
            invoice_id: Some(params.invoice_id.clone()),
            account_id: Some(params.account_id.clone()),
            amount,
            currency: params.currency.clone(),
            status: status.into(),
            reason_code,
            token,
            card_last_four: card.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect(),
            tr_initiator_code: None,
            payment_scheduled: None,
            request_id: None,
        });
        deliveries.push(self.notify(&site, kind, &fields).await?);
        Ok(WidgetOutcome { transaction_id: tx_id, status: status.into(), check_code, deliveries, fields })
    }

    /// Re-sends a notification exactly as before (providers retry).
    pub async fn resend(&self, public_id: &str, kind: &str, fields: &[(String, String)]) -> anyhow::Result<Delivery> {
        let site = self.state().sites.get(public_id).cloned().ok_or_else(|| anyhow::anyhow!("unknown site"))?;
        self.notify(&site, kind, fields).await
    }

    /// Signs and POSTs a notification to the site. With
    /// [`CloudPaymentsSim::set_notification_retries`] an unanswered or 5xx delivery
    /// is repeated, as CloudPayments repeats undelivered notifications.
    pub async fn notify(&self, site: &Site, kind: &str, fields: &[(String, String)]) -> anyhow::Result<Delivery> {
        let (body, content_type) = encode(site.format, fields)?;
        let signature = STANDARD.encode(hmac_sha256(site.api_secret.as_bytes(), &body));
        let retries = self.state().notify_retries;
        let mut tries = 0;
        loop {
            let sent = self
                .http
                .post(format!("{}/{kind}", site.notify_base.trim_end_matches('/')))
                .header("Content-Type", content_type)
                .header("Content-HMAC", &signature)
                .header("X-Content-HMAC", &signature)
                .body(body.clone())
                .send()
                .await;
            let retry = match &sent {
                Ok(res) => res.status().is_server_error(),
                Err(_) => true,
            };
            if retry && tries < retries {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                continue;
            }
            let res = sent?;
            let http_status = res.status().as_u16();
            let code = res.json::<serde_json::Value>().await.ok().and_then(|v| v.get("code").and_then(|c| c.as_i64()));
            return Ok(Delivery { kind: kind.into(), http_status, code });
        }
    }
}

/// Appends a payment's outcome to its notification fields (`Status`; for a
/// decline also `Reason` and `ReasonCode`) and names the notification and the
/// status: (`pay`, `Completed`) or (`fail`, `Declined`).
pub fn push_outcome(fields: &mut Vec<(String, String)>, decline: Option<u32>) -> (&'static str, &'static str) {
    match decline {
        None => {
            fields.push(("Status".into(), "Completed".into()));
            ("pay", "Completed")
        }
        Some(code) => {
            fields.push(("Status".into(), "Declined".into()));
            fields.push(("Reason".into(), reason_name(code).into()));
            fields.push(("ReasonCode".into(), code.to_string()));
            ("fail", "Declined")
        }
    }
}

/// The fields CloudPayments sends with every payment notification.
pub fn base_fields(tx_id: i64, p: &WidgetParams, amount: Decimal, card: &str) -> Vec<(String, String)> {
    let last4: String = card.chars().skip(card.len().saturating_sub(4)).collect();
    let first6: String = card.chars().take(6).collect();
    let now = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string();
    let amount = format!("{amount:.2}");
    [
        ("TransactionId", tx_id.to_string()),
        ("Amount", amount.clone()),
        ("Currency", p.currency.clone()),
        ("PaymentAmount", amount),
        ("PaymentCurrency", p.currency.clone()),
        ("DateTime", now),
        ("CardFirstSix", first6),
        ("CardLastFour", last4),
        ("CardType", "Visa".into()),
        ("CardExpDate", "12/29".into()),
        ("TestMode", "1".into()),
        ("OperationType", "Payment".into()),
        ("GatewayName", "Test".into()),
        ("InvoiceId", p.invoice_id.clone()),
        ("AccountId", p.account_id.clone()),
        ("Name", "CARDHOLDER NAME".into()),
        ("Email", p.email.clone()),
        ("IpAddress", "127.0.0.1".into()),
        ("IpCountry", "RU".into()),
        ("IpCity", "Москва".into()),
        ("Issuer", "Sim Bank".into()),
        ("Description", p.description.clone()),
        ("Data", "{}".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// A notification's fields as CloudPayments encodes them for the site's format:
/// (body, content type).
pub fn encode(format: Format, fields: &[(String, String)]) -> anyhow::Result<(Vec<u8>, &'static str)> {
    Ok(match format {
        Format::Form => (serde_urlencoded::to_string(fields)?.into_bytes(), "application/x-www-form-urlencoded"),
        Format::Json => {
            let mut map = serde_json::Map::new();
            for (k, v) in fields {
                // Amounts and ids are JSON numbers in CloudPayments' JSON notifications.
                let value = match k.as_str() {
                    "TransactionId" | "Amount" | "PaymentAmount" | "TotalFee" | "ReasonCode" => {
                        serde_json::from_str::<serde_json::Value>(v).unwrap_or(serde_json::Value::String(v.clone()))
                    }
                    _ => serde_json::Value::String(v.clone()),
                };
                map.insert(k.clone(), value);
            }
            (serde_json::to_vec(&map)?, "application/json")
        }
    })
}

#[derive(Deserialize)]
pub(super) struct PayRequest {
    #[serde(flatten)]
    params: WidgetParams,
    #[serde(default = "default_card")]
    card: String,
}

fn default_card() -> String {
    CARD_OK.to_owned()
}

pub(super) async fn http_pay_widget(sim: Data<CloudPaymentsSim>, req: Json<PayRequest>) -> HttpResponse {
    match sim.pay_widget(&req.params, &req.card).await {
        Ok(outcome) => HttpResponse::Ok().json(outcome),
        Err(e) => HttpResponse::BadRequest().json(serde_json::json!({"error": e.to_string()})),
    }
}
