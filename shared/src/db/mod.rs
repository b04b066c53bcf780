//! Database access: connection pool, migrations, and query functions that take
//! `&mut AsyncPgConnection` so services can compose them inside one transaction
//! (or `&AsyncPgConnection`, those that may share a round trip: [`pipeline`]).

pub mod attempts;
pub mod audit;
pub mod business_metrics;
pub mod cached;
pub mod console_sessions;
pub mod customers;
pub mod dead_letters;
pub mod enums;
pub mod gateway_events;
pub mod idempotency;
pub mod ids;
pub mod invoices;
pub mod ledger;
pub mod outbox;
pub mod partners;
pub mod payments;
pub mod pipeline;
pub mod plans;
pub mod receipts;
pub mod refunds;
pub mod revenue;
pub mod schema;
pub mod subscription_batches;
pub mod subscriptions;
pub mod tenants;
pub mod test_clock;
pub mod trials;
pub mod usage;
pub mod usage_key_filters;
pub mod usage_partitions;
pub mod webhook_deliveries;
pub mod work;

use diesel::Connection;
use diesel::RunQueryDsl as _;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::config::Secret;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations");

/// Key of the advisory lock that serialises migrations between replicas.
const MIGRATION_LOCK_KEY: i64 = 0x6269_6c6c_696e_6731; // "billing1"

pub type PgPool = Pool<AsyncPgConnection>;
pub type PooledConn = Object<AsyncPgConnection>;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot build the connection pool: {0}")]
    Pool(String),
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(#[from] diesel::ConnectionError),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("query failed: {0}")]
    Query(#[from] diesel::result::Error),
}

pub fn build_pool(url: &Secret, size: usize) -> Result<PgPool, DbError> {
    // No test query on every checkout: a broken connection fails its transaction,
    // which is retried like any other failure, and the pool then replaces it.
    let mut config = ManagerConfig::default();
    config.recycling_method = RecyclingMethod::Fast;
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url.expose(), config);
    Pool::builder(manager).max_size(size).build().map_err(|e| DbError::Pool(e.to_string()))
}

/// Applies pending migrations under a PostgreSQL advisory lock, so replicas that
/// start together migrate once. Runs the blocking migration harness on a blocking
/// thread; the lock is held on the same connection the migrations use.
pub async fn run_migrations(url: &Secret) -> Result<Vec<String>, DbError> {
    let url = url.expose().to_owned();
    tokio::task::spawn_blocking(move || -> Result<Vec<String>, DbError> {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url)?;
        diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})")).execute(&mut conn)?;
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(|v| v.to_string()).collect::<Vec<_>>())
            .map_err(|e| DbError::Migration(e.to_string()));
        diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})")).execute(&mut conn)?;
        applied
    })
    .await
    .map_err(|e| DbError::Migration(format!("migration task failed: {e}")))?
}

/// Names of the migrations this binary embeds that the database has not applied:
/// a binary refuses to start only when this is not empty after migrating.
pub async fn missing_migrations(url: &Secret) -> Result<Vec<String>, DbError> {
    let url = url.expose().to_owned();
    tokio::task::spawn_blocking(move || -> Result<Vec<String>, DbError> {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url)?;
        let pending = conn.pending_migrations(MIGRATIONS).map_err(|e| DbError::Migration(e.to_string()))?;
        Ok(pending.iter().map(|m| m.name().to_string()).collect())
    })
    .await
    .map_err(|e| DbError::Migration(format!("migration task failed: {e}")))?
}

/// Runs `f` inside one database transaction: committed when it returns `Ok`,
/// rolled back when it returns `Err`. (A plain begin/commit pair rather than
/// `AsyncConnection::transaction`, so callers need no `Send` futures.)
pub async fn in_transaction<T, E>(
    conn: &mut AsyncPgConnection,
    f: impl AsyncFnOnce(&mut AsyncPgConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    run_transaction(conn, None, f).await
}

/// [`in_transaction`] whose statements each wait at most `lock_wait_ms` for a
/// lock (`BEGIN; SET LOCAL lock_timeout = …`, one round trip): a longer wait
/// fails with SQLSTATE 55P03 (`lock_not_available`) and rolls it back. Not inside
/// another transaction (that is an error).
pub async fn in_transaction_bounded<T, E>(
    conn: &mut AsyncPgConnection,
    lock_wait_ms: u32,
    f: impl AsyncFnOnce(&mut AsyncPgConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    run_transaction(conn, Some(&format!("BEGIN; SET LOCAL lock_timeout = {lock_wait_ms}")), f).await
}

/// The settings of [`in_transaction_by_index`]: every statement planned when it
/// runs, sequential scans, hash and merge joins priced out, for the transaction only.
const BY_INDEX: &str = "BEGIN; SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL enable_seqscan = off; \
                        SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off";

/// [`in_transaction`] whose statements are planned each time they run, with the
/// tables' sizes of the moment, and reach their rows by index (one round trip
/// begins it). For statements over tables that swing from empty to large, whose
/// prepared plan must not be one made at another size: once a prepared statement's
/// custom plans are no cheaper than a generic one, PostgreSQL keeps the generic plan
/// for the connection, priced with the sizes of that moment, until new statistics
/// invalidate it. The relay's read of a lane, first planned while the outbox was
/// empty, kept a sequential scan of `outbox_events` hashed against the lane's rows:
/// 25 ms a read at 120 000 events and growing (bench/README, "The relay's plan").
/// Without the custom plans, a generic plan made on empty tables with the scans
/// priced out read `outbox_events` by whole-index scans instead; without the scans
/// priced out, a custom plan at 30 000 events still hashed the table. Planning each
/// run costs about 0.3 ms of the server's time a read. Every execution of such a
/// statement must run inside this.
pub async fn in_transaction_by_index<T, E>(
    conn: &mut AsyncPgConnection,
    f: impl AsyncFnOnce(&mut AsyncPgConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    run_transaction(conn, Some(BY_INDEX), f).await
}

/// A transaction (a savepoint inside another), or with `begin` (`BEGIN` and the
/// transaction's `SET LOCAL`s, one round trip) a top-level one so set.
async fn run_transaction<T, E>(
    conn: &mut AsyncPgConnection,
    begin: Option<&str>,
    f: impl AsyncFnOnce(&mut AsyncPgConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    use diesel_async::{AnsiTransactionManager, TransactionManager};
    use tracing::Instrument;
    async move {
        match begin {
            None => AnsiTransactionManager::begin_transaction(conn).await?,
            Some(sql) => AnsiTransactionManager::begin_transaction_sql(conn, sql).await?,
        }
        match f(conn).await {
            Ok(value) => {
                AnsiTransactionManager::commit_transaction(conn).await?;
                Ok(value)
            }
            Err(e) => {
                if let Err(rollback) = AnsiTransactionManager::rollback_transaction(conn).await {
                    tracing::error!(error = %rollback, "rollback failed");
                }
                Err(e)
            }
        }
    }
    .instrument(transaction_span())
    .await
}

/// A `db.transaction` span inside whatever span is current (a request, a job);
/// none for a transaction outside any span (an idle scheduler tick, a relay pass),
/// which would otherwise start a one-span trace many times a second.
fn transaction_span() -> tracing::Span {
    if tracing::Span::current().is_none() { tracing::Span::none() } else { tracing::info_span!("db.transaction") }
}

/// Tries for the session-level advisory lock `key` on this connection: true when
/// the session now holds it, false when another one does. Held until
/// `pg_advisory_unlock(key)` or the session's end, across commits — so it needs
/// PostgreSQL sessions, not a transaction-mode pooler (`deploy/k8s/README.md`).
pub async fn try_session_lock(conn: &mut AsyncPgConnection, key: i64) -> diesel::QueryResult<bool> {
    use diesel::sql_types::{BigInt, Bool};
    let query = diesel::select(diesel::dsl::sql::<Bool>("pg_try_advisory_lock(").bind::<BigInt, _>(key).sql(")"));
    diesel_async::RunQueryDsl::get_result(query, conn).await
}
