//! The embedded checkout widget: the customer pays a pending payment by its
//! `confirmation_token` with a card, and YooKassa notifies the merchant of the
//! result (`payment.succeeded`, `payment.waiting_for_capture` or `payment.canceled`).

use actix_web::HttpResponse;
use actix_web::web::{Data, Json};
use serde::{Deserialize, Serialize};

use super::{CARD_OK, CardBehaviour, YooKassaSim};

/// The confirmation the billing service returns in `payment.confirmation`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct YookassaWidget {
    pub confirmation_token: String,
    pub payment_id: String,
}

/// What became of a widget payment.
#[derive(Debug, Clone, Serialize)]
pub struct ConfirmOutcome {
    pub payment_id: String,
    /// `succeeded`, `waiting_for_capture` or `canceled`.
    pub status: String,
    /// The saved method's id, when the card was saved.
    pub method_id: Option<String>,
    /// The merchant's HTTP status for the notification.
    pub notification_status: Option<u16>,
}

impl YooKassaSim {
    /// The customer pays the pending payment `confirmation_token` names with `card`.
    pub async fn confirm(&self, confirmation_token: &str, card: &str) -> anyhow::Result<ConfirmOutcome> {
        let (shop, object, outcome) = {
            let mut st = self.state();
            let behaviour = st.cards.get(card).cloned().unwrap_or(CardBehaviour::Approve);
            let p = st
                .payments
                .iter_mut()
                .find(|p| p.confirmation_token.as_deref() == Some(confirmation_token))
                .ok_or_else(|| anyhow::anyhow!("no payment with this confirmation_token"))?;
            if p.status != "pending" {
                anyhow::bail!("payment {} is {}, not pending", p.id, p.status);
            }
            p.method_id = Some(p.id.clone());
            p.card_last4 = Some(card.chars().skip(card.len().saturating_sub(4)).collect());
            match behaviour {
                CardBehaviour::Approve if p.capture => p.status = "succeeded".into(),
                CardBehaviour::Approve | CardBehaviour::Hold => p.status = "waiting_for_capture".into(),
                CardBehaviour::Decline { reason } => {
                    p.status = "canceled".into();
                    p.cancellation = Some(("payment_network".into(), reason));
                }
            }
            p.method_saved = p.save_payment_method && p.status != "canceled";
            let saved = p.method_saved && p.status == "succeeded";
            let (method, last4) = (p.id.clone(), p.card_last4.clone());
            let outcome = ConfirmOutcome {
                payment_id: p.id.clone(),
                status: p.status.clone(),
                method_id: p.method_saved.then(|| p.id.clone()),
                notification_status: None,
            };
            let answer = (p.shop_id.clone(), p.object(), outcome);
            if saved {
                st.saved_methods.insert(method, last4);
            }
            answer
        };
        let quiet = self.state().quiet;
        let notification_status =
            if quiet { None } else { Some(self.notify(&shop, &format!("payment.{}", outcome.status), object).await?) };
        Ok(ConfirmOutcome { notification_status, ..outcome })
    }
}

#[derive(Deserialize)]
pub(super) struct ConfirmRequest {
    confirmation_token: String,
    #[serde(default = "default_card")]
    card: String,
}

fn default_card() -> String {
    CARD_OK.to_owned()
}

pub(super) async fn http_confirm(sim: Data<YooKassaSim>, req: Json<ConfirmRequest>) -> HttpResponse {
    match sim.confirm(&req.confirmation_token, &req.card).await {
        Ok(outcome) => HttpResponse::Ok().json(outcome),
        Err(e) => HttpResponse::BadRequest().json(serde_json::json!({"error": e.to_string()})),
    }
}
