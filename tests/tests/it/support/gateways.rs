//! Both payment gateways under the same tests: a scenario is an `async fn(Gw)`,
//! run once per gateway by [`on_both_gateways!`]; the helpers here speak to
//! whichever simulator the tenant's gateway is (CloudPayments' widget and token
//! charges, YooKassa's embedded checkout and autopayments) in neutral terms.

use billing_tests::cloudpayments::{self as cp, TokenScript, WidgetParams};
use billing_tests::yookassa::{self as yk, MethodScript, YookassaWidget};
use rust_decimal::Decimal;
use serde_json::Value;

use super::{Tenant, TestApp};

/// Which payment gateway a tenant uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gw {
    CloudPayments,
    YooKassa,
}

/// Runs each named `async fn(Gw)` scenario as two tests, `<name>::cloudpayments`
/// and `<name>::yookassa`.
#[macro_export]
macro_rules! on_both_gateways {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn cloudpayments() {
                super::$name($crate::support::Gw::CloudPayments).await
            }
            #[tokio::test]
            async fn yookassa() {
                super::$name($crate::support::Gw::YooKassa).await
            }
        }
    )*};
}

/// A card the customer pays with, in each provider's test numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Card {
    Ok,
    InsufficientFunds,
}

/// What became of a checkout payment.
#[derive(Debug, Clone)]
pub struct Paid {
    pub approved: bool,
    /// The provider's transaction (CloudPayments TransactionId, YooKassa payment id).
    pub transaction_id: String,
}

/// A refund made in the provider's dashboard.
#[derive(Debug, Clone)]
pub struct DashboardRefund {
    /// The provider's refund transaction.
    pub id: String,
    /// CloudPayments: the Refund notification's fields, to replay it.
    fields: Vec<(String, String)>,
}

/// The next charge of a saved method, in neutral terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeScript {
    Approve,
    /// Insufficient funds (CloudPayments 5051, YooKassa `insufficient_funds`).
    SoftDecline,
    /// An expired card (CloudPayments 5054, YooKassa `card_expired`).
    HardDecline,
    TimeoutAfterCharge,
    TimeoutBeforeCharge,
    ErrorAfterCharge,
    ErrorBeforeCharge,
}

impl ChargeScript {
    fn cloudpayments(self) -> TokenScript {
        match self {
            ChargeScript::Approve => TokenScript::Approve,
            ChargeScript::SoftDecline => TokenScript::Decline { reason_code: 5051 },
            ChargeScript::HardDecline => TokenScript::Decline { reason_code: 5054 },
            ChargeScript::TimeoutAfterCharge => TokenScript::TimeoutAfterCharge,
            ChargeScript::TimeoutBeforeCharge => TokenScript::TimeoutBeforeCharge,
            ChargeScript::ErrorAfterCharge => TokenScript::ErrorAfterCharge,
            ChargeScript::ErrorBeforeCharge => TokenScript::ErrorBeforeCharge,
        }
    }

    fn yookassa(self) -> MethodScript {
        match self {
            ChargeScript::Approve => MethodScript::Approve,
            ChargeScript::SoftDecline => MethodScript::Decline { reason: "insufficient_funds".into() },
            ChargeScript::HardDecline => MethodScript::Decline { reason: "card_expired".into() },
            ChargeScript::TimeoutAfterCharge => MethodScript::TimeoutAfterCharge,
            ChargeScript::TimeoutBeforeCharge => MethodScript::TimeoutBeforeCharge,
            ChargeScript::ErrorAfterCharge => MethodScript::ErrorAfterCharge,
            ChargeScript::ErrorBeforeCharge => MethodScript::ErrorBeforeCharge,
        }
    }
}

impl TestApp {
    /// The customer pays a pending payment's `confirmation` with `card` in the
    /// provider's checkout (and the provider notifies the service).
    pub async fn pay_by(&self, answer: &Value, card: Card) -> Paid {
        let confirmation = if answer["confirmation"].is_object() {
            answer["confirmation"].clone()
        } else {
            answer["payment"]["confirmation"].clone()
        };
        match confirmation["type"].as_str() {
            Some("cloudpayments_widget") => {
                let params: WidgetParams = serde_json::from_value(confirmation).expect("widget params");
                let number = match card {
                    Card::Ok => cp::CARD_OK,
                    Card::InsufficientFunds => cp::CARD_INSUFFICIENT_FUNDS,
                };
                let outcome = self.sim.pay_widget(&params, number).await.expect("widget flow");
                let answered = outcome.deliveries.last().map(|d| (d.kind.as_str(), d.http_status, d.code));
                assert!(
                    matches!(answered, Some(("pay" | "fail", 200, Some(0)))),
                    "the service accepted the {} notification: {answered:?}",
                    outcome.status
                );
                Paid { approved: outcome.status == "Completed", transaction_id: outcome.transaction_id.to_string() }
            }
            Some("yookassa_widget") => {
                let widget: YookassaWidget = serde_json::from_value(confirmation).expect("yookassa widget");
                let number = match card {
                    Card::Ok => yk::CARD_OK,
                    Card::InsufficientFunds => yk::CARD_INSUFFICIENT_FUNDS,
                };
                let outcome = self.yk.confirm(&widget.confirmation_token, number).await.expect("checkout");
                assert_eq!(outcome.notification_status, Some(200), "the service accepted the notification");
                Paid { approved: outcome.status == "succeeded", transaction_id: outcome.payment_id }
            }
            other => panic!("no checkout confirmation ({other:?}) in {answer}"),
        }
    }

    /// The saved method (card token or payment method id) of `customer`.
    pub async fn saved_method(&self, customer: &str) -> String {
        let rows = self
            .rows(&format!(
                "SELECT token AS row FROM payment_methods WHERE customer_id = '{customer}' AND revoked_at IS NULL"
            ))
            .await;
        assert_eq!(rows.len(), 1, "one saved method for {customer}");
        rows[0].clone()
    }

    /// Scripts the next charges of `customer`'s saved method (later ones approve).
    pub async fn script_charges(&self, t: &Tenant, customer: &str, script: &[ChargeScript]) {
        let method = self.saved_method(customer).await;
        match t.gateway {
            Gw::CloudPayments => {
                self.sim.script_token(&method, &script.iter().map(|c| c.cloudpayments()).collect::<Vec<_>>())
            }
            Gw::YooKassa => self.yk.script_method(&method, &script.iter().map(|c| c.yookassa()).collect::<Vec<_>>()),
        }
    }

    /// Captured payments the provider holds for `customer`.
    pub fn captures_of(&self, t: &Tenant, customer: &str) -> usize {
        match t.gateway {
            Gw::CloudPayments => self.sim.captures_for_account(customer),
            Gw::YooKassa => self.yk.captures_for_customer(customer),
        }
    }

    /// Merchant-initiated charges of saved methods at the provider, in order:
    /// (captured?, our attempt id).
    pub fn saved_method_charges(&self, t: &Tenant) -> Vec<(bool, String)> {
        match t.gateway {
            Gw::CloudPayments => self
                .sim
                .transactions()
                .into_iter()
                .filter(|x| x.tr_initiator_code.is_some())
                .map(|x| (x.status == "Completed", x.invoice_id.unwrap_or_default()))
                .collect(),
            Gw::YooKassa => self
                .yk
                .payments()
                .into_iter()
                .filter(|p| p.autopay && p.status != "pending")
                .map(|p| (p.status == "succeeded", p.metadata["attempt_id"].as_str().unwrap_or_default().to_owned()))
                .collect(),
        }
    }

    /// Merchant-initiated charges of saved methods the provider captured.
    pub fn saved_method_captures(&self, t: &Tenant) -> usize {
        self.saved_method_charges(t).iter().filter(|(captured, _)| *captured).count()
    }

    /// The reason code a hard decline revokes a method with (`5054`, `card_expired`).
    pub fn hard_decline_code(&self, t: &Tenant) -> &'static str {
        match t.gateway {
            Gw::CloudPayments => "5054",
            Gw::YooKassa => "card_expired",
        }
    }

    /// Requests to charge a saved method the provider received (repeats included).
    pub fn charge_requests(&self, t: &Tenant) -> u64 {
        match t.gateway {
            Gw::CloudPayments => self.sim.charge_requests(),
            // YooKassa counts every POST /v3/payments, checkouts included.
            Gw::YooKassa => self.yk.payment_requests(),
        }
    }

    /// Refunded so far at the provider of payment transaction `tx`.
    pub fn refunded_at_provider(&self, t: &Tenant, tx: &str) -> Decimal {
        match t.gateway {
            Gw::CloudPayments => self.sim.refunded_of(tx.parse().expect("CloudPayments transaction id")),
            Gw::YooKassa => self.yk.refunded_of(tx),
        }
    }

    /// A refund of `tx` made in the provider's dashboard (only its notification
    /// reaches the service).
    pub async fn refund_in_dashboard(&self, t: &Tenant, tx: &str, amount: Decimal) -> DashboardRefund {
        match t.gateway {
            Gw::CloudPayments => {
                let tx = tx.parse().expect("transaction id");
                let (id, fields) = self.sim.refund_in_dashboard(&t.public_id, tx, amount).await.unwrap();
                DashboardRefund { id: id.to_string(), fields }
            }
            Gw::YooKassa => {
                let refund = self.yk.refund_in_dashboard(tx, amount).await.unwrap();
                DashboardRefund { id: refund.id, fields: Vec::new() }
            }
        }
    }

    /// The provider's retry of a dashboard refund's notification; answers the HTTP status.
    pub async fn resend_refund_notification(&self, t: &Tenant, refund: &DashboardRefund) -> u16 {
        match t.gateway {
            Gw::CloudPayments => {
                let again = self.sim.resend(&t.public_id, "refund", &refund.fields).await.unwrap();
                assert_eq!(again.code, Some(0));
                again.http_status
            }
            Gw::YooKassa => self.yk.resend_refund(&refund.id).await.unwrap(),
        }
    }
}
