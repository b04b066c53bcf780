//! The one clock of the service.
//!
//! In production it is the system clock. With `BILLING_TEST_CLOCK=1` it is a shared
//! test clock stored in PostgreSQL (table `test_clock`), so the API and every worker
//! replica read the same instant; it stays frozen until an operator sets it again and
//! reads as real time until first set. Business times (periods, due times, captures)
//! come from here; protocol timestamps (webhook signatures, provider tokens) use real
//! time.

use chrono::{DateTime, SubsecRound, Utc};
use diesel::QueryResult;
use diesel_async::AsyncPgConnection;

use crate::db::test_clock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    System,
    Shared,
}

/// Real time, truncated to the database's microsecond precision.
pub fn real_now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

impl Clock {
    pub fn from_test_flag(test_clock: bool) -> Self {
        if test_clock { Clock::Shared } else { Clock::System }
    }

    pub fn is_test(&self) -> bool {
        matches!(self, Clock::Shared)
    }

    /// The current business instant.
    pub async fn now(&self, conn: &AsyncPgConnection) -> QueryResult<DateTime<Utc>> {
        match self {
            Clock::System => Ok(real_now()),
            Clock::Shared => Ok(test_clock::read(conn).await?.unwrap_or_else(real_now)),
        }
    }

    /// The current business instant, for a transaction that claims the work due
    /// at it (the scheduler's tick): a move of the shared clock waits until the
    /// caller's transaction ends (`db::test_clock::read_held`).
    pub async fn now_held(&self, conn: &mut AsyncPgConnection) -> QueryResult<DateTime<Utc>> {
        match self {
            Clock::System => Ok(real_now()),
            Clock::Shared => Ok(test_clock::read_held(conn).await?.unwrap_or_else(real_now)),
        }
    }

    /// Sets the shared test clock (operators only, test mode only), in the caller's
    /// transaction, once the transactions that hold the old instant
    /// ([`Clock::now_held`]) have ended.
    pub async fn set(conn: &mut AsyncPgConnection, at: DateTime<Utc>) -> QueryResult<DateTime<Utc>> {
        let at = at.trunc_subsecs(6);
        test_clock::write(conn, at).await?;
        Ok(at)
    }
}
