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
mod tokens;
mod widget;

pub use refunds::{Refund, RefundScript};
pub use widget::{Delivery, WidgetOutcome, WidgetParams, base_fields, encode, push_outcome};

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex, MutexGuard};

use actix_web::web::{self, Data, Json};
use actix_web::{App, HttpResponse, HttpServer};
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
    /// How long every token charge takes to answer (0: at once).
    charge_latency_ms: u64,
    /// Token charges being answered now, and the most there ever were at once.
    charges_in_flight: usize,
    most_charges_in_flight: usize,
    /// Bench mode: tokens never seen in a widget payment are accepted too.
    accept_any_token: bool,
    refunds: Vec<refunds::Refund>,
    /// Sites whose Check notification is switched off (the merchant's choice).
    no_check: std::collections::HashSet<String>,
    refund_scripts: std::collections::VecDeque<refunds::RefundScript>,
    quiet_refunds: bool,
    /// How often an undelivered notification (no answer, 5xx) is repeated.
    notify_retries: u32,
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
                .route("/sim/widget/pay", web::post().to(widget::http_pay_widget))
                .route("/sim/transactions", web::get().to(http_transactions))
                .route("/sim/tokens/script", web::post().to(http_script_token))
                .route("/payments/tokens/charge", web::post().to(tokens::http_token_charge))
                .route("/payments/find", web::post().to(tokens::http_find))
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

    /// Repeats undelivered notifications (no answer or 5xx) up to `n` times, 250 ms
    /// apart (CloudPayments repeats them; the fault-injection run kills the API).
    pub fn set_notification_retries(&self, n: u32) {
        self.state().notify_retries = n;
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

    /// Makes every token charge take `ms` to answer (a provider under load).
    pub fn set_charge_latency_ms(&self, ms: u64) {
        self.state().charge_latency_ms = ms;
    }

    /// The most token charges the simulator was answering at once.
    pub fn most_charges_in_flight(&self) -> usize {
        self.state().most_charges_in_flight
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
}

/// Base64-free HMAC-SHA256 of `message` under `key` (notification signatures, token ids).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

async fn http_register_site(sim: Data<CloudPaymentsSim>, site: Json<Site>) -> HttpResponse {
    sim.register_site(site.into_inner());
    HttpResponse::NoContent().finish()
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
