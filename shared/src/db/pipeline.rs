//! Independent statements of one transaction sent together.
//!
//! diesel-async pipelines the futures of one `&AsyncPgConnection` polled at once:
//! their statements go out without waiting for each other's answers, and
//! PostgreSQL runs them one after another in the order they arrive — one round
//! trip (a send, a wake-up of the server and one of us) instead of one each. Only
//! statements that need nothing from each other belong in one pipeline, and every
//! row lock they take must already be held or taken in no particular order: a
//! statement not yet prepared on the connection is sent after its preparation, so
//! the arrival order is not the order of the arguments.
//!
//! Functions meant for pipelines take `&AsyncPgConnection` (a `&mut` one coerces).

use diesel::QueryResult;
use diesel::result::{DatabaseErrorKind, Error};

/// PostgreSQL's answer to every statement after one that failed in the same
/// transaction (SQLSTATE 25P02): an echo of the failure, never its cause.
fn is_echo(e: &Error) -> bool {
    matches!(e, Error::DatabaseError(DatabaseErrorKind::Unknown, info)
        if info.message().starts_with("current transaction is aborted"))
}

/// The outcome of a pipeline's statements, whatever order their answers were
/// polled in: the first error that is a cause (a constraint's name, a conflict),
/// else an echo, else `Ok`.
pub fn outcome<const N: usize>(results: [QueryResult<()>; N]) -> QueryResult<()> {
    let mut echo = None;
    for result in results {
        match result {
            Ok(()) => {}
            Err(e) if is_echo(&e) => {
                echo.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    echo.map_or(Ok(()), Err)
}
