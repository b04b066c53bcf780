//! One PostgreSQL connection per HTTP worker, shared by the reads that run on that
//! worker at once ([`crate::state::AppState::read`], the entitlement read).
//!
//! tokio-postgres pipelines the statements of concurrent queries on one
//! connection: the statements of the requests in flight go out in one write, the
//! backend reads them in one wake-up and answers them back to back. With a
//! connection per request (the pool), each statement costs a backend of its own a
//! wake-up and a context switch; on a machine where the API, its clients and
//! PostgreSQL share the cores, those were most of an entitlement read's cost
//! (bench/README, "Entitlement reads pipelined on one connection").
//!
//! Only reads outside any transaction run here: a transaction on a shared
//! connection would take in every other request's statements. The connection is
//! opened on first use, on the worker's own thread (its driver task runs where it
//! was opened, as with the per-worker pools of `Application::build_with`). When a
//! read fails with a database error, a `SELECT 1` on the same connection tells a
//! query's own error (answered as before) from a lost connection (a PostgreSQL
//! restart or failover, a terminated backend): that one is dropped and the read,
//! which has no effects, runs once more on a new connection. Connecting and reading
//! are bounded in time, so a half-open connection is dropped too. The lane's
//! connection is not counted in `BILLING_DB_POOL_SIZE`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use billing_shared::config::Secret;
use billing_shared::error::ServiceError;
use diesel::result::Error as DieselError;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use tokio::sync::Mutex;
use tokio::time::timeout;

use crate::error::ApiError;

/// How long opening the connection, or the probe of a connection that failed a
/// read, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one read may take before its connection counts as lost (503).
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failed attempt to connect, reads answer 503 for this long without
/// trying again, instead of each waiting for an attempt of its own.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

pub struct ReadLane {
    url: Secret,
    slot: Mutex<Slot>,
}

#[derive(Default)]
struct Slot {
    open: Option<Arc<AsyncPgConnection>>,
    failed_at: Option<Instant>,
}

impl ReadLane {
    /// A lane that connects to `url` on first use.
    pub fn new(url: Secret) -> Self {
        ReadLane { url, slot: Mutex::new(Slot::default()) }
    }

    /// Runs `f` on the lane's connection, concurrently with the other reads on it;
    /// once more on a new connection when the first one was lost. `f` must only read.
    ///
    /// Errors: 503 `database_unavailable` when no connection can be had, a read
    /// outlives [`READ_TIMEOUT`], or the connection is lost twice; otherwise `f`'s
    /// own errors.
    pub async fn run<T>(&self, f: impl AsyncFn(&AsyncPgConnection) -> Result<T, ServiceError>) -> Result<T, ApiError> {
        let mut retried = false;
        loop {
            let conn = self.connection().await?;
            let Ok(result) = timeout(READ_TIMEOUT, f(&conn)).await else {
                self.forget(&conn).await;
                return Err(ApiError::database_unavailable(&"a read on the shared connection timed out"));
            };
            let Err(ServiceError::Database(DieselError::DatabaseError(..))) = &result else { return Ok(result?) };
            if matches!(timeout(CONNECT_TIMEOUT, (&mut &*conn).batch_execute("SELECT 1")).await, Ok(Ok(()))) {
                return Ok(result?);
            }
            self.forget(&conn).await;
            if retried {
                return Err(ApiError::database_unavailable(&"the shared read connection was lost twice"));
            }
            retried = true;
        }
    }

    /// The open connection, or a new one (reads arriving meanwhile wait for it).
    async fn connection(&self) -> Result<Arc<AsyncPgConnection>, ApiError> {
        let mut slot = self.slot.lock().await;
        if let Some(open) = &slot.open {
            return Ok(open.clone());
        }
        if slot.failed_at.is_some_and(|at| at.elapsed() < RECONNECT_PAUSE) {
            return Err(ApiError::database_unavailable(&"the last attempt to connect failed moments ago"));
        }
        match timeout(CONNECT_TIMEOUT, AsyncPgConnection::establish(self.url.expose())).await {
            Ok(Ok(conn)) => {
                let conn = Arc::new(conn);
                *slot = Slot { open: Some(conn.clone()), failed_at: None };
                Ok(conn)
            }
            Ok(Err(e)) => {
                slot.failed_at = Some(Instant::now());
                Err(e.into())
            }
            Err(_) => {
                slot.failed_at = Some(Instant::now());
                Err(ApiError::database_unavailable(&"connecting timed out"))
            }
        }
    }

    /// Drops `conn` if it is still the lane's connection (a read that failed late
    /// must not drop the one opened after it).
    async fn forget(&self, conn: &Arc<AsyncPgConnection>) {
        let mut slot = self.slot.lock().await;
        if slot.open.as_ref().is_some_and(|open| Arc::ptr_eq(open, conn)) {
            slot.open = None;
        }
    }
}
