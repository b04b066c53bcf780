//! RabbitMQ: connection helpers (the topology, relay and job plumbing live here as
//! the worker grows).

use std::time::Duration;

use lapin::{Connection, ConnectionProperties};

use crate::config::Secret;

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
