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
//! was opened, as with the per-worker pools of `Application::build_with`), and is
//! dropped after an error from the database, to be opened again: a broken
//! connection is never reused. A read that failed so runs once more on the new
//! connection (it has no effects), so a PostgreSQL restart or failover, or a
//! terminated backend, costs the reads in flight no error. The lane's connection
//! is not counted in `BILLING_DB_POOL_SIZE`.

use std::sync::Arc;

use billing_shared::config::Secret;
use billing_shared::error::ServiceError;
use diesel::result::Error as DieselError;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use tokio::sync::Mutex;

use crate::error::ApiError;

pub struct ReadLane {
    url: Secret,
    conn: Mutex<Option<Arc<AsyncPgConnection>>>,
}

impl ReadLane {
    /// A lane that connects to `url` on first use.
    pub fn new(url: Secret) -> Self {
        ReadLane { url, conn: Mutex::new(None) }
    }

    /// Runs `f` on the lane's connection, concurrently with the other reads on it;
    /// once more on a new connection when the database answered it with an error.
    /// `f` must only read.
    ///
    /// Errors: 503 `database_unavailable` when no connection can be opened; `f`'s
    /// own errors (a database error only when it came on a new connection too).
    pub async fn run<T>(&self, f: impl AsyncFn(&AsyncPgConnection) -> Result<T, ServiceError>) -> Result<T, ApiError> {
        let mut retried = false;
        loop {
            let conn = self.connection().await?;
            let result = f(&conn).await;
            if !matches!(result, Err(ServiceError::Database(DieselError::DatabaseError(..)))) {
                return Ok(result?);
            }
            let mut slot = self.conn.lock().await;
            if slot.as_ref().is_some_and(|open| Arc::ptr_eq(open, &conn)) {
                *slot = None;
            }
            if retried {
                return Ok(result?);
            }
            retried = true;
        }
    }

    /// The open connection, or a new one (callers arriving meanwhile wait for it).
    async fn connection(&self) -> Result<Arc<AsyncPgConnection>, ApiError> {
        let mut slot = self.conn.lock().await;
        if let Some(open) = slot.as_ref() {
            return Ok(open.clone());
        }
        let open = Arc::new(AsyncPgConnection::establish(self.url.expose()).await?);
        *slot = Some(open.clone());
        Ok(open)
    }
}
