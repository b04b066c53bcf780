//! Keeps the webhook queue bound to the events of exactly the tenants that have a
//! webhook URL. The API binds when it sets a URL; this task catches up after the
//! worker connects (a fresh broker, a URL set while RabbitMQ was away) and then
//! every few seconds.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use billing_shared::db::PgPool;
use billing_shared::db::tenants;
use billing_shared::domain::ids::TenantId;
use billing_shared::queue::topology;
use lapin::Connection;
use tokio::sync::watch;

const EVERY: Duration = Duration::from_secs(5);

pub async fn run(conn: Arc<Connection>, pool: PgPool, mut stop: watch::Receiver<bool>) -> Result<(), lapin::Error> {
    let channel = conn.create_channel().await?;
    let mut bound: HashSet<TenantId> = HashSet::new();
    loop {
        let wanted: Option<Vec<(TenantId, bool)>> = match pool.get().await {
            Ok(mut c) => tenants::webhook_targets(&mut c)
                .await
                .map_err(|e| tracing::warn!(error = %e, "reading tenants for webhook bindings failed"))
                .ok(),
            Err(_) => None,
        };
        for (tenant, on) in wanted.into_iter().flatten() {
            if on != bound.contains(&tenant) {
                topology::bind_webhooks(&channel, tenant, on).await?;
                if on {
                    bound.insert(tenant);
                } else {
                    bound.remove(&tenant);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
    }
    let _ = channel.close(200, "bindings stopping".into()).await;
    Ok(())
}
