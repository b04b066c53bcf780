//! Independent statements of one transaction sent together.
//!
//! diesel-async pipelines the futures of one `&AsyncPgConnection` polled at once:
//! their statements go out without waiting for each other's answers, and
//! PostgreSQL runs them one after another in the order they arrive — one round
//! trip (a send, a wake-up of the server and one of us) instead of one each.
//! Statements go out in the order their futures are first polled (`join` polls its
//! arguments in order; diesel-async prepares a statement new to the connection
//! while holding its statement cache, so those after it wait — it looks up custom
//! PostgreSQL types before that, and no statement here binds one), and each runs
//! once the one before it is done: a read after a lock sees what the lock waited
//! for. Only statements whose inputs do not come from each other's answers belong
//! in one pipeline. Pass the futures in the order their statements run, a future
//! that sends more than one statement last: [`outcome`] then finds the cause first.
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

/// The outcome of a pipeline's statements, given in the order they ran: the first
/// error that is a cause (a constraint's name, a conflict), else an echo, else
/// `Ok`. (The echo is recognised by PostgreSQL's English message; under another
/// `lc_messages` the order alone puts the cause first.)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn db_error(kind: DatabaseErrorKind, message: &str) -> Error {
        Error::DatabaseError(kind, Box::new(message.to_owned()))
    }

    fn echo() -> Error {
        db_error(
            DatabaseErrorKind::Unknown,
            "current transaction is aborted, commands ignored until end of transaction block",
        )
    }

    #[test]
    fn the_cause_is_reported_before_any_echo_of_it() {
        let cause = || db_error(DatabaseErrorKind::CheckViolation, "ledger_accounts_no_overdraft");
        let got = outcome([Ok(()), Err(echo()), Err(cause())]).unwrap_err();
        assert!(matches!(got, Error::DatabaseError(DatabaseErrorKind::CheckViolation, _)), "{got:?}");
        let first = db_error(DatabaseErrorKind::UniqueViolation, "first");
        let got = outcome([Err(first), Err(cause())]).unwrap_err();
        assert!(matches!(got, Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _)), "{got:?}");
        // Only echoes (their cause elsewhere): one of them, never Ok.
        assert!(outcome([Ok(()), Err(echo())]).is_err());
        assert!(outcome([Ok(()), Ok(())]).is_ok());
    }
}
