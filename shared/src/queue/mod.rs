//! RabbitMQ: connections and the topology every process agrees on.

pub mod jobs;
pub mod topology;

use std::time::Duration;

use lapin::{Connection, ConnectionProperties};

use crate::config::Secret;
use crate::domain::ids::TenantId;

/// Opens a connection to the broker.
pub async fn connect(url: &Secret, name: &str) -> Result<Connection, lapin::Error> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    Connection::connect(url.expose(), props).await
}

/// True when the broker accepts a connection within two seconds.
pub async fn ping(url: &Secret) -> bool {
    match tokio::time::timeout(Duration::from_secs(2), connect(url, "billing-readyz")).await {
        Ok(Ok(conn)) => {
            let _ = conn.close(200, "readyz".into()).await;
            true
        }
        _ => false,
    }
}

/// Binds (or unbinds) the webhook queue to a tenant's events, on a connection of
/// its own (tenant changes are rare).
pub async fn set_webhook_binding(url: &Secret, tenant_id: TenantId, on: bool) -> Result<(), lapin::Error> {
    let conn = tokio::time::timeout(Duration::from_secs(5), connect(url, "billing-api-bindings"))
        .await
        .map_err(|_| lapin::Error::from(lapin::ErrorKind::InvalidConnectionState(lapin::ConnectionState::Closed)))??;
    let probe = conn.create_channel().await?;
    let passive = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
    let result = if probe
        .queue_declare(topology::WEBHOOKS.name.into(), passive, lapin::types::FieldTable::default())
        .await
        .is_err()
    {
        // No worker has declared the topology yet: it binds when it does.
        Ok(())
    } else {
        topology::bind_webhooks(&probe, tenant_id, on).await
    };
    let _ = conn.close(200, "bound".into()).await;
    result
}

/// Moves every message of `queue`'s dead-letter queue back to the queue itself,
/// with its attempt count reset. Each message is acknowledged only after the
/// broker confirmed its copy. Returns the dead-letter ids of the replayed messages.
pub async fn replay_dead_letters(url: &Secret, queue: &topology::WorkQueue) -> Result<Vec<uuid::Uuid>, lapin::Error> {
    use lapin::BasicProperties;
    use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
    use lapin::types::{AMQPValue, FieldTable};

    let conn = connect(url, "billing-api-replay").await?;
    let channel = conn.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    let dead = topology::dead_queue(queue.name);
    let mut replayed = Vec::new();
    while let Some(msg) = channel.basic_get(dead.as_str().into(), BasicGetOptions::default()).await? {
        let delivery = msg.delivery;
        let mut headers: FieldTable = delivery.properties.headers().clone().unwrap_or_default();
        let id = match headers.inner().get(topology::DEAD_LETTER_ID_HEADER) {
            Some(AMQPValue::LongString(s)) => uuid::Uuid::parse_str(&String::from_utf8_lossy(s.as_bytes())).ok(),
            _ => None,
        };
        if id.is_none() {
            // Not dead-lettered by our worker (or its header was damaged): replayed,
            // but no dead-letter record can be marked for it.
            tracing::warn!(queue = queue.name, "replaying a dead letter without a readable record id");
        }
        let mut fresh = FieldTable::default();
        for (k, v) in headers.inner() {
            if k.as_str() != topology::ATTEMPT_HEADER {
                fresh.insert(k.clone(), v.clone());
            }
        }
        headers = fresh;
        let props: BasicProperties = delivery.properties.clone().with_headers(headers);
        let confirm = channel
            .basic_publish(
                topology::WORK_EXCHANGE.into(),
                queue.name.into(),
                BasicPublishOptions::default(),
                &delivery.data,
                props,
            )
            .await?
            .await?;
        if !confirm.is_ack() {
            break;
        }
        delivery.ack(BasicAckOptions::default()).await?;
        replayed.extend(id);
    }
    let _ = conn.close(200, "replayed".into()).await;
    Ok(replayed)
}
