//! The outbox relay: publishes committed messages to RabbitMQ at least once and in
//! order per ordering key, safely with several worker replicas.
//!
//! Messages are spread over lanes by ordering key. A relay pass takes a lane with a
//! transaction-scoped advisory lock (another replica skips it), publishes the
//! lane's oldest messages in sequence order on one confirm-mode channel, waits for
//! the broker's confirms, then takes them off the work list (`outbox_pending`) and
//! commits. A crash before the commit republishes them (consumers deduplicate by
//! message id); nothing leaves the work list that the broker did not confirm.

use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use billing_shared::db::outbox::{self, LANES, Route};
use billing_shared::db::{PgPool, in_transaction_by_index};
use billing_shared::error::{ServiceError, ServiceResult};
use billing_shared::trace::TRACEPARENT;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection};
use tokio::sync::watch;

/// Advisory-lock namespace of relay lanes.
const RELAY_LOCK: i32 = 0x7265_6c61;
const BATCH: i64 = 500;

async fn publish_lane(pool: &PgPool, channel: &Channel, lane: i16) -> ServiceResult<usize> {
    let mut conn = pool.get().await?;
    in_transaction_by_index(&mut conn, async |c| {
        if !outbox::try_lock_lane(c, RELAY_LOCK, lane).await? {
            return Ok(0);
        }
        let rows = outbox::pending(c, lane, BATCH).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut sends = Vec::with_capacity(rows.len());
        for row in &rows {
            // A stored job no queue of this binary knows stops its lane, loudly:
            // skipping it would lose it, publishing it nowhere would too.
            let route = Route::of(row).ok_or_else(|| {
                ServiceError::Internal(format!("outbox message {} of unknown type {}", row.id, row.event_type))
            })?;
            let mut props = BasicProperties::default()
                .with_message_id(row.id.to_string().as_str().into())
                .with_content_type("application/json".into())
                .with_delivery_mode(2);
            if let Some(tp) = &row.trace_context {
                let mut headers = FieldTable::default();
                headers.insert(TRACEPARENT.into(), AMQPValue::LongString(tp.as_str().into()));
                props = props.with_headers(headers);
            }
            let mut send = Box::pin(channel.basic_publish(
                route.exchange.into(),
                route.routing_key.as_str().into(),
                BasicPublishOptions::default(),
                &row.payload.0,
                props,
            ));
            // The first poll of a publish takes its delivery tag and queues its
            // frames before it awaits anything (lapin 4,
            // `Channel::send_method_frame_with_body`); what it then waits for is the
            // connection's I/O thread writing them. Polling each once here, in seq
            // order, queues the whole lane in order and lets that thread write it
            // in a few socket writes, instead of a round trip between the two
            // threads per message.
            let first = std::future::poll_fn(|cx| Poll::Ready(send.as_mut().poll(cx))).await;
            sends.push((send, first));
        }
        // Every message is queued already: waiting for one's write and confirm does
        // not hold back the others'.
        for (send, first) in sends {
            let sent = match first {
                Poll::Ready(sent) => sent,
                Poll::Pending => send.await,
            };
            let confirm = sent.map_err(|e| ServiceError::Internal(format!("publish: {e}")))?;
            let confirmation = confirm.await.map_err(|e| ServiceError::Internal(format!("confirm: {e}")))?;
            if !confirmation.is_ack() {
                return Err(ServiceError::Internal("the broker refused a message".into()));
            }
        }
        let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
        outbox::mark_published(c, lane, &seqs).await?;
        metrics::counter!("billing_outbox_published_total").increment(rows.len() as u64);
        Ok(rows.len())
    })
    .await
}

/// How often the outbox lag gauge is refreshed.
const LAG_SAMPLE_EVERY: Duration = Duration::from_secs(2);

/// Lanes published at the same time (each on its own confirm-mode channel).
const PARALLEL_LANES: usize = 4;

/// Relays until `stop` flips or the connection fails.
pub async fn run(
    conn: Arc<Connection>,
    pool: PgPool,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) -> Result<(), lapin::Error> {
    let mut channels = Vec::with_capacity(PARALLEL_LANES);
    for _ in 0..PARALLEL_LANES {
        let channel = conn.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        channels.push(channel);
    }
    let mut sampled = std::time::Instant::now() - LAG_SAMPLE_EVERY;
    loop {
        if *stop.borrow() {
            break;
        }
        let lanes = match pool.get().await {
            Ok(mut c) => in_transaction_by_index(&mut c, async |c| outbox::busy_lanes(c).await)
                .await
                .unwrap_or_else(|_: diesel::result::Error| (0..LANES).collect()),
            Err(_) => Vec::new(),
        };
        let mut published = 0;
        for group in lanes.chunks(PARALLEL_LANES) {
            let passes = group.iter().zip(&channels).map(|(lane, channel)| {
                let pool = &pool;
                async move { (*lane, publish_lane(pool, channel, *lane).await) }
            });
            for (lane, result) in futures_util::future::join_all(passes).await {
                match result {
                    Ok(n) => published += n,
                    Err(e) => tracing::warn!(lane, error = %e, "relay pass failed"),
                }
            }
            if channels.iter().any(|c| !c.status().connected()) {
                return Ok(());
            }
        }
        if sampled.elapsed() >= LAG_SAMPLE_EVERY
            && let Ok(mut c) = pool.get().await
            && let Ok(lag) = outbox::lag_seconds(&mut c).await
        {
            metrics::gauge!("billing_outbox_lag_seconds").set(lag);
            sampled = std::time::Instant::now();
        }
        if published == 0 {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.changed() => {}
            }
        }
    }
    for channel in channels {
        let _ = channel.close(200, "relay stopping".into()).await;
    }
    Ok(())
}
