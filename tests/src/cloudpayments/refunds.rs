//! CloudPayments refunds (GATEWAYS.md §1.4): `payments/refund {TransactionId,
//! Amount, JsonData}` answers the refund's own `TransactionId`, and a Refund
//! notification follows (`TransactionId` of the refund, `PaymentTransactionId` of
//! the payment, `Amount`, `InvoiceId`, `AccountId`, `Data` = the JsonData). A
//! request is de-duplicated by `X-Request-ID`; a payment is never refunded beyond
//! what it captured. `payments/get` reports a transaction's status.

use actix_web::HttpResponse;
use actix_web::web::{Bytes, Data};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::CloudPaymentsSim;
use super::tokens::{authenticate, json_number};

/// A refund the simulated processing made.
#[derive(Debug, Clone, Serialize)]
pub struct Refund {
    pub id: i64,
    pub payment_transaction_id: i64,
    pub amount: Decimal,
    pub request_id: Option<String>,
    /// The merchant's JsonData, as sent (`None` for a dashboard refund).
    pub json_data: Option<serde_json::Value>,
}

/// What the processing does with the next refund request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RefundScript {
    Approve,
    /// `Success:false` with this message: nothing refunded.
    Refuse {
        message: String,
    },
    /// Refunds, then answers HTTP 500: the outcome is unknown to the merchant.
    ErrorAfterRefund,
}

impl CloudPaymentsSim {
    /// Scripts the next refund requests (later ones approve).
    pub fn script_refunds(&self, script: &[RefundScript]) {
        self.state().refund_scripts.extend(script.iter().cloned());
    }

    /// Stops (or resumes) the Refund notifications that follow refunds.
    pub fn set_refund_notifications(&self, on: bool) {
        self.state().quiet_refunds = !on;
    }

    pub fn refunds(&self) -> Vec<Refund> {
        self.state().refunds.clone()
    }

    /// Refunded so far of a payment transaction.
    pub fn refunded_of(&self, payment_transaction_id: i64) -> Decimal {
        self.state()
            .refunds
            .iter()
            .filter(|r| r.payment_transaction_id == payment_transaction_id)
            .map(|r| r.amount)
            .sum()
    }

    /// Records a refund (checked against what is left of the payment) and returns
    /// it with the notification fields, or the refusal message.
    fn make_refund(
        &self,
        public_id: &str,
        payment_tx: i64,
        amount: Decimal,
        request_id: Option<String>,
        json_data: Option<serde_json::Value>,
    ) -> Result<(Refund, Vec<(String, String)>), String> {
        let mut st = self.state();
        let Some(payment) = st
            .transactions
            .iter()
            .find(|t| t.id == payment_tx && t.public_id == public_id && t.status == "Completed")
            .cloned()
        else {
            return Err("Transaction not found".into());
        };
        let refunded: Decimal =
            st.refunds.iter().filter(|r| r.payment_transaction_id == payment_tx).map(|r| r.amount).sum();
        if amount <= Decimal::ZERO || refunded + amount > payment.amount {
            return Err("Amount exceeds the amount left to refund".into());
        }
        st.next_id += 1;
        let refund = Refund { id: st.next_id, payment_transaction_id: payment_tx, amount, request_id, json_data };
        st.refunds.push(refund.clone());
        let fields = [
            ("TransactionId", refund.id.to_string()),
            ("PaymentTransactionId", payment_tx.to_string()),
            ("Amount", format!("{amount:.2}")),
            ("DateTime", chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string()),
            ("OperationType", "Refund".into()),
            ("InvoiceId", payment.invoice_id.clone().unwrap_or_default()),
            ("AccountId", payment.account_id.clone().unwrap_or_default()),
            ("Email", String::new()),
            ("Data", refund.json_data.as_ref().map(|d| d.to_string()).unwrap_or_default()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Ok((refund, fields))
    }

    /// A refund made by hand in the provider's dashboard: only its Refund
    /// notification tells the merchant. Returns the refund transaction id and the
    /// notification's fields (to replay it as a provider retry).
    pub async fn refund_in_dashboard(
        &self,
        public_id: &str,
        payment_tx: i64,
        amount: Decimal,
    ) -> anyhow::Result<(i64, Vec<(String, String)>)> {
        let (refund, fields) =
            self.make_refund(public_id, payment_tx, amount, None, None).map_err(|e| anyhow::anyhow!(e))?;
        let site = self.site(public_id).ok_or_else(|| anyhow::anyhow!("unknown site"))?;
        self.notify(&site, "refund", &fields).await?;
        Ok((refund.id, fields))
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RefundRequest {
    transaction_id: i64,
    amount: Box<serde_json::value::RawValue>,
    #[serde(default)]
    json_data: Option<serde_json::Value>,
}

pub(super) async fn http_refund(sim: Data<CloudPaymentsSim>, req: actix_web::HttpRequest, body: Bytes) -> HttpResponse {
    let Some(site) = authenticate(&sim, &req) else {
        return HttpResponse::Unauthorized().finish();
    };
    let refusal = |m: &str| HttpResponse::Ok().json(serde_json::json!({"Success": false, "Message": m}));
    let Ok(call) = serde_json::from_slice::<RefundRequest>(&body) else {
        return refusal("Invalid request");
    };
    let Ok(amount) = call.amount.get().parse::<Decimal>() else {
        return refusal("Invalid Amount");
    };
    let request_id = req.headers().get("X-Request-ID").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let script = {
        let mut st = sim.state();
        if let Some(id) = &request_id
            && !st.dedup_off
            && let Some(previous) = st.answered.get(id)
        {
            return HttpResponse::Ok().json(previous.clone());
        }
        st.refund_scripts.pop_front().unwrap_or(RefundScript::Approve)
    };
    if let RefundScript::Refuse { message } = &script {
        return refusal(message);
    }
    let (refund, fields) =
        match sim.make_refund(&site.public_id, call.transaction_id, amount, request_id.clone(), call.json_data) {
            Ok(made) => made,
            Err(message) => return refusal(&message),
        };
    let answer = serde_json::json!({"Success": true, "Message": null, "Model": {"TransactionId": refund.id}});
    if let Some(id) = &request_id {
        sim.state().answered.insert(id.clone(), answer.clone());
    }
    if !sim.state().quiet_refunds {
        let sim = sim.get_ref().clone();
        tokio::spawn(async move {
            let _ = sim.notify(&site, "refund", &fields).await;
        });
    }
    match script {
        RefundScript::ErrorAfterRefund => HttpResponse::InternalServerError().finish(),
        _ => HttpResponse::Ok().json(answer),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetRequest {
    transaction_id: i64,
}

pub(super) async fn http_get(sim: Data<CloudPaymentsSim>, req: actix_web::HttpRequest, body: Bytes) -> HttpResponse {
    if authenticate(&sim, &req).is_none() {
        return HttpResponse::Unauthorized().finish();
    }
    let Ok(call) = serde_json::from_slice::<GetRequest>(&body) else {
        return HttpResponse::Ok().json(serde_json::json!({"Success": false, "Message": "Invalid request"}));
    };
    let st = sim.state();
    let model = if let Some(r) = st.refunds.iter().find(|r| r.id == call.transaction_id) {
        Some(serde_json::json!({"TransactionId": r.id, "Amount": json_number(r.amount), "Status": "Completed",
            "OriginalTransactionId": r.payment_transaction_id}))
    } else {
        st.transactions.iter().find(|t| t.id == call.transaction_id).map(|t| {
            serde_json::json!({"TransactionId": t.id, "Amount": json_number(t.amount), "Status": t.status,
                "InvoiceId": t.invoice_id, "AccountId": t.account_id})
        })
    };
    match model {
        Some(m) => HttpResponse::Ok().json(serde_json::json!({"Success": true, "Message": null, "Model": m})),
        None => HttpResponse::Ok().json(serde_json::json!({"Success": false, "Message": "Not found"})),
    }
}
