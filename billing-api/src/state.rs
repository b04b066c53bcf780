//! Shared state of the HTTP handlers and the one way they run a use case: in one
//! database transaction, with the clock read inside it, and with `Idempotency-Key`
//! replay handled in that same transaction.

use std::sync::Arc;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use billing_shared::clock::Clock;
use billing_shared::config::Secret;
use billing_shared::db::{PgPool, PooledConn, in_transaction};
use billing_shared::error::ServiceError;
use billing_shared::ports::Ports;
use billing_shared::services::idempotency::{self, Claim, IdempotentRequest};
use billing_shared::services::usage_key_filter::KeyFilters;
use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::error::ApiError;
use crate::read_lane::ReadLane;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    /// The worker's connection for reads outside transactions ([`AppState::read`]).
    pub reads: Arc<ReadLane>,
    /// The adapters behind the payment gateway and fiscal ports.
    pub ports: Ports,
    pub clock: Clock,
    pub admin_token: Option<Secret>,
    pub amqp_url: Secret,
    /// The usage key filters this process has loaded, shared by its workers.
    pub key_filters: Arc<KeyFilters>,
    /// Turns for writing usage batches, shared by the process's workers: one
    /// permit per event, [`billing_shared::services::usage::MAX_EVENTS`] per turn
    /// (`BILLING_USAGE_CONCURRENCY` turns, one per core by default).
    pub usage_turns: Arc<Semaphore>,
}

/// How an answer may be stored for `Idempotency-Key` replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replayable {
    Yes,
    /// The answer carries secrets: never stored; a replay answers 409.
    Secret,
}

impl AppState {
    pub async fn conn(&self) -> Result<PooledConn, ApiError> {
        Ok(self.pool.get().await?)
    }

    /// Runs `f` in one transaction and answers `status` with its JSON result.
    pub async fn run<T: Serialize>(
        &self,
        status: StatusCode,
        idem: Option<IdempotentRequest>,
        f: impl AsyncFnOnce(&mut AsyncPgConnection, DateTime<Utc>) -> Result<T, ServiceError>,
    ) -> Result<HttpResponse, ApiError> {
        self.run_with(status, idem, Replayable::Yes, f).await
    }

    pub async fn run_with<T: Serialize>(
        &self,
        status: StatusCode,
        idem: Option<IdempotentRequest>,
        replayable: Replayable,
        f: impl AsyncFnOnce(&mut AsyncPgConnection, DateTime<Utc>) -> Result<T, ServiceError>,
    ) -> Result<HttpResponse, ApiError> {
        let mut conn = self.conn().await?;
        let clock = self.clock;
        let (status, body) = in_transaction(&mut conn, async |conn| {
            let now = clock.now(conn).await?;
            if let Some(req) = &idem
                && let Claim::Replay { status, body } = idempotency::claim(conn, req).await?
            {
                let status = StatusCode::from_u16(status)
                    .map_err(|e| ServiceError::Internal(format!("stored idempotent status {status}: {e}")))?;
                return Ok::<_, ServiceError>((status, body));
            }
            let value = f(conn, now).await?;
            let body = serde_json::to_value(value).map_err(|e| ServiceError::Internal(e.to_string()))?;
            if let Some(req) = &idem {
                let stored = (replayable == Replayable::Yes).then_some(&body);
                idempotency::complete(conn, req, status.as_u16(), stored).await?;
            }
            Ok((status, body))
        })
        .await?;
        Ok(HttpResponse::build(status).json(body))
    }

    /// Runs a read outside any transaction — no BEGIN/COMMIT round trips — and
    /// answers 200 with its JSON result. Only for reads whose answer comes from one
    /// statement (or from statements that need no common snapshot).
    ///
    /// Runs on the worker's [`ReadLane`], pipelined with the other reads in flight.
    pub async fn read<T: Serialize>(
        &self,
        f: impl AsyncFn(&AsyncPgConnection, DateTime<Utc>) -> Result<T, ServiceError>,
    ) -> Result<HttpResponse, ApiError> {
        let clock = self.clock;
        let value = self
            .reads
            .run(async |conn| {
                let now = clock.now(conn).await?;
                f(conn, now).await
            })
            .await?;
        Ok(HttpResponse::Ok().json(value))
    }

    /// Runs `f` in one transaction (the clock read inside it) and returns its result.
    pub async fn transaction<T>(
        &self,
        f: impl AsyncFnOnce(&mut AsyncPgConnection, DateTime<Utc>) -> Result<T, ServiceError>,
    ) -> Result<T, ApiError> {
        let mut conn = self.conn().await?;
        let clock = self.clock;
        Ok(in_transaction(&mut conn, async |conn| {
            let now = clock.now(conn).await?;
            f(conn, now).await
        })
        .await?)
    }

    /// Runs `f` in one transaction (without idempotency) and answers 200.
    pub async fn ok<T: Serialize>(
        &self,
        f: impl AsyncFnOnce(&mut AsyncPgConnection, DateTime<Utc>) -> Result<T, ServiceError>,
    ) -> Result<HttpResponse, ApiError> {
        self.run(StatusCode::OK, None, f).await
    }
}
