//! CloudPayments simulator.
//!
//! * The **widget**: [`CloudPaymentsSim::pay_widget`] takes the widget parameters a
//!   purchase returned, and like the real checkout sends the merchant's Check
//!   notification, then Pay (card authorised, with a card `Token`) or Fail (declined,
//!   with `ReasonCode`), each signed with `Content-HMAC` and `X-Content-HMAC`
//!   (base64 HMAC-SHA256 of the exact raw body bytes with the site's API secret).
//! * Notifications are form-urlencoded by default (the CloudPayments default) or JSON.
//! * HTTP: `POST /sim/sites` registers a site (public id, API secret, notification
//!   base URL); `POST /sim/widget/pay` runs the widget flow for the demo.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex, MutexGuard};

use actix_web::web::{self, Data, Json};
use actix_web::{App, HttpResponse, HttpServer};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// How a site wants its notifications encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    #[default]
    Form,
    Json,
}

/// A merchant site: what the real dashboard configures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Site {
    pub public_id: String,
    pub api_secret: String,
    /// Notifications go to `<notify_base>/check`, `/pay`, `/fail`, ...
    pub notify_base: String,
    #[serde(default)]
    pub format: Format,
}

/// What the issuer does with a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CardBehaviour {
    Approve,
    Decline { reason_code: u32 },
}

/// Reason names for the decline codes of GATEWAYS.md §1.3.
pub fn reason_name(code: u32) -> &'static str {
    match code {
        5001 => "ReferToCardIssuer",
        5005 => "DoNotHonor",
        5006 => "Error",
        5012 => "InvalidTransaction",
        5013 => "AmountError",
        5034 => "SuspectedFraud",
        5041 => "LostCard",
        5043 => "StolenCard",
        5051 => "InsufficientFunds",
        5054 => "ExpiredCard",
        5057 => "TransactionNotPermitted",
        5065 => "ExceedWithdrawalFrequency",
        5082 => "IncorrectCVV",
        5091 | 5092 => "IssuerUnavailable",
        5096 => "SystemError",
        5204 => "UnableToProcess",
        5206 => "Authentication failed",
        5300 => "AntiFraud",
        _ => "Declined",
    }
}

/// A captured or declined transaction as the simulator keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct Transaction {
    pub id: i64,
    pub public_id: String,
    pub invoice_id: Option<String>,
    pub account_id: Option<String>,
    pub amount: Decimal,
    pub currency: String,
    /// `Completed`, `Declined`.
    pub status: String,
    pub reason_code: Option<u32>,
    pub token: Option<String>,
    pub card_last_four: String,
}

#[derive(Debug, Default)]
struct State {
    sites: HashMap<String, Site>,
    cards: HashMap<String, CardBehaviour>,
    transactions: Vec<Transaction>,
    next_id: i64,
}

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

/// A running simulator.
#[derive(Clone)]
pub struct CloudPaymentsSim {
    pub base_url: String,
    state: Arc<Mutex<State>>,
    http: reqwest::Client,
}

/// Card numbers of the CloudPayments test environment (their documented behaviour).
pub const CARD_OK: &str = "5555555555554444";
pub const CARD_INSUFFICIENT_FUNDS: &str = "4012888888881881";

impl CloudPaymentsSim {
    /// Starts the simulator's HTTP server on `addr` (`127.0.0.1:0` for any port).
    pub fn start(addr: &str) -> std::io::Result<CloudPaymentsSim> {
        let listener = TcpListener::bind(addr)?;
        let port = listener.local_addr()?.port();
        let sim = CloudPaymentsSim {
            base_url: format!("http://127.0.0.1:{port}"),
            state: Arc::new(Mutex::new(State { next_id: 100_000, ..State::default() })),
            http: reqwest::Client::builder().no_proxy().build().map_err(std::io::Error::other)?,
        };
        sim.script_card(CARD_INSUFFICIENT_FUNDS, CardBehaviour::Decline { reason_code: 5051 });
        let data = Data::new(sim.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/sim/sites", web::post().to(http_register_site))
                .route("/sim/widget/pay", web::post().to(http_pay_widget))
                .route("/sim/transactions", web::get().to(http_transactions))
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

    pub fn register_site(&self, site: Site) {
        self.state().sites.insert(site.public_id.clone(), site);
    }

    pub fn site(&self, public_id: &str) -> Option<Site> {
        self.state().sites.get(public_id).cloned()
    }

    /// Switches a site's notification format.
    pub fn set_format(&self, public_id: &str, format: Format) {
        if let Some(site) = self.state().sites.get_mut(public_id) {
            site.format = format;
        }
    }

    /// Makes the issuer treat `card` this way from now on.
    pub fn script_card(&self, card: &str, behaviour: CardBehaviour) {
        self.state().cards.insert(card.to_owned(), behaviour);
    }

    pub fn transactions(&self) -> Vec<Transaction> {
        self.state().transactions.clone()
    }

    fn next_transaction_id(&self) -> i64 {
        let mut st = self.state();
        st.next_id += 1;
        st.next_id
    }

    /// The card token CloudPayments would issue for `card` (stable per card).
    pub fn token_for(card: &str) -> String {
        let digest = hmac_sha256(b"sim-token", card.as_bytes());
        format!("tk_{}", hex::encode(&digest[..12]))
    }

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

        let check = self.notify(&site, "check", &fields).await?;
        let check_code = check.code;
        deliveries.push(check);
        if check_code != Some(0) {
            return Ok(WidgetOutcome {
                transaction_id: tx_id,
                status: "Rejected".into(),
                check_code,
                deliveries,
                fields,
            });
        }
        let (status, reason_code, token) = match behaviour {
            CardBehaviour::Approve => {
                let token = Self::token_for(card);
                fields.push(("Status".into(), "Completed".into()));
                fields.push(("Token".into(), token.clone()));
                fields.push(("TotalFee".into(), "0".into()));
                ("Completed", None, Some(token))
            }
            CardBehaviour::Decline { reason_code } => {
                fields.push(("Status".into(), "Declined".into()));
                fields.push(("Reason".into(), reason_name(reason_code).into()));
                fields.push(("ReasonCode".into(), reason_code.to_string()));
                ("Declined", Some(reason_code), None)
            }
        };
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
        });
        let kind = if status == "Completed" { "pay" } else { "fail" };
        deliveries.push(self.notify(&site, kind, &fields).await?);
        Ok(WidgetOutcome { transaction_id: tx_id, status: status.into(), check_code, deliveries, fields })
    }

    /// Re-sends a notification exactly as before (providers retry).
    pub async fn resend(&self, public_id: &str, kind: &str, fields: &[(String, String)]) -> anyhow::Result<Delivery> {
        let site = self.state().sites.get(public_id).cloned().ok_or_else(|| anyhow::anyhow!("unknown site"))?;
        self.notify(&site, kind, fields).await
    }

    /// Signs and POSTs a notification to the site.
    pub async fn notify(&self, site: &Site, kind: &str, fields: &[(String, String)]) -> anyhow::Result<Delivery> {
        let (body, content_type) = encode(site.format, fields)?;
        let signature = STANDARD.encode(hmac_sha256(site.api_secret.as_bytes(), &body));
        let res = self
            .http
            .post(format!("{}/{kind}", site.notify_base.trim_end_matches('/')))
            .header("Content-Type", content_type)
            .header("Content-HMAC", &signature)
            .header("X-Content-HMAC", &signature)
            .body(body)
            .send()
            .await?;
        let http_status = res.status().as_u16();
        let code = res.json::<serde_json::Value>().await.ok().and_then(|v| v.get("code").and_then(|c| c.as_i64()));
        Ok(Delivery { kind: kind.into(), http_status, code })
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

fn encode(format: Format, fields: &[(String, String)]) -> anyhow::Result<(Vec<u8>, &'static str)> {
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

pub fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

#[derive(Deserialize)]
struct PayRequest {
    #[serde(flatten)]
    params: WidgetParams,
    #[serde(default = "default_card")]
    card: String,
}

fn default_card() -> String {
    CARD_OK.to_owned()
}

async fn http_register_site(sim: Data<CloudPaymentsSim>, site: Json<Site>) -> HttpResponse {
    sim.register_site(site.into_inner());
    HttpResponse::NoContent().finish()
}

async fn http_pay_widget(sim: Data<CloudPaymentsSim>, req: Json<PayRequest>) -> HttpResponse {
    match sim.pay_widget(&req.params, &req.card).await {
        Ok(outcome) => HttpResponse::Ok().json(outcome),
        Err(e) => HttpResponse::BadRequest().json(serde_json::json!({"error": e.to_string()})),
    }
}

async fn http_transactions(sim: Data<CloudPaymentsSim>) -> HttpResponse {
    HttpResponse::Ok().json(sim.transactions())
}
