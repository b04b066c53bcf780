//! Token charges (`payments/tokens/charge`, GATEWAYS.md §1.3) and `payments/find`,
//! both behind HTTP Basic auth with the site's public id and API secret.

use actix_web::HttpResponse;
use actix_web::web::{self, Data, Json};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rust_decimal::Decimal;
use serde::Deserialize;

use super::widget::{WidgetParams, base_fields, push_outcome};
use super::{CARD_OK, CloudPaymentsSim, Site, TokenScript, Transaction, reason_name};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct TokenChargeRequest {
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
pub(super) fn authenticate(sim: &CloudPaymentsSim, req: &actix_web::HttpRequest) -> Option<Site> {
    let header = req.headers().get("Authorization")?.to_str().ok()?;
    let encoded = header.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded).ok()?).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    sim.site(user).filter(|s| s.api_secret == pass)
}

/// One token charge being answered: counted out when its handler returns.
struct InFlight(CloudPaymentsSim);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.state().charges_in_flight -= 1;
    }
}

pub(super) async fn http_token_charge(
    sim: Data<CloudPaymentsSim>,
    req: actix_web::HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
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
    let latency = {
        let mut st = sim.state();
        st.charges_in_flight += 1;
        st.most_charges_in_flight = st.most_charges_in_flight.max(st.charges_in_flight);
        st.charge_latency_ms
    };
    let _answered = InFlight(sim.get_ref().clone());
    if latency > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
    }
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
                let mut fields = base_fields(tx_id, &params, amount, CARD_OK);
                fields.push(("Token".into(), token));
                let (kind, _) = push_outcome(&mut fields, decline);
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
pub(super) struct FindRequest {
    invoice_id: String,
}

pub(super) async fn http_find(
    sim: Data<CloudPaymentsSim>,
    req: actix_web::HttpRequest,
    body: Json<FindRequest>,
) -> HttpResponse {
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
pub(super) fn json_number(amount: Decimal) -> serde_json::Value {
    serde_json::from_str(&format!("{amount:.2}")).unwrap_or(serde_json::Value::Null)
}
