//! The ports take adapters of the test's own: an in-memory card acquirer plugged
//! in for the `cloudpayments` gateway kind and an in-memory cash register behind
//! the fiscal port. A purchase captured by the acquirer's notification, the autopay
//! renewal, a refund and every receipt go through them — the CloudPayments and ATOL
//! simulators see nothing.

use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use billing_shared::config::Config;
use billing_shared::domain::receipt::FiscalAttributes;
use billing_shared::domain::states::ReceiptKind;
use billing_shared::domain::tenant::{FiscalSettings, GatewayConfig};
use billing_shared::fiscal::{
    FiscalError, FiscalRegistrar, Registered, RegistrarFactory, Registrars, RegistrationRequest, ReportState,
};
use billing_shared::gateways::registry::{GatewayFactory, Gateways};
use billing_shared::gateways::{
    AttemptLookup, CardDetails, ChargeOutcome, ChargeRequest, CheckoutRequest, Confirmation, GatewayError,
    Notification, NotificationError, NotificationEvent, NotificationReply, PaymentGateway, PaymentReport,
    RawNotification, RefundLookup, RefundOutcome, RefundRequest,
};
use billing_shared::ports::Ports;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::support::TestApp;

/// What the in-memory acquirer and cash register were asked to do.
#[derive(Default)]
struct Books {
    /// (attempt id, card token, amount, transaction id)
    charges: Vec<(String, String, Decimal, String)>,
    /// (idempotency key, payment transaction, amount, refund transaction)
    refunds: Vec<(String, String, Decimal, String)>,
    /// (external id, kind, total)
    receipts: Vec<(String, ReceiptKind, Decimal)>,
}

#[derive(Clone, Default)]
struct Memory(Arc<Mutex<Books>>);

impl Memory {
    fn books(&self) -> MutexGuard<'_, Books> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An acquirer that captures every charge, idempotently by attempt id, and
/// accepts notifications signed with the merchant's API secret in `x-memory-key`.
struct Acquirer {
    memory: Memory,
    api_secret: String,
}

impl GatewayFactory for Memory {
    fn build(&self, config: &GatewayConfig) -> Result<Box<dyn PaymentGateway>, GatewayError> {
        let GatewayConfig::Cloudpayments { api_secret, .. } = config else {
            return Err(GatewayError::Unsupported("memory acquirer serves cloudpayments tenants".into()));
        };
        Ok(Box::new(Acquirer { memory: self.clone(), api_secret: api_secret.expose().to_owned() }))
    }
}

#[async_trait]
impl PaymentGateway for Acquirer {
    fn provider(&self) -> &'static str {
        "cloudpayments"
    }

    async fn charge(&self, req: &ChargeRequest<'_>) -> Result<ChargeOutcome, GatewayError> {
        let mut books = self.memory.books();
        if let Some(done) = books.charges.iter().find(|c| c.0 == req.attempt_id) {
            return Ok(ChargeOutcome::Captured { transaction_id: done.3.clone() });
        }
        let transaction_id = format!("mem-{}", books.charges.len() + 1);
        books.charges.push((
            req.attempt_id.to_owned(),
            req.method_token.to_owned(),
            req.amount.amount(),
            transaction_id.clone(),
        ));
        Ok(ChargeOutcome::Captured { transaction_id })
    }

    async fn find_attempt(&self, attempt_id: &str) -> Result<AttemptLookup, GatewayError> {
        Ok(match self.memory.books().charges.iter().find(|c| c.0 == attempt_id) {
            Some(c) => AttemptLookup::Done(ChargeOutcome::Captured { transaction_id: c.3.clone() }),
            None => AttemptLookup::NotFound,
        })
    }

    async fn refund(&self, req: &RefundRequest<'_>) -> Result<RefundOutcome, GatewayError> {
        let mut books = self.memory.books();
        if let Some(done) = books.refunds.iter().find(|r| r.0 == req.idempotency_key) {
            return Ok(RefundOutcome::Accepted { transaction_id: done.3.clone() });
        }
        let transaction_id = format!("mem-refund-{}", books.refunds.len() + 1);
        books.refunds.push((
            req.idempotency_key.to_owned(),
            req.payment_transaction_id.to_owned(),
            req.amount.amount(),
            transaction_id.clone(),
        ));
        Ok(RefundOutcome::Accepted { transaction_id })
    }

    async fn find_refund(&self, transaction_id: &str) -> Result<RefundLookup, GatewayError> {
        let known = self.memory.books().refunds.iter().any(|r| r.3 == transaction_id);
        Ok(if known { RefundLookup::Completed } else { RefundLookup::NotFound })
    }

    async fn checkout(&self, req: &CheckoutRequest<'_>) -> Result<Confirmation, GatewayError> {
        Ok(Confirmation::CloudpaymentsWidget {
            public_id: "memory".into(),
            invoice_id: req.attempt_id.to_owned(),
            account_id: req.customer_id.to_owned(),
            amount: format!("{:.2}", req.amount.amount()),
            currency: req.amount.currency().code().to_owned(),
            description: req.description.to_owned(),
            email: req.email.to_owned(),
        })
    }

    async fn notification(&self, raw: &RawNotification<'_>) -> Result<Notification, NotificationError> {
        if raw.header("x-memory-key") != Some(self.api_secret.as_str()) {
            return Err(NotificationError::Unauthenticated("not signed by the memory acquirer".into()));
        }
        let body: Value = serde_json::from_slice(raw.body).map_err(|e| NotificationError::Malformed(e.to_string()))?;
        let text = |k: &str| body[k].as_str().map(str::to_owned);
        let transaction_id = text("transaction_id").ok_or(NotificationError::Malformed("no transaction".into()))?;
        let report = PaymentReport {
            transaction_id: transaction_id.clone(),
            invoice_id: text("invoice_id"),
            account_id: text("account_id"),
            amount: text("amount").and_then(|a| a.parse().ok()),
            currency: text("currency"),
            card: CardDetails { token: text("token"), last_four: Some("4242".into()), ..CardDetails::default() },
        };
        match raw.path {
            "pay" => Ok(Notification {
                kind: "pay".into(),
                dedup_key: transaction_id,
                event: NotificationEvent::Captured(report),
            }),
            other => Err(NotificationError::UnknownKind(format!("no {other} notification"))),
        }
    }

    fn reply(&self, _: NotificationReply) -> (u16, Value) {
        (200, json!({"accepted": true}))
    }
}

/// A cash register that registers every document at once.
impl RegistrarFactory for Memory {
    fn build(&self, _: &FiscalSettings) -> Box<dyn FiscalRegistrar> {
        Box::new(self.clone())
    }
}

#[async_trait]
impl FiscalRegistrar for Memory {
    fn provider(&self) -> &'static str {
        "memory"
    }

    async fn register(&self, req: &RegistrationRequest<'_>) -> Result<Registered, FiscalError> {
        let mut books = self.books();
        if !books.receipts.iter().any(|r| r.0 == req.external_id) {
            books.receipts.push((req.external_id.to_owned(), req.kind, req.document.total));
        }
        Ok(Registered::New { provider_id: req.external_id.to_owned() })
    }

    async fn report(&self, provider_id: &str) -> Result<ReportState, FiscalError> {
        let books = self.books();
        let Some(n) = books.receipts.iter().position(|r| r.0 == provider_id) else {
            return Ok(ReportState::Pending);
        };
        Ok(ReportState::Registered(FiscalAttributes {
            total: Some(books.receipts[n].2),
            fiscal_document_number: Some(i64::try_from(n).unwrap_or(0) + 1),
            fn_number: Some("9999078900001234".into()),
            ..FiscalAttributes::default()
        }))
    }
}

fn plugged(memory: &Memory) -> Ports {
    billing_shared::telemetry::install_crypto_provider();
    let config = Config::from_lookup(|_| None).expect("default config");
    let built = Ports::from_config(&config).expect("built-in ports");
    Ports {
        gateways: Gateways::plug(built.gateways, "cloudpayments", Arc::new(memory.clone())),
        registrars: Registrars::plug(built.registrars, Arc::new(memory.clone())),
    }
}

fn service_fiscal() -> Value {
    json!({"inn": "7704211201", "sno": "osn", "vat": "vat22", "settlement_sign": "full_payment",
           "payment_object": 4, "payment_address": "https://orbita.example.ru", "email": "billing@orbita.example.ru"})
}

#[tokio::test]
async fn a_purchase_renewal_refund_and_receipts_run_through_plugged_adapters() {
    let memory = Memory::default();
    let mut app = TestApp::spawn_with_ports(plugged(&memory)).await;
    app.start_worker();
    let policy = json!({"refund_rules": [{"reasons": ["unused"], "decision": "approve", "amount": "full"}]});
    let t = app.fiscal_tenant("Ports", policy, service_fiscal()).await;
    app.plan_monthly(&t, "START", "500.00").await;
    let customer = app.customer(&t, "port-1").await;

    // The checkout comes from the plugged acquirer.
    let bought = app.purchase(&t, &customer, "START").await;
    let widget = &bought["payment"]["confirmation"];
    assert_eq!((widget["public_id"].as_str(), widget["amount"].as_str()), (Some("memory"), Some("500.00")), "{widget}");
    let attempt = widget["invoice_id"].as_str().unwrap();

    // Its notification is verified by the adapter: unsigned is refused, signed captures.
    let pay = json!({"transaction_id": "mem-widget-1", "invoice_id": attempt, "account_id": customer,
                     "amount": "500.00", "currency": "RUB", "token": "mem-token-1"});
    let url = format!("{}/v1/webhooks/cloudpayments/{}/pay", app.base, t.id);
    let unsigned = app.http.post(&url).json(&pay).send().await.unwrap();
    assert_eq!(unsigned.status().as_u16(), 401);
    let signed = app.http.post(&url).header("x-memory-key", &t.api_secret).json(&pay).send().await.unwrap();
    assert_eq!(signed.status().as_u16(), 200);
    assert_eq!(signed.json::<Value>().await.unwrap(), json!({"accepted": true}));
    let sub_id = bought["subscription"]["id"].as_str().unwrap();
    let sub = app.get(&t, &format!("/v1/subscriptions/{sub_id}")).await.expect(200);
    assert_eq!(sub["status"], "active", "{sub}");
    assert_eq!(sub["current_period_end"], "2026-04-05T09:00:00Z");

    // The renewal charges the saved token through the acquirer, once.
    app.advance_to("2026-04-05T09:00:00Z").await;
    let sub = app.get(&t, &format!("/v1/subscriptions/{sub_id}")).await.expect(200);
    assert_eq!(
        (sub["status"].as_str(), sub["current_period_end"].as_str()),
        (Some("active"), Some("2026-05-05T09:00:00Z"))
    );
    let charges = memory.books().charges.clone();
    assert_eq!(charges.len(), 1, "one renewal charge");
    assert_eq!((charges[0].1.as_str(), charges[0].2.to_string()), ("mem-token-1", "500.00".to_owned()));
    let payments = app.get(&t, &format!("/v1/payments?customer_id={customer}")).await.expect(200);
    let renewal = payments["data"].as_array().unwrap().iter().find(|p| p["kind"] == "renewal").cloned().unwrap();
    assert_eq!((renewal["status"].as_str(), renewal["amount"]["value"].as_str()), (Some("succeeded"), Some("500.00")));

    // A refund of the renewal goes to the acquirer and is closed by its lookup.
    let refund =
        app.post(&t, "/v1/refunds", json!({"payment_id": renewal["id"], "reason": "unused"})).await.expect(201);
    assert_eq!(refund["status"], "approved", "{refund}");
    app.settle().await;
    let refunds = app.get(&t, "/v1/refunds").await.expect(200);
    assert_eq!(refunds["data"][0]["status"], "succeeded", "{refunds}");
    let sent = memory.books().refunds.clone();
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].1.as_str(), sent[0].2.to_string()), (charges[0].3.as_str(), "500.00".to_owned()));

    // Every receipt went to the plugged cash register: two incomes and the refund.
    let kinds: Vec<(ReceiptKind, String)> = memory.books().receipts.iter().map(|r| (r.1, r.2.to_string())).collect();
    assert_eq!(
        kinds,
        [
            (ReceiptKind::Income, "500.00".to_owned()),
            (ReceiptKind::Income, "500.00".to_owned()),
            (ReceiptKind::IncomeRefund, "500.00".to_owned())
        ]
    );
    let listed = app.get(&t, &format!("/v1/receipts?payment_id={}", renewal["id"].as_str().unwrap())).await.expect(200);
    assert!(listed["data"].as_array().unwrap().iter().all(|r| r["status"] == "registered"), "{listed}");
    // The simulators were never called.
    assert!(app.sim.transactions().is_empty() && app.atol.documents().is_empty());
    app.assert_ledger_balanced().await;
}
