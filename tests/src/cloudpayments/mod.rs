//! CloudPayments simulator.
//!
//! * The **widget**: [`CloudPaymentsSim::pay_widget`] takes the widget parameters a
//!   purchase returned, and like the real checkout sends the merchant's Check
//!   notification, then Pay (card authorised, with a card `Token`) or Fail (declined,
//!   with `ReasonCode`), each signed with `Content-HMAC` and `X-Content-HMAC`
//!   (base64 HMAC-SHA256 of the exact raw body bytes with the site's API secret).
//! * Notifications are form-urlencoded by default (the CloudPayments default) or JSON.
//! * The API: `POST /payments/tokens/charge` (HTTP Basic auth with the public id and
//!   API secret; `X-Request-ID` de-duplication, which tests can switch off so that a
//!   blind retry shows up as a double charge) with outcomes scriptable per card
//!   token — approve, decline with a code, time out or fail with a 5xx after (or
//!   before) charging — and `POST /payments/find` by `InvoiceId`. Token charges are
//!   followed by Pay/Fail notifications, as CloudPayments sends them.
//! * Refunds ([`refunds`]): `POST /payments/refund` (idempotent by `X-Request-ID`,
//!   scriptable), `POST /payments/get`, the Refund notification, and refunds made
//!   "in the dashboard" that only arrive as notifications.
//! * HTTP: `POST /sim/sites` registers a site (public id, API secret, notification
//!   base URL); `POST /sim/widget/pay` runs the widget flow for the demo;
//!   `POST /sim/tokens/script` scripts a token; `GET /sim/transactions` lists.

mod refunds;

pub use refunds::{Refund, RefundScript};

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
    /// Token charges: how the merchant flagged them.
    pub tr_initiator_code: Option<u8>,
    pub payment_scheduled: Option<u8>,
    pub request_id: Option<String>,
}

/// What the simulated processing does with the next charge of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum TokenScript {
    Approve,
    Decline {
        reason_code: u32,
    },
    /// Charges, then answers too late: the client times out, the money is taken.
    TimeoutAfterCharge,
    /// Answers too late without charging.
    TimeoutBeforeCharge,
    /// Charges, then answers HTTP 500.
    ErrorAfterCharge,
    /// Answers HTTP 500 without charging.
    ErrorBeforeCharge,
    /// Answers HTTP 408 without charging (an overloaded front end).
    BusyBeforeCharge,
}

#[derive(Debug, Default)]
struct State {
    sites: HashMap<String, Site>,
    cards: HashMap<String, CardBehaviour>,
    transactions: Vec<Transaction>,
    next_id: i64,
    token_scripts: HashMap<String, std::collections::VecDeque<TokenScript>>,
    /// X-Request-ID -> the answer given to it.
    answered: HashMap<String, serde_json::Value>,
    dedup_off: bool,
    quiet_token_charges: bool,
    slow_ms: u64,
    charge_requests: u64,
    /// Bench mode: tokens never seen in a widget payment are accepted too.
    accept_any_token: bool,
    refunds: Vec<refunds::Refund>,
    /// Sites whose Check notification is switched off (the merchant's choice).
    no_check: std::collections::HashSet<String>,
    refund_scripts: std::collections::VecDeque<refunds::RefundScript>,
    quiet_refunds: bool,
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
            state: Arc::new(Mutex::new(State { next_id: 100_000, slow_ms: 3000, ..State::default() })),
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
                .route("/sim/tokens/script", web::post().to(http_script_token))
                .route("/payments/tokens/charge", web::post().to(http_token_charge))
                .route("/payments/find", web::post().to(http_find))
                .route("/payments/refund", web::post().to(refunds::http_refund))
                .route("/payments/get", web::post().to(refunds::http_get))
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

    /// Rotates a site's API secret, as the merchant can in the dashboard: calls
    /// with the old secret are refused with HTTP 401 from now on, and
    /// notifications are signed with the new one.
    pub fn rotate_secret(&self, public_id: &str, new_secret: &str) {
        if let Some(site) = self.state().sites.get_mut(public_id) {
            site.api_secret = new_secret.to_owned();
        }
    }

    /// Switches a site's notification format.
    pub fn set_format(&self, public_id: &str, format: Format) {
        if let Some(site) = self.state().sites.get_mut(public_id) {
            site.format = format;
        }
    }

    /// Switches a site's Check notification off or on (it is optional in the
    /// dashboard): without it the widget captures without asking the merchant.
    pub fn set_check_notifications(&self, public_id: &str, on: bool) {
        let mut st = self.state();
        if on {
            st.no_check.remove(public_id);
        } else {
            st.no_check.insert(public_id.to_owned());
        }
    }

    /// Makes the issuer treat `card` this way from now on.
    pub fn script_card(&self, card: &str, behaviour: CardBehaviour) {
        self.state().cards.insert(card.to_owned(), behaviour);
    }

    pub fn transactions(&self) -> Vec<Transaction> {
        self.state().transactions.clone()
    }

    /// Scripts the next charges of `token` (later charges approve).
    pub fn script_token(&self, token: &str, script: &[TokenScript]) {
        self.state().token_scripts.entry(token.to_owned()).or_default().extend(script.iter().copied());
    }

    /// Switches `X-Request-ID` de-duplication off: every request charges.
    pub fn set_request_dedup(&self, on: bool) {
        self.state().dedup_off = !on;
    }

    /// Stops the Pay/Fail notifications that follow token charges.
    pub fn set_token_charge_notifications(&self, on: bool) {
        self.state().quiet_token_charges = !on;
    }

    /// Accepts tokens the simulator did not issue (benchmarks seed cards directly).
    pub fn set_accept_any_token(&self, on: bool) {
        self.state().accept_any_token = on;
    }

    /// How long a "slow" answer takes (must exceed the client's timeout).
    pub fn set_slow_ms(&self, ms: u64) {
        self.state().slow_ms = ms;
    }

    /// Completed charges with this InvoiceId (a double charge shows as 2).
    pub fn captures_for_invoice(&self, invoice_id: &str) -> usize {
        self.state()
            .transactions
            .iter()
            .filter(|t| t.status == "Completed" && t.invoice_id.as_deref() == Some(invoice_id))
            .count()
    }

    /// Completed charges per account (customer).
    pub fn captures_for_account(&self, account_id: &str) -> usize {
        self.state()
            .transactions
            .iter()
            .filter(|t| t.status == "Completed" && t.account_id.as_deref() == Some(account_id))
            .count()
    }

    /// Token charge requests received (including de-duplicated repeats).
    pub fn charge_requests(&self) -> u64 {
        self.state().charge_requests
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
            tr_initiator_code: None,
            payment_scheduled: None,
            request_id: None,
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

#[derive(Deserialize)]
struct ScriptRequest {
    token: String,
    script: Vec<TokenScript>,
}

async fn http_script_token(sim: Data<CloudPaymentsSim>, req: Json<ScriptRequest>) -> HttpResponse {
    sim.script_token(&req.token, &req.script);
    HttpResponse::NoContent().finish()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TokenChargeRequest {
    token: String,
    account_id: String,
    amount: Box<serde_json::value::RawValue>,
    currency: String,
    #[serde(default)]
    invoice_id: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    email: Option<String>,
    tr_initiator_code: u8,
    #[serde(default)]
    payment_scheduled: Option<u8>,
}

/// The site whose Basic credentials the request carries.
fn authenticate(sim: &CloudPaymentsSim, req: &actix_web::HttpRequest) -> Option<Site> {
    let header = req.headers().get("Authorization")?.to_str().ok()?;
    let encoded = header.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded).ok()?).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    sim.site(user).filter(|s| s.api_secret == pass)
}

async fn http_token_charge(sim: Data<CloudPaymentsSim>, req: actix_web::HttpRequest, body: web::Bytes) -> HttpResponse {
    let Some(site) = authenticate(&sim, &req) else {
        return HttpResponse::Unauthorized().finish();
    };
    // Amounts are JSON numbers: read them exactly.
    let Ok(charge) = serde_json::from_slice::<TokenChargeRequest>(&body) else {
        return HttpResponse::Ok().json(serde_json::json!({"Success": false, "Message": "Invalid request"}));
    };
    let Ok(amount) = charge.amount.get().parse::<Decimal>() else {
        return HttpResponse::Ok().json(serde_json::json!({"Success": false, "Message": "Invalid Amount"}));
    };
    if charge.tr_initiator_code > 1 {
        return HttpResponse::Ok()
            .json(serde_json::json!({"Success": false, "Message": "TrInitiatorCode is required"}));
    }
    let request_id = req.headers().get("X-Request-ID").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (script, slow, known_token) = {
        let mut st = sim.state();
        st.charge_requests += 1;
        if let Some(id) = &request_id
            && !st.dedup_off
            && let Some(previous) = st.answered.get(id)
        {
            return HttpResponse::Ok().json(previous.clone());
        }
        let known =
            st.accept_any_token || st.transactions.iter().any(|t| t.token.as_deref() == Some(charge.token.as_str()));
        let script =
            st.token_scripts.get_mut(&charge.token).and_then(|q| q.pop_front()).unwrap_or(TokenScript::Approve);
        (script, st.slow_ms, known)
    };
    if !known_token {
        return HttpResponse::Ok().json(serde_json::json!({"Success": false, "Message": "Token not found"}));
    }
    let charges = !matches!(
        script,
        TokenScript::TimeoutBeforeCharge | TokenScript::ErrorBeforeCharge | TokenScript::BusyBeforeCharge
    );
    let mut answer = serde_json::json!({"Success": false, "Message": null});
    if charges {
        let tx_id = sim.next_transaction_id();
        let decline = match script {
            TokenScript::Decline { reason_code } => Some(reason_code),
            _ => None,
        };
        let status = if decline.is_some() { "Declined" } else { "Completed" };
        sim.state().transactions.push(Transaction {
            id: tx_id,
            public_id: site.public_id.clone(),
            invoice_id: charge.invoice_id.clone(),
            account_id: Some(charge.account_id.clone()),
            amount,
            currency: charge.currency.clone(),
            status: status.into(),
            reason_code: decline,
            token: Some(charge.token.clone()),
            card_last_four: "4444".into(),
            tr_initiator_code: Some(charge.tr_initiator_code),
            payment_scheduled: charge.payment_scheduled,
            request_id: request_id.clone(),
        });
        let mut model = serde_json::json!({
            "TransactionId": tx_id, "Amount": json_number(amount), "Currency": charge.currency, "InvoiceId": charge.invoice_id,
            "AccountId": charge.account_id, "Status": status, "Token": charge.token, "TestMode": true,
        });
        if let Some(code) = decline {
            model["ReasonCode"] = serde_json::json!(code);
            model["Reason"] = serde_json::json!(reason_name(code));
            model["CardHolderMessage"] = serde_json::json!("Операция отклонена");
        }
        answer = serde_json::json!({"Success": decline.is_none(), "Message": null, "Model": model});
        if let Some(id) = &request_id {
            sim.state().answered.insert(id.clone(), answer.clone());
        }
        if !sim.state().quiet_token_charges {
            let sim = sim.get_ref().clone();
            let params = WidgetParams {
                public_id: site.public_id.clone(),
                invoice_id: charge.invoice_id.clone().unwrap_or_default(),
                account_id: charge.account_id.clone(),
                amount: format!("{amount:.2}"),
                currency: charge.currency.clone(),
                description: charge.description.clone().unwrap_or_default(),
                email: charge.email.clone().unwrap_or_default(),
            };
            let token = charge.token.clone();
            tokio::spawn(async move {
                let mut fields = base_fields(tx_id, &params, amount, "5555555555554444");
                fields.push(("Token".into(), token));
                let kind = match decline {
                    None => {
                        fields.push(("Status".into(), "Completed".into()));
                        "pay"
                    }
                    Some(code) => {
                        fields.push(("Status".into(), "Declined".into()));
                        fields.push(("Reason".into(), reason_name(code).into()));
                        fields.push(("ReasonCode".into(), code.to_string()));
                        "fail"
                    }
                };
                let _ = sim.notify(&site, kind, &fields).await;
            });
        }
    }
    match script {
        TokenScript::TimeoutAfterCharge | TokenScript::TimeoutBeforeCharge => {
            tokio::time::sleep(std::time::Duration::from_millis(slow)).await;
            HttpResponse::Ok().json(answer)
        }
        TokenScript::ErrorAfterCharge | TokenScript::ErrorBeforeCharge => HttpResponse::InternalServerError().finish(),
        TokenScript::BusyBeforeCharge => HttpResponse::RequestTimeout().finish(),
        _ => HttpResponse::Ok().json(answer),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FindRequest {
    invoice_id: String,
}

async fn http_find(sim: Data<CloudPaymentsSim>, req: actix_web::HttpRequest, body: Json<FindRequest>) -> HttpResponse {
    if authenticate(&sim, &req).is_none() {
        return HttpResponse::Unauthorized().finish();
    }
    let found = sim
        .state()
        .transactions
        .iter()
        .rev()
        .find(|t| t.invoice_id.as_deref() == Some(body.invoice_id.as_str()))
        .cloned();
    match found {
        None => HttpResponse::Ok().json(serde_json::json!({"Success": false, "Message": "Not found"})),
        Some(t) => {
            let mut model = serde_json::json!({"TransactionId": t.id, "Amount": json_number(t.amount), "Currency": t.currency,
                "InvoiceId": t.invoice_id, "AccountId": t.account_id, "Status": t.status});
            if let Some(code) = t.reason_code {
                model["ReasonCode"] = serde_json::json!(code);
                model["Reason"] = serde_json::json!(reason_name(code));
            }
            HttpResponse::Ok().json(serde_json::json!({"Success": true, "Message": null, "Model": model}))
        }
    }
}

/// An amount as a JSON number, the way CloudPayments writes it.
fn json_number(amount: Decimal) -> serde_json::Value {
    serde_json::from_str(&format!("{amount:.2}")).unwrap_or(serde_json::Value::Null)
}
