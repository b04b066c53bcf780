//! Keeping `UPDATE`s and single-row `INSERT`s prepared.
//!
//! Diesel never caches an `UPDATE` or an `INSERT` as a prepared statement (their
//! SQL can take many forms: skipped `None` fields, `DEFAULT`s, row counts), so
//! diesel-async prepares each anew on every call — a `Parse` round trip, parsing
//! and planning, then the execution, then a `Close`. On the Pay notification's
//! path six of its nine statements went that way (`log_statement = all` showed a
//! new statement name per call). [`Cached`] marks a statement whose SQL takes a
//! bounded number of forms as safe to keep: it is kept per connection under its
//! SQL text and bind types, prepared once.

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};

/// A statement, kept in the connection's prepared-statement cache under its SQL
/// text when [`Cached::new`] or [`Cached::rows`] says so.
///
/// Only for statements whose SQL takes a bounded number of forms (a single-row
/// insert, an update of a fixed changeset, a statement over arrays): each form is
/// one cache entry per connection, for the connection's life. (A derived
/// `Insertable` writes `DEFAULT` for each `None` field, so a single-row insert has
/// one form per set of fields its callers leave empty: a handful in practice.)
#[derive(Debug, Clone, Copy)]
pub struct Cached<Q> {
    query: Q,
    keep: bool,
}

/// Multi-row inserts of up to this many rows are kept (one form per row count);
/// larger ones, rare and each a batch's single statement, are prepared once. A
/// batch of captured Pay notifications (`billing-api` `captures::MAX_BATCH`) held
/// about 8 under the benchmark's load, and its history rows and stored
/// notifications were parsed and planned anew at 4 (bench/README, "Two triggers
/// set-based"). The price: up to this many kept forms per insert shape and
/// connection, for the connection's life.
pub const FEW_ROWS: usize = 16;

impl<Q> Cached<Q> {
    /// `query`, kept prepared.
    pub fn new(query: Q) -> Self {
        Cached { query, keep: true }
    }

    /// A multi-row insert of `rows` rows, kept prepared when they are few.
    pub fn rows(query: Q, rows: usize) -> Self {
        Cached { query, keep: rows <= FEW_ROWS }
    }
}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Cached<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.query.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, backend: &Pg) -> QueryResult<bool> {
        if self.keep { Ok(true) } else { self.query.is_safe_to_cache_prepared(backend) }
    }
}

/// No static id: the cache keys the statement by its SQL text and bind types.
impl<Q> QueryId for Cached<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Cached<Q> {
    type SqlType = Q::SqlType;
}
