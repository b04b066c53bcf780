//! Samples queue depths for `/metrics`: messages ready per work, retry and
//! dead-letter queue (the consumer lag an operator watches).

use std::sync::Arc;
use std::time::Duration;

use billing_shared::queue::topology::{ALL, dead_queue};
use lapin::Connection;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use tokio::sync::watch;

pub async fn run(conn: Arc<Connection>, every: Duration, mut stop: watch::Receiver<bool>) -> Result<(), lapin::Error> {
    let channel = conn.create_channel().await?;
    let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
    loop {
        for q in ALL {
            for name in [q.name.to_owned(), dead_queue(q.name)] {
                match channel.queue_declare(name.as_str().into(), passive, FieldTable::default()).await {
                    Ok(queue) => metrics::gauge!("billing_queue_messages_ready", "queue" => name.clone())
                        .set(f64::from(queue.message_count())),
                    Err(e) => return Err(e),
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
    }
    let _ = channel.close(200, "sampler stopping".into()).await;
    Ok(())
}
