//! A work-queue consumer: prefetch-bounded, each delivery handled in its own task,
//! acknowledged only after the handler has committed. A failed try is republished
//! to the queue's next retry step (with the attempt count and the reason in
//! headers) and acknowledged once the broker confirmed the copy; after the last
//! step the message is dead-lettered the same way and recorded for operators.
//! Handlers are functions of the message bytes: tests call them without a broker.

use std::sync::Arc;

use billing_shared::error::{ServiceError, ServiceResult};
use billing_shared::queue::topology::{
    ATTEMPT_HEADER, DEAD_EXCHANGE, DEAD_LETTER_ID_HEADER, REASON_HEADER, RETRY_EXCHANGE, WorkQueue, retry_queue,
};
use billing_shared::services::JobResult;
use billing_shared::trace::{self, TRACEPARENT};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;
use uuid::Uuid;

use crate::handlers::{Handlers, Message, batched};

/// Largest batch of charge or receipt jobs handled together (and most deliveries
/// taken at once), and how long to wait for more.
const BATCH: usize = 128;
const GATHER: std::time::Duration = std::time::Duration::from_millis(10);

/// The try number of a delivery (1 for the first), from our attempt header.
pub fn attempt_of(delivery: &Delivery) -> u32 {
    delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(ATTEMPT_HEADER).cloned())
        .and_then(|v| match v {
            AMQPValue::LongLongInt(n) => u32::try_from(n).ok(),
            AMQPValue::LongInt(n) => u32::try_from(n).ok(),
            _ => None,
        })
        .unwrap_or(0)
        + 1
}

fn with_headers(props: &BasicProperties, attempt: u32, reason: &str, dead_letter_id: Option<Uuid>) -> BasicProperties {
    let mut headers = props.headers().clone().unwrap_or_default();
    headers.insert(ATTEMPT_HEADER.into(), AMQPValue::LongLongInt(i64::from(attempt)));
    let reason: String = reason.chars().take(1000).collect();
    headers.insert(REASON_HEADER.into(), AMQPValue::LongString(LongString::from(reason.as_str())));
    if let Some(id) = dead_letter_id {
        headers.insert(DEAD_LETTER_ID_HEADER.into(), AMQPValue::LongString(LongString::from(id.to_string().as_str())));
    }
    props.clone().with_headers(headers).with_delivery_mode(2)
}

/// Consumes `queue` until `stop` flips; in-flight deliveries finish first. The
/// broker hands over at most `prefetch` unacknowledged deliveries (a wave queue's
/// consumer fewer: [`WorkQueue::prefetch`]).
pub async fn run(
    conn: Arc<Connection>,
    queue: WorkQueue,
    prefetch: u16,
    handlers: Arc<Handlers>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), lapin::Error> {
    let channel = conn.create_channel().await?;
    channel.basic_qos(queue.prefetch(prefetch), BasicQosOptions::default()).await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    let tag = format!("{}-{}", queue.name, Uuid::new_v4().simple());
    let mut consumer = channel
        .basic_consume(queue.name.into(), tag.as_str().into(), BasicConsumeOptions::default(), FieldTable::default())
        .await?;
    let mut inflight = JoinSet::new();
    loop {
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
            next = consumer.next() => match next {
                Some(Ok(delivery)) if !batched(queue) => {
                    let (channel, handlers) = (channel.clone(), handlers.clone());
                    inflight.spawn(async move { handle(channel, queue, handlers, delivery).await });
                }
                Some(Ok(delivery)) => {
                    // One-attempt charges or receipts: take what is already waiting, up to a batch.
                    let mut batch = vec![delivery];
                    while batch.len() < BATCH {
                        match tokio::time::timeout(GATHER, consumer.next()).await {
                            Ok(Some(Ok(d))) => batch.push(d),
                            Ok(Some(Err(e))) => {
                                tracing::warn!(queue = queue.name, error = %e, "consumer error while gathering a batch");
                                break;
                            }
                            _ => break,
                        }
                    }
                    let (channel, handlers) = (channel.clone(), handlers.clone());
                    inflight.spawn(async move { handle_batch(channel, queue, handlers, batch).await });
                }
                Some(Err(e)) => return Err(e),
                None => break,
            },
            Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                if let Err(e) = done {
                    tracing::error!(queue = queue.name, error = %e, "handler task failed");
                }
            }
        }
    }
    let _ = channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()).await;
    while inflight.join_next().await.is_some() {}
    let _ = channel.close(200, "consumer stopping".into()).await;
    Ok(())
}

/// Try number of a delivery and whether it is the last before dead-lettering.
fn tries(queue: WorkQueue, delivery: &Delivery) -> (u32, bool) {
    let attempt = attempt_of(delivery);
    (attempt, usize::try_from(attempt).unwrap_or(usize::MAX) > queue.retry_delays_ms.len())
}

/// The `traceparent` a delivery carries (the relay copies it from the outbox row;
/// retries and dead letters keep the headers).
fn traceparent_of(delivery: &Delivery) -> Option<String> {
    match delivery.properties.headers().as_ref()?.inner().get(TRACEPARENT)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        _ => None,
    }
}

async fn handle(channel: Channel, queue: WorkQueue, handlers: Arc<Handlers>, delivery: Delivery) {
    let (attempt, last) = tries(queue, &delivery);
    let message_id = delivery.properties.message_id().as_ref().map(|m| m.to_string()).unwrap_or_default();
    let span = tracing::info_span!("job", queue = queue.name, message_id, attempt, trace_id = tracing::field::Empty);
    trace::continue_from(&span, traceparent_of(&delivery).as_deref());
    let started = std::time::Instant::now();
    let outcome = handlers.handle(queue, &delivery.data, attempt, last).instrument(span.clone()).await;
    metrics::histogram!("billing_job_seconds", "queue" => queue.name).record(started.elapsed().as_secs_f64());
    settle(&channel, queue, &handlers, &delivery, attempt, last, outcome).instrument(span).await;
}

/// A batch of charge or receipt jobs in one span: a child of the first message's trace,
/// linked to the others'.
async fn handle_batch(channel: Channel, queue: WorkQueue, handlers: Arc<Handlers>, deliveries: Vec<Delivery>) {
    let span =
        tracing::info_span!("job.batch", queue = queue.name, size = deliveries.len(), trace_id = tracing::field::Empty);
    let parents: Vec<Option<String>> = deliveries.iter().map(traceparent_of).collect();
    trace::continue_from(&span, parents.first().and_then(|p| p.as_deref()));
    for parent in parents.iter().skip(1) {
        trace::link(&span, parent.as_deref());
    }
    let started = std::time::Instant::now();
    let messages: Vec<Message<'_>> = deliveries
        .iter()
        .map(|d| {
            let (attempt, last) = tries(queue, d);
            Message { body: d.data.as_slice(), attempt, last }
        })
        .collect();
    let outcomes = handlers.handle_batch(queue, &messages).instrument(span.clone()).await;
    metrics::histogram!("billing_job_batch_seconds", "queue" => queue.name).record(started.elapsed().as_secs_f64());
    async {
        for (delivery, outcome) in deliveries.iter().zip(outcomes) {
            let (attempt, last) = tries(queue, delivery);
            settle(&channel, queue, &handlers, delivery, attempt, last, outcome).await;
        }
    }
    .instrument(span)
    .await;
}

/// Acknowledges a handled delivery, or reschedules it (retry step or dead letter)
/// and acknowledges it once the broker confirmed the copy.
async fn settle(
    channel: &Channel,
    queue: WorkQueue,
    handlers: &Handlers,
    delivery: &Delivery,
    attempt: u32,
    last: bool,
    outcome: ServiceResult<JobResult>,
) {
    // (reason, poison, expected): a job asking to be tried again later (a report
    // still pending, a provider to ask again) is the normal course of some jobs,
    // logged at info; an error or a dead letter is a warning.
    let failure = match outcome {
        Ok(JobResult::Done) => None,
        Ok(JobResult::RetryLater(reason)) => Some((reason, false, true)),
        Ok(JobResult::DeadLetter(reason)) => Some((reason, true, false)),
        // A message that can never be handled goes straight to the dead letters.
        Err(e @ ServiceError::Invalid { .. }) | Err(e @ ServiceError::NotFound { .. }) => {
            Some((e.to_string(), true, false))
        }
        Err(e) => Some((e.to_string(), false, false)),
    };
    let settled = match failure {
        None => Ok(()),
        Some((reason, poison, expected)) => {
            if expected && !last {
                tracing::info!(queue = queue.name, attempt, %reason, "job to be tried again");
            } else {
                tracing::warn!(queue = queue.name, attempt, %reason, "job failed");
            }
            if poison || last {
                dead_letter(channel, queue, handlers, delivery, attempt, &reason).await
            } else {
                retry(channel, queue, delivery, attempt, &reason).await
            }
        }
    };
    match settled {
        Ok(()) => {
            if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
                tracing::warn!(queue = queue.name, error = %e, "ack failed; the message will be redelivered");
            }
        }
        Err(e) => {
            tracing::error!(queue = queue.name, error = %e, "could not reschedule a failed job; requeueing it");
            let _ = delivery.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await;
        }
    }
}

async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    key: &str,
    body: &[u8],
    props: BasicProperties,
) -> Result<(), String> {
    let confirm = channel
        .basic_publish(exchange.into(), key.into(), BasicPublishOptions::default(), body, props)
        .await
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    if confirm.is_ack() { Ok(()) } else { Err("the broker refused the message".into()) }
}

async fn retry(
    channel: &Channel,
    queue: WorkQueue,
    delivery: &Delivery,
    attempt: u32,
    reason: &str,
) -> Result<(), String> {
    let step = usize::try_from(attempt.saturating_sub(1)).unwrap_or(0);
    metrics::counter!("billing_job_retries_total", "queue" => queue.name).increment(1);
    publish_confirmed(
        channel,
        RETRY_EXCHANGE,
        &retry_queue(queue.name, step),
        &delivery.data,
        with_headers(&delivery.properties, attempt, reason, None),
    )
    .await
}

async fn dead_letter(
    channel: &Channel,
    queue: WorkQueue,
    handlers: &Handlers,
    delivery: &Delivery,
    attempt: u32,
    reason: &str,
) -> Result<(), String> {
    let id = Uuid::now_v7();
    // A body that is not JSON is kept as text, so the operator still sees it.
    let payload = Some(
        serde_json::from_slice(&delivery.data)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&delivery.data).into_owned())),
    );
    handlers.record_dead_letter(id, queue, reason, attempt, payload).await.map_err(|e| e.to_string())?;
    publish_confirmed(
        channel,
        DEAD_EXCHANGE,
        queue.name,
        &delivery.data,
        with_headers(&delivery.properties, attempt, reason, Some(id)),
    )
    .await
}
