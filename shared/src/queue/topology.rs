//! RabbitMQ topology: exchanges, durable quorum work queues, one TTL'd retry queue
//! per delay step (there is no delayed-message plugin; per-queue TTL expires in
//! order), and a dead-letter queue per work queue.
//!
//! ```text
//! billing.events (topic)  --<tenant_id>.#-->  billing.webhooks   (tenants with a webhook URL)
//! billing.work   (direct) --<queue>-->  <queue>   (billing.renewals, billing.renewal-waves, billing.gateway-followups,
//!                                                  billing.refunds, billing.receipts, billing.receipt-waves)
//! billing.retry  (direct) --<queue>.retry.<n>-->  <queue>.retry.<n>  --TTL, dead-letter-->  billing.work/<queue>
//! billing.dlx    (direct) --<queue>-->  <queue>.dead
//! ```
//! The worker declares all of it at start; `deploy/rabbitmq/definitions.json`
//! describes the same for operators (a test keeps the two equal). The webhook
//! queue is bound per tenant, only while the tenant has a webhook URL, so events of
//! other tenants cost no durable queue write: the API binds before it commits a new
//! URL, and the worker reconciles the bindings when it connects and periodically.

use crate::domain::ids::TenantId;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};
use serde_json::{Value, json};

pub const EVENTS_EXCHANGE: &str = "billing.events";
pub const WORK_EXCHANGE: &str = "billing.work";
pub const RETRY_EXCHANGE: &str = "billing.retry";
pub const DEAD_EXCHANGE: &str = "billing.dlx";

/// Message headers the worker sets on retried and dead-lettered messages.
pub const ATTEMPT_HEADER: &str = "x-billing-attempt";
pub const REASON_HEADER: &str = "x-billing-reason";
pub const DEAD_LETTER_ID_HEADER: &str = "x-billing-dead-letter-id";

const SECOND: u64 = 1000;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;

/// A durable work queue with its retry ladder.
#[derive(Debug, Clone, Copy)]
pub struct WorkQueue {
    pub name: &'static str,
    /// Delay before each retry, in milliseconds; after the last one the message is
    /// dead-lettered.
    pub retry_delays_ms: &'static [u64],
    /// Most unacknowledged deliveries a consumer takes, whatever the configured
    /// prefetch (`None`: the configured one): a wave queue's [`WAVES_AT_ONCE`].
    pub prefetch_cap: Option<u16>,
}

impl WorkQueue {
    /// The prefetch a consumer of this queue uses, given the configured one.
    pub fn prefetch(self, configured: u16) -> u16 {
        self.prefetch_cap.map_or(configured, |cap| configured.min(cap))
    }
}

/// Renewal charges one attempt at a time: dunning retries, pay-now and extension
/// charges, and an attempt a wave handed over.
pub const RENEWALS: WorkQueue = WorkQueue {
    name: "billing.renewals",
    retry_delays_ms: &[5 * SECOND, 30 * SECOND, 2 * MINUTE, 10 * MINUTE, HOUR],
    prefetch_cap: None,
};

/// Waves of renewal charges (`charge_attempts`, up to 256 attempts each), apart
/// from `billing.renewals` so that a renewal peak's backlog of waves never delays
/// a one-attempt charge (a customer's "pay now") queued behind it; the consumer
/// takes [`WAVES_AT_ONCE`] at a time. Two retries: a wave that keeps failing hands
/// each attempt to its own job on `billing.renewals`, with its whole ladder.
pub const RENEWAL_WAVES: WorkQueue = WorkQueue {
    name: "billing.renewal-waves",
    retry_delays_ms: &[5 * SECOND, 30 * SECOND],
    prefetch_cap: Some(WAVES_AT_ONCE),
};

/// Follow-ups of gateway calls whose outcome was unknown (reconciliation).
pub const GATEWAY_FOLLOWUPS: WorkQueue = WorkQueue {
    name: "billing.gateway-followups",
    retry_delays_ms: &[5 * SECOND, 30 * SECOND, 2 * MINUTE, 10 * MINUTE, 30 * MINUTE, HOUR, 3 * HOUR, 6 * HOUR],
    prefetch_cap: None,
};

/// Executing approved refunds through the gateway (and retrying a try whose
/// outcome was unknown with the same idempotency key).
pub const REFUNDS: WorkQueue = WorkQueue {
    name: "billing.refunds",
    retry_delays_ms: &[5 * SECOND, 30 * SECOND, 2 * MINUTE, 10 * MINUTE, HOUR, 3 * HOUR, 6 * HOUR],
    prefetch_cap: None,
};

/// Registering 54-FZ receipts with the fiscal provider and polling their reports.
pub const RECEIPTS: WorkQueue = WorkQueue {
    name: "billing.receipts",
    retry_delays_ms: &[
        2 * SECOND,
        10 * SECOND,
        30 * SECOND,
        2 * MINUTE,
        10 * MINUTE,
        30 * MINUTE,
        HOUR,
        3 * HOUR,
        6 * HOUR,
        12 * HOUR,
        24 * HOUR,
    ],
    prefetch_cap: None,
};

/// Waves of receipt registrations (`register_receipts`, a renewal wave's receipts),
/// apart from `billing.receipts` for the same reason as [`RENEWAL_WAVES`]. Its
/// retry steps are also the delays between a wave's rounds of report polls: a
/// receipt still awaiting its report after the last round is handed to its own
/// job on `billing.receipts`, which follows it through that queue's whole ladder.
pub const RECEIPT_WAVES: WorkQueue = WorkQueue {
    name: "billing.receipt-waves",
    retry_delays_ms: &[2 * SECOND, 10 * SECOND, 30 * SECOND],
    prefetch_cap: Some(WAVES_AT_ONCE),
};

/// Wave jobs one consumer of a wave queue takes at once (its prefetch): twice as
/// many as the process runs at once (`charge_waves` and `receipt_waves` run two
/// each), so that the next wave is at hand when one ends; a wave taken and waiting
/// holds only its ids, one waiting in the broker nothing here.
pub const WAVES_AT_ONCE: u16 = 4;

/// Signed webhook delivery to tenants: about three days of back-off.
pub const WEBHOOKS: WorkQueue = WorkQueue {
    name: "billing.webhooks",
    retry_delays_ms: &[30 * SECOND, 2 * MINUTE, 10 * MINUTE, HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, 24 * HOUR, 24 * HOUR],
    prefetch_cap: None,
};

/// Routing-key pattern of one tenant's events.
pub fn tenant_events(tenant_id: TenantId) -> String {
    format!("{tenant_id}.#")
}

/// Binds (or unbinds) the webhook queue to a tenant's events (idempotent).
pub async fn bind_webhooks(channel: &Channel, tenant_id: TenantId, on: bool) -> Result<(), lapin::Error> {
    let key = tenant_events(tenant_id);
    if on {
        channel
            .queue_bind(
                WEBHOOKS.name.into(),
                EVENTS_EXCHANGE.into(),
                key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
    } else {
        channel
            .queue_unbind(WEBHOOKS.name.into(), EVENTS_EXCHANGE.into(), key.as_str().into(), FieldTable::default())
            .await
    }
}

pub const ALL: &[WorkQueue] = &[RENEWALS, RENEWAL_WAVES, GATEWAY_FOLLOWUPS, REFUNDS, RECEIPTS, RECEIPT_WAVES, WEBHOOKS];

pub fn by_name(name: &str) -> Option<&'static WorkQueue> {
    ALL.iter().find(|q| q.name == name)
}

pub fn retry_queue(queue: &str, step: usize) -> String {
    format!("{queue}.retry.{step}")
}

pub fn dead_queue(queue: &str) -> String {
    format!("{queue}.dead")
}

/// Delays are divided by `divisor` (tests run the ladder in milliseconds).
fn ttl(delay_ms: u64, divisor: u64) -> u64 {
    (delay_ms / divisor.max(1)).max(1)
}

fn quorum_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("quorum")));
    args
}

fn retry_args(queue: &str, ttl_ms: u64) -> FieldTable {
    let mut args = quorum_args();
    args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(i64::try_from(ttl_ms).unwrap_or(i64::MAX)));
    args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(LongString::from(WORK_EXCHANGE)));
    args.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(LongString::from(queue)));
    // at-least-once dead-lettering (quorum queues): nothing is lost on the way back
    args.insert("x-dead-letter-strategy".into(), AMQPValue::LongString(LongString::from("at-least-once")));
    args.insert("x-overflow".into(), AMQPValue::LongString(LongString::from("reject-publish")));
    args
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() }
}

/// Declares the whole topology (idempotent).
pub async fn declare(channel: &Channel, divisor: u64) -> Result<(), lapin::Error> {
    let exchange_opts = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
    for (name, kind) in [
        (EVENTS_EXCHANGE, ExchangeKind::Topic),
        (WORK_EXCHANGE, ExchangeKind::Direct),
        (RETRY_EXCHANGE, ExchangeKind::Direct),
        (DEAD_EXCHANGE, ExchangeKind::Direct),
    ] {
        channel.exchange_declare(name.into(), kind, exchange_opts, FieldTable::default()).await?;
    }
    let bind = async |queue: &str, exchange: &str, key: &str| {
        channel
            .queue_bind(
                ShortString::from(queue),
                exchange.into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
    };
    for q in ALL {
        channel.queue_declare(q.name.into(), durable(), quorum_args()).await?;
        bind(q.name, WORK_EXCHANGE, q.name).await?;
        for (step, delay) in q.retry_delays_ms.iter().enumerate() {
            let retry = retry_queue(q.name, step);
            channel.queue_declare(retry.as_str().into(), durable(), retry_args(q.name, ttl(*delay, divisor))).await?;
            bind(&retry, RETRY_EXCHANGE, &retry).await?;
        }
        let dead = dead_queue(q.name);
        channel.queue_declare(dead.as_str().into(), durable(), quorum_args()).await?;
        bind(&dead, DEAD_EXCHANGE, q.name).await?;
    }
    Ok(())
}

/// The same topology as RabbitMQ definitions (`rabbitmqctl import_definitions`,
/// or the management UI's "Import definitions"), for the default vhost.
pub fn definitions() -> Value {
    let exchanges: Vec<Value> = [
        (EVENTS_EXCHANGE, "topic"),
        (WORK_EXCHANGE, "direct"),
        (RETRY_EXCHANGE, "direct"),
        (DEAD_EXCHANGE, "direct"),
    ]
    .iter()
    .map(|(name, kind)| {
        json!({"name": name, "vhost": "/", "type": kind, "durable": true, "auto_delete": false, "internal": false, "arguments": {}})
    })
    .collect();
    let mut queues = Vec::new();
    let mut bindings = Vec::new();
    let queue = |name: &str, arguments: Value| json!({"name": name, "vhost": "/", "durable": true, "auto_delete": false, "arguments": arguments});
    let binding = |source: &str, dest: &str, key: &str| json!({"source": source, "vhost": "/", "destination": dest, "destination_type": "queue", "routing_key": key, "arguments": {}});
    for q in ALL {
        queues.push(queue(q.name, json!({"x-queue-type": "quorum"})));
        bindings.push(binding(WORK_EXCHANGE, q.name, q.name));
        for (step, delay) in q.retry_delays_ms.iter().enumerate() {
            let retry = retry_queue(q.name, step);
            queues.push(queue(
                &retry,
                json!({
                    "x-queue-type": "quorum", "x-message-ttl": delay, "x-dead-letter-exchange": WORK_EXCHANGE,
                    "x-dead-letter-routing-key": q.name, "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"
                }),
            ));
            bindings.push(binding(RETRY_EXCHANGE, &retry, &retry));
        }
        let dead = dead_queue(q.name);
        queues.push(queue(&dead, json!({"x-queue-type": "quorum"})));
        bindings.push(binding(DEAD_EXCHANGE, &dead, q.name));
    }
    json!({"exchanges": exchanges, "queues": queues, "bindings": bindings})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_retries_last_about_three_days() {
        let total: u64 = WEBHOOKS.retry_delays_ms.iter().sum();
        let days = total as f64 / (24.0 * HOUR as f64);
        assert!((2.5..=3.5).contains(&days), "{days} days");
    }

    #[test]
    fn the_operator_definitions_file_matches_the_declared_topology() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/rabbitmq/definitions.json");
        let file: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(
            file,
            definitions(),
            "regenerate with: cargo run -p billing-worker -- definitions > deploy/rabbitmq/definitions.json"
        );
    }
}
