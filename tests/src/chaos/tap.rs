//! A tap on `billing.events`: a durable queue bound to every routing key before the
//! wave starts, drained after it settles, so the run checks the events a
//! subscriber really received (message ids are outbox row ids), not the outbox's
//! own bookkeeping. Classic durable queue, persistent messages: it keeps what it
//! holds across the RabbitMQ node restart the run injects.

use std::collections::HashMap;

use lapin::options::{
    BasicAckOptions, BasicGetOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};

use billing_shared::queue::topology::EVENTS_EXCHANGE;

const QUEUE: &str = "chaos.events-tap";

async fn connect(url: &str) -> anyhow::Result<lapin::Channel> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    Ok(conn.create_channel().await?)
}

/// Declares (and empties) the tap queue, bound to `billing.events` with `#`.
pub async fn declare(url: &str) -> anyhow::Result<()> {
    let channel = connect(url).await?;
    let durable = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
    channel.exchange_declare(EVENTS_EXCHANGE.into(), ExchangeKind::Topic, durable, FieldTable::default()).await?;
    channel.queue_delete(QUEUE.into(), QueueDeleteOptions::default()).await?;
    let queue = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
    channel.queue_declare(QUEUE.into(), queue, FieldTable::default()).await?;
    channel
        .queue_bind(
            QUEUE.into(),
            EVENTS_EXCHANGE.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    channel.close(200, "declared".into()).await?;
    Ok(())
}

/// Takes every message the tap holds: deliveries per message id. Errors: a
/// message without an id (the relay always sets one).
pub async fn drain(url: &str) -> anyhow::Result<HashMap<String, usize>> {
    let channel = connect(url).await?;
    let mut seen: HashMap<String, usize> = HashMap::new();
    while let Some(msg) = channel.basic_get(QUEUE.into(), BasicGetOptions::default()).await? {
        let id = msg.delivery.properties.message_id().clone().ok_or_else(|| anyhow::anyhow!("an event without id"))?;
        *seen.entry(id.to_string()).or_default() += 1;
        msg.delivery.ack(BasicAckOptions::default()).await?;
    }
    channel.queue_delete(QUEUE.into(), QueueDeleteOptions::default()).await?;
    channel.close(200, "drained".into()).await?;
    Ok(seen)
}
