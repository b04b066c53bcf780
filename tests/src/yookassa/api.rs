//! The YooKassa v3 API endpoints: payments (created, fetched, captured, canceled)
//! and refunds, behind HTTP Basic auth, with `Idempotence-Key` on every POST.

use actix_web::web::{Bytes, Data, Path};
use actix_web::{HttpRequest, HttpResponse};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{MethodScript, Payment, YooKassaSim, new_id};

fn error(status: u16, code: &str, description: &str) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::BAD_REQUEST);
    HttpResponse::build(status).json(json!({"type": "error", "id": new_id(), "code": code, "description": description}))
}

/// An error answer, boxed (an `HttpResponse` is large).
type Refusal = Box<HttpResponse>;

fn refuse(status: u16, code: &str, description: &str) -> Refusal {
    Box::new(error(status, code, description))
}

fn answer(status: u16, body: &Value) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::OK);
    HttpResponse::build(status).json(body)
}

/// The shop whose Basic credentials the request carries.
fn authenticate(sim: &YooKassaSim, req: &HttpRequest) -> Result<String, Refusal> {
    let refused = || refuse(401, "invalid_credentials", "Authentication by given credentials failed");
    let header = req.headers().get("authorization").and_then(|v| v.to_str().ok()).ok_or_else(refused)?;
    let decoded = header.strip_prefix("Basic ").and_then(|b| STANDARD.decode(b).ok()).ok_or_else(refused)?;
    let text = String::from_utf8(decoded).map_err(|_| refused())?;
    let (shop_id, secret) = text.split_once(':').ok_or_else(refused)?;
    match sim.state().shops.get(shop_id) {
        Some(shop) if shop.secret_key == secret => Ok(shop_id.to_owned()),
        _ => Err(refused()),
    }
}

fn idempotence_key(req: &HttpRequest) -> Result<String, Refusal> {
    req.headers()
        .get("idempotence-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty() && k.len() <= 64)
        .map(str::to_owned)
        .ok_or_else(|| refuse(400, "invalid_request", "Idempotence-Key header is required (1..64 characters)"))
}

#[derive(Deserialize)]
struct AmountIn {
    value: String,
    currency: String,
}

impl AmountIn {
    fn parse(&self) -> Result<Decimal, Refusal> {
        self.value
            .parse::<Decimal>()
            .ok()
            .filter(|v| *v > Decimal::ZERO && v.scale() <= 2)
            .ok_or_else(|| refuse(400, "invalid_request", "amount.value must be a positive decimal string"))
    }
}

#[derive(Deserialize)]
struct CreatePaymentIn {
    amount: AmountIn,
    #[serde(default)]
    capture: bool,
    #[serde(default)]
    description: String,
    #[serde(default)]
    metadata: Value,
    #[serde(default)]
    confirmation: Option<Value>,
    #[serde(default)]
    save_payment_method: bool,
    #[serde(default)]
    payment_method_id: Option<String>,
}

/// Answers a repeated key with the first answer; else runs `f` and keeps its answer.
async fn once(
    sim: &YooKassaSim,
    shop: &str,
    key: &str,
    f: impl AsyncFnOnce() -> Result<(u16, Value), Refusal>,
) -> HttpResponse {
    let slot = (shop.to_owned(), key.to_owned());
    {
        let st = sim.state();
        if let Some((status, body)) = st.answered.get(&slot).filter(|_| !st.dedup_off) {
            return answer(*status, body);
        }
    }
    match f().await {
        Ok((status, body)) => {
            sim.state().answered.insert(slot, (status, body.clone()));
            answer(status, &body)
        }
        Err(res) => *res,
    }
}

pub(super) async fn http_create_payment(sim: Data<YooKassaSim>, req: HttpRequest, body: Bytes) -> HttpResponse {
    let (shop, key) = match (authenticate(&sim, &req), idempotence_key(&req)) {
        (Ok(s), Ok(k)) => (s, k),
        (Err(e), _) | (_, Err(e)) => return *e,
    };
    sim.state().payment_requests += 1;
    let input: CreatePaymentIn = match serde_json::from_slice(&body) {
        Ok(i) => i,
        Err(e) => return error(400, "invalid_request", &format!("unreadable request: {e}")),
    };
    let amount = match input.amount.parse() {
        Ok(a) => a,
        Err(e) => return *e,
    };
    let payment = Payment {
        id: new_id(),
        shop_id: shop.clone(),
        status: "pending".into(),
        amount,
        currency: input.amount.currency.clone(),
        description: input.description.clone(),
        metadata: input.metadata.clone(),
        capture: input.capture,
        save_payment_method: input.save_payment_method,
        confirmation_token: None,
        method_id: None,
        method_saved: false,
        card_last4: None,
        cancellation: None,
        autopay: false,
        idempotence_key: key.clone(),
        fetches_until_success: 0,
    };
    let sim2 = sim.clone();
    once(&sim, &shop, &key, async move || match input.payment_method_id {
        Some(method) => autopay(&sim2, payment, &method).await,
        None if input.confirmation.as_ref().and_then(|c| c["type"].as_str()) == Some("embedded") => {
            let mut p = payment;
            p.confirmation_token = Some(format!("ct-{}", new_id()));
            let object = p.object();
            sim2.state().add_payment(p);
            Ok((200, object))
        }
        None => Err(refuse(400, "invalid_request", "confirmation {type: embedded} or payment_method_id is required")),
    })
    .await
}

/// An autopayment of a saved method, as scripted.
async fn autopay(sim: &YooKassaSim, mut p: Payment, method: &str) -> Result<(u16, Value), Refusal> {
    let (known, script, slow_ms) = {
        let mut st = sim.state();
        let saved = st.saved_methods.get(method).cloned();
        let known = st.accept_any_method || saved.is_some();
        p.card_last4 = saved.flatten();
        let script = st.method_scripts.get_mut(method).and_then(|q| q.pop_front()).unwrap_or(MethodScript::Approve);
        (known, script, st.slow_ms)
    };
    if !known {
        return Err(refuse(400, "invalid_request", "payment_method_id: no saved payment method with this id"));
    }
    p.autopay = true;
    p.method_id = Some(method.to_owned());
    p.method_saved = true;
    let slow = || tokio::time::sleep(std::time::Duration::from_millis(slow_ms));
    let (status, cancellation) = match &script {
        MethodScript::TimeoutBeforeCharge => {
            slow().await;
            return Err(refuse(500, "internal_server_error", "timed out"));
        }
        MethodScript::ErrorBeforeCharge => return Err(refuse(500, "internal_server_error", "Internal server error")),
        MethodScript::Decline { reason } => ("canceled", Some(("payment_network".to_owned(), reason.clone()))),
        MethodScript::MerchantSide { reason } => ("canceled", Some(("merchant".to_owned(), reason.clone()))),
        MethodScript::PendingUntilFetched => ("pending", None),
        _ if !p.capture => ("waiting_for_capture", None),
        _ => ("succeeded", None),
    };
    p.status = status.into();
    p.cancellation = cancellation;
    p.fetches_until_success = if script == MethodScript::PendingUntilFetched { 2 } else { 0 };
    let object = p.object();
    let shop = p.shop_id.clone();
    {
        // The key keeps the result from the moment the payment exists: a repeat
        // sent while this answer is late or after it failed answers the payment.
        let mut st = sim.state();
        st.answered.insert((shop.clone(), p.idempotence_key.clone()), (200, object.clone()));
        st.add_payment(p);
    }
    if status != "pending" {
        sim.notify_later(&shop, format!("payment.{status}"), object.clone());
    }
    match script {
        MethodScript::TimeoutAfterCharge => {
            slow().await;
            Ok((200, object))
        }
        MethodScript::ErrorAfterCharge => Err(refuse(500, "internal_server_error", "Internal server error")),
        MethodScript::Processing => {
            let processing = json!({"type": "processing", "description": "Request accepted", "retry_after": 1800});
            Err(Box::new(answer(202, &processing)))
        }
        _ => Ok((200, object)),
    }
}

fn find_payment(sim: &YooKassaSim, shop: &str, id: &str) -> Option<usize> {
    let st = sim.state();
    st.payment_at(id).filter(|&i| st.payments[i].shop_id == shop)
}

pub(super) async fn http_get_payment(sim: Data<YooKassaSim>, req: HttpRequest, id: Path<String>) -> HttpResponse {
    let shop = match authenticate(&sim, &req) {
        Ok(s) => s,
        Err(e) => return *e,
    };
    if sim.state().unreachable.contains(id.as_str()) {
        return error(500, "internal_server_error", "Internal server error");
    }
    let Some(i) = find_payment(&sim, &shop, &id) else {
        return error(404, "not_found", "Payment not found");
    };
    let (object, became) = {
        let mut st = sim.state();
        let p = &mut st.payments[i];
        let became = p.fetches_until_success == 1;
        p.fetches_until_success = p.fetches_until_success.saturating_sub(1);
        if became {
            p.status = "succeeded".into();
        }
        (p.object(), became)
    };
    if became {
        sim.notify_later(&shop, "payment.succeeded".into(), object.clone());
    }
    answer(200, &object)
}

/// Capture (`to` = `succeeded`) or cancel (`to` = `canceled`) a held payment.
async fn settle(sim: &YooKassaSim, req: &HttpRequest, id: &str, to: &str) -> HttpResponse {
    let (shop, key) = match (authenticate(sim, req), idempotence_key(req)) {
        (Ok(s), Ok(k)) => (s, k),
        (Err(e), _) | (_, Err(e)) => return *e,
    };
    let Some(i) = find_payment(sim, &shop, id) else {
        return error(404, "not_found", "Payment not found");
    };
    let sim2 = sim.clone();
    let to = to.to_owned();
    let shop2 = shop.clone();
    once(sim, &shop2, &key, async move || {
        let object = {
            let mut st = sim2.state();
            let p = &mut st.payments[i];
            if p.status == to {
                return Ok((200, p.object()));
            }
            if p.status != "waiting_for_capture" {
                return Err(refuse(400, "invalid_request", &format!("payment is {}", p.status)));
            }
            p.status = to.clone();
            if to == "canceled" {
                p.cancellation = Some(("merchant".into(), "canceled_by_merchant".into()));
                p.method_saved = false;
            }
            let (object, method, saved) = (p.object(), p.method_id.clone(), p.method_saved);
            if let (Some(method), true) = (method, saved && !p.autopay) {
                let last4 = p.card_last4.clone();
                st.saved_methods.insert(method, last4);
            }
            object
        };
        sim2.notify_later(&shop, format!("payment.{to}"), object.clone());
        Ok((200, object))
    })
    .await
}

pub(super) async fn http_capture(sim: Data<YooKassaSim>, req: HttpRequest, id: Path<String>) -> HttpResponse {
    settle(&sim, &req, &id, "succeeded").await
}

pub(super) async fn http_cancel(sim: Data<YooKassaSim>, req: HttpRequest, id: Path<String>) -> HttpResponse {
    settle(&sim, &req, &id, "canceled").await
}

#[derive(Deserialize)]
struct CreateRefundIn {
    payment_id: String,
    amount: AmountIn,
    #[serde(default)]
    description: Option<String>,
}

pub(super) async fn http_create_refund(sim: Data<YooKassaSim>, req: HttpRequest, body: Bytes) -> HttpResponse {
    let (shop, key) = match (authenticate(&sim, &req), idempotence_key(&req)) {
        (Ok(s), Ok(k)) => (s, k),
        (Err(e), _) | (_, Err(e)) => return *e,
    };
    let input: CreateRefundIn = match serde_json::from_slice(&body) {
        Ok(i) => i,
        Err(e) => return error(400, "invalid_request", &format!("unreadable request: {e}")),
    };
    let sim2 = sim.clone();
    let (shop2, key2) = (shop.clone(), key.clone());
    once(&sim, &shop2, &key2, async move || {
        let amount = input.amount.parse()?;
        let refund = sim2
            .make_refund(&input.payment_id, Some(&shop), amount, Some(key.clone()), input.description.clone())
            .map_err(|e| refuse(400, "invalid_request", &e))?;
        let object = refund.object();
        sim2.notify_later(&shop, "refund.succeeded".into(), object.clone());
        let mut st = sim2.state();
        if st.refund_errors > 0 {
            // Refunded, but the answer is lost: the key keeps the result.
            st.refund_errors -= 1;
            st.answered.insert((shop.clone(), key.clone()), (200, object));
            return Err(refuse(500, "internal_server_error", "Internal server error"));
        }
        Ok((200, object))
    })
    .await
}

pub(super) async fn http_get_refund(sim: Data<YooKassaSim>, req: HttpRequest, id: Path<String>) -> HttpResponse {
    let shop = match authenticate(&sim, &req) {
        Ok(s) => s,
        Err(e) => return *e,
    };
    let refund = sim.state().refunds.iter().find(|r| r.id == *id && r.shop_id == shop).cloned();
    match refund {
        Some(r) => answer(200, &r.object()),
        None => error(404, "not_found", "Refund not found"),
    }
}
