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

    /// The current business instant. The shared clock is read under its lock
    /// (`db::test_clock::read_held`): a move of the clock waits for the
    /// transactions that read the old instant.
    pub async fn now(&self, conn: &mut AsyncPgConnection) -> QueryResult<DateTime<Utc>> {
        match self {
            Clock::System => Ok(real_now()),
            Clock::Shared => Ok(test_clock::read_held(conn).await?.unwrap_or_else(real_now)),
        }
    }

    /// Sets the shared test clock (operators only, test mode only), in the caller's
    /// transaction, once the transactions that read the old instant have ended.
    pub async fn set(conn: &mut AsyncPgConnection, at: DateTime<Utc>) -> QueryResult<DateTime<Utc>> {
        let at = at.trunc_subsecs(6);
        test_clock::write(conn, at).await?;
        Ok(at)
    }
}
