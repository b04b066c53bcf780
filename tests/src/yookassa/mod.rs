//! YooKassa API v3 simulator (GATEWAYS.md §2).
//!
//! * `POST /v3/payments` (HTTP Basic auth `shop_id:secret_key`, `Idempotence-Key`
//!   required): with `confirmation: {type: "embedded"}` a `pending` payment with a
//!   `confirmation_token`, which the customer pays through [`YooKassaSim::confirm`]
//!   (the checkout widget: `succeeded` with the card saved when
//!   `save_payment_method` was asked, `waiting_for_capture` for a card scripted to
//!   hold, `canceled` with `cancellation_details` for a declined card); with
//!   `payment_method_id` an autopayment of a saved method, its outcome scriptable
//!   per method — approve, decline with a reason, a cancellation on the merchant's
//!   side, stay `pending` until fetched, answer `202` "processing", time out or fail
//!   with a 500 after (or before) charging.
//! * A repeated `Idempotence-Key` answers the first request's result (tests can
//!   switch that off, so that a blind retry shows up as a second charge).
//! * `GET /v3/payments/{id}`, `POST /v3/payments/{id}/capture` and `/cancel`,
//!   `POST /v3/refunds` (never beyond what is left of the payment), `GET
//!   /v3/refunds/{id}`, and refunds made "in the dashboard".
//! * Notifications `{"type": "notification", "event": ..., "object": {...}}` are
//!   POSTed (unsigned, as YooKassa does) to the shop's notification URL after
//!   each change; tests can silence them.
//! * HTTP for the demo: `POST /sim/yookassa/shops` registers a shop,
//!   `POST /sim/yookassa/confirm {confirmation_token, card}` pays,
//!   `POST /sim/yookassa/methods/script` scripts a saved method,
//!   `GET /sim/yookassa/payments` lists.

mod api;
mod checkout;

pub use checkout::{ConfirmOutcome, YookassaWidget};

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, MutexGuard};

use actix_web::web::{self, Data, Json};
use actix_web::{App, HttpResponse, HttpServer};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A shop: what the real dashboard configures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shop {
    pub shop_id: String,
    pub secret_key: String,
    /// Where notifications are POSTed (`.../v1/webhooks/yookassa/<tenant>`).
    pub notification_url: String,
}

/// What the issuer does with a card paid through the widget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CardBehaviour {
    Approve,
    /// Authorised but held for the merchant's capture (`waiting_for_capture`).
    Hold,
    /// Canceled by the payment network with this reason (`insufficient_funds`, ...).
    Decline {
        reason: String,
    },
}

/// What the processing does with the next autopayment of a saved method.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum MethodScript {
    Approve,
    /// Canceled by the payment network with this reason.
    Decline {
        reason: String,
    },
    /// Canceled on the merchant's side (`party: merchant`) with this reason.
    MerchantSide {
        reason: String,
    },
    /// Answered `pending`, and still pending at the first fetch; it succeeds at the
    /// second (so the merchant must come back, under the same key).
    PendingUntilFetched,
    /// Charges, but answers `202 {"type": "processing"}`: only the same request
    /// under the same key learns the result.
    Processing,
    /// Charges, then answers too late: the client times out, the money is taken.
    TimeoutAfterCharge,
    /// Answers too late without charging.
    TimeoutBeforeCharge,
    /// Charges, then answers HTTP 500.
    ErrorAfterCharge,
    /// Answers HTTP 500 without charging.
    ErrorBeforeCharge,
}

/// A payment as the simulator keeps it (its API object is [`Payment::object`]).
#[derive(Debug, Clone, Serialize)]
pub struct Payment {
    pub id: String,
    pub shop_id: String,
    /// `pending`, `waiting_for_capture`, `succeeded`, `canceled`.
    pub status: String,
    pub amount: Decimal,
    pub currency: String,
    pub description: String,
    pub metadata: Value,
    pub capture: bool,
    pub save_payment_method: bool,
    pub confirmation_token: Option<String>,
    /// The method paid with (`payment_method.id`; a saved card's id is the id of
    /// the payment that saved it).
    pub method_id: Option<String>,
    pub method_saved: bool,
    pub card_last4: Option<String>,
    pub cancellation: Option<(String, String)>,
    /// Autopayments: the saved method charged.
    pub autopay: bool,
    pub idempotence_key: String,
    /// Fetches left before a scripted `PendingUntilFetched` payment succeeds (0: none).
    #[serde(skip)]
    pub fetches_until_success: u8,
}

impl Payment {
    /// The payment object as the API answers it.
    pub fn object(&self) -> Value {
        let mut o = json!({
            "id": self.id, "status": self.status, "paid": self.status == "succeeded" || self.status == "waiting_for_capture",
            "amount": {"value": format!("{:.2}", self.amount), "currency": self.currency},
            "description": self.description, "metadata": self.metadata, "test": true,
            "created_at": "2026-03-05T09:00:00.000Z", "refundable": self.status == "succeeded",
        });
        if let Some(token) = &self.confirmation_token {
            o["confirmation"] = json!({"type": "embedded", "confirmation_token": token});
        }
        if let Some(method) = &self.method_id {
            let last4 = self.card_last4.clone().unwrap_or_else(|| "4444".into());
            o["payment_method"] = json!({"type": "bank_card", "id": method, "saved": self.method_saved,
                "card": {"first6": "555555", "last4": last4, "expiry_month": "12", "expiry_year": "2029", "card_type": "MasterCard"}});
        }
        if let Some((party, reason)) = &self.cancellation {
            o["cancellation_details"] = json!({"party": party, "reason": reason});
        }
        o
    }
}

/// A refund the simulated processing made.
#[derive(Debug, Clone, Serialize)]
pub struct Refund {
    pub id: String,
    pub shop_id: String,
    pub payment_id: String,
    pub amount: Decimal,
    pub currency: String,
    pub description: Option<String>,
    /// `None` for a refund made in the dashboard.
    pub idempotence_key: Option<String>,
}

impl Refund {
    pub fn object(&self) -> Value {
        json!({"id": self.id, "payment_id": self.payment_id, "status": "succeeded",
               "amount": {"value": format!("{:.2}", self.amount), "currency": self.currency},
               "description": self.description, "created_at": "2026-03-05T09:00:00.000Z"})
    }
}

#[derive(Debug, Default)]
struct State {
    shops: HashMap<String, Shop>,
    cards: HashMap<String, CardBehaviour>,
    payments: Vec<Payment>,
    /// Payment id -> its index in `payments` (a renewal wave fetches each of
    /// 100 000 payments: no linear scans).
    payment_index: HashMap<String, usize>,
    refunds: Vec<Refund>,
    /// Saved methods (`payment_method.id`) and their cards' last four digits.
    saved_methods: HashMap<String, Option<String>>,
    method_scripts: HashMap<String, VecDeque<MethodScript>>,
    /// (shop, Idempotence-Key) -> the answer given to it.
    answered: HashMap<(String, String), (u16, Value)>,
    dedup_off: bool,
    quiet: bool,
    slow_ms: u64,
    payment_requests: u64,
    /// Bench mode: methods never saved here are accepted too.
    accept_any_method: bool,
    /// Refund requests refused with HTTP 500 before refunding (count down).
    refund_errors: u32,
    /// Payment ids whose every fetch fails with 500 (YooKassa down for them).
    unreachable: HashSet<String>,
}

impl State {
    fn add_payment(&mut self, p: Payment) {
        self.payment_index.insert(p.id.clone(), self.payments.len());
        self.payments.push(p);
    }

    /// The index of payment `id` in `payments`.
    fn payment_at(&self, id: &str) -> Option<usize> {
        self.payment_index.get(id).copied()
    }
}

/// A running simulator.
#[derive(Clone)]
pub struct YooKassaSim {
    pub base_url: String,
    state: Arc<Mutex<State>>,
    http: reqwest::Client,
}

/// Card numbers of the YooKassa test shop (their documented behaviour).
pub const CARD_OK: &str = "5555555555554477";
pub const CARD_INSUFFICIENT_FUNDS: &str = "5555555555554535";

impl YooKassaSim {
    /// Starts the simulator's HTTP server on `addr` (`127.0.0.1:0` for any port);
    /// the API lives under `<base_url>/v3/`.
    pub fn start(addr: &str) -> std::io::Result<YooKassaSim> {
        let listener = TcpListener::bind(addr)?;
        let port = listener.local_addr()?.port();
        let sim = YooKassaSim {
            base_url: format!("http://127.0.0.1:{port}"),
            state: Arc::new(Mutex::new(State { slow_ms: 3000, ..State::default() })),
            http: reqwest::Client::builder().no_proxy().build().map_err(std::io::Error::other)?,
        };
        sim.script_card(CARD_INSUFFICIENT_FUNDS, CardBehaviour::Decline { reason: "insufficient_funds".into() });
        let data = Data::new(sim.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/sim/yookassa/shops", web::post().to(http_register_shop))
                .route("/sim/yookassa/confirm", web::post().to(checkout::http_confirm))
                .route("/sim/yookassa/methods/script", web::post().to(http_script_method))
                .route("/sim/yookassa/payments", web::get().to(http_payments))
                .route("/v3/payments", web::post().to(api::http_create_payment))
                .route("/v3/payments/{id}", web::get().to(api::http_get_payment))
                .route("/v3/payments/{id}/capture", web::post().to(api::http_capture))
                .route("/v3/payments/{id}/cancel", web::post().to(api::http_cancel))
                .route("/v3/refunds", web::post().to(api::http_create_refund))
                .route("/v3/refunds/{id}", web::get().to(api::http_get_refund))
        })
        .workers(1)
        .listen(listener)?
        .run();
        tokio::spawn(server);
        Ok(sim)
    }

    /// The API base a tenant's `gateway.api_url` names.
    pub fn api_url(&self) -> String {
        format!("{}/v3/", self.base_url)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn register_shop(&self, shop: Shop) {
        self.state().shops.insert(shop.shop_id.clone(), shop);
    }

    /// Changes a shop's secret key (calls with the old one get 401 from now on).
    pub fn rotate_secret(&self, shop_id: &str, secret_key: &str) {
        if let Some(shop) = self.state().shops.get_mut(shop_id) {
            shop.secret_key = secret_key.to_owned();
        }
    }

    /// Makes the issuer treat `card` this way from now on.
    pub fn script_card(&self, card: &str, behaviour: CardBehaviour) {
        self.state().cards.insert(card.to_owned(), behaviour);
    }

    /// Scripts the next autopayments of saved method `method_id` (later ones approve).
    pub fn script_method(&self, method_id: &str, script: &[MethodScript]) {
        self.state().method_scripts.entry(method_id.to_owned()).or_default().extend(script.iter().cloned());
    }

    /// Switches `Idempotence-Key` de-duplication off: every request is carried out.
    pub fn set_request_dedup(&self, on: bool) {
        self.state().dedup_off = !on;
    }

    /// Stops (or resumes) all notifications.
    pub fn set_notifications(&self, on: bool) {
        self.state().quiet = !on;
    }

    /// Accepts methods the simulator did not save (benchmarks seed cards directly).
    pub fn set_accept_any_method(&self, on: bool) {
        self.state().accept_any_method = on;
    }

    /// How long a "slow" answer takes (must exceed the client's timeout).
    pub fn set_slow_ms(&self, ms: u64) {
        self.state().slow_ms = ms;
    }

    /// Makes every fetch of payment `id` fail with HTTP 500 (or work again).
    pub fn set_unreachable(&self, id: &str, unreachable: bool) {
        let mut st = self.state();
        if unreachable {
            st.unreachable.insert(id.to_owned());
        } else {
            st.unreachable.remove(id);
        }
    }

    /// The next `n` refund requests refund, then answer HTTP 500 (the key keeps the
    /// result: only a re-send under the same key avoids a second refund).
    pub fn fail_refunds(&self, n: u32) {
        self.state().refund_errors = n;
    }

    pub fn payments(&self) -> Vec<Payment> {
        self.state().payments.clone()
    }

    pub fn refunds(&self) -> Vec<Refund> {
        self.state().refunds.clone()
    }

    /// `POST /v3/payments` requests received (including de-duplicated repeats).
    pub fn payment_requests(&self) -> u64 {
        self.state().payment_requests
    }

    /// Succeeded payments whose `metadata.attempt_id` is `attempt_id` (a double
    /// charge shows as 2).
    pub fn captures_for_attempt(&self, attempt_id: &str) -> usize {
        self.count_succeeded(|p| p.metadata["attempt_id"] == attempt_id)
    }

    /// Succeeded payments per customer (`metadata.customer_id`).
    pub fn captures_for_customer(&self, customer_id: &str) -> usize {
        self.count_succeeded(|p| p.metadata["customer_id"] == customer_id)
    }

    fn count_succeeded(&self, f: impl Fn(&Payment) -> bool) -> usize {
        self.state().payments.iter().filter(|p| p.status == "succeeded" && f(p)).count()
    }

    /// Refunded so far of a payment.
    pub fn refunded_of(&self, payment_id: &str) -> Decimal {
        self.state().refunds.iter().filter(|r| r.payment_id == payment_id).map(|r| r.amount).sum()
    }

    /// Sends a notification of `event` for `object` to the shop, as YooKassa does
    /// (unsigned JSON); answers the merchant's HTTP status.
    pub async fn notify(&self, shop_id: &str, event: &str, object: Value) -> anyhow::Result<u16> {
        let url = self.state().shops.get(shop_id).map(|s| s.notification_url.clone());
        let url = url.ok_or_else(|| anyhow::anyhow!("unknown shop {shop_id}"))?;
        let body = json!({"type": "notification", "event": event, "object": object});
        Ok(self.http.post(url).json(&body).send().await?.status().as_u16())
    }

    /// Re-sends the notification of a payment's current state (providers retry).
    pub async fn resend_payment(&self, payment_id: &str) -> anyhow::Result<u16> {
        let p = self.payment(payment_id).ok_or_else(|| anyhow::anyhow!("unknown payment {payment_id}"))?;
        self.notify(&p.shop_id, &format!("payment.{}", p.status), p.object()).await
    }

    /// Re-sends a refund's `refund.succeeded` notification (providers retry).
    pub async fn resend_refund(&self, refund_id: &str) -> anyhow::Result<u16> {
        let r = self.state().refunds.iter().find(|r| r.id == refund_id).cloned();
        let r = r.ok_or_else(|| anyhow::anyhow!("unknown refund {refund_id}"))?;
        self.notify(&r.shop_id, "refund.succeeded", r.object()).await
    }

    fn payment(&self, id: &str) -> Option<Payment> {
        let st = self.state();
        st.payment_at(id).map(|i| st.payments[i].clone())
    }

    /// Notifies in the background (after the answer, as YooKassa does), unless silenced.
    fn notify_later(&self, shop_id: &str, event: String, object: Value) {
        if self.state().quiet {
            return;
        }
        let (sim, shop) = (self.clone(), shop_id.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            if let Err(e) = sim.notify(&shop, &event, object).await {
                tracing::warn!(error = %e, "yookassa-sim: notification not delivered");
            }
        });
    }

    /// The customer pays the same order twice (two checkout tabs): a second
    /// succeeded payment with the first one's metadata, notified at once; returns its id.
    pub async fn duplicate_capture(&self, payment_id: &str) -> anyhow::Result<String> {
        let mut p = self.payment(payment_id).ok_or_else(|| anyhow::anyhow!("unknown payment {payment_id}"))?;
        p.id = new_id();
        p.status = "succeeded".into();
        p.confirmation_token = None;
        p.idempotence_key = new_id();
        let (shop, object, id) = (p.shop_id.clone(), p.object(), p.id.clone());
        self.state().add_payment(p);
        self.notify(&shop, "payment.succeeded", object).await?;
        Ok(id)
    }

    /// Makes a refund "in the dashboard": recorded and notified, never requested by us.
    pub async fn refund_in_dashboard(&self, payment_id: &str, amount: Decimal) -> anyhow::Result<Refund> {
        let refund = self.make_refund(payment_id, None, amount, None, None).map_err(|e| anyhow::anyhow!(e))?;
        self.notify(&refund.shop_id, "refund.succeeded", refund.object()).await?;
        Ok(refund)
    }

    /// Records a refund, never beyond what is left of a succeeded payment.
    fn make_refund(
        &self,
        payment_id: &str,
        shop_id: Option<&str>,
        amount: Decimal,
        key: Option<String>,
        description: Option<String>,
    ) -> Result<Refund, String> {
        let mut st = self.state();
        let payment = st
            .payment_at(payment_id)
            .map(|i| st.payments[i].clone())
            .filter(|p| shop_id.is_none_or(|s| s == p.shop_id))
            .ok_or("no such payment")?;
        if payment.status != "succeeded" {
            return Err(format!("payment is {}, not succeeded", payment.status));
        }
        let refunded: Decimal = st.refunds.iter().filter(|r| r.payment_id == payment_id).map(|r| r.amount).sum();
        if amount <= Decimal::ZERO || refunded + amount > payment.amount {
            return Err(format!("refund of {amount} exceeds what is left ({})", payment.amount - refunded));
        }
        let refund = Refund {
            id: new_id(),
            shop_id: payment.shop_id,
            payment_id: payment_id.to_owned(),
            amount,
            currency: payment.currency,
            description,
            idempotence_key: key,
        };
        st.refunds.push(refund.clone());
        Ok(refund)
    }
}

/// A YooKassa-like object id (UUID-shaped, as YooKassa's are).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn http_register_shop(sim: Data<YooKassaSim>, shop: Json<Shop>) -> HttpResponse {
    sim.register_shop(shop.into_inner());
    HttpResponse::NoContent().finish()
}

#[derive(Deserialize)]
struct ScriptRequest {
    method_id: String,
    script: Vec<MethodScript>,
}

async fn http_script_method(sim: Data<YooKassaSim>, req: Json<ScriptRequest>) -> HttpResponse {
    sim.script_method(&req.method_id, &req.script);
    HttpResponse::NoContent().finish()
}

async fn http_payments(sim: Data<YooKassaSim>) -> HttpResponse {
    HttpResponse::Ok().json(sim.payments())
}
