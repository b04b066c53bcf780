//! The mixed wave: customers buy through the CloudPayments widget, report usage,
//! renew twice (with scripted declines and unknown outcomes, dunning retries
//! included) and ask for refunds; receipts are registered with ATOL throughout.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;

use super::client::{Client, Db};
use crate::cloudpayments::{CloudPaymentsSim, TokenScript, WidgetParams};

/// Purchases start here; the clock then moves through two renewals and dunning.
pub const T0: &str = "2026-03-02T09:00:00Z";
const CLOCK_STEPS: [&str; 7] = [
    "2026-04-02T10:00:00Z",
    "2026-04-03T10:00:00Z",
    "2026-04-05T10:00:00Z",
    "2026-04-08T10:00:00Z",
    "2026-05-02T10:00:00Z",
    "2026-05-03T10:00:00Z",
    "2026-05-08T10:00:00Z",
];
/// Customers served at once.
const CONCURRENCY: usize = 8;

/// What the wave did (the table's second part).
#[derive(Debug, Default)]
pub struct Operations {
    pub purchases_paid: AtomicU64,
    pub usage_events_sent: AtomicU64,
    /// Rejected one by one (a customer whose access a hard decline suspended).
    pub usage_events_rejected: AtomicU64,
    pub refunds_requested: AtomicU64,
    pub renewal_scripts: AtomicU64,
}

/// One customer's purchase as the wave keeps it.
#[derive(Debug, Clone)]
pub struct Bought {
    pub index: usize,
    pub customer_id: String,
    pub payment_id: String,
}

/// The tenant the wave runs as.
pub struct Wave {
    pub client: Client,
    pub db: Db,
    pub cp: CloudPaymentsSim,
    pub admin_token: String,
    pub api_key: String,
    pub seed: u64,
    pub customers: usize,
    pub ops: Arc<Operations>,
    pub tokens: Arc<Mutex<Vec<String>>>,
}

/// A card number of the customer's own (so each has its own saved-card token).
pub fn card_of(index: usize) -> String {
    format!("4{:015}", 100_000 + index)
}

impl Wave {
    async fn set_clock(&self, at: &str) -> anyhow::Result<()> {
        self.client
            .expect(200, Method::POST, "/v1/admin/clock", &self.admin_token, Some(&json!({"now": at})), None)
            .await
            .map(|_| ())
    }

    /// Creates a customer, buys the plan and pays it in the widget until its Pay
    /// notification is accepted; then reports a first usage batch.
    async fn buy(self: &Arc<Self>, index: usize) -> anyhow::Result<Bought> {
        let key = &self.api_key;
        let customer = self
            .client
            .expect(
                201,
                Method::POST,
                "/v1/customers",
                key,
                Some(&json!({"external_id": format!("chaos-{index}"), "email": format!("chaos-{index}@example.ru")})),
                Some(&format!("customer-{index}")),
            )
            .await?;
        let customer_id = customer["id"].as_str().context("customer id")?.to_owned();
        let bought = self
            .client
            .expect(
                201,
                Method::POST,
                "/v1/subscriptions",
                key,
                Some(&json!({"customer_id": customer_id, "plan": "CHAOS", "pay_with": "card"})),
                Some(&format!("purchase-{index}")),
            )
            .await?;
        let params: WidgetParams = serde_json::from_value(bought["payment"]["confirmation"].clone())?;
        let payment_id = bought["payment"]["id"].as_str().context("payment id")?.to_owned();
        let card = card_of(index);
        for _ in 0..20 {
            let outcome = self.cp.pay_widget(&params, &card).await;
            match outcome {
                Ok(o) if o.status == "Completed" && o.deliveries.last().is_some_and(|d| d.code == Some(0)) => {
                    self.ops.purchases_paid.fetch_add(1, Ordering::Relaxed);
                    self.tokens.lock().await.push(CloudPaymentsSim::token_for(&card));
                    self.usage(&customer_id, index, 0, T0).await?;
                    return Ok(Bought { index, customer_id, payment_id });
                }
                Ok(o) if o.status == "Completed" => bail!("customer {index}: Pay not accepted: {:?}", o.deliveries),
                // The Check went unanswered (API replica down): the customer tries again.
                _ => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
            }
        }
        bail!("customer {index}: the widget never completed")
    }

    /// Reports ten usage events (ids fixed by customer and batch, so a retried
    /// batch counts once); counts those not rejected.
    async fn usage(&self, customer_id: &str, index: usize, batch: usize, at: &str) -> anyhow::Result<()> {
        let events: Vec<Value> = (0..10)
            .map(|k| {
                json!({"event_id": format!("u-{index}-{batch}-{k}"), "customer_id": customer_id,
                       "metric": "messages", "quantity": 1, "occurred_at": at})
            })
            .collect();
        let answer = self
            .client
            .expect(200, Method::POST, "/v1/usage", &self.api_key, Some(&json!({"events": events})), None)
            .await?;
        // A customer whose access was suspended (hard decline) has its events
        // rejected one by one; the others must be stored exactly once.
        let rejected = answer["rejected"].as_array().map_or(0, Vec::len) as u64;
        self.ops.usage_events_sent.fetch_add(10 - rejected.min(10), Ordering::Relaxed);
        self.ops.usage_events_rejected.fetch_add(rejected, Ordering::Relaxed);
        Ok(())
    }

    /// Scripts each customer's next renewal charge: most approve, some decline
    /// softly once (dunning recovers them), some hard, some lose the answer.
    fn script_renewals(&self, bought: &[Bought], rng: &mut SmallRng) {
        for b in bought {
            let script: &[TokenScript] = match rng.random_range(0..100u32) {
                0..60 => continue,
                60..72 => &[TokenScript::Decline { reason_code: 5051 }],
                72..76 => &[TokenScript::Decline { reason_code: 5043 }],
                76..84 => &[TokenScript::TimeoutAfterCharge],
                84..90 => &[TokenScript::ErrorAfterCharge],
                90..95 => &[TokenScript::ErrorBeforeCharge],
                _ => &[TokenScript::BusyBeforeCharge],
            };
            self.cp.script_token(&CloudPaymentsSim::token_for(&card_of(b.index)), script);
            self.ops.renewal_scripts.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits (at most a minute) until no charge is in flight and the outbox is
    /// drained, so the next clock step finds the previous one's work done.
    async fn quiet(&self) -> anyhow::Result<()> {
        for _ in 0..120 {
            let busy = self
                .db
                .number(
                    "SELECT (SELECT count(*) FROM payment_attempts WHERE status IN ('pending', 'sent')) \
                     + (SELECT count(*) FROM outbox_pending)",
                )
                .await?;
            if busy == 0 {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        Ok(())
    }

    /// Runs the whole wave; returns the customers who bought.
    pub async fn run(self: Arc<Self>) -> anyhow::Result<Vec<Bought>> {
        let mut rng = SmallRng::seed_from_u64(self.seed);
        self.set_clock(T0).await?;
        let gate = Arc::new(Semaphore::new(CONCURRENCY));
        let mut tasks = JoinSet::new();
        for index in 0..self.customers {
            let (wave, gate) = (self.clone(), gate.clone());
            tasks.spawn(async move {
                let _permit = gate.acquire_owned().await?;
                wave.buy(index).await
            });
        }
        let mut bought = Vec::new();
        while let Some(done) = tasks.join_next().await {
            bought.push(done??);
        }
        bought.sort_by_key(|b| b.index);
        for (step, at) in CLOCK_STEPS.iter().enumerate() {
            if step == 0 || step == 4 {
                self.script_renewals(&bought, &mut rng);
            }
            self.set_clock(at).await?;
            // Usage keeps arriving while the renewals run.
            for b in bought.iter().filter(|b| b.index % 3 == step % 3) {
                self.usage(&b.customer_id, b.index, step + 1, at).await?;
            }
            self.quiet().await?;
        }
        for b in bought.iter().filter(|b| b.index % 5 == 0) {
            self.client
                .expect(
                    201,
                    Method::POST,
                    "/v1/refunds",
                    &self.api_key,
                    Some(&json!({"payment_id": b.payment_id, "reason": "unused"})),
                    Some(&format!("refund-{}", b.index)),
                )
                .await?;
            self.ops.refunds_requested.fetch_add(1, Ordering::Relaxed);
        }
        Ok(bought)
    }
}
